"""The command line: ``python -m wslab serve ...`` and ``python -m wslab exercises ...``.

Every option is checked before anything starts: a bad value is one line on
stderr and exit code 2. A failure at start (port in use, unknown host, a store
that is locked or damaged) is one line and exit code 1. Neither prints a
traceback.
"""

from __future__ import annotations

import argparse
import errno
import math
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, NoReturn
from urllib.parse import urlsplit

from .errors import BackplaneError, MissingExtraError
from .lab import exercises
from .server import ChatServer
from .store import StoreError

DESCRIPTION = """\
wslab: a chat server and lessons for learning WebSockets.

  python -m wslab serve        run the chat server until Ctrl+C
  python -m wslab exercises    generate or check the lesson notebooks

Run "python -m wslab serve --help" for the server's options.
"""

SERVE_DESCRIPTION = """\
Run the chat server until Ctrl+C (SIGINT) or SIGTERM; then every client is
closed with code 1001 and the command exits with 0. The chat page is served at
http://HOST:PORT/ and the WebSocket at ws://HOST:PORT/chat.
"""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (``prog: error: ...``), exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _number(
    kind: Callable[[str], Any],
    minimum: float,
    maximum: float | None = None,
    *,
    strict: bool = False,
) -> Callable[[str], Any]:
    """An argparse type: ``kind`` (int or float) in ``[minimum, maximum]``, finite.

    ``strict`` excludes the minimum itself (``> minimum``).
    """
    what = "an integer" if kind is int else "a number"
    bounds = f"{'>' if strict else '>='} {minimum:g}"
    if maximum is not None:
        bounds = f"from {minimum:g} to {maximum:g}"

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        low = value <= minimum if strict else value < minimum
        if not math.isfinite(value) or low or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"{text} is out of range: must be {bounds}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in some messages
    return parse


def _store_path(text: str) -> str:
    """An argparse type: a store file whose directory exists and can be written."""
    directory = os.path.dirname(os.path.abspath(text)) or "."
    if not os.path.isdir(directory):
        raise argparse.ArgumentTypeError(f"the directory {directory} does not exist")
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text} is a directory; give a file name in it")
    if os.path.exists(text):
        if not os.access(text, os.R_OK | os.W_OK):
            raise argparse.ArgumentTypeError(f"{text} is not readable and writable")
    elif not os.access(directory, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"the directory {directory} is not writable")
    return text


def _redis_url(text: str) -> str:
    """An argparse type: a Redis URL (``redis://``, ``rediss://`` or ``unix://``)."""
    parts = urlsplit(text)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a Redis URL (redis://HOST:PORT/DB, rediss://... or unix://PATH)"
        )
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} has a bad port") from None
    if parts.scheme != "unix" and not parts.hostname:
        raise argparse.ArgumentTypeError(f"{text!r} names no host")
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m wslab",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="run a chat server until Ctrl+C",
        description=SERVE_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = serve.add_argument
    add("--host", default="127.0.0.1", help="address to bind (127.0.0.1; 0.0.0.0 = every one)")
    add("--port", type=_number(int, 0, 65535), default=8765, help="0-65535, 0 = a free one (8765)")
    add("--grace", type=_number(float, 0), default=1.0, help="reload grace, seconds, >= 0 (1.0)")
    add("--history", type=_number(int, 1), default=100, help="messages kept in memory (100)")
    add("--max-size", type=_number(int, 1), default=64 * 1024, help="largest frame, bytes (65536)")
    add("--max-clients", type=_number(int, 1), default=1000, help="open sockets (1000)")
    add(
        "--rate-limit",
        type=_number(float, 0),
        default=20.0,
        help="messages per second per user, 0 = no limit (20)",
    )
    add(
        "--max-buffer",
        type=_number(int, 1),
        default=256 * 1024,
        help="bytes a client may leave unread before it is closed with 1013 (262144)",
    )
    add(
        "--join-timeout",
        type=_number(float, 0, strict=True),
        default=5.0,
        help="seconds a socket may stay open without joining (5)",
    )
    add(
        "--max-per-address",
        type=_number(int, 0),
        default=64,
        help="open sockets per client address, 0 = no cap; this machine is not capped (64)",
    )
    add(
        "--max-bindings",
        type=_number(int, 1),
        default=10_000,
        help="ids remembered while away, without a store (10000)",
    )
    add(
        "--seed-compatible",
        action="store_true",
        help="the original design: full history in every message, ids trusted (insecure)",
    )
    add("--store", type=_store_path, default=None, help="SQLite file for history and ids")
    add(
        "--redis",
        type=_redis_url,
        default=None,
        metavar="URL",
        help="share one chat with every server on this Redis (redis://HOST:PORT/DB)",
    )
    add(
        "--redis-heartbeat",
        type=_number(float, 0, 60, strict=True),
        default=0.5,
        metavar="SECONDS",
        help="with --redis: heartbeat period; a server silent for 5 is taken for dead (0.5)",
    )
    exercises.add_parser(commands)
    return parser


