"""The server's options, each defined once: its default, its help text, its bounds.

Three small frozen objects group them, as httpx groups ``Timeout`` and ``Limits``:

- :class:`Limits`: sizes and counts that keep one peer from hurting the others;
- :class:`Timeouts`: how long the server waits, in seconds;
- :class:`RedisOptions`: the Redis backplane shared by several servers;
- :class:`ClassroomOptions`: classroom mode, the chat as a JupyterHub service.

Each field carries an :class:`OptionSpec` in its metadata. The objects check
themselves when built (a bad value raises :class:`~wslab.errors.ConfigurationError`,
a :class:`ValueError`, naming the option), :class:`~wslab.server.ChatServer` maps
its flat keyword arguments (typed by :class:`ServerOptions`) onto them through
:data:`FLAT_OPTIONS`, and ``python -m wslab serve`` derives its flags, defaults,
help and checks from the same fields (:func:`cli_options`). The parts that take
some of these options one by one (:class:`~wslab.room.Room`,
:class:`~wslab.engine.MemoryEngine`, :class:`~wslab.moderation.ClassRoom`) read
their defaults from :data:`DEFAULT_LIMITS` and its siblings, and check their
values with the same objects' :meth:`~Limits.check`.

Pure: no asyncio, no sockets. Any thread.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict, TypeVar
from urllib.parse import urlsplit, urlunsplit

from .errors import ConfigurationError

__all__ = [
    "DEFAULT_CLASSROOM",
    "DEFAULT_LIMITS",
    "DEFAULT_REDIS",
    "DEFAULT_TIMEOUTS",
    "FLAT_OPTIONS",
    "ClassroomOptions",
    "CliOption",
    "Limits",
    "OptionSpec",
    "RedisOptions",
    "ServerOptions",
    "Timeouts",
    "check_redis_url",
    "cli_options",
    "resolve",
    "safe_url",
    "split_flat",
]

OptionsT = TypeVar("OptionsT", bound="_Options")


@dataclass(frozen=True)
class OptionSpec:
    """What the code, the command line and the docs know about one option.

    ``minimum``/``maximum`` bound a number (``strict``: greater than the minimum,
    not equal); ``optional`` lets it be ``None`` (the feature is off); ``check``
    is an extra test that raises :class:`ValueError` (``allowed`` says what it
    allows, in words); ``cli`` says whether
    ``python -m wslab serve`` offers it, as ``flag`` (by default the field's name
    with dashes).
    """

    help: str
    minimum: float | None = None
    maximum: float | None = None
    strict: bool = False
    optional: bool = False
    check: Callable[[Any], None] | None = None
    cli: bool = True
    flag: str | None = None
    metavar: str | None = None
    allowed: str = ""  # the allowed values in words, when no bounds say it

    @property
    def bounds(self) -> str:
        """The allowed range in words: ``>= 1``, ``> 0``, ``from 0 to 65535``, or ``""``."""
        if self.minimum is not None and self.maximum is not None and not self.strict:
            return f"from {self.minimum:g} to {self.maximum:g}"
        parts = []
        if self.minimum is not None:
            parts.append(f"{'>' if self.strict else '>='} {self.minimum:g}")
        if self.maximum is not None:
            parts.append(f"<= {self.maximum:g}")
        return " and ".join(parts)

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not allowed (for example ``"must be >= 1"``), or None."""
        if value is None:
            return None if self.optional else "must be given"
        if self.check is not None:
            try:
                self.check(value)
            except ValueError as error:
                return str(error)
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return "must be a number"
        if self.minimum is None and self.maximum is None:
            return None
        low = self.minimum is not None and (
            value <= self.minimum if self.strict else value < self.minimum
        )
        high = self.maximum is not None and value > self.maximum
        if not math.isfinite(value) or low or high:
            return f"must be {self.bounds}"
        return None


def option(default: Any, help: str, **spec: Any) -> Any:
    """A dataclass field with its default and its :class:`OptionSpec`."""
    return field(default=default, metadata={"option": OptionSpec(help, **spec)})


