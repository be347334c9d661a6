"""The classroom's client side on real sockets, against a small classroom in this process.

:class:`Classroom` plays ``serve --hub`` as the contract says (plain websockets on
port 0): the ``Authorization`` header names the user, ``tom`` is the teacher, it
relays ``progress`` to teachers only and answers the teacher's events. The real
service is tested against a real hub in ``tests/system/test_classroom.py``; here
the client, the student's widget, the teacher's board and a kernel's verdicts
meet real frames.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

import wslab.lab.lesson
from tests.conftest import WAIT
from wslab import ChatClient, CloseCode, RetryPolicy
from wslab.classroom import ClassroomError, Teacher, address, join
from wslab.classroom.widget import Board

FAST = RetryPolicy(initial=0.01, factor=1.0, cap=0.01, min_uptime=60)


class Classroom:
    """A classroom chat by the contract, small: enough for the client's side."""

    def __init__(self) -> None:
        self.sockets: dict[ServerConnection, str] = {}
        self.muted: set[str] = set()
        self.progress: dict[tuple[str, str], dict[str, Any]] = {}
        self.received: list[tuple[str, dict[str, Any]]] = []  # (user, event) in order
        self.url = ""
        self._ids = 0

    def check(self, _socket: ServerConnection, request: Request) -> Response | None:
        token = request.headers.get("Authorization", "")
        if not token.startswith("token "):
            return Response(403, "Forbidden", Headers(), b"no hub credential\n")
        return None

    async def handle(self, socket: ServerConnection) -> None:
        assert socket.request is not None
        user = socket.request.headers["Authorization"].removeprefix("token ")
        self.sockets[socket] = user
        try:
            async for frame in socket:
                event = json.loads(frame)
                self.received.append((user, event))
                await self.answer(socket, user, event)
        finally:
            del self.sockets[socket]

    async def answer(self, socket: ServerConnection, user: str, event: dict[str, Any]) -> None:
        name = event["event"]
        teacher = user == "tom"
        if name == "connecting":
            users = [{"id": u, "username": u} for u in sorted(set(self.sockets.values()))]
            hello: dict[str, Any] = {"event": "connected", "roomId": "r1", "id": user}
            hello |= {"username": user, "connectedUserList": users, "messagesList": []}
            hello |= {"wasPageReload": False, "role": "teacher" if teacher else "student"}
            if teacher:
                hello["progressList"] = list(self.progress.values())
            await socket.send(json.dumps(hello))
        elif name == "progress":
            entry = {"id": user, "username": user, "exercise": event["exercise"]}
            entry |= {"passed": event["passed"], "ts": "t"}
            self.progress[(user, event["exercise"])] = entry
            await self.to_all(json.dumps({"event": "progress", **entry}), teachers_only=True)
        elif name == "writeMessage" and user in self.muted:
            await socket.send(json.dumps({"event": "error", "code": "muted", "detail": "muted"}))
        elif name != "writeMessage" and not teacher:
            await socket.send(json.dumps({"event": "error", "code": "forbidden", "detail": "no"}))
        elif name in ("mute", "unmute"):
            (self.muted.add if name == "mute" else self.muted.discard)(event["id"])
            answer = {"event": f"{name}d", "id": event["id"], "username": event["id"]}
            await self.to_all(json.dumps(answer))
        elif name == "kick":
            for other, who in list(self.sockets.items()):
                if who == event["id"]:
                    await other.close(4003, "removed by the teacher")
        elif name == "clear":
            await self.to_all(json.dumps({"event": "cleared", "roomId": "r2"}))
        elif name in ("writeMessage", "announce"):
            self._ids += 1
            entry = {"messageId": self._ids, "id": user, "username": user}
            entry |= {"message": event["message"], "ts": "t"}
            entry |= {"announcement": True} if name == "announce" else {}
            entry |= (
                {"clientMessageId": event["clientMessageId"]} if "clientMessageId" in event else {}
            )
            await self.to_all(json.dumps({"event": "messageWritten", "message": entry}))

    async def to_all(self, frame: str, *, teachers_only: bool = False) -> None:
        for socket, user in list(self.sockets.items()):
            if user == "tom" or not teachers_only:
                await socket.send(frame)


def run(main: Callable[[Classroom], Coroutine[Any, Any, None]]) -> None:
    async def bounded() -> None:
        room = Classroom()
        async with serve(room.handle, "127.0.0.1", 0, process_request=room.check) as server:
            room.url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/services/wslab/chat"
            await asyncio.wait_for(main(room), 6 * WAIT)

    asyncio.run(bounded())


def as_user(room: Classroom, user: str, **options: Any) -> ChatClient:
    headers = {"Authorization": f"token {user}"}
    return ChatClient(room.url, user, additional_headers=headers, policy=FAST, **options)


@pytest.fixture(autouse=True)
def forget_widgets() -> Iterator[None]:
    yield
    wslab.lab.lesson.registry.clear()


