"""The teacher's board: who is online, students x exercises live, and the moderation buttons.

In a teacher's notebook on the hub::

    import wslab.classroom
    board = wslab.classroom.board()     # shown; fills up as the class checks its work
    board.mute("ada"); board.announce("Break until 11:00")   # or the buttons
    board.table()                       # the verdicts as data

The board is an anywidget (``static/board.js``, ``static/board.css``; no build
step) over a :class:`~wslab.classroom.teacher.Teacher`. Its state lives in the
traits of :attr:`Board.box`, assigned whole, on the kernel's loop only (the
client's handlers run there; from another thread they hop over). User strings
travel as data and the front end sets them with ``textContent``.

A button sends ``{"kind": "action", "action", "id"?, "text"?, "n"}`` to the kernel;
:meth:`Board.handle_front_end_message` runs the teacher's action and answers
``{"kind": "done", "n", "ok"}``. Tests call that method directly.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine
from functools import cache
from typing import Any

from ..errors import MissingExtraError

try:
    import anywidget
    import traitlets
    from IPython.display import display
except ImportError as missing:  # pragma: no cover - tested in a venv without the extra
    raise MissingExtraError(
        "the teacher's board (wslab.classroom.board)", missing.name or "anywidget"
    ) from None

from ..client import ChatClient
from ..frontend import STATIC_DIR
from .teacher import ProgressRow, Teacher, teacher

__all__ = ["Board", "board"]

logger = logging.getLogger("wslab.classroom")

#: What the board's buttons may ask, and whether each names a user.
ACTIONS = {"mute": True, "unmute": True, "kick": True, "clear": False, "announce": False}


@cache
def _static(name: str) -> str:
    return (STATIC_DIR / name).read_text(encoding="utf-8")


class _BoardModel(anywidget.AnyWidget):
    """The board's state, synced to ``static/board.js``; assigned whole, kernel loop only."""

    _esm = _static("board.js")
    _css = _static("board.css")
    #: state, username, role, url, notice, error (the last ``error`` event's detail).
    status: traitlets.Dict[str, Any] = traitlets.Dict().tag(sync=True)
    #: The exercises, in the order the class first checked them.
    exercises: traitlets.List[str] = traitlets.List().tag(sync=True)
    #: One row per student: id, username, online, muted, verdicts {exercise: passed}.
    rows: traitlets.List[dict[str, Any]] = traitlets.List().tag(sync=True)


