"""The classroom's client side without sockets: state, the outbox, a teacher, verdicts.

A classroom's events drive a :class:`ChatState` and a client's event handling
directly; a fake client (it records the frames it would send) stands for the
socket under :class:`Teacher` and :class:`ProgressReporter`.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import WAIT
from wslab import ChatClient, ChatConnectionError
from wslab.chatstate import ChatState
from wslab.classroom import ClassroomAddress, ClassroomError, Teacher, client, progress_table
from wslab.classroom.progress import ProgressReporter
from wslab.outbox import Outbox
from wslab.protocol import (
    Cleared,
    Connected,
    ErrorCode,
    ErrorEvent,
    MessageEntry,
    MessageWritten,
    Muted,
    ProgressEntry,
    ProgressReport,
    Unmuted,
    parse_server_event,
)

HUB = {"JUPYTERHUB_API_URL": "http://127.0.0.1:1/hub/api", "JUPYTERHUB_API_TOKEN": "tok"}


def entry(message_id: int, text: str = "hi") -> MessageEntry:
    return {"messageId": message_id, "id": "bob", "username": "bob", "message": text, "ts": "t"}


def verdict(user: str, exercise: str, passed: bool) -> ProgressEntry:
    return {"id": user, "username": user, "exercise": exercise, "passed": passed, "ts": "t"}


def connected(role: str | None, progress: list[ProgressEntry] | None = None) -> Connected:
    users = [{"id": "tom", "username": "tom"}, {"id": "ada", "username": "ada"}]
    return Connected(
        "tom", "tom", None, users, [entry(1)], False, "r1", role=role, progress_list=progress
    )


# ---------------------------------------------------------------------------- the state


def test_connected_gives_the_role_and_a_teachers_verdicts() -> None:
    state = ChatState("x", "tom", None)
    state.apply_connected(connected("teacher", [verdict("ada", "e1", False)]))
    assert state.role == "teacher"
    assert state.progress == {("ada", "e1"): verdict("ada", "e1", False)}
    state.apply_connected(connected("student"))  # a student's connected has none
    assert state.role == "student" and state.progress == {
        ("ada", "e1"): verdict("ada", "e1", False)
    }


def test_the_newest_verdict_per_user_and_exercise_wins() -> None:
    state = ChatState("x", "tom", None)
    state.add_progress(verdict("ada", "e1", False))
    state.add_progress(verdict("bob", "e1", True))
    state.add_progress(verdict("ada", "e1", True))
    assert list(state.progress) == [("bob", "e1"), ("ada", "e1")]
    assert state.progress[("ada", "e1")]["passed"] is True


def test_mutes_and_a_cleared_history() -> None:
    state = ChatState("x", "tom", None)
    state.apply_connected(connected("teacher"))
    state.set_muted({"id": "ada", "username": "ada"}, True)
    assert state.muted == {"ada": "ada"}
    state.set_muted({"id": "ada", "username": "ada"}, False)
    assert state.muted == {}
    state.clear(Cleared("r2"))
    assert state.messages == [] and state.last_message_id is None and state.room_id == "r2"
    assert state.add_message(entry(1, "after the clear"))  # ids count again in the new room


def test_an_announcement_keeps_its_mark_through_the_parser() -> None:
    frame = {"event": "messageWritten", "message": {**entry(7, "Break"), "announcement": True}}
    event = parse_server_event(json.dumps(frame))
    assert isinstance(event, MessageWritten) and event.message.get("announcement") is True


# ---------------------------------------------------------------------------- the client


def run_events(client: ChatClient, *events: Any) -> None:
    async def main() -> None:
        for event in events:
            await client._handle(event)

    asyncio.run(main())


def test_a_client_applies_the_classroom_events_and_calls_on_progress() -> None:
    chat = ChatClient("ws://127.0.0.1:1/chat", "tom")
    seen: list[ProgressEntry] = []
    chat.on_progress = seen.append
    run_events(
        chat,
        connected("teacher"),
        Muted("ada", "ada"),
        ProgressReport(verdict("ada", "e1", True)),
        Cleared("r2"),
    )
    assert chat.role == "teacher" and chat.muted == {"ada": "ada"}
    assert seen == [verdict("ada", "e1", True)]
    assert chat.messages == [] and chat.room_id == "r2"
    run_events(chat, Unmuted("ada", "ada"))
    assert chat.muted == {}


def test_a_muted_message_leaves_the_outbox_and_the_next_one_goes_out() -> None:
    outbox = Outbox(window=1)
    first, second = outbox.add("one"), outbox.add("two")
    outbox.opened()
    assert outbox.due(0.0) == [first]
    assert outbox.refused() == first
    assert outbox.due(0.0) == [second]
    assert outbox.refused() == second and outbox.pending == []
    assert outbox.refused() is None  # nothing in flight


def test_a_client_drops_the_message_a_mute_refused() -> None:
    chat = ChatClient("ws://127.0.0.1:1/chat", "ada")
    sent: list[str] = []

    async def send_due() -> None:
        sent.extend(p.message for p in chat.outbox.due(0.0))

    chat._send_due = send_due  # type: ignore[method-assign]  # no socket: record instead
    chat.outbox.add("one")
    chat.outbox.add("two")

    async def main() -> None:
        await chat._handle(connected("student"))
        await chat._send_due()
        await chat._handle(ErrorEvent(ErrorCode.MUTED, "a teacher muted you"))

    asyncio.run(main())
    assert sent == ["one", "two"]
    assert [p.message for p in chat.pending] == ["two"]
    assert chat.errors[-1].code is ErrorCode.MUTED


def test_client_makes_a_chat_client_with_the_hub_token_out_of_its_repr() -> None:
    env = {**HUB, "JUPYTERHUB_USER": "ada", "WSLAB_CLASSROOM_URL": "ws://127.0.0.1:1/s/chat"}
    made = client(environ=env, features=("presence",))
    assert (made.url, made.username, made.features) == (
        "ws://127.0.0.1:1/s/chat",
        "ada",
        ("presence",),
    )
    assert made._headers == {"Authorization": "token tok"}
    assert "tok" not in repr(made)


def test_client_outside_a_hub_says_in_one_line_what_is_missing() -> None:
    with pytest.raises(ClassroomError, match=r"^not on a JupyterHub: JUPYTERHUB_API_URL"):
        client(environ={})


# ---------------------------------------------------------------------------- a teacher


class FakeClient:
    """What :class:`Teacher` and :class:`ProgressReporter` use of a ChatClient, recorded."""

    def __init__(self, *, role: str | None = "teacher", joins: bool = True) -> None:
        self.id, self.username, self.url = "tom", "tom", "ws://fake/chat"
        self.role, self.joins = role, joins
        self.status = "idle"
        self.users: dict[str, str] = {"tom": "tom", "ada": "ada"}
        self.muted: dict[str, str] = {}
        self.progress: dict[tuple[str, str], ProgressEntry] = {}
        self.frames: list[dict[str, Any]] = []
        self.on_connected: Callable[[Any], Any] | None = None
        self.closed = threading.Event()

    @property
    def online(self) -> bool:
        return self.status == "online"

    def start(self) -> None:
        self.starts = getattr(self, "starts", 0) + 1
        self.status = "online" if self.joins else "offline"
        if self.joins and self.on_connected is not None:
            self.on_connected(None)

    async def connect(self, timeout: float | None = None) -> FakeClient:
        self.start()
        return self

    async def wait_for(self, predicate: Callable[[Any], bool], timeout: float | None) -> None:
        assert predicate(self)

    async def send_raw(self, data: str) -> None:
        if not self.online:
            raise ChatConnectionError("not connected")
        self.frames.append(json.loads(data))

    async def close(self) -> None:
        self.status = "offline"
        self.closed.set()

    def describe_last_close(self) -> str:
        return "403"


def test_a_teachers_actions_are_the_contracts_events() -> None:
    fake = FakeClient()
    teacher = Teacher(fake)  # type: ignore[arg-type]

    async def main() -> None:
        await teacher.connect()
        await teacher.mute("ada")
        await teacher.unmute("ada")
        await teacher.kick("ada")
        await teacher.clear()
        await teacher.announce("Break until 11:00")

    asyncio.run(main())
    assert fake.frames == [
        {"event": "mute", "id": "ada"},
        {"event": "unmute", "id": "ada"},
        {"event": "kick", "id": "ada"},
        {"event": "clear"},
        {"event": "announce", "message": "Break until 11:00"},
    ]


def test_a_student_is_told_they_are_no_teacher() -> None:
    fake = FakeClient(role="student")
    with pytest.raises(ClassroomError, match="tom is a student of this chat, not a teacher"):
        asyncio.run(Teacher(fake).connect())  # type: ignore[arg-type]
    assert fake.closed.is_set()


def test_the_progress_table_has_a_row_per_student_and_a_column_per_exercise() -> None:
    progress = {
        ("ada", "e2"): verdict("ada", "e2", False),
        ("bob", "e1"): verdict("bob", "e1", True),
        ("ada", "e1"): verdict("ada", "e1", True),
    }
    exercises, rows = progress_table(
        progress, {"tom": "tom", "ada": "ada", "cy": "Cy"}, {"cy": "Cy"}, leave_out="tom"
    )
    assert exercises == ["e2", "e1"]
    assert [(r.username, r.online, r.muted, dict(r.verdicts)) for r in rows] == [
        ("ada", True, False, {"e2": False, "e1": True}),
        ("bob", False, False, {"e1": True}),  # offline, but checked
        ("Cy", True, True, {}),
    ]
    fake = FakeClient()
    fake.progress = progress
    assert Teacher(fake).progress == {  # type: ignore[arg-type]
        "ada": {"e2": False, "e1": True},
        "bob": {"e1": True},
    }


# ---------------------------------------------------------------------------- verdicts


class FakeAddress(ClassroomAddress):
    made: list[FakeClient]

    def client(self, **options: Any) -> Any:
        made = FakeClient(role="student", joins=self.user != "refused")
        self.made.append(made)
        return made


def reporter(user: str = "ada", **kwargs: Any) -> tuple[ProgressReporter, list[FakeClient]]:
    made: list[FakeClient] = []

    def find(environ: Any) -> ClassroomAddress:
        found = FakeAddress("ws://fake/chat", {"Authorization": "token tok"}, user, "wslab")
        found.made = made
        return found

    return ProgressReporter(environ=HUB, find=find, settle=WAIT), made


def wait_until(condition: Callable[[], bool]) -> None:
    done = threading.Event()
    for _ in range(int(WAIT / 0.01)):
        if condition():
            return
        done.wait(0.01)
    raise AssertionError("condition still false")


def test_outside_a_hub_a_verdict_goes_nowhere_and_prints_nothing() -> None:
    nowhere = ProgressReporter(environ={}, find=lambda **_: pytest.fail("looked for a hub"))
    assert nowhere.report("check_socket_url", True) is None
    assert not nowhere.start() and nowhere.client is None


def test_the_verdicts_reach_the_class_and_the_notebook_is_told_once() -> None:
    progress, made = reporter()
    try:
        notice = progress.report("check_socket_url", False)
        assert notice is not None and "'wslab' as ada" in notice and "\n" not in notice
        wait_until(lambda: len(made[0].frames) == 1)
        assert progress.report("check_socket_url", True) is None  # told once
        wait_until(lambda: len(made[0].frames) == 2)
        assert progress.report("check_event_log", True) is None
        wait_until(lambda: len(made[0].frames) == 3)
    finally:
        progress.stop()
    assert made[0].frames == [
        {"event": "progress", "exercise": "check_socket_url", "passed": False},
        {"event": "progress", "exercise": "check_socket_url", "passed": True},
        {"event": "progress", "exercise": "check_event_log", "passed": True},
    ]


def test_a_class_that_refuses_the_kernel_costs_the_check_nothing() -> None:
    progress, made = reporter("refused")
    try:
        assert progress.report("check_grace", True) is None  # nothing printed
        assert progress.problem is not None and "cannot be joined" in progress.problem
        assert progress.unsent == {"check_grace": True}  # kept for a later join
        assert made[0].frames == []
        made[0].joins = True  # the kick is over: the next verdict brings the client back
        # The join runs on the reporter's thread: the notice comes with this verdict
        # when the join wins the race, else with a later one.
        notice = progress.report("check_bot", False)
        assert notice is None or "as refused" in notice
        wait_until(lambda: len(made[0].frames) == 2)
        assert made[0].online and progress.unsent == {}
    finally:
        progress.stop()


def test_no_hub_service_means_no_notice() -> None:
    def find(environ: Any) -> ClassroomAddress:
        raise ClassroomError("the hub has no service named 'wslab'")

    progress = ProgressReporter(environ=HUB, find=find, settle=WAIT)
    try:
        assert progress.report("check_grace", False) is None
        assert progress.problem == "the hub has no service named 'wslab'"
    finally:
        progress.stop()


def test_a_hub_that_does_not_answer_delays_only_the_first_check_and_briefly() -> None:
    answer = threading.Event()

    def find(environ: Any) -> ClassroomAddress:
        answer.wait(WAIT)  # a hub request that hangs
        raise ClassroomError("the hub at http://hub cannot be reached: timed out")

    progress = ProgressReporter(environ=HUB, find=find, settle=0.2)
    try:
        started = time.monotonic()
        assert progress.report("check_grace", False) is None
        first = time.monotonic() - started
        started = time.monotonic()
        assert progress.report("check_bot", True) is None
        second = time.monotonic() - started
        assert 0.2 <= first < 0.2 + WAIT / 2 and second < 0.05
        assert progress.unsent == {"check_grace": False, "check_bot": True}
    finally:
        answer.set()
        progress.stop()


def test_every_checks_verdict_goes_to_the_kernels_reporter(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from wslab import CheckFailed, should_retry
    from wslab.lab.checks import _common
    from wslab.lab.checks.reconnect import check_should_reconnect

    reports: list[tuple[str, bool]] = []

    class Reporter:
        def report(self, exercise: str, passed: bool) -> str | None:
            reports.append((exercise, passed))
            return "to the class" if len(reports) == 1 else None

    monkeypatch.setattr(_common, "kernel_reporter", Reporter)
    check_should_reconnect(lambda code, by_us: should_retry(code, closed_by_us=by_us))
    with pytest.raises(CheckFailed):
        check_should_reconnect(lambda code, by_us: True)
    assert reports == [("check_should_reconnect", True), ("check_should_reconnect", False)]
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("PASS check_should_reconnect") and lines[1:] == ["to the class"]

    class Broken:
        def report(self, exercise: str, passed: bool) -> str | None:
            raise RuntimeError("a bug in the reporter")

    monkeypatch.setattr(_common, "kernel_reporter", Broken)
    check_should_reconnect(lambda code, by_us: should_retry(code, closed_by_us=by_us))
    assert capsys.readouterr().out.startswith("PASS")  # the verdict stands
