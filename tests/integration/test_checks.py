"""Every exercise check: the worked answer passes, and known wrong answers fail.

Each wrong answer is one a learner could plausibly write: it gets part of the
exercise right and misses one part of its contract. The check must say FAIL
(raise ``CheckFailed``) for every one of them, with a one-line message.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import ssl
from collections.abc import Callable
from typing import Any
from urllib.parse import urljoin

import pytest

from wslab.lab.checks._common import CheckFailed
from wslab.lab.checks.asyncio_kernel import check_run_blocking
from wslab.lab.checks.broadcast import check_broadcast
from wslab.lab.checks.chat import check_bot
from wslab.lab.checks.close_codes import check_message_too_big, check_policy_violation
from wslab.lab.checks.events import check_event_log, check_parse_frame, check_socket_url
from wslab.lab.checks.grace import check_grace
from wslab.lab.checks.performance import check_frame_bytes
from wslab.lab.checks.protocol import check_expected_error
from wslab.lab.checks.reconnect import check_full_jitter, check_should_reconnect
from wslab.lab.checks.wss import check_trust
from wslab.protocol import Connecting, ProtocolError, parse_client_event


def passes(check: Callable[[Any], None], answer: Any, capsys: pytest.CaptureFixture[str]) -> None:
    check(answer)
    out = capsys.readouterr().out
    assert out.startswith("PASS ") and out.count("\n") == 1, out


def fails(check: Callable[[Any], None], answer: Any) -> str:
    with pytest.raises(CheckFailed) as caught:
        check(answer)
    message = str(caught.value)
    assert message.startswith("FAIL ") and "\n" not in message and "Hint: " in message, message
    return message


def not_written(*args: Any) -> Any:
    raise NotImplementedError("your code here")


# ------------------------------------------------------------------ 00: socket_url


def socket_url(page_url: str) -> str:
    url = urljoin(page_url, "chat")
    return "ws" + url[len("http") :]


def test_socket_url(capsys: pytest.CaptureFixture[str]) -> None:
    passes(check_socket_url, socket_url, capsys)
    assert "not implemented yet" in fails(check_socket_url, not_written)
    fails(check_socket_url, lambda page: page.replace("http", "ws") + "chat")  # keeps the query
    fails(check_socket_url, lambda page: urljoin(page, "chat"))  # still http
    fails(check_socket_url, lambda page: "ws" + urljoin(page, "/chat")[4:])  # drops the prefix
    fails(check_socket_url, lambda page: "ws" + page.split("#")[0][4:] + "chat")  # no join


# ------------------------------------------------------------------ 01: events


def summarize(events: list[Any]) -> list[str]:
    lines = []
    for event in events:
        if event.type == "message":
            if isinstance(event.data, bytes):
                lines.append("message binary")
            else:
                lines.append("message " + json.loads(event.data)["event"])
        elif event.type == "close":
            lines.append(f"close {event.code}")
        else:
            lines.append(event.type)
    return lines


def test_event_log(capsys: pytest.CaptureFixture[str]) -> None:
    passes(check_event_log, summarize, capsys)

    def no_binary(events: list[Any]) -> list[str]:
        return [
            "message " + json.loads(e.data)["event"]
            if e.type == "message"
            else (f"close {e.code}" if e.type == "close" else e.type)
            for e in events
            if not isinstance(e.data, bytes)
        ]

    def no_error(events: list[Any]) -> list[str]:
        return [line for line in summarize(events) if line != "error"]

    def close_without_code(events: list[Any]) -> list[str]:
        return ["close" if line.startswith("close") else line for line in summarize(events)]

    for wrong in (no_binary, no_error, close_without_code, lambda events: []):
        fails(check_event_log, wrong)


def parse_frame(data: str | bytes) -> dict[str, Any] | None:
    if not isinstance(data, str):
        return None
    try:
        value = json.loads(data)
    except ValueError:
        return None
    if isinstance(value, dict) and isinstance(value.get("event"), str):
        return value
    return None


def test_parse_frame(capsys: pytest.CaptureFixture[str]) -> None:
    passes(check_parse_frame, parse_frame, capsys)

    def raises(data: str | bytes) -> Any:
        return json.loads(data)

    def binary_too(data: str | bytes) -> Any:
        text = data.decode() if isinstance(data, bytes) else data
        return parse_frame(text)

    def any_json(data: str | bytes) -> Any:
        try:
            return json.loads(data) if isinstance(data, str) else None
        except ValueError:
            return None

    def any_event(data: str | bytes) -> Any:
        value = any_json(data)
        return value if isinstance(value, dict) and "event" in value else None

    for wrong in (raises, binary_too, any_json, any_event):
        fails(check_parse_frame, wrong)


# ------------------------------------------------------------------ 03: close codes


def test_policy_violation(capsys: pytest.CaptureFixture[str]) -> None:
    passes(check_policy_violation, lambda: ["not JSON"] * 10, capsys)
    fails(check_policy_violation, lambda: ["not JSON"] * 9)  # one strike short
    fails(check_policy_violation, lambda: [])
    fails(check_policy_violation, lambda: 42)


def test_message_too_big(capsys: pytest.CaptureFixture[str]) -> None:
    passes(check_message_too_big, lambda max_size: "x" * (max_size + 1), capsys)
    passes(check_message_too_big, lambda max_size: b"x" * (max_size + 1), capsys)
    fails(check_message_too_big, lambda max_size: "x" * max_size)  # exactly the limit: fine
    fails(check_message_too_big, lambda max_size: "é" * (max_size // 2))  # bytes, not chars
    fails(check_message_too_big, lambda max_size: "x" * 100_000)  # too big, not just too big
    fails(check_message_too_big, lambda max_size: ["x" * (max_size + 1)] * 2)


# ------------------------------------------------------------------ 04: the protocol


def expected_error(frame: str, connected: bool) -> str | None:
    try:
        event = parse_client_event(frame)
    except ProtocolError as error:
        return str(error.code.value)
    if isinstance(event, Connecting):
        return "already_connected" if connected else None
    return None if connected else "not_connected"


def test_expected_error(capsys: pytest.CaptureFixture[str]) -> None:
    passes(check_expected_error, expected_error, capsys)

    def ignores_state(frame: str, connected: bool) -> str | None:
        try:
            parse_client_event(frame)
        except ProtocolError as error:
            return str(error.code.value)
        return None

    def state_first(frame: str, connected: bool) -> str | None:
        if not connected and '"connecting"' not in frame:
            return "not_connected"
        return expected_error(frame, connected)

    for wrong in (ignores_state, state_first, lambda frame, connected: "bad_json"):
        fails(check_expected_error, wrong)


# ------------------------------------------------------------------ 05: broadcast


def recipients(members: list[str], sender: str, with_me: bool) -> list[str]:
    return [socket for socket in members if with_me or socket != sender]


def test_broadcast(capsys: pytest.CaptureFixture[str]) -> None:
    passes(check_broadcast, recipients, capsys)
    passes(check_broadcast, lambda m, s, w: tuple(recipients(m, s, w)), capsys)
    wrong_answers = [
        lambda members, sender, with_me: list(members),  # ignores the sender and with_me
        lambda members, sender, with_me: [m for m in members if m != sender],  # ignores with_me
        lambda members, sender, with_me: sorted(recipients(members, sender, with_me)),
        lambda members, sender, with_me: set(recipients(members, sender, with_me)),
        lambda members, sender, with_me: (
            list(members) if with_me else [m for m in members if m != sender][:-1]
        ),
        lambda members, sender, with_me: None,
    ]
    for wrong in wrong_answers:
        fails(check_broadcast, wrong)


# ------------------------------------------------------------------ 06: reconnect


def should_reconnect(code: int, closed_by_us: bool) -> bool:
    return not closed_by_us and code not in (1008, 1009)


def full_jitter(attempt: int, rng: Callable[[], float]) -> float:
    return rng() * min(10.0, 0.3 * 2**attempt)


def test_should_reconnect(capsys: pytest.CaptureFixture[str]) -> None:
    passes(check_should_reconnect, should_reconnect, capsys)
    wrong_answers = [
        lambda code, us: code == 1006,  # the original rule: only unclean closes
        lambda code, us: code not in (1008, 1009),  # retries a close it asked for
        lambda code, us: not us and code != 1008,  # retries 1009
        lambda code, us: not us and code in (1000, 1001, 1006, 1011, 1012, 1013),  # a list
        lambda code, us: not us and code < 4000 and code not in (1008, 1009),
    ]
    for wrong in wrong_answers:
        fails(check_should_reconnect, wrong)


def test_full_jitter(capsys: pytest.CaptureFixture[str]) -> None:
    passes(check_full_jitter, full_jitter, capsys)
    wrong_answers = [
        lambda n, rng: rng() * 0.3 * 2**n,  # no cap
        lambda n, rng: min(10.0, 0.3 * 2**n),  # no jitter (and no rng call)
        lambda n, rng: min(10.0, rng() * 0.3 * 2 ** (n + 1)),  # one step late
        lambda n, rng: (rng() + rng()) / 2 * min(10.0, 0.3 * 2**n),  # two draws
        lambda n, rng: min(10.0, rng() * 0.3 * 2**n),  # caps the delay, not the ceiling
    ]
    for wrong in wrong_answers:
        fails(check_full_jitter, wrong)


# ------------------------------------------------------------------ 07: reload grace


def classify(open_sockets: int, grace_deadline: float | None, now: float, token_ok: bool) -> str:
    if open_sockets > 0:
        return "second_tab" if token_ok else "refused"
    if grace_deadline is not None and now < grace_deadline:
        return "reload" if token_ok else "refused"
    if grace_deadline is not None and not token_ok:
        return "refused"  # gone, but the id stays bound to its token
    return "new"


def test_grace(capsys: pytest.CaptureFixture[str]) -> None:
    passes(check_grace, classify, capsys)

    def inclusive_deadline(o: int, d: float | None, now: float, t: bool) -> str:
        if o == 0 and d is not None and now == d:
            return "reload" if t else "refused"
        return classify(o, d, now, t)

    def tabs_need_no_token(o: int, d: float | None, now: float, t: bool) -> str:
        return "second_tab" if o > 0 else classify(o, d, now, t)

    def reload_without_token(o: int, d: float | None, now: float, t: bool) -> str:
        answer = classify(o, d, now, True)
        return answer if answer != "reload" else "reload"

    def gone_id_is_free(o: int, d: float | None, now: float, t: bool) -> str:
        answer = classify(o, d, now, t)
        return "new" if answer == "refused" and o == 0 and d is not None and now >= d else answer

    wrong_answers = [
        inclusive_deadline,
        tabs_need_no_token,
        reload_without_token,
        gone_id_is_free,
        lambda o, d, now, t: "new",
        lambda o, d, now, t: "maybe",
    ]
    for wrong in wrong_answers:
        fails(check_grace, wrong)


# ------------------------------------------------------------------ 08: the bot


def bot_reply(entry: dict[str, Any], bot_id: str) -> str | None:
    if entry["id"] == bot_id:
        return None
    text = str(entry["message"]).strip()
    if text == "!hello":
        return f"hello, {entry['username']}!"
    if text.startswith("!echo "):
        return text[len("!echo ") :].strip() or None
    return None


def test_bot(capsys: pytest.CaptureFixture[str]) -> None:
    passes(check_bot, bot_reply, capsys)

    def answers_itself(entry: dict[str, Any], bot_id: str) -> str | None:
        return bot_reply({**entry, "id": "someone"}, bot_id)

    def echoes_spaces(entry: dict[str, Any], bot_id: str) -> str | None:
        text = entry["message"]
        if entry["id"] != bot_id and text.startswith("!echo "):
            return str(text[len("!echo ") :])
        return bot_reply(entry, bot_id)

    def fixed_name(entry: dict[str, Any], bot_id: str) -> str | None:
        answer = bot_reply(entry, bot_id)
        return "hello, ada!" if answer and answer.startswith("hello, ") else answer

    def chatty(entry: dict[str, Any], bot_id: str) -> str | None:
        return bot_reply(entry, bot_id) or ("?" if entry["id"] != bot_id else None)

    def crashes_live(entry: dict[str, Any], bot_id: str) -> str | None:
        if entry["ts"] != "2026-01-01T00:00:00.000Z":  # only the live chat's entries
            raise KeyError("oops")
        return bot_reply(entry, bot_id)

    for wrong in (answers_itself, echoes_spaces, fixed_name, chatty, crashes_live):
        fails(check_bot, wrong)


# ------------------------------------------------------------------ 09: wss


def test_trust(capsys: pytest.CaptureFixture[str]) -> None:
    passes(check_trust, lambda pem: ssl.create_default_context(cadata=pem.decode()), capsys)

    def unverified(pem: bytes) -> ssl.SSLContext:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context

    def system_only(pem: bytes) -> ssl.SSLContext:
        return ssl.create_default_context()

    def server_side(pem: bytes) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.load_verify_locations(cadata=pem.decode())
        return context

    for wrong in (unverified, system_only, server_side, lambda pem: pem):
        fails(check_trust, wrong)


# ------------------------------------------------------------------ 10: asyncio


def run_blocking(coro: Any) -> Any:
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def test_run_blocking(capsys: pytest.CaptureFixture[str]) -> None:
    passes(check_run_blocking, run_blocking, capsys)

    def swallows(coro: Any) -> Any:
        try:
            return run_blocking(coro)
        except ValueError:
            return None

    def drops_result(coro: Any) -> Any:
        run_blocking(coro)
        return None

    for wrong in (swallows, drops_result):
        fails(check_run_blocking, wrong)


def test_run_blocking_from_a_running_loop(capsys: pytest.CaptureFixture[str]) -> None:
    """Called where a loop runs (as in a cell): asyncio.run and the running loop fail."""

    def on_the_callers_loop(coro: Any) -> Any:
        return asyncio.get_running_loop().run_until_complete(coro)

    async def in_a_cell() -> None:
        passes(check_run_blocking, run_blocking, capsys)
        fails(check_run_blocking, asyncio.run)
        fails(check_run_blocking, on_the_callers_loop)

    asyncio.run(in_a_cell())


# ------------------------------------------------------------------ 11: performance


def frame_bytes(entry_sizes: list[int], seed_compatible: bool) -> int:
    size = len('{"event":"messageWritten","message":') + entry_sizes[-1] + len("}")
    if seed_compatible:
        size += len(',"messagesList":[') + sum(entry_sizes) + len(entry_sizes) - 1 + len("]")
    return size


def test_frame_bytes(capsys: pytest.CaptureFixture[str]) -> None:
    passes(check_frame_bytes, frame_bytes, capsys)
    wrong_answers = [
        lambda sizes, seed: frame_bytes(sizes, False),  # ignores the mode
        lambda sizes, seed: frame_bytes(sizes, seed) - (len(sizes) - 1 if seed else 0),  # commas
        lambda sizes, seed: sum(sizes),
        lambda sizes, seed: frame_bytes(sizes, seed) + 1,
    ]
    for wrong in wrong_answers:
        fails(check_frame_bytes, wrong)