def serve(args: argparse.Namespace) -> int:
    options: dict[str, Any] = {
        "grace": args.grace,
        "max_size": args.max_size,
        "max_clients": args.max_clients,
        "history": args.history,
        "rate_limit": args.rate_limit,
        "seed_compatible": args.seed_compatible,
        "store": args.store,
        "max_buffer": args.max_buffer,
        "join_timeout": args.join_timeout,
        "max_per_address": args.max_per_address,
        "max_bindings": args.max_bindings,
        "redis": args.redis,
        "redis_heartbeat": args.redis_heartbeat,
    }
    if args.seed_compatible:
        print(
            "warning: --seed-compatible trusts ids without tokens:"
            " anyone can take any user's id (for lessons only)",
            file=sys.stderr,
            flush=True,
        )
    try:
        server = ChatServer(args.host, args.port, **options)
        server.start()
    except (StoreError, BackplaneError, MissingExtraError, ValueError) as error:
        return _fail(str(error))
    except OSError as error:
        return _fail(f"cannot listen on {args.host} port {args.port}: {_os_reason(error)}")
    except TimeoutError as error:
        return _fail(str(error))
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    lines, warnings = announce(server)
    print("\n".join(lines), flush=True)
    for warning in warnings:
        print(warning, file=sys.stderr, flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
        if server.store is not None and hasattr(server.store, "close"):
            server.store.close()
    return 0


def announce(server: ChatServer) -> tuple[list[str], list[str]]:
    """What ``serve`` prints once the server listens: lines for stdout, warnings for stderr.

    Every URL the chat page can be reached at, and a warning when the server
    listens on an address that other machines can reach.
    """
    lines = [f"wslab chat server listening on {server.url}"]
    lines += [f"chat page: {url}" for url in server.reachable_urls]
    warnings = []
    if server.listens_publicly:
        warnings.append(
            f"warning: listening on {server.host}: anyone on the network can connect"
            " to this chat (use --host 127.0.0.1 to keep it on this machine)"
        )
    return lines, warnings


def _os_reason(error: OSError) -> str:
    """Why the address could not be used, in a few words."""
    if error.errno == errno.EADDRINUSE:
        return "the port is already in use"
    if error.strerror:
        return error.strerror[0].lower() + error.strerror[1:]
    return str(error)


def _fail(message: str) -> int:
    print(f"python -m wslab serve: error: {message}", file=sys.stderr, flush=True)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "serve" and args.redis and (args.store or args.seed_compatible):
        # Redis keeps the shared chat's history and ids, and ids always need their token.
        parser.exit(
            2, f"{parser.prog} serve: error: --redis cannot go with --store or --seed-compatible\n"
        )
    if args.command == "serve":
        return serve(args)
    if args.command == "exercises":
        return exercises.run(args)
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
