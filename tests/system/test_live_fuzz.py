"""Live fuzzing: thousands of hostile frames at a real ChatServer while two users chat.

Several sockets at once send invalid JSON, wrong types, huge numbers, deep
nesting, unknown events, binary frames, invalid UTF-8, frames just under and
just over ``max_size`` (whole or fragmented), and floods past the rate limit.
Meanwhile a canary pair of ChatClients keeps chatting. Pass: the server stays
up, the canaries lose nothing and are never disconnected, every hostile socket
got exactly the error events and close code the protocol names, and no handler
raised (``server.handler_errors == 0``, no ERROR logged by ``wslab``).

The seed is random unless ``WSLAB_FUZZ_SEED`` is set; it is printed with the
figures, so a failure can be replayed. ``WSLAB_FUZZ_FRAMES`` sets the budget.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.helpers.reliability import expected_kind, hello, record_figures, say, unit
from wslab import ChatClient, ChatServer, RetryPolicy
from wslab.protocol import Connecting, ProtocolError, parse_client_event

MAX_SIZE = 64 * 1024
FRAME_BUDGET = int(os.environ.get("WSLAB_FUZZ_FRAMES", "3000"))
WORKERS = 6
HISTORY = 100_000  # keep everything, so the canaries' views can be checked in full
QUIET = 2**53 - 1  # a lastMessageId past everything: hostile sockets get no history


def _word(rng: random.Random, n: int = 8) -> str:
    # Any code point but surrogates: a str with one cannot even be sent as text.
    # (JSON *escapes* of surrogates have their own test below.)
    alphabet = 'abcXYZ019_- éß中\U0001f600"\\/\t\n{}[]:,'
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, n)))


def _value(rng: random.Random, depth: int = 0) -> Any:
    pick = rng.randint(0, 9 if depth < 3 else 6)
    if pick == 0:
        return None
    if pick == 1:
        return rng.choice([True, False])
    if pick == 2:
        return rng.choice([0, -1, 1, 2**31, 2**53, 2**53 - 1, 2**64, -(2**63), 10**30])
    if pick == 3:
        return rng.choice([0.5, -1.5, 1e308, -1e-308, 3.0])
    if pick in (4, 5, 6):
        return _word(rng, rng.choice([3, 20, 70]))
    if pick == 7:
        return [_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {_word(rng, 5): _value(rng, depth + 1) for _ in range(rng.randint(0, 3))}


BAD_FIELD_VALUES: dict[str, list[Any]] = {
    "id": ["", "a b", "x" * 65, "é", 5, None, ["a"], "../etc"],
    "username": ["", "   ", "x" * 33, 7, None, {"a": 1}],
    "token": ["", "t" * 257, 1, [], True],
    "lastMessageId": [-1, 2**53, 1.5, True, "3", 10**400, [1]],
    "roomId": [1, [], {}, True],
    "message": ["", "   ", "\n\t", "m" * 2001, 5, None, ["hi"], {"text": "hi"}],
    "clientMessageId": ["", "c" * 65, 5, [], False],
}


def junk_frame(rng: random.Random) -> str | bytes:
    """One hostile frame (a few of them valid by chance)."""
    kind = rng.randint(0, 13)
    if kind == 0:  # not JSON at all
        return rng.choice(
            ["", "nul", "{'event': 'x'}", "{", "}", "[1,", '"open', "\x00", _word(rng, 30)]
        )
    if kind == 1:  # JSON, truncated somewhere
        text = json.dumps({"event": "writeMessage", "message": _word(rng, 20)})
        return text[: rng.randint(0, len(text) - 1)]
    if kind == 2:  # JSON that is not an object
        return json.dumps(rng.choice([1, -2.5, "event", None, True, [], [{"event": "connecting"}]]))
    if kind == 3:  # no string "event"
        return json.dumps({"event": _value(rng)} if rng.random() < 0.7 else {"id": "x"})
    if kind == 4:  # unknown events, including the server's own
        name = rng.choice(
            [
                "connected",
                "joined",
                "error",
                "messageWritten",
                "",
                "CONNECTING",
                "writemessage",
                _word(rng, 12),
                "x" * 500,
            ]
        )
        return json.dumps({"event": name, "message": "hi"})
    if kind in (5, 6, 7):  # a known event with one bad field
        event = rng.choice(["connecting", "writeMessage"])
        obj: dict[str, Any] = (
            {"event": event, "id": "fz-ok", "username": "ok"}
            if event == "connecting"
            else {"event": event, "message": "hello"}
        )
        names = (
            ["id", "username", "token", "lastMessageId", "roomId"]
            if event == "connecting"
            else ["message", "clientMessageId"]
        )
        name = rng.choice(names)
        obj[name] = rng.choice(BAD_FIELD_VALUES[name]) if rng.random() < 0.8 else _value(rng)
        if rng.random() < 0.2:
            del obj[name]
        return json.dumps(obj)
    if kind == 8:  # huge numbers
        digits = "9" * rng.choice([20, 400, 4400, 20000])
        return rng.choice(
            [
                '{"event":"connecting","id":"a","username":"b","lastMessageId":' + digits + "}",
                '{"event":"connecting","id":"a","username":"b","lastMessageId":1e999}',
                '{"event":' + digits + "}",
                digits,
                "-" + digits + ".5e-99999",
            ]
        )
    if kind == 9:  # deep nesting, under max_size
        depth = rng.choice([100, 1_000, 10_000, 30_000])  # 2 * depth bytes at most
        return rng.choice(["[" * depth, "[" * depth + "]" * depth, '{"a":' * (depth // 5) + "1"])
    if kind == 10:  # binary frames
        return rng.choice(
            [
                b"",
                b"\x00\x01",
                json.dumps({"event": "writeMessage", "message": "b"}).encode(),
                secrets.token_bytes(rng.randint(1, 300)),
            ]
        )
    if kind == 11:  # constants that are not JSON, duplicate keys
        return rng.choice(
            [
                '{"event":"connecting","id":"a","username":"b","lastMessageId":NaN}',
                '{"event":"writeMessage","message":Infinity}',
                '{"event":"writeMessage","event":"nope","message":"x"}',
                '{"event":"nope","event":"writeMessage","message":"dup-key"}',
            ]
        )
    if kind == 12:  # random JSON objects
        obj = {_word(rng, 6): _value(rng) for _ in range(rng.randint(0, 4))}
        if rng.random() < 0.5:
            obj["event"] = rng.choice(["connecting", "writeMessage", _word(rng, 6)])
        return json.dumps(obj)
    return json.dumps(
        {
            "event": "writeMessage",
            "message": "fz " + _word(rng, 10) + "!",
            "clientMessageId": "fz-" + secrets.token_hex(6),
            "username": "forged",
        }
    )


def expected_reply(frame: str | bytes, connected: bool) -> str | None:
    """The token the server must answer: ``error:<code>`` or ``ack:<cmid>``.

    ``None`` means: a frame whose answer cannot be told apart (a valid ``connecting``
    on a fresh socket, a ``writeMessage`` without ``clientMessageId``); the caller
    makes another one.
    """
    kind = expected_kind(frame)
    if kind not in ("connecting", "writeMessage"):
        return f"error:{kind}"
    try:
        event = parse_client_event(frame)
    except ProtocolError as error:
        return f"error:{error.code.value}"
    if isinstance(event, Connecting):
        return "error:already_connected" if connected else None
    if not connected:
        return "error:not_connected"
    if event.client_message_id is None:
        return None  # an ack we could not tell from others' traffic: make another frame
    return f"ack:{event.client_message_id}"


# --------------------------------------------------------------------------- the run


@dataclass
class Tally:
    frames: int = 0
    sessions: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    closes: Counter[str] = field(default_factory=Counter)
    mismatches: list[str] = field(default_factory=list)
    flood_acks: set[str] = field(default_factory=set)

    def mismatch(self, what: str) -> None:
        if len(self.mismatches) < 50:
            self.mismatches.append(what)


def reply_token(data: str | bytes, cmids: set[str]) -> str | None:
    """Map a frame from the server to a comparable token, or None to ignore it."""
    if isinstance(data, bytes):
        return "binary-from-server"
    event = json.loads(data)
    name = event.get("event")
    if name == "error":
        return f"error:{event['code']}"
    if name == "connected":
        return "connected"
    if name == "messageWritten":
        cmid = event["message"].get("clientMessageId")
        if cmid in cmids:
            return f"ack:{cmid}"
    return None  # someone else's traffic


async def open_socket(url: str) -> ClientConnection:
    return await connect(
        url, compression=None, max_size=None, open_timeout=unit(10), close_timeout=unit(2)
    )


async def read_until(
    ws: ClientConnection, want: int, cmids: set[str]
) -> tuple[list[str], int | None]:
    """Read tokens until ``want`` of them arrived, or the server closed the socket."""
    tokens: list[str] = []
    try:
        while len(tokens) < want:
            data = await asyncio.wait_for(ws.recv(), unit(10))
            token = reply_token(data, cmids)
            if token is not None:
                tokens.append(token)
    except ConnectionClosed:
        return tokens, ws.close_code
    return tokens, None


async def wait_closed(ws: ClientConnection) -> int | None:
    """Wait for the server's close; ignore what else arrives. Return its code."""
    try:
        while True:
            await asyncio.wait_for(ws.recv(), unit(10))
    except ConnectionClosed:
        return ws.close_code


