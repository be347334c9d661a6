"""The exceptions wslab raises on purpose, as one family under :class:`WslabError`.

::

    WslabError                       catch this to catch anything wslab raises on purpose
    ├── ProtocolError                a frame broke the chat protocol (.code, .detail)
    │   ├── ClientProtocolError      ... a frame a client sent (read by the server, the room)
    │   └── ServerProtocolError      ... a frame a server sent (read by the Python client)
    ├── ChatConnectionError          a client could not join, or has no open connection
    │                                (also a ConnectionError)
    ├── MissingExtraError            an optional part needs ``pip install "wslab[lab]"``
    │                                (also an ImportError)
    ├── StoreError                   a store file cannot be used: missing folder, locked by
    │                                another server, corrupt (also a RuntimeError)
    ├── BackplaneError               the Redis that several servers share cannot be reached
    │                                or used (also a ConnectionError)
    ├── ConfigurationError           an option cannot work as given, e.g. a malformed Redis
    │                                URL (also a ValueError)
    ├── MissingProgramError          a program wslab runs (redis-server) is not installed;
    │                                says how to install it (also a FileNotFoundError)
    ├── ProcessStartError            a program wslab started exited or never got ready
    │                                (also a RuntimeError)
    ├── ClassroomError               the classroom or its hub cannot be used: not on a hub,
    │   │                            no such service, no such server; one line says what is
    │   │                            missing (also a RuntimeError)
    │   └── HubAPIError              ... the hub's REST API answered with an error status
    │                                (wslab.testing.hub; .status, .body)
    ├── CheckFailed                  an exercise check's verdict (raised by wslab.lab.checks;
    │                                also an AssertionError)
    └── MarkerError                  a lesson's solution markers are not in BEGIN / END pairs
                                     (wslab.lab.exercises; also a ValueError)

A wrong argument (a negative timeout, a URL that is not a string) raises the usual
``ValueError`` or ``TypeError``, as in the standard library. Three more keep Python's
own names: a call from the wrong thread or loop raises ``RuntimeError`` (as asyncio
does), a wait that runs out of time ``TimeoutError`` (as ``asyncio.wait_for``), and
an abstract method ``NotImplementedError``.

A :class:`ProtocolError` names the ``error`` event the offending peer gets
(``code``, an :class:`~wslab.protocol.ErrorCode`) and says why (``detail``). The
room and the parsers raise it; the server answers it and never lets it escape.
Which side sent the bad frame is its class: a server's bug seen by the client is
a :class:`ServerProtocolError`, a learner's bad frame a :class:`ClientProtocolError`.

Pure: any thread.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .protocol import ErrorCode

__all__ = [
    "BackplaneError",
    "ChatConnectionError",
    "CheckFailed",
    "ClassroomError",
    "ClientProtocolError",
    "ConfigurationError",
    "MarkerError",
    "MissingExtraError",
    "MissingProgramError",
    "ProcessStartError",
    "ProtocolError",
    "ServerProtocolError",
    "StoreError",
    "WslabError",
]


class WslabError(Exception):
    """The base of every exception wslab raises on purpose (the tree is in the module)."""


class ProtocolError(WslabError):
    """A frame broke the protocol: its sender gets an ``error`` event of this code."""

    def __init__(self, code: ErrorCode, detail: str) -> None:
        super().__init__(f"{code.value}: {detail}")
        self.code = code
        self.detail = detail


class ClientProtocolError(ProtocolError):
    """A frame a client sent broke the protocol (raised where the server reads)."""


class ServerProtocolError(ProtocolError):
    """A frame a server sent broke the protocol (raised where a client reads)."""


class ChatConnectionError(WslabError, ConnectionError):
    """A client could not join (refused, closed for good) or has no open connection."""


class MissingExtraError(WslabError, ImportError):
    """An optional part of wslab needs packages of an extra that is not installed."""

    def __init__(self, what: str, missing: str, extra: str = "lab") -> None:
        super().__init__(
            f'{what} needs {missing}, which is not installed: pip install "wslab[{extra}]"',
            name=missing,
        )


class StoreError(WslabError, RuntimeError):
    """The store cannot be used; the message is one line that says why and which file."""


class BackplaneError(WslabError, ConnectionError):
    """The Redis shared by several servers cannot be used; one line says which and why."""


class ConfigurationError(WslabError, ValueError):
    """An option cannot work as given (a malformed Redis URL...); the message says which."""


class MissingProgramError(WslabError, FileNotFoundError):
    """A program wslab runs (``redis-server``, ...) is not installed; the message says how."""

    def __init__(self, program: str, install: str) -> None:
        self.message = f"{program} is not installed (not found on PATH): {install}"
        super().__init__(self.message)
        self.filename = program

    def __str__(self) -> str:
        return self.message  # not OSError's "[Errno None] None: 'program'"


class ProcessStartError(WslabError, RuntimeError):
    """A program wslab started exited or did not get ready; the message ends with its output."""


class ClassroomError(WslabError, RuntimeError):
    """The classroom on JupyterHub, or its hub, cannot be used; one line says what is missing."""


class CheckFailed(WslabError, AssertionError):
    """The learner's code did not do what the exercise asks (message: one line).

    ``trace`` holds the learner's own traceback lines when their function raised
    (shown under the verdict in a notebook), else nothing.
    """

    def __init__(self, message: str, trace: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.trace = trace
        # A one-line traceback: the learner needs the verdict, not our stack.
        self.__suppress_context__ = True


class MarkerError(WslabError, ValueError):
    """A lesson's solution cell has markers that are not in BEGIN / END pairs."""
