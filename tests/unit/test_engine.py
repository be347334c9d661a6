"""The memory engine, request by request: the readable reference of the Redis scripts.

Each test names the Lua script (``wslab.backplane``) whose answer it pins down; the
same answers from Redis are checked through the room in tests/unit/test_room.py.
"""

from __future__ import annotations

from wslab.display import user_tag
from wslab.engine import (
    PENDING,
    Append,
    Claim,
    LoggedJoin,
    LoggedLeave,
    LoggedMessage,
    MarkGrace,
    MemoryEngine,
    RedisEngine,
    Release,
    digest,
)
from wslab.protocol import Connecting, MessageEntry, user_entry


def claim(engine: MemoryEngine, user_id: str, token: str | None = None) -> str:
    result = engine.claim(Claim("socket", Connecting(user_id, user_id.title(), token)))
    return result.status


def draft(user_id: str, text: str, cmid: str | None = None) -> Append:
    entry: MessageEntry = {"messageId": 0, "id": user_id, "username": user_id, "message": text}
    entry["ts"] = "t"
    if cmid is not None:
        entry["clientMessageId"] = cmid
    return Append("socket", entry, digest(text) if cmid else "", text)


def test_claim_binds_a_new_id_then_answers_tab_reload_or_taken() -> None:  # _CLAIM
    engine = MemoryEngine(token_factory=lambda: "t-1")
    first = engine.claim(Claim("s1", Connecting("ann", "Ann")))
    assert (first.status, first.token, first.username) == ("new", "t-1", "Ann")
    ann = user_entry("ann", "Ann", user_tag(engine.tag_key, "ann"))
    assert engine.take_log() == [LoggedJoin(ann)]
    assert claim(engine, "ann", "t-1") == "tab"
    assert claim(engine, "ann", "guess") == "taken" and claim(engine, "ann") == "taken"
    engine.mark_grace("ann")
    assert claim(engine, "ann", "t-1") == "reload"
    assert engine.take_log() == []  # a tab or a reload logs nothing


def test_release_lets_go_only_of_a_grace_and_logs_the_leave() -> None:  # _RELEASE
    engine = MemoryEngine()
    claim(engine, "ann")
    engine.take_log()
    engine.release("ann")  # still open: nothing happens
    assert engine.take_log() == []
    engine.mark_grace("ann")  # _MARK_GRACE
    engine.release("ann")
    ann = user_entry("ann", "Ann", user_tag(engine.tag_key, "ann"))
    assert engine.take_log() == [LoggedLeave(ann)]


def test_append_numbers_logs_and_remembers_client_message_ids() -> None:  # _APPEND
    engine = MemoryEngine(dedupe_per_id=2)
    stored = engine.append(draft("ann", "hi", "c1"))
    assert stored.stored and stored.message_id == 1
    (logged,) = engine.take_log()
    assert isinstance(logged, LoggedMessage) and logged.entry["messageId"] == 1
    again = engine.append(draft("ann", "hi", "c1"))
    assert not again.stored and again.message_id == 1 and again.digest == digest("hi")
    assert engine.take_log() == []  # a resend is not logged again
    engine.append(draft("ann", "a", "c2"))
    engine.append(draft("ann", "b", "c3"))  # the third pushes out c1
    assert engine.remembered("ann") == ["c2", "c3"]


def test_trusted_ids_get_no_token_and_are_never_taken() -> None:
    engine = MemoryEngine(trust_ids=True)
    assert engine.claim(Claim("s1", Connecting("ann", "Ann"))).token is None
    assert claim(engine, "ann", "anything") == "tab"


def test_the_requests_are_answered_in_the_call_by_memory_and_later_by_redis() -> None:
    for request in (MarkGrace("ann"), Release("ann"), draft("ann", "x")):
        assert RedisEngine().request(request) is PENDING
        assert MemoryEngine().request(request) is not PENDING