class Board:
    """The teacher's board in a notebook. See the module docstring.

    Args:
        teacher: the :class:`Teacher` whose client it shows and acts with.

    Create it, and call every method, on the kernel's loop thread (a cell).
    """

    def __init__(self, teacher: Teacher) -> None:
        self.teacher = teacher
        self._loop = asyncio.get_running_loop()
        self._thread_id = threading.get_ident()
        self._tasks: set[asyncio.Future[Any]] = set()
        self._notice = ""
        #: The anywidget that holds the state and draws it.
        self.box = _BoardModel()
        self.box.on_msg(self._on_widget_message)
        client = teacher.client
        self._previous_on_change = client.on_change
        client.on_change = self._on_client_change
        self.refresh()

    @property
    def client(self) -> ChatClient:
        """The teacher's client."""
        return self.teacher.client

    # ------------------------------------------------------------------ actions

    def mute(self, user_id: str) -> None:
        """Mute a user (in the background). Kernel loop only, as every action."""
        self._act(self.teacher.mute(user_id), f"mute {user_id}")

    def unmute(self, user_id: str) -> None:
        """Let a muted user write again."""
        self._act(self.teacher.unmute(user_id), f"unmute {user_id}")

    def kick(self, user_id: str) -> None:
        """Close a user's sockets with 4003 (they are kept out a while)."""
        self._act(self.teacher.kick(user_id), f"kick {user_id}")

    def clear(self) -> None:
        """Empty the history for everyone."""
        self._act(self.teacher.clear(), "clear")

    def announce(self, text: str) -> None:
        """Send ``text`` to everyone as an announcement."""
        self._act(self.teacher.announce(text), "announce")

    def table(self) -> list[ProgressRow]:
        """The rows the board shows: one per student, with their newest verdicts."""
        return self.teacher.table()[1]

    async def aclose(self) -> None:
        """Close the teacher's client; the board stays, showing offline. Safe twice."""
        await self.teacher.close()

    def handle_front_end_message(self, content: dict[str, Any]) -> bool:
        """Run one button's action: ``{"kind": "action", "action", "id"?, "text"?, "n"}``.

        Answers ``{"kind": "done", "n", "ok"}``; returns whether the action went out
        (``False`` for an unknown action, a missing user, blank text or an offline
        client). Kernel loop only.
        """
        if content.get("kind") != "action":
            return False  # not ours (anywidget's own messages share the channel)
        ok = self._run_action(content)
        self.box.send({"kind": "done", "n": content.get("n"), "ok": ok})
        return ok

    def _run_action(self, content: dict[str, Any]) -> bool:
        action, user_id, text = content.get("action"), content.get("id"), content.get("text")
        if action not in ACTIONS or self.client.status == "offline":
            return False
        if ACTIONS[action]:
            if not isinstance(user_id, str) or not user_id:
                return False
            getattr(self, action)(user_id)
        elif action == "announce":
            if not isinstance(text, str) or not text.strip():
                return False
            self.announce(text)
        else:
            self.clear()
        return True

    def _act(self, coroutine: Coroutine[Any, Any, None], what: str) -> None:
        async def act() -> None:
            try:
                await coroutine
            except Exception as error:  # offline, say: the board says it, the kernel goes on
                self._notice = f"{what} not sent: {error}"
                self.refresh()

        task = asyncio.ensure_future(act())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ state

    def refresh(self) -> None:
        """Copy the teacher's client's state into the traits of :attr:`box`. Kernel loop."""
        client = self.client
        exercises, rows = self.teacher.table()
        error = client.errors[-1] if client.errors else None
        with self.box.hold_sync():
            self.box.status = {
                "state": client.status,
                "username": client.username,
                "role": client.role,
                "url": client.url,
                "notice": self._notice,
                "error": None if error is None else f"{error.code.value}: {error.detail}",
            }
            self.box.exercises = exercises
            self.box.rows = [
                {
                    "id": row.id,
                    "username": row.username,
                    "online": row.online,
                    "muted": row.muted,
                    "verdicts": dict(row.verdicts),
                }
                for row in rows
            ]

    def _on_client_change(self, client: ChatClient) -> None:
        if self._previous_on_change is not None:
            self._previous_on_change(client)
        if threading.get_ident() == self._thread_id:
            self._refresh_safely()
        elif not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._refresh_safely)

    def _refresh_safely(self) -> None:
        try:  # called from inside the client's task: a bug here must not kill the client
            self.refresh()
        except Exception:
            logger.exception("could not update the teacher's board")

    def _on_widget_message(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if not isinstance(content, dict):
            return
        if threading.get_ident() != self._thread_id:
            self._loop.call_soon_threadsafe(self.handle_front_end_message, content)
        else:
            self.handle_front_end_message(content)

    # ------------------------------------------------------------------ display

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle = self.box._repr_mimebundle_(**kwargs)
        data: dict[str, Any] = dict((bundle[0] if isinstance(bundle, tuple) else bundle) or {})
        data["text/plain"] = repr(self)
        return data

    def __repr__(self) -> str:
        return f"Board(username={self.client.username!r}, url={self.client.url!r})"


def board(service: str | None = None) -> Board:
    """Show the teacher's board for the class chat, as the hub user; return it.

    Connects in the background (the board shows the state); a user who is not a
    teacher sees it say so. ``await board.teacher.connect()`` is the waiting
    alternative. Kernel loop only (a cell). Raises :class:`~wslab.errors.ClassroomError`
    with one line when the chat cannot be found (see :func:`~wslab.classroom.address`).
    """
    shown = Board(teacher(service))
    shown.client.start()
    display(shown)  # type: ignore[no-untyped-call]
    return shown
