"""The classroom's client side on a real JupyterHub: a student's kernel, verdicts, a teacher.

One hub for the module (``JupyterHubProcess``): ``DummyAuthenticator``, the npm
``configurable-http-proxy``, the real ``python -m wslab serve --hub`` as a managed
service, ``ada`` and ``bob`` in the class, ``tom`` a teacher, and
``SimpleLocalProcessSpawner``. ada's spawned server starts a real kernel (through
the proxy, with her token), which joins with ``wslab.classroom.join()`` and no
arguments, and runs an exercise check. tom is a :class:`Teacher` and a
:class:`Board` in this process, bob a plain client with his token. Skipped, with
the install line as the reason, where the hub or its proxy is not installed.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from tests.conftest import unit
from tests.helpers.hubs import ACCESS, READ, SERVICE, hub_marks
from tests.helpers.remote_kernel import RemoteKernel
from wslab import ChatClient, CloseCode
from wslab.classroom import Teacher
from wslab.classroom.progress import NOTICE
from wslab.loopthread import LoopThread
from wslab.testing.hub import HubService, JupyterHubProcess

T = TypeVar("T")
pytestmark = hub_marks(900)

CHECK = "check_should_reconnect"
RIGHT = f"""
from wslab import should_retry
from wslab.lab.checks.reconnect import {CHECK}
{CHECK}(lambda code, by_us: should_retry(code, closed_by_us=by_us))
"""
WRONG = f"{CHECK}(lambda code, by_us: True)"


@pytest.fixture(scope="module")
def hub() -> Iterator[JupyterHubProcess]:
    service = HubService(
        SERVICE,
        command=[sys.executable, "-m", "wslab", "serve", "--hub", "--teachers", "teachers"],
        environment={"PYTHONPATH": os.environ.get("PYTHONPATH", "")},
    )
    roles = [
        {"name": "wslab-class", "scopes": [ACCESS, READ], "groups": ["class", "teachers"]},
        {
            "name": "server",
            "scopes": ["users:activity!user", "access:servers!server", ACCESS, READ],
        },
    ]
    groups = {"class": ["ada", "bob"], "teachers": ["tom"]}
    with JupyterHubProcess(services=[service], roles=roles, groups=groups, spawn=True) as hub:
        yield hub


@pytest.fixture(scope="module")
def thread() -> Iterator[LoopThread]:
    """The loop of this process's clients (tom's, bob's): it runs between the calls too."""
    with LoopThread("classroom-test") as thread:
        yield thread


def call(thread: LoopThread, coroutine: Coroutine[Any, Any, T]) -> T:
    return thread.call(coroutine, unit(60))


def chat_url(hub: JupyterHubProcess) -> str:
    return "ws" + hub.public_url.removeprefix("http") + f"services/{SERVICE}/chat"


@pytest.fixture(scope="module")
def tom(hub: JupyterHubProcess, thread: LoopThread) -> Iterator[Teacher]:
    token = hub.mint_token("tom", scopes=[ACCESS])
    headers = {"Authorization": f"token {token}"}

    async def connect() -> Teacher:
        client = ChatClient(
            chat_url(hub), "tom", additional_headers=headers, features=("presence",)
        )
        return await Teacher(client).connect(unit(30))

    teacher = call(thread, connect())
    yield teacher
    call(thread, teacher.close())


@pytest.fixture(scope="module")
def bob(hub: JupyterHubProcess, thread: LoopThread) -> Iterator[ChatClient]:
    token = hub.mint_token("bob", scopes=[ACCESS])

    async def connect() -> ChatClient:
        client = ChatClient(
            chat_url(hub), "bob", additional_headers={"Authorization": f"token {token}"}
        )
        return await client.connect(unit(30))

    client = call(thread, connect())
    yield client
    call(thread, client.close())


@pytest.fixture(scope="module")
def ada_kernel(hub: JupyterHubProcess) -> Iterator[RemoteKernel]:
    started = time.monotonic()
    hub.start_server("ada", timeout=unit(120))
    print(f"\nada's server started in {time.monotonic() - started:.1f} s")
    token = hub.mint_token("ada", scopes=["access:servers!server=ada/"])
    with RemoteKernel(f"{hub.public_url}user/ada/", token, timeout=unit(60)) as kernel:
        yield kernel


