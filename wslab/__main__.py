"""The command line: ``python -m wslab serve ...`` and ``python -m wslab exercises ...``.

Every option is checked before anything starts: a bad value is one line on
stderr and exit code 2. A failure at start (port in use, unknown host, a store
that is locked or damaged) is one line and exit code 1. Neither prints a
traceback.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, NoReturn
from urllib.parse import urlsplit

from .errors import BackplaneError, MissingExtraError
from .lab import exercises
from .options import FLAT_OPTIONS, OptionSpec, cli_options
from .server import ChatServer
from .store import StoreError

DESCRIPTION = """\
wslab: a chat server and lessons for learning WebSockets.

  python -m wslab serve        run the chat server until Ctrl+C
  python -m wslab exercises    generate or check the lesson notebooks

Run "python -m wslab serve --help" for the server's options.
"""

#: ``--port``: not a server option (``ChatServer`` takes it as an argument).
PORT = OptionSpec("port to bind, 0 = a free one", minimum=0, maximum=65535)

SERVE_DESCRIPTION = """\
Run the chat server until Ctrl+C (SIGINT) or SIGTERM; then every client is
closed with code 1001 and the command exits with 0. The chat page is served at
http://HOST:PORT/ and the WebSocket at ws://HOST:PORT/chat.
"""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (``prog: error: ...``), exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _typed(kind: type, spec: OptionSpec) -> Callable[[str], Any]:
    """An argparse type for an option: ``kind`` (int, float or str), checked by ``spec``."""
    what = "an integer" if kind is int else "a number"

    def parse(text: str) -> Any:
        if kind is str:
            problem = spec.problem(text)
            if problem is not None:
                raise argparse.ArgumentTypeError(problem)
            return text
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        problem = spec.problem(value)
        if problem is not None:
            raise argparse.ArgumentTypeError(f"{text} is out of range: {problem}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in some messages
    return parse


def _help(spec: OptionSpec, default: Any) -> str:
    """An option's help line: what it is, then its default and bounds."""
    notes = [f"default {default}"] if default is not None else []
    notes += [spec.bounds] if spec.bounds else []
    text = f"{spec.help} ({', '.join(notes)})" if notes else spec.help
    return text.replace("%", "%%")  # argparse formats help with %


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
    add("--port", type=_typed(int, PORT), default=8765, help=_help(PORT, 8765))
    for option in cli_options():
        if option.kind is bool:
            add(option.flag, action="store_true", dest=option.keyword, help=option.spec.help)
        elif option.kind is tuple:  # repeatable: each value one item
            add(
                option.flag,
                action="append",
                default=None,
                dest=option.keyword,
                metavar=option.spec.metavar,
                help=option.spec.help,
            )
        else:
            add(
                option.flag,
                type=_typed(option.kind, option.spec),
                default=option.default,
                dest=option.keyword,
                metavar=option.spec.metavar,
                help=_help(option.spec, option.default),
            )
    add(
        "--seed-compatible",
        action="store_true",
        help="the original design: full history in every message, ids trusted (insecure)",
    )
    add("--store", type=_store_path, default=None, help="SQLite file for history and ids")
    exercises.add_parser(commands)
    return parser


def serve(args: argparse.Namespace) -> int:
    options: dict[str, Any] = {
        option.keyword: getattr(args, option.keyword) for option in cli_options()
    }
    options["teachers"] = tuple(args.teachers or ())
    options.update(seed_compatible=args.seed_compatible, store=args.store)
    if args.hub:
        try:
            args.host, args.port = hub_address()
        except ValueError as error:
            return _fail(str(error))
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


def hub_address() -> tuple[str, int]:
    """Where a hub's service listens: the host and port of ``JUPYTERHUB_SERVICE_URL``.

    Raises :class:`ValueError` (one line) when the hub did not set it, or set it wrong.
    """
    url = os.environ.get("JUPYTERHUB_SERVICE_URL")
    if not url:
        raise ValueError(
            "--hub needs the JUPYTERHUB_* variables a hub gives its services"
            " (JUPYTERHUB_SERVICE_URL is not set): run it as a hub service (docs/classroom.md)"
        )
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "http" or not parts.hostname or port is None:
        raise ValueError(f"JUPYTERHUB_SERVICE_URL must be http://HOST:PORT, not {url!r}")
    return parts.hostname, port


def options_table(group: type | None = None) -> str:
    """The ``serve`` options as a Markdown table (README.md and docs/protocol.md hold it).

    ``group``, an option class (:class:`~wslab.options.ClassroomOptions`, say): only
    its options (docs/classroom.md holds that one).
    """
    rows = []
    if group is None:
        rows += [
            ("--host", "127.0.0.1", "", "address to bind; 0.0.0.0 = every one"),
            ("--port", "8765", PORT.bounds, PORT.help),
        ]
    for option in cli_options():
        if group is not None and FLAT_OPTIONS[option.keyword][0] is not group:
            continue
        default = "" if option.default in (None, ()) else str(option.default)
        default = "off" if option.default is False else default
        allowed = option.spec.bounds or option.spec.allowed
        rows.append((option.flag, default, allowed, option.spec.help))
    if group is None:
        rows += [
            ("--seed-compatible", "off", "", "the original design: ids trusted (insecure)"),
            ("--store", "", "a writable file", "SQLite file for history and ids"),
        ]
    lines = ["| option | default | allowed | meaning |", "|---|---|---|---|"]
    lines += [
        f"| `{flag}` | {default} | {allowed} | {meaning} |"
        for flag, default, allowed, meaning in rows
    ]
    return "\n".join(lines) + "\n"


def announce(server: ChatServer) -> tuple[list[str], list[str]]:
    """What ``serve`` prints once the server listens: lines for stdout, warnings for stderr.

    Every URL the chat page can be reached at, and a warning when the server
    listens on an address that other machines can reach.
    """
    lines = [f"wslab chat server listening on {server.url}"]
    if server.hub is not None:
        lines.append(f"classroom service {server.hub.service}: the page at {server.hub.prefix}")
        return lines, []
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
    if args.command == "serve" and args.hub and (args.redis or args.store or args.seed_compatible):
        parser.exit(
            2,
            f"{parser.prog} serve: error: --hub cannot go with --redis, --store or"
            " --seed-compatible: classroom mode is one server, in memory, with the hub's ids\n",
        )
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