def check_redis_url(url: str) -> None:
    """Raise :class:`ValueError` unless ``url`` is a Redis URL (``redis://``, ``rediss://``, ``unix://``).

    The message shows the URL without its password (:func:`safe_url`).
    """
    parts = urlsplit(url)
    shown = safe_url(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError(
            f"{shown!r} is not a Redis URL (redis://HOST:PORT/DB, rediss://... or unix://PATH)"
        )
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise ValueError(f"{shown!r} has a bad port") from None
    if parts.scheme != "unix" and not parts.hostname:
        raise ValueError(f"{shown!r} names no host")


def safe_url(url: str) -> str:
    """The URL without its password, to print or log."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    try:
        port = parts.port
    except ValueError:
        port = None
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{port}" if port else "")
    return urlunsplit(parts._replace(netloc=netloc))


@dataclass(frozen=True)
class _Options:
    """Checks every field against its :class:`OptionSpec` when built."""

    def __post_init__(self) -> None:
        self.check(**{name: getattr(self, name) for name, _, _ in self.specs()})

    @classmethod
    def check(cls, **values: Any) -> None:
        """Check some of these options' values as building the object checks them all.

        For code that takes options one by one (the room, its presence view, the
        memory engine): one set of bounds, one wording.

        Raises:
            ConfigurationError: the first value not allowed, naming its option.
        """
        specs = {f.name: f.metadata["option"] for f in dataclasses.fields(cls)}
        for name, value in values.items():
            problem = specs[name].problem(value)
            if problem is not None:
                shown = safe_url(value) if isinstance(value, str) and "://" in value else value
                raise ConfigurationError(f"{cls.option_name(name)} {problem} (got {shown!r})")

    @classmethod
    def specs(cls) -> Iterator[tuple[str, OptionSpec, Any]]:
        """Each field's name, spec and default, in order."""
        for f in dataclasses.fields(cls):
            yield f.name, f.metadata["option"], f.default

    @classmethod
    def option_name(cls, name: str) -> str:
        """The keyword ``ChatServer`` takes for field ``name``."""
        return name


@dataclass(frozen=True)
class Limits(_Options):
    """Sizes and counts; each keeps one peer (or one address) from hurting the others."""

    max_size: int = option(
        64 * 1024, "largest frame, bytes; a larger one closes with 1009", minimum=1
    )
    max_clients: int = option(
        1000,
        "open connections, handshakes in progress included; more are closed with 1013",
        minimum=1,
    )
    max_buffer: int = option(
        256 * 1024, "bytes a client may leave unread before it is closed with 1013", minimum=1
    )
    max_per_address: int = option(
        64,
        "open connections per client address, 0 = no cap; this machine is not capped",
        minimum=0,
    )
    rate_limit: float = option(
        20.0, "messages per second per user (all its sockets), 0 = no limit", minimum=0
    )
    rate_burst: float = option(40.0, "messages a user may send at once", minimum=0, strict=True)
    history: int = option(100, "messages kept in memory and sent to newcomers", minimum=1)
    max_bindings: int = option(
        10_000, "ids remembered while away, without a store (the newest ones)", minimum=1
    )
    dedupe_per_id: int = option(
        100, "clientMessageId values remembered per id (the newest ones)", minimum=1, cli=False
    )


@dataclass(frozen=True)
class Timeouts(_Options):
    """How long the server waits for things, in seconds."""

    grace: float = option(1.0, "reload grace, seconds; 0 announces departures at once", minimum=0)
    join_timeout: float = option(
        5.0, "seconds a socket may stay open without sending connecting (then 1008)", minimum=0,
        strict=True,
    )  # fmt: skip
    open_timeout: float = option(
        10.0, "seconds a TCP connection has to finish its handshake", minimum=0, strict=True
    )
    close_timeout: float = option(
        2.0, "seconds to wait for a closing handshake before dropping", minimum=0, strict=True
    )
    ping_interval: float | None = option(
        20.0, "seconds between keepalive pings (None: no pings)", minimum=0, strict=True,
        optional=True, cli=False,
    )  # fmt: skip
    ping_timeout: float | None = option(
        20.0, "seconds a peer has to answer a ping (None: no limit)", minimum=0, strict=True,
        optional=True, cli=False,
    )  # fmt: skip
    presence_tick: float = option(
        0.05, "seconds over which presence changes are batched", minimum=0
    )


@dataclass(frozen=True)
class RedisOptions(_Options):
    """The Redis backplane: several servers on one Redis serve one chat."""

    url: str | None = option(
        None,
        "share one chat with every server on this Redis (redis://HOST:PORT/DB)",
        optional=True,
        check=check_redis_url,
        allowed="redis://, rediss:// or unix:// URL",
        flag="--redis",
        metavar="URL",
    )
    heartbeat: float = option(
        0.5,
        "with --redis: heartbeat period, seconds; a server silent for 5 is taken for dead",
        minimum=0,
        maximum=60,
        strict=True,
        metavar="SECONDS",
    )
    keep: int = option(
        100_000,
        "with --redis: log entries Redis keeps (how far back a client can recover)",
        minimum=1,
    )

    @classmethod
    def option_name(cls, name: str) -> str:
        return "redis" if name == "url" else f"redis_{name}"


def _check_flag(value: Any) -> None:
    if not isinstance(value, bool):
        raise ValueError("must be True or False")


def _check_groups(value: Any) -> None:
    if not isinstance(value, tuple) or not all(isinstance(g, str) and g for g in value):
        raise ValueError("must be a tuple of hub group names")


@dataclass(frozen=True)
class ClassroomOptions(_Options):
    """Classroom mode: the chat as a JupyterHub service, its users the hub's.

    The service's address and the hub's come from the ``JUPYTERHUB_*`` variables
    the hub gives a service (docs/classroom.md).
    """

    hub: bool = option(
        False,
        "run as a JupyterHub service: the hub's users, teachers and moderation"
        " (where JUPYTERHUB_SERVICE_URL says; not with --redis, --store, --seed-compatible)",
        check=_check_flag,
        allowed="a flag",
    )
    teachers: tuple[str, ...] = option(
        (),
        "with --hub: members of this hub group are teachers, besides the hub's admins (repeatable)",
        check=_check_groups,
        allowed="a hub group",
        metavar="GROUP",
    )
    kick_seconds: float = option(
        60.0, "with --hub: seconds a kicked user's handshakes are refused", minimum=0
    )


_GROUPS: tuple[type[_Options], ...] = (Limits, Timeouts, RedisOptions, ClassroomOptions)

#: The defaults, which the room, the engines and the classroom read their own from.
DEFAULT_LIMITS = Limits()
DEFAULT_TIMEOUTS = Timeouts()
DEFAULT_REDIS = RedisOptions()
DEFAULT_CLASSROOM = ClassroomOptions()

#: ``ChatServer``'s flat keyword arguments: name -> (option object class, field).
FLAT_OPTIONS: Mapping[str, tuple[type[_Options], str]] = {
    group.option_name(name): (group, name) for group in _GROUPS for name, _, _ in group.specs()
}


class ServerOptions(TypedDict, total=False):
    """The flat keyword arguments of :class:`~wslab.server.ChatServer`, typed.

    One key for each entry of :data:`FLAT_OPTIONS` but ``redis`` (an argument of
    its own): ``ChatServer(**options: Unpack[ServerOptions])`` makes a misspelled
    or mistyped option a type-checker error, as it is a :class:`TypeError` at run
    time. A test keeps the keys and types equal to the option fields'.
    """

    max_size: int
    max_clients: int
    max_buffer: int
    max_per_address: int
    rate_limit: float
    rate_burst: float
    history: int
    max_bindings: int
    dedupe_per_id: int
    grace: float
    join_timeout: float
    open_timeout: float
    close_timeout: float
    ping_interval: float | None
    ping_timeout: float | None
    presence_tick: float
    redis_heartbeat: float
    redis_keep: int
    hub: bool
    teachers: tuple[str, ...]
    kick_seconds: float


def split_flat(
    flat: Mapping[str, Any],
    limits: Limits | None = None,
    timeouts: Timeouts | None = None,
    redis: RedisOptions | None = None,
) -> tuple[Limits, Timeouts, RedisOptions, ClassroomOptions]:
    """The option objects: the given ones (or defaults), with ``flat`` keywords applied.

    Raises:
        TypeError: a keyword that names no option.
        ValueError: a value out of its bounds.
    """
    unknown = sorted(set(flat) - set(FLAT_OPTIONS))
    if unknown:
        raise TypeError(f"unexpected keyword argument {unknown[0]!r}")
    return (
        _apply(limits or Limits(), flat),
        _apply(timeouts or Timeouts(), flat),
        _apply(redis or RedisOptions(), flat),
        _apply(ClassroomOptions(), flat),
    )


def resolve(
    flat: Mapping[str, Any],
    limits: Limits | None = None,
    timeouts: Timeouts | None = None,
    redis: str | RedisOptions | None = None,
) -> tuple[Limits, Timeouts, RedisOptions, ClassroomOptions]:
    """:func:`split_flat`, with ``redis`` given as an object or as a URL (a flat option)."""
    if isinstance(redis, RedisOptions):
        return split_flat(flat, limits, timeouts, redis)
    if redis is not None:
        flat = {**flat, "redis": redis}
    return split_flat(flat, limits, timeouts)


def _apply(options: OptionsT, flat: Mapping[str, Any]) -> OptionsT:
    """``options`` with the flat keywords that name its fields applied (checked again)."""
    group = type(options)
    changes = {f: flat[k] for k, (g, f) in FLAT_OPTIONS.items() if g is group and k in flat}
    return dataclasses.replace(options, **changes) if changes else options


@dataclass(frozen=True)
class CliOption:
    """One ``python -m wslab serve`` flag derived from an option field."""

    flag: str  # "--max-size"
    keyword: str  # "max_size": the ChatServer keyword, and the argparse dest
    spec: OptionSpec
    default: Any
    kind: type  # int, float, str, bool (a flag) or tuple (repeatable, of str)


def cli_options() -> list[CliOption]:
    """Every option the command line offers, in the order of the option classes."""
    found = []
    for group in _GROUPS:
        hints = {f.name: f.type for f in dataclasses.fields(group)}
        for name, spec, default in group.specs():
            if not spec.cli:
                continue
            keyword = group.option_name(name)
            # "int", "float", "float | None", "str | None", "bool", "tuple[str, ...]"
            # (annotations are text here)
            text = str(hints[name]).split(" ")[0].split("[")[0]
            kind: type = {"int": int, "float": float, "bool": bool, "tuple": tuple}.get(text, str)
            flag = spec.flag or "--" + keyword.replace("_", "-")
            found.append(CliOption(flag, keyword, spec, default, kind))
    return found