def wait(thread: LoopThread, client: ChatClient, predicate: Any, what: str) -> None:
    try:
        call(thread, client.wait_for(predicate, unit(30)))
    except TimeoutError:
        raise AssertionError(f"{client.username} never saw {what}") from None


def test_a_kernel_joins_with_no_arguments_as_its_hub_user(
    ada_kernel: RemoteKernel, tom: Teacher, thread: LoopThread
) -> None:
    started = time.monotonic()
    cell = ada_kernel.run(
        "import wslab.classroom\n"
        "w = wslab.classroom.join()\n"
        "await w.client.wait_for(lambda c: c.online, 30)\n"
        "print(w.client.username, w.client.id, w.client.role, repr(w))"
    )
    assert cell.error is None, cell
    print(f"ada's kernel joined in {time.monotonic() - started:.2f} s")
    username, user_id, role, shown = cell.stdout.split(" ", 3)
    assert (username, user_id, role) == ("ada", "ada", "student")
    assert "token" not in shown and "token" not in str(cell.outputs)
    wait(thread, tom.client, lambda c: c.users.get("ada") == "ada", "ada online")


def test_a_checks_verdict_reaches_the_teacher_and_never_a_student(
    ada_kernel: RemoteKernel, tom: Teacher, bob: ChatClient, thread: LoopThread
) -> None:
    right = ada_kernel.run(RIGHT)
    assert right.error is None, right
    notice = NOTICE.format(service=SERVICE, user="ada")
    assert right.stdout.splitlines()[-1] == notice
    assert right.stdout.startswith(f"PASS {CHECK}: ")
    wait(thread, tom.client, lambda c: c.progress.get(("ada", CHECK), {}).get("passed"), "a pass")
    wrong = ada_kernel.run(WRONG)
    assert wrong.error is not None and wrong.error.startswith("CheckFailed: FAIL")
    assert notice not in wrong.stdout  # said once per notebook
    wait(thread, tom.client, lambda c: c.progress[("ada", CHECK)]["passed"] is False, "a fail")
    assert tom.progress == {"ada": {CHECK: False}}
    # students never see anyone's verdicts: not bob, not ada's own widget
    assert bob.progress == {}
    assert not any('"event":"progress"' in str(e.data) for e in bob.events)
    own = ada_kernel.run("print(len(w.client.progress), w.client.on_progress)")
    assert own.stdout.strip() == "0 None"


def test_the_board_acts_on_the_class(
    ada_kernel: RemoteKernel, tom: Teacher, bob: ChatClient, thread: LoopThread
) -> None:
    async def make_board() -> Any:
        from wslab.classroom.widget import Board

        board = Board(tom)
        board.box.send = lambda content, buffers=None: None  # no front end here
        return board

    board = call(thread, make_board())

    def act(action: str, **fields: Any) -> None:
        async def press() -> bool:
            return board.handle_front_end_message({"kind": "action", "action": action, **fields})

        assert call(thread, press()), action

    rows = {row["username"]: row for row in board.box.rows}
    assert rows["ada"]["verdicts"] == {CHECK: False} and rows["bob"]["verdicts"] == {}
    act("mute", id="bob")
    wait(thread, bob, lambda c: "bob" in c.muted, "the mute")
    call(thread, bob.send_message("while muted"))
    wait(thread, bob, lambda c: bool(c.errors) and c.errors[-1].code.value == "muted", "muted")
    assert not bob.pending
    act("unmute", id="bob")
    wait(thread, bob, lambda c: not c.muted, "the unmute")
    act("announce", text="Break until 11:00")
    wait(thread, bob, lambda c: any(m.get("announcement") for m in c.messages), "an announcement")
    act("clear")
    wait(thread, bob, lambda c: not c.messages, "the clear")
    act("kick", id="ada")
    closed = ada_kernel.run(
        "await w.client.wait_for(lambda c: c.status == 'offline', 30)\n"
        "print(w.client.last_close[0], w.client.status)"
    )
    assert closed.stdout.split() == [str(int(CloseCode.REMOVED)), "offline"], closed
    wait(thread, tom.client, lambda c: "ada" not in c.users, "ada gone")