def test_a_kick_closes_with_4003_and_the_client_stays_out() -> None:
    async def main(room: Classroom) -> None:
        tom, ada = Teacher(as_user(room, "tom")), as_user(room, "ada")
        await tom.connect(WAIT)
        await ada.connect(WAIT)
        assert (tom.client.role, ada.role) == ("teacher", "student")
        await tom.kick("ada")
        await ada.wait_for(lambda c: c.status == "offline", WAIT)
        assert ada.last_close == (CloseCode.REMOVED, "removed by the teacher")
        assert ada.attempts == 1  # final: never retried
        await tom.close()

    run(main)


def test_mute_clear_and_announce_reach_every_client() -> None:
    async def main(room: Classroom) -> None:
        tom, ada = Teacher(as_user(room, "tom")), as_user(room, "ada")
        await tom.connect(WAIT)
        await ada.connect(WAIT)
        await ada.send_message("before")
        await ada.wait_for_message("before", WAIT)
        await tom.mute("ada")
        await ada.wait_for(lambda c: "ada" in c.muted, WAIT)
        await ada.send_message("while muted")
        await ada.wait_for(lambda c: not c.pending and bool(c.errors), WAIT)
        assert ada.errors[-1].code.value == "muted" and "while muted" not in ada.texts()
        await tom.unmute("ada")
        await ada.wait_for(lambda c: not c.muted, WAIT)
        await ada.send_message("after")
        await ada.wait_for_message("after", WAIT)
        await tom.clear()
        await ada.wait_for(lambda c: c.room_id == "r2", WAIT)
        assert ada.messages == []
        await tom.announce("Break until 11:00")
        entry = await ada.wait_for_message("Break until 11:00", WAIT)
        assert entry.get("announcement") is True
        await ada.close()
        await tom.close()

    run(main)


def test_a_students_teacher_events_are_refused_as_forbidden() -> None:
    async def main(room: Classroom) -> None:
        ada = Teacher(as_user(room, "ada"))
        await ada.client.connect(WAIT)
        await ada.kick("tom")
        await ada.client.wait_for(lambda c: bool(c.errors), WAIT)
        assert ada.client.errors[-1].code.value == "forbidden"
        await ada.close()

    run(main)


def test_the_board_fills_up_live_and_its_buttons_act() -> None:
    async def main(room: Classroom) -> None:
        ada = as_user(room, "ada")
        await ada.connect(WAIT)
        await ada.send_raw(json.dumps({"event": "progress", "exercise": "e1", "passed": False}))
        tom = Teacher(as_user(room, "tom", features=("presence",)))
        board = Board(tom)
        replies: list[dict[str, Any]] = []
        board.box.send = lambda content, buffers=None: replies.append(content)  # type: ignore[method-assign]
        await tom.connect(WAIT)
        assert board.box.exercises == ["e1"]  # from progressList
        assert [(r["username"], r["verdicts"]) for r in board.box.rows] == [("ada", {"e1": False})]
        await ada.send_raw(json.dumps({"event": "progress", "exercise": "e1", "passed": True}))
        await ada.send_raw(json.dumps({"event": "progress", "exercise": "e2", "passed": True}))
        await tom.client.wait_for(lambda c: len(c.progress) == 2, WAIT)
        assert board.box.exercises == ["e1", "e2"]
        assert board.box.rows[0]["verdicts"] == {"e1": True, "e2": True}
        assert board.box.status["role"] == "teacher"
        assert board.handle_front_end_message(
            {"kind": "action", "action": "mute", "id": "ada", "n": 1}
        )
        await tom.client.wait_for(lambda c: "ada" in c.muted, WAIT)
        assert board.box.rows[0]["muted"] is True
        announce = {"kind": "action", "action": "announce", "text": "Hello", "n": 2}
        assert board.handle_front_end_message(announce)
        await ada.wait_for_message("Hello", WAIT)
        assert not board.handle_front_end_message({"kind": "action", "action": "rm -rf", "n": 3})
        assert not board.handle_front_end_message({"kind": "action", "action": "kick", "n": 4})
        assert board.handle_front_end_message(
            {"kind": "action", "action": "kick", "id": "ada", "n": 5}
        )
        await ada.wait_for(lambda c: c.status == "offline", WAIT)
        assert [r["ok"] for r in replies] == [True, True, False, False, True]
        await tom.close()

    run(main)


def test_join_shows_the_chat_widget_as_the_hub_user(monkeypatch: pytest.MonkeyPatch) -> None:
    async def main(room: Classroom) -> None:
        monkeypatch.setenv("JUPYTERHUB_API_URL", "http://127.0.0.1:1/hub/api")
        monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "ada")  # this classroom's token is the name
        monkeypatch.setenv("JUPYTERHUB_USER", "ada")
        monkeypatch.setenv("WSLAB_CLASSROOM_URL", room.url)
        widget = join()
        await widget.client.wait_for(lambda c: c.online, WAIT)
        assert widget.box.status["username"] == "ada" and widget.box.status["url"] == room.url
        assert "token" not in repr(widget) and "token" not in widget.saved_text()
        await widget.aclose()

    run(main)


def test_address_says_when_the_hub_cannot_be_reached() -> None:
    """A real connection attempt, to a closed loopback port."""
    env = {"JUPYTERHUB_API_URL": "http://127.0.0.1:9/hub/api", "JUPYTERHUB_API_TOKEN": "t"}
    with pytest.raises(ClassroomError, match="cannot be reached"):
        address(environ=env, timeout=2)