async def junk_session(url: str, rng: random.Random, tally: Tally) -> None:
    ws = await open_socket(url)
    connected = rng.random() < 0.5
    expected: list[str] = []
    frames: list[str | bytes] = []
    if connected:
        frames.append(hello("fz-" + secrets.token_hex(6), "fuzzer", lastMessageId=QUIET))
        expected.append("connected")
    strikes = 0
    for _ in range(rng.choice([1, 3, 6, 9, 10, 12])):
        token = None
        while token is None:
            frame = junk_frame(rng)
            token = expected_reply(frame, connected)
        frames.append(frame)
        if strikes < 10:
            expected.append(token)
            strikes += token.startswith("error:")
    cmids = {t[4:] for t in expected if t.startswith("ack:")}
    try:
        for frame in frames:
            await ws.send(frame)
            tally.frames += 1
    except ConnectionClosed:
        pass  # closed after the tenth strike while we were still sending
    tokens, code = await read_until(ws, len(expected), cmids)
    if strikes >= 10 and code is None:
        code = await wait_closed(ws)
    for token in tokens:
        if token.startswith("error:"):
            tally.errors[token[6:]] += 1
    if tokens != expected:
        tally.mismatch(f"junk: sent {frames!r:.300}\n expected {expected}\n got {tokens}")
    want_code = 1008 if strikes >= 10 else None
    if code != want_code:
        tally.mismatch(f"junk: close code {code}, expected {want_code} after {strikes} strikes")
    tally.closes[str(code or "open")] += 1
    if code is None:
        if rng.random() < 0.3:
            ws.transport.abort()  # vanish without a close frame
            tally.closes["aborted-by-us"] += 1
        else:
            await ws.close()


