"""What a client knows of the chat, driven by events: no sockets, no loop."""

from __future__ import annotations

from wslab.chatstate import ChatState
from wslab.protocol import Connected, MessageEntry, Presence, UserEntry

ME: UserEntry = {"id": "me", "username": "Me"}
BOB: UserEntry = {"id": "bob", "username": "Bob"}
CY: UserEntry = {"id": "cy", "username": "Cy"}


def entry(message_id: int, text: str = "hi") -> MessageEntry:
    return {"messageId": message_id, "id": "bob", "username": "Bob", "message": text, "ts": "t"}


def connected(users: list[UserEntry], messages: list[MessageEntry], room: str = "r") -> Connected:
    return Connected("me", "Me", "t", users, messages, was_page_reload=False, room_id=room)


def test_connected_lists_the_client_even_when_the_server_left_it_out() -> None:
    state = ChatState("me", "Me", None)
    state.apply_connected(connected([BOB], []))
    assert state.users == {"bob": "Bob", "me": "Me"}


def test_a_leave_for_the_clients_own_id_changes_nothing() -> None:
    state = ChatState("me", "Me", None)
    state.apply_connected(connected([ME, BOB], []))
    assert not state.leave(ME)
    assert state.apply_presence(Presence(joined=[], left=[ME, BOB])) == [("disconnected", BOB)]
    assert state.users == {"me": "Me"}
    assert [(p.kind, p.id) for p in state.presence] == [("disconnected", "bob")]


def test_a_presence_diff_logs_each_change_once_and_places_it_after_the_newest_message() -> None:
    state = ChatState("me", "Me", None)
    state.apply_connected(connected([ME], [entry(1), entry(2)]))
    assert state.apply_presence(Presence(joined=[BOB, CY], left=[])) == [
        ("joined", BOB),
        ("joined", CY),
    ]
    assert state.apply_presence(Presence(joined=[BOB], left=[])) == []  # nothing new
    assert [(p.kind, p.id, p.after) for p in state.presence] == [
        ("joined", "bob", 2),
        ("joined", "cy", 2),
    ]


def test_messages_are_kept_once_in_message_id_order() -> None:
    state = ChatState("me", "Me", None)
    assert state.add_message(entry(2, "b"))
    assert state.add_message(entry(1, "a"))
    assert not state.add_message(entry(2, "b"))
    assert state.texts() == ["a", "b"] and state.last_message_id == 2


def test_another_room_starts_the_message_list_again() -> None:
    state = ChatState("me", "Me", None)
    state.apply_connected(connected([ME], [entry(1, "old")], room="r1"))
    state.apply_connected(connected([ME], [entry(1, "new")], room="r2"))
    assert state.texts() == ["new"]


def test_the_tags_follow_the_user_list() -> None:
    """A tag from the server is kept per listed id; a server that sends none gives none."""
    state = ChatState("me", "Me", None)
    state.apply_connected(connected([ME, {"id": "bob", "username": "Bob", "tag": "bbbbbb"}], []))
    assert state.tags == {"bob": "bbbbbb"}
    state.join({"id": "cy", "username": "Cy", "tag": "cccccc"})
    state.leave(BOB)
    assert state.tags == {"cy": "cccccc"}
    state.apply_presence(Presence(joined=[{"id": "cy", "username": "Cyd"}], left=[]))
    assert state.tags == {}
