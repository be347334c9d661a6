"""The command line: ``python -m wslab serve ...``.

``serve`` runs a :class:`~wslab.server.ChatServer` until SIGINT or SIGTERM,
then closes every client with 1001 and exits 0.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence

from . import exercises
from .server import ChatServer


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m wslab", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run a chat server until Ctrl+C")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    serve.add_argument("--port", type=int, default=8765, help="port, 0 for a free one (8765)")
    serve.add_argument("--grace", type=float, default=1.0, help="reload grace, seconds (1.0)")
    serve.add_argument("--max-size", type=int, default=64 * 1024, help="largest frame (65536)")
    serve.add_argument("--max-clients", type=int, default=1000, help="open sockets (1000)")
    serve.add_argument("--history", type=int, default=100, help="messages kept (100)")
    serve.add_argument(
        "--rate-limit", type=float, default=20.0, help="messages/s per socket, 0 = off (20)"
    )
    serve.add_argument(
        "--seed-compatible",
        action="store_true",
        help="the original design: full history in every message, ids trusted (insecure)",
    )
    serve.add_argument("--store", default=None, help="SQLite file that keeps history and tokens")
    exercises.add_parser(commands)
    return parser


def serve(args: argparse.Namespace) -> int:
    server = ChatServer(
        args.host,
        args.port,
        grace=args.grace,
        max_size=args.max_size,
        max_clients=args.max_clients,
        history=args.history,
        rate_limit=args.rate_limit,
        seed_compatible=args.seed_compatible,
        store=args.store,
    )
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    server.start()
    print(f"wslab chat server listening on {server.url}", flush=True)
    print(f"chat page: {server.page_url}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return serve(args)
    if args.command == "exercises":
        return exercises.run(args)
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