SIZE_CASES: list[tuple[str, Any, int | None]] = [
    # (name, frame or fragments, expected close code; None: stays open with an error)
    ("ascii-exact", "x" * MAX_SIZE, None),
    ("ascii-over", "x" * (MAX_SIZE + 1), 1009),
    ("utf8-exact", "é" * (MAX_SIZE // 2), None),
    ("utf8-over", "é" * (MAX_SIZE // 2) + "x", 1009),
    ("json-exact", '{"event":"writeMessage","message":"' + "m" * (MAX_SIZE - 37) + '"}', None),
    ("binary-exact", b"\x00" * MAX_SIZE, None),
    ("binary-over", b"\x00" * (MAX_SIZE + 1), 1009),
    ("fragments-under", ["y" * (MAX_SIZE // 2), "y" * (MAX_SIZE // 2)], None),
    ("fragments-over", ["y" * (MAX_SIZE // 2), "y" * (MAX_SIZE // 2 + 1)], 1009),
]


def test_size_cases_are_what_their_names_say() -> None:
    """The live fuzz's size frames sit exactly at max_size or one byte over it."""

    def size(frame: Any) -> int:
        parts = frame if isinstance(frame, list) else [frame]
        return sum(len(p.encode() if isinstance(p, str) else p) for p in parts)

    for name, frame, code in SIZE_CASES:
        want = MAX_SIZE + 1 if name.endswith("over") else MAX_SIZE
        assert size(frame) == want, name
        assert (code == 1009) == name.endswith("over"), name


async def size_session(url: str, rng: random.Random, tally: Tally) -> None:
    name, frame, want = rng.choice(SIZE_CASES)
    ws = await open_socket(url)
    try:
        await ws.send(frame)
        tally.frames += 1
    except ConnectionClosed:
        pass
    if want is None:
        # Too big for a chat message but within max_size: an error, the socket stays open.
        whole = "".join(frame) if isinstance(frame, list) else frame
        token = expected_reply(whole, connected=False)
        tokens, code = await read_until(ws, 1, set())
        if tokens != [token] or code is not None:
            tally.mismatch(f"size {name}: got {tokens} close {code}, expected [{token}]")
        await ws.close()
    else:
        code = await wait_closed(ws)
        if code != want:
            tally.mismatch(f"size {name}: close {code}, expected {want}")
    tally.sessions[f"size:{name}"] += 1
    tally.closes[str(code or "open")] += 1


INVALID_UTF8 = [
    b"\xff",
    b"\xc3\x28",
    b"\xed\xa0\x80",
    b"\xe2\x82",
    b"\xc0\xaf",
    b"\xf8\x88\x80\x80\x80",
    b"\xf4\x90\x80\x80",
]


async def utf8_session(url: str, rng: random.Random, tally: Tally) -> None:
    ws = await open_socket(url)
    if rng.random() < 0.5:
        await ws.send(hello("fz-" + secrets.token_hex(6), "fuzzer", lastMessageId=QUIET))
        tally.frames += 1
        await read_until(ws, 1, set())
    bad = rng.choice(INVALID_UTF8)
    payload = b'{"event":"writeMessage","message":"' + bad + b'"}'
    await ws.send(payload, text=True)  # bytes in a TEXT frame, unchecked by the sender
    tally.frames += 1
    code = await wait_closed(ws)
    # RFC 6455 and websockets: invalid UTF-8 in a text frame fails the connection with 1007.
    if code != 1007:
        tally.mismatch(f"utf8 {bad!r}: close {code}, expected 1007")
    tally.closes[str(code)] += 1


async def flood_session(url: str, rng: random.Random, tally: Tally) -> None:
    ws = await open_socket(url)
    await ws.send(hello("fz-flood-" + secrets.token_hex(4), "flooder", lastMessageId=QUIET))
    tally.frames += 1
    await read_until(ws, 1, set())
    prefix = "fl-" + secrets.token_hex(4)
    count = rng.choice([60, 120, 200])
    cmids = {f"{prefix}-{i}" for i in range(count)}
    started = time.monotonic()
    for i in range(count):
        await ws.send(say(f"flood {i}", f"{prefix}-{i}"))
        tally.frames += 1
    # A sentinel, resent (same clientMessageId) until the bucket lets it through:
    # once its ack is in, every earlier frame of this socket was processed.
    sentinel = f"{prefix}-end"
    cmids.add(sentinel)
    tokens: list[str] = []
    for _ in range(100):
        await ws.send(say("flood end", sentinel))
        tally.frames += 1
        tokens += await read_for(ws, cmids, unit(0.2), stop=f"ack:{sentinel}")
        if f"ack:{sentinel}" in tokens or ws.close_code is not None:
            break
    elapsed = time.monotonic() - started
    acks = [t for t in tokens if t.startswith("ack:") and t != f"ack:{sentinel}"]
    limited = tokens.count("error:rate_limited")
    tally.errors["rate_limited"] += limited
    tally.flood_acks.update(t[4:] for t in acks)
    others = [t for t in tokens if t.startswith("error:") and t != "error:rate_limited"]
    if not limited or others or ws.close_code is not None:
        tally.mismatch(
            f"flood: {limited} rate_limited, other errors {others}, close {ws.close_code}"
        )
    # Burst 40, less the token the connecting frame took; then 20/s.
    if not 39 <= len(acks) <= 39 + 20 * elapsed + 2:
        tally.mismatch(
            f"flood: {len(acks)} of {count} accepted in {elapsed:.2f} s (burst 40, 20/s)"
        )
    tally.closes["open"] += 1
    await ws.close()


async def read_for(ws: ClientConnection, cmids: set[str], seconds: float, stop: str) -> list[str]:
    """Read tokens for at most ``seconds`` (pacing a resend), or until ``stop`` arrives."""
    tokens: list[str] = []
    deadline = time.monotonic() + seconds
    try:
        while stop not in tokens:
            data = await asyncio.wait_for(ws.recv(), max(0.0, deadline - time.monotonic()))
            token = reply_token(data, cmids)
            if token is not None:
                tokens.append(token)
    except (TimeoutError, ConnectionClosed):
        pass
    return tokens


async def abort_session(url: str, rng: random.Random, tally: Tally) -> None:
    ws = await open_socket(url)
    await ws.send(hello("fz-gone-" + secrets.token_hex(4), "ghost", lastMessageId=QUIET))
    tally.frames += 1
    await read_until(ws, 1, set())
    ws.transport.abort()
    tally.closes["aborted-by-us"] += 1


SESSIONS = [
    (junk_session, 70),
    (size_session, 8),
    (utf8_session, 6),
    (flood_session, 4),
    (abort_session, 5),
]


async def worker(url: str, rng: random.Random, tally: Tally, deadline: float) -> None:
    functions, weights = zip(*SESSIONS, strict=True)
    while tally.frames < FRAME_BUDGET and time.monotonic() < deadline:
        session = rng.choices(functions, weights)[0]
        tally.sessions[session.__name__] += 1
        await session(url, random.Random(rng.random()), tally)


async def chat(canary: ChatClient, sent: list[str], stop: asyncio.Event) -> None:
    for i in range(100_000):
        if stop.is_set():
            return
        text = f"{canary.id} says {i}"
        sent.append(text)
        await canary.send_message(text)
        await asyncio.sleep(0.1)  # pacing: 10 messages/s, under the 20/s limit


async def live_fuzz(server: ChatServer, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    tally = Tally()
    policy = RetryPolicy(initial=0.1, cap=1.0)
    canaries = [
        ChatClient(server.url, name, id=name, policy=policy) for name in ("canary-a", "canary-b")
    ]
    closes: list[str] = []
    for canary in canaries:
        canary.on_close = lambda code, reason, c=canary: closes.append(f"{c.id}:{code}:{reason}")
        await canary.connect(unit(10))
    sent: list[str] = []
    stop = asyncio.Event()
    chatting = [asyncio.create_task(chat(c, sent, stop)) for c in canaries]
    started = time.monotonic()
    deadline = started + unit(40)
    workers = [
        worker(server.url, random.Random(rng.random()), tally, deadline) for _ in range(WORKERS)
    ]
    await asyncio.gather(*workers)
    fuzz_seconds = time.monotonic() - started
    stop.set()
    await asyncio.gather(*chatting)

    # The canaries: nothing pending, every message of both, the server's exact history.
    history = await asyncio.to_thread(lambda: server.history)
    for canary in canaries:
        await canary.wait_for(lambda c: not c.pending and len(c.messages) >= len(history), unit(15))
    history = await asyncio.to_thread(lambda: server.history)
    texts = [m["message"] for m in history]
    lost = [t for t in sent if texts.count(t) != 1]
    views_match = all(
        [m["messageId"] for m in c.messages] == [m["messageId"] for m in history] for c in canaries
    )
    stored_flood = {
        cmid
        for cmid in (m.get("clientMessageId") or "" for m in history)
        if cmid.startswith("fl-") and not cmid.endswith("-end")
    }
    flood_mismatch = stored_flood ^ tally.flood_acks  # stored exactly what was acknowledged
    # The server still serves newcomers.
    canary_closes = list(closes)  # before our own close() adds 1000s
    late = ChatClient(server.url, "late", policy=policy, reconnect=False)
    await late.connect(unit(10))
    late_ok = late.online
    await late.close()
    for canary in canaries:
        await canary.close()
    return {
        "seed": seed,
        "frames": tally.frames,
        "sessions": sum(v for k, v in tally.sessions.items() if not k.startswith("size:")),
        "sessions_by_kind": dict(tally.sessions),
        "error_events": dict(tally.errors),
        "closes": dict(tally.closes),
        "seconds": round(fuzz_seconds, 1),
        "canary_messages": len(sent),
        "canary_lost": len(lost),
        "canary_closes": len(canary_closes),
        "canary_close_detail": canary_closes,
        "canary_views_match": views_match,
        "flood_stored_vs_acked_mismatch": len(flood_mismatch),
        "late_client_joined": late_ok,
        "handler_errors": server.handler_errors,
        "mismatches": tally.mismatches,
    }


@pytest.mark.slow
def test_live_fuzz_keeps_the_server_up_and_the_canaries_whole(
    chat_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Thousands of hostile frames from several sockets; see the module docstring."""
    seed = int(os.environ.get("WSLAB_FUZZ_SEED") or secrets.randbits(32))
    server = chat_server(grace=0.5, max_size=MAX_SIZE, history=HISTORY)
    result = asyncio.run(asyncio.wait_for(live_fuzz(server, seed), unit(120)))
    mismatches = result.pop("mismatches")
    record_figures("live_fuzz", result)
    assert server.running
    assert not mismatches, f"seed {seed}: " + "\n".join(mismatches[:10])
    assert result["frames"] >= min(FRAME_BUDGET, 1000)
    assert result["canary_lost"] == 0 and result["canary_closes"] == 0
    assert result["canary_views_match"] and result["late_client_joined"]
    assert result["flood_stored_vs_acked_mismatch"] == 0
    assert server.handler_errors == 0
    errors = [
        r for r in caplog.records if r.name.startswith("wslab") and r.levelno >= logging.ERROR
    ]
    assert errors == [], [r.getMessage() for r in errors[:5]]


# --------------------------------------------------------------------------- a lone surrogate


def test_one_lone_surrogate_does_not_lock_everyone_out() -> None:
    # The server is stopped (its thread joined) before any assertion: if it failed, it
    # would log tracebacks, and Python 3.11 formats them with ast.parse, whose recursion
    # counter is shared between threads; a failure report formatted at the same time
    # then dies with "SystemError: AST constructor recursion depth mismatch".
    server = ChatServer(grace=0.2).start()

    async def scenario() -> tuple[list[str], int | None, str]:
        async with await open_socket(server.url) as evil:
            await evil.send(hello("evil", "evil"))
            await evil.recv()
            await evil.send('{"event":"writeMessage","message":"\\ud800"}')
            await evil.send(say("fine", "c1"))
            tokens, evil_code = await read_until(evil, 2, {"c1"})
        async with await open_socket(server.url) as victim:
            await victim.send(hello("victim", "victim"))
            try:
                reply = json.loads(await asyncio.wait_for(victim.recv(), unit(5)))
            except ConnectionClosed:
                reply = {"event": f"closed {victim.close_code}"}
        return tokens, evil_code, reply["event"]

    try:
        tokens, evil_code, victim_event = asyncio.run(scenario())
    finally:
        server.stop()
    assert (tokens, evil_code) == (["error:invalid_field", "ack:c1"], None)
    assert victim_event == "connected"
    assert server.handler_errors == 0
