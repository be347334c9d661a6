"""Look-alike names against a live server: the attack, the invisible characters, the store.

A client that picks the id ``x-1234`` and the name "alice" must not show like the
real alice whose id ends in 1234: the suffix the views show is the user's tag, a
keyed hash of the id that only the server can compute. A name with an invisible
character is bound without it; a name of invisible characters only is refused.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

import wslab.lab.lesson
from tests.conftest import WAIT, run_bounded
from wslab import ChatClient, ChatServer
from wslab.display import user_tag
from wslab.lab.widget import ChatWidget

MakeServer = Callable[..., ChatServer]


def test_an_id_chosen_to_end_like_alices_gets_another_tag(make_server: MakeServer) -> None:
    server = make_server(grace=0.0)

    async def scenario() -> dict[str, str]:
        alice = await ChatClient(server.url, "alice", id="a-1234").connect(WAIT)
        mallory = await ChatClient(server.url, "alice", id="x-1234").connect(WAIT)
        bob = await ChatClient(server.url, "bob").connect(WAIT)
        for client in (alice, mallory, bob):
            await client.wait_for(lambda c: len(c.tags) == 3, WAIT)
        assert alice.tags == mallory.tags == bob.tags  # one tag per user, for everyone
        await mallory.send_message("it's me, alice")
        entry = await bob.wait_for_message("it's me, alice", WAIT)
        assert entry["tag"] == bob.tags["x-1234"]
        tags = dict(bob.tags)
        for client in (alice, mallory, bob):
            await client.close()
        return tags

    tags = run_bounded(scenario())
    assert tags["a-1234"] != tags["x-1234"]
    # Derived with the server's secret, which no client is told:
    key = server.room.engine.tag_key  # type: ignore[attr-defined]
    assert tags["x-1234"] == user_tag(key, "x-1234")
    # Another chat (another secret) gives the same id another tag: it cannot be aimed at.
    other = make_server()

    async def elsewhere() -> str:
        client = await ChatClient(other.url, "alice", id="x-1234").connect(WAIT)
        await client.close()
        return client.tags["x-1234"]

    assert run_bounded(elsewhere()) != tags["x-1234"]


def test_invisible_characters_are_left_out_and_a_blank_name_is_refused(
    make_server: MakeServer,
) -> None:
    server = make_server()

    async def scenario() -> list[dict[str, Any]]:
        answers = []
        async with connect(server.url) as socket:
            for name in ["\u3164", "\ufe0f", "admin\ufe0f"]:
                hello = {"event": "connecting", "id": "u-1", "username": name}
                await socket.send(json.dumps(hello))
                answers.append(json.loads(await socket.recv(decode=True)))
        return answers

    blank, selector, admin = run_bounded(scenario())
    for refused in (blank, selector):
        assert (refused["event"], refused["code"]) == ("error", "invalid_field")
        assert "shows as nothing" in refused["detail"]
    assert (admin["event"], admin["username"]) == ("connected", "admin")  # the socket stayed open
    assert [u["username"] for u in server.users] == ["admin"]


def test_a_restart_on_the_same_store_keeps_every_tag(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"

    async def join(server: ChatServer, token: str | None) -> ChatClient:
        client = await ChatClient(server.url, "alice", id="a-1234", token=token).connect(WAIT)
        await client.close()
        return client

    server = ChatServer(store=path, grace=0.0).start()
    try:
        first = run_bounded(join(server, None))
    finally:
        server.stop()
        server.store.close()  # type: ignore[union-attr]
    server = ChatServer(store=path, grace=0.0).start()
    try:
        again = run_bounded(join(server, first.token))
    finally:
        server.stop()
        server.store.close()  # type: ignore[union-attr]
    assert again.tags["a-1234"] == first.tags["a-1234"]
    assert len(first.tags["a-1234"]) == 6


def test_the_notebook_widget_hands_each_users_tag_to_its_view(make_server: MakeServer) -> None:
    """The widget's ``users`` trait (what chatview.js draws) carries the tags."""
    server = make_server()

    async def scenario() -> None:
        widget = await ChatWidget(ChatClient(server.url, "alice", id="a-1234")).connect(WAIT)
        mallory = await ChatClient(server.url, "alice", id="x-1234").connect(WAIT)
        await widget.client.wait_for(lambda c: len(c.tags) == 2, WAIT)
        shown = {user["id"]: user["tag"] for user in widget.box.users}
        assert shown == widget.client.tags
        assert shown["a-1234"] != shown["x-1234"]
        await mallory.close()
        await widget.aclose()

    try:
        run_bounded(scenario())
    finally:
        wslab.lab.lesson.registry.clear()  # as a fresh kernel: no identity kept
