"""A corpus of wrong answers, at least five per exercise: every check rejects every one.

Each wrong answer is one a learner could write: it gets part of the exercise right
and misses one part of its contract (an adversarial input: "http" inside a URL's
path, a bot whose name is not its id, a binary frame, PEM where DER goes), or it
raises. The check must answer with a verdict: ``CheckFailed``, one line, with a
hint; an answer that raises is named in the verdict with its exception. The live
checks start servers on loopback port 0, so this file is an integration test.
``test_the_corpus_holds_at_least_five_wrong_answers_per_exercise`` prints the
count per exercise (``pytest -s``).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import json
import re
import ssl
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import nbformat
import pytest

from wslab.lab.checks._common import CheckFailed
from wslab.lab.checks.asyncio_kernel import check_run_blocking
from wslab.lab.checks.broadcast import check_broadcast
from wslab.lab.checks.chat import check_bot
from wslab.lab.checks.classroom import check_role_of
from wslab.lab.checks.close_codes import check_message_too_big, check_policy_violation
from wslab.lab.checks.events import check_event_log, check_parse_frame, check_socket_url
from wslab.lab.checks.grace import check_grace
from wslab.lab.checks.original_design import check_token_guard
from wslab.lab.checks.performance import check_frame_bytes
from wslab.lab.checks.protocol import check_expected_error
from wslab.lab.checks.reconnect import check_full_jitter, check_should_reconnect
from wslab.lab.checks.scaling import check_claim_status
from wslab.lab.checks.wire import check_accept_key, check_parse_header, check_unmask
from wslab.lab.checks.wss import check_trust
from wslab.protocol import Connecting, ProtocolError, parse_client_event

Answer = Callable[..., Any]
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


# ------------------------------------------------------------------ 00, 01


def _summary_line(event: Any) -> str:
    if event.type == "message":
        return "message " + json.loads(event.data)["event"]  # bytes too: no "binary"
    return f"close {event.code}" if event.type == "close" else event.type


def _summary_no_code(event: Any) -> str:
    if event.type == "message":
        kind = "binary" if isinstance(event.data, bytes) else json.loads(event.data)["event"]
        return f"message {kind}"
    return event.type  # "close" without its code


def _parse_no_type_check(data: Any) -> Any:
    try:
        obj = json.loads(data)  # bytes are JSON too, for json.loads
    except ValueError:
        return None
    return obj if isinstance(obj, dict) and isinstance(obj.get("event"), str) else None


def _parse_any_event(data: Any) -> Any:
    if not isinstance(data, str):
        return None
    try:
        obj = json.loads(data)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) and "event" in obj else None  # 7 is no event name


# ------------------------------------------------------------------ 02


def _accept(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def _header(frame: bytes, *, extended: bool = True, mask_counts: bool = True) -> dict[str, Any]:
    length, size = frame[1] & 0x7F, 2
    if extended and length == 126:
        length, size = int.from_bytes(frame[2:4], "big"), 4
    elif extended and length == 127:
        length, size = int.from_bytes(frame[2:10], "big"), 10
    masked = bool(frame[1] & 0x80)
    return {
        "fin": bool(frame[0] & 0x80),
        "opcode": frame[0] & 0x0F,
        "masked": masked,
        "length": length,
        "header_length": size + (4 if masked and mask_counts else 0),
    }


# ------------------------------------------------------------------ 04, 05


def _remove_sender(members: list[str], sender: str, with_me: bool) -> list[str]:
    if not with_me and sender in members:
        members.remove(sender)  # the room's own list: the sender leaves the room
    return members


def _expected_error(frame: str, connected: bool, *, order: bool = True) -> str | None:
    try:
        event = parse_client_event(frame)
    except ProtocolError as error:
        return error.code.value
    if isinstance(event, Connecting):
        return "already_connected" if connected else None
    return None if connected or not order else "not_connected"


def _expected_error_state_first(frame: str, connected: bool) -> str | None:
    try:
        data = json.loads(frame)
    except ValueError:
        return "bad_json"
    if isinstance(data, dict) and not connected and data.get("event") != "connecting":
        return "not_connected"  # before asking whether the event exists
    return _expected_error(frame, connected)


def _expected_error_json_only(frame: str, connected: bool) -> str | None:
    try:
        json.loads(frame)
    except ValueError:
        return "bad_json"
    return None if connected else "not_connected"


# ------------------------------------------------------------------ 07, 08, 09, 10


def _classify_grace_only(open_sockets: int, deadline: Any, now: float, token_ok: bool) -> str:
    # What the text once implied: no token needed once the grace is over.
    if open_sockets > 0:
        return "second_tab" if token_ok else "refused"
    if deadline is not None and now < deadline:
        return "reload" if token_ok else "refused"
    return "new"


def _bot(entry: dict[str, Any], bot_id: str, *, by_name: bool = False) -> str | None:
    if (entry["username"] == "bot") if by_name else (entry["id"] == bot_id):
        return None
    text = entry["message"].strip()
    if text == "!hello":
        return f"hello, {entry['username']}!"
    if text.startswith("!echo "):
        return text[len("!echo ") :].strip() or None
    return None


def _run_on_running_loop(coro: Any) -> Any:
    return asyncio.get_event_loop().run_until_complete(coro)


def _run_in_thread_swallowing(coro: Any) -> Any:
    result: list[Any] = []

    def target() -> None:
        try:
            result.append(asyncio.run(coro))
        except Exception:
            result.append(None)  # the exception is lost

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    return result[0]


# ------------------------------------------------------------------ 11, 12, 13

_HEAD = len('{"event":"messageWritten","message":')


def _frame_bytes(sizes: list[int], seed: bool, *, commas: bool = True) -> int:
    size = _HEAD + sizes[-1] + 1
    if seed:
        size += len(',"messagesList":[') + sum(sizes) + (len(sizes) - 1 if commas else 0) + 1
    return size


def _claim(states: list[str], order: tuple[str, ...]) -> str:
    for state, answer in zip(("open", "grace"), order, strict=True):
        if state in states:
            return answer
    return "new"


# ------------------------------------------------------------------ 14


def _role(
    user: dict[str, Any],
    service: str,
    groups: tuple[str, ...],
    *,
    access: Callable[[list[str], str], bool] | None = None,
    teacher: Callable[[dict[str, Any], tuple[str, ...]], bool] | None = None,
) -> str | None:
    """A role decision with one part replaceable: who has access, who is a teacher."""
    if user.get("kind") != "user":
        return None
    scopes = user["scopes"]
    if access is not None:
        allowed = access(scopes, service)
    else:
        allowed = bool({"access:services", f"access:services!service={service}"} & set(scopes))
    if not allowed:
        return None
    if teacher is not None:
        return "teacher" if teacher(user, groups) else "student"
    return "teacher" if user["admin"] or set(user["groups"]) & set(groups) else "student"


CORPUS: dict[str, tuple[Callable[[Any], None], dict[str, Answer]]] = {
    "00 socket_url": (
        check_socket_url,
        {
            "replaces every http": lambda page: urljoin(page, "chat").replace("http", "ws"),
            "keeps the query": lambda page: "ws" + page[4:] + "chat",
            "still http": lambda page: urljoin(page, "chat"),
            "drops the proxy prefix": lambda page: "ws" + urljoin(page, "/chat")[4:],
            "always ws": lambda page: "ws://" + urljoin(page, "chat").split("://", 1)[1],
            "forgets the chat path": lambda page: {"http": "ws"}[page.split(":")[0]] + page[4:],
        },
    ),
    "01 summarize": (
        check_event_log,
        {
            "json.loads a binary frame": lambda events: [_summary_line(e) for e in events],
            "close without its code": lambda events: [_summary_no_code(e) for e in events],
            "skips errors": lambda events: [
                _summary_line(e) for e in events if e.type not in ("error",)
            ],
            "message without its event": lambda events: [e.type for e in events],
            "a string, not a list": lambda events: "\n".join(e.type for e in events),
            "reads .data of every event": lambda events: [json.loads(e.data) for e in events],
        },
    ),
    "01 parse_frame": (
        check_parse_frame,
        {
            "no except": lambda data: json.loads(data),
            "bytes are JSON too": _parse_no_type_check,
            "any event value": _parse_any_event,
            "any JSON": lambda data: json.loads(data) if isinstance(data, str) and data else None,
            "a dict for everything": lambda data: {"event": str(data)},
            "returns a JSON list": lambda data: (
                json.loads(data) if isinstance(data, str) and data.startswith(("{", "[")) else None
            ),
        },
    ),
    "02 accept_key": (
        check_accept_key,
        {
            "hex digest": lambda key: hashlib.sha1((key + GUID).encode()).hexdigest(),
            "no GUID": lambda key: base64.b64encode(hashlib.sha1(key.encode()).digest()).decode(),
            "bytes, not str": lambda key: base64.b64encode(
                hashlib.sha1((key + GUID).encode()).digest()
            ),
            "sha256": lambda key: base64.b64encode(
                hashlib.sha256((key + GUID).encode()).digest()
            ).decode(),
            "GUID first": lambda key: _accept(GUID[:0] + key[::-1])[::-1],
            "decodes the key": lambda key: _accept(base64.b64decode(key).decode()),
        },
    ),
    "02 unmask": (
        check_unmask,
        {
            "first key byte only": lambda payload, key: bytes(b ^ key[0] for b in payload),
            "unchanged": lambda payload, key: payload,
            "a list, not bytes": lambda payload, key: [
                b ^ key[i % 4] for i, b in enumerate(payload)
            ],
            "no modulo": lambda payload, key: bytes(b ^ key[i] for i, b in enumerate(payload)),
            "key shifted": lambda payload, key: bytes(
                b ^ key[(i + 1) % 4] for i, b in enumerate(payload)
            ),
            "and, not xor": lambda payload, key: bytes(
                b & key[i % 4] for i, b in enumerate(payload)
            ),
        },
    ),
    "02 parse_header": (
        check_parse_header,
        {
            "no extended length": lambda frame: _header(frame, extended=False),
            "mask not counted": lambda frame: _header(frame, mask_counts=False),
            "fin as an int": lambda frame: {**_header(frame), "fin": frame[0] & 0x80},
            "opcode with the flags": lambda frame: {**_header(frame), "opcode": frame[0]},
            "little endian": lambda frame: {
                **_header(frame),
                "length": int.from_bytes(frame[2:4], "little")
                if frame[1] & 0x7F == 126
                else _header(frame)["length"],
            },
            "127 read as 16 bits": lambda frame: {
                **_header(frame),
                **({"length": int.from_bytes(frame[2:4], "big")} if frame[1] & 0x7F == 127 else {}),
            },
            "masked from the wrong byte": lambda frame: {
                **_header(frame),
                "masked": bool(frame[0] & 0x80),
            },
        },
    ),
    "03 bad_frames": (
        check_policy_violation,
        {
            "nine": lambda: ["not JSON"] * 9,
            "one": lambda: ["not JSON"],
            "five": lambda: ["not JSON"] * 5,
            "nothing": lambda: [],
            "a string, not a list": lambda: "not JSON" * 10,
        },
    ),
    "03 big_frame": (
        check_message_too_big,
        {
            "exactly the limit": lambda max_size: "x" * max_size,
            "one below": lambda max_size: "x" * (max_size - 1),
            "fixed 64 KiB": lambda max_size: "x" * 65_537,
            "tiny": lambda max_size: "x",
            "the limit as text": lambda max_size: str(max_size + 1),
        },
    ),
    "04 expected_error": (
        check_expected_error,
        {
            "no not_connected": lambda frame, connected: _expected_error(
                frame, connected, order=False
            ),
            "JSON only": _expected_error_json_only,
            "never an error": lambda frame, connected: None,
            "no already_connected": lambda frame, connected: (
                None if connected else _expected_error(frame, connected)
            ),
            "swapped flag": lambda frame, connected: _expected_error(frame, not connected),
            "state before the event name": _expected_error_state_first,
            "raises on bad JSON": lambda frame, connected: (
                None if parse_client_event(frame) else "bad_json"
            ),
        },
    ),
    "05 recipients": (
        check_broadcast,
        {
            "everyone always": lambda members, sender, with_me: list(members),
            "never the sender": lambda members, sender, with_me: [
                m for m in members if m != sender
            ],
            "flag inverted": lambda members, sender, with_me: [
                m for m in members if not with_me or m != sender
            ],
            "only the sender": lambda members, sender, with_me: [sender],
            "sorted": lambda members, sender, with_me: sorted(
                m for m in members if with_me or m != sender
            ),
            "removes the sender from members": _remove_sender,
        },
    ),
    "06 should_reconnect": (
        check_should_reconnect,
        {
            "always": lambda code, closed_by_us: True,
            "ignores closed_by_us": lambda code, closed_by_us: code not in (1008, 1009),
            "only 1006": lambda code, closed_by_us: code == 1006 and not closed_by_us,
            "retries 1008": lambda code, closed_by_us: not closed_by_us and code != 1009,
            "never after 1000": lambda code, closed_by_us: (
                not closed_by_us and code not in (1000, 1008, 1009)
            ),
        },
    ),
    "06 full_jitter": (
        check_full_jitter,
        {
            "no jitter": lambda attempt, rng: min(10.0, 0.3 * 2**attempt),
            "no cap": lambda attempt, rng: rng() * 0.3 * 2**attempt,
            "cap before jitter wrong": lambda attempt, rng: (
                min(10.0, rng() * 0.3 * 2**attempt) + 0.0 * rng()
            ),
            "equal jitter": lambda attempt, rng: (
                (d := min(10.0, 0.3 * 2**attempt)) / 2 + rng() * d / 2
            ),
            "linear": lambda attempt, rng: rng() * min(10.0, 0.3 * (attempt + 1)),
            "random module": lambda attempt, rng: (
                __import__("random").random() * min(10.0, 0.3 * 2**attempt)
            ),
        },
    ),
    "07 classify": (
        check_grace,
        {
            "no token after the grace": _classify_grace_only,
            "grace ends after the deadline": lambda o, d, now, ok: (
                ("second_tab" if ok else "refused")
                if o
                else ("reload" if ok else "refused")
                if d is not None and now <= d
                else ("refused" if d is not None and not ok else "new")
            ),
            "ignores the token": lambda o, d, now, ok: (
                "second_tab" if o else "reload" if d is not None and now < d else "new"
            ),
            "reload for a second tab": lambda o, d, now, ok: (
                "refused" if not ok and (o or d is not None) else "reload" if o else "new"
            ),
            "a bool": lambda o, d, now, ok: ok,
            "compares None": lambda o, d, now, ok: "reload" if now < d else "new",
        },
    ),
    "08 bot_reply": (
        check_bot,
        {
            "knows itself by name": lambda entry, bot_id: _bot(entry, bot_id, by_name=True),
            "answers itself": lambda entry, bot_id: _bot({**entry, "id": ""}, bot_id),
            "echo keeps the command": lambda entry, bot_id: (
                entry["message"] if entry["message"].startswith("!echo") else _bot(entry, bot_id)
            ),
            "replaces every !echo": lambda entry, bot_id: (
                entry["message"].replace("!echo ", "").strip() or None
                if entry["message"].startswith("!echo ") and entry["id"] != bot_id
                else _bot(entry, bot_id)
            ),
            "hello by prefix": lambda entry, bot_id: (
                f"hello, {entry['username']}!"
                if entry["message"].startswith("!hello") and entry["id"] != bot_id
                else _bot(entry, bot_id)
            ),
            "echo without the space": lambda entry, bot_id: (
                entry["message"][len("!echo") :].strip() or None
                if entry["message"].startswith("!echo") and entry["id"] != bot_id
                else _bot(entry, bot_id)
            ),
            "reads a missing key": lambda entry, bot_id: _bot(entry, entry["bot"]),
        },
    ),
    "09 trusting_context": (
        check_trust,
        {
            "PEM bytes where DER goes": lambda pem: ssl.create_default_context(cadata=pem),
            "no verification": lambda pem: ssl._create_unverified_context(),
            "system CAs only": lambda pem: ssl.create_default_context(),
            "hostname unchecked": lambda pem: _no_hostname(pem),
            "the PEM, not a context": lambda pem: pem,
            "a file that is not there": lambda pem: ssl.create_default_context(cafile="ca.pem"),
        },
    ),
    "10 run_blocking": (
        check_run_blocking,
        {
            "asyncio.run here": lambda coro: asyncio.run(coro),
            "the caller's loop": _run_on_running_loop,
            "swallows the exception": _run_in_thread_swallowing,
            "returns the coroutine": lambda coro: coro,
            "returns a future": lambda coro: (
                __import__("concurrent.futures")
                .futures.ThreadPoolExecutor(1)
                .submit(asyncio.run, coro)
            ),
        },
    ),
    "11 frame_bytes": (
        check_frame_bytes,
        {
            "no commas": lambda sizes, seed: _frame_bytes(sizes, seed, commas=False),
            "ignores seed_compatible": lambda sizes, seed: _frame_bytes(sizes, False),
            "the entry alone": lambda sizes, seed: sizes[-1],
            "every entry twice": lambda sizes, seed: _frame_bytes(sizes, seed) + sum(sizes) * seed,
            "the first entry": lambda sizes, seed: (
                _frame_bytes(sizes[:1], seed) + sum(sizes[1:]) * seed + (len(sizes) - 1) * seed
            ),
            "an empty history": lambda sizes, seed: _frame_bytes(sizes[:-1] or [0], seed),
        },
    ),
    "12 may_use_id": (
        check_token_guard,
        {
            "the id alone": lambda owner, offered: True,
            "no token is fine": lambda owner, offered: offered is None or offered == owner,
            "a prefix": lambda owner, offered: bool(offered) and owner.startswith(offered),
            "any token": lambda owner, offered: offered is not None,
            "a substring": lambda owner, offered: offered is not None and offered in owner,
            "raises on None": lambda owner, offered: hmac.compare_digest(
                offered.encode(), owner.encode()
            ),
        },
    ),
    "13 claim_status": (
        check_claim_status,
        {
            "grace first": lambda states: _claim(states, ("reload", "tab")),
            "open is a reload": lambda states: _claim(states, ("reload", "reload")),
            "grace is new": lambda states: _claim(states, ("tab", "new")),
            "first state only": lambda states: {"open": "tab", "grace": "reload"}.get(
                states[0], "new"
            ),
            "always new": lambda states: "new",
            "the majority decides": lambda states: (
                "new"
                if not states
                else "tab"
                if states.count("open") >= states.count("grace")
                else "reload"
            ),
        },
    ),
    "14 role_of": (
        check_role_of,
        {
            "no access check": lambda u, s, g: _role(u, s, g, access=lambda scopes, s: True),
            "a scope that contains the service": lambda u, s, g: _role(
                u, s, g, access=lambda scopes, s: any(s in scope for scope in scopes)
            ),
            "only the filtered scope": lambda u, s, g: _role(
                u, s, g, access=lambda scopes, s: f"access:services!service={s}" in scopes
            ),
            "admins are students": lambda u, s, g: _role(
                u, s, g, teacher=lambda user, g: bool(set(user["groups"]) & set(g))
            ),
            "a group by prefix": lambda u, s, g: _role(
                u,
                s,
                g,
                teacher=lambda user, g: (
                    user["admin"] or any(group.startswith(t) for group in user["groups"] for t in g)
                ),
            ),
            "the user's name as a group": lambda u, s, g: _role(
                u,
                s,
                g,
                teacher=lambda user, g: (
                    user["admin"] or user["name"] in g or bool(set(user["groups"]) & set(g))
                ),
            ),
            "reads admin before kind": lambda u, s, g: "teacher" if u["admin"] else _role(u, s, g),
            "teachers skip the access check": lambda u, s, g: (
                "teacher" if u.get("admin") or set(u.get("groups", ())) & set(g) else _role(u, s, g)
            ),
            "the service hard-coded": lambda u, s, g: _role(u, "wslab", g),
            "'refused', not None": lambda u, s, g: _role(u, s, g) or "refused",
        },
    ),
}


def _no_hostname(pem: bytes) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=pem.decode())
    context.check_hostname = False
    return context


def _in_a_kernel(check: Callable[[Any], None]) -> Callable[[Any], None]:
    """Run ``check`` as a notebook cell does: synchronous code inside a running loop."""

    @functools.wraps(check)
    def run(answer: Any) -> None:
        async def cell() -> None:
            check(answer)

        asyncio.run(cell())

    return run


CORPUS["10 run_blocking"] = (_in_a_kernel(check_run_blocking), CORPUS["10 run_blocking"][1])

SOLUTIONS = Path(__file__).resolve().parents[2] / "notebooks" / "solutions"


def _watched(answer: Answer) -> tuple[Answer, list[BaseException | None]]:
    """``answer``, noting what each call raised (``None``: it returned)."""
    calls: list[BaseException | None] = []

    @functools.wraps(answer)
    def call(*args: Any) -> Any:
        try:
            result = answer(*args)
        except BaseException as error:
            calls.append(error)
            raise
        calls.append(None)
        return result

    return call, calls


def checks_in_the_lessons() -> list[str]:
    """The checks that the solution notebooks' check cells call, one per exercise."""
    called = []
    for path in sorted(SOLUTIONS.glob("[0-9][0-9]_*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            if "check" in cell.get("metadata", {}).get("tags", []):
                called += re.findall(r"^(check_\w+)\(", cell.source, re.M)
    return called


#: The exercises whose check runs a chat of server processes on Redis: their cases
#: are collected in tests/system/test_scaling_check.py.
ON_REDIS = ("13 claim_status",)


def cases(exercises: Iterable[str]) -> list[tuple[str, str]]:
    """The (exercise, wrong answer) pairs of ``exercises``."""
    return [(exercise, label) for exercise in exercises for label in CORPUS[exercise][1]]


CASES = cases(exercise for exercise in CORPUS if exercise not in ON_REDIS)


@pytest.mark.parametrize(("exercise", "label"), CASES, ids=[f"{e}: {w}" for e, w in CASES])
def test_every_wrong_answer_gets_a_one_line_verdict(exercise: str, label: str) -> None:
    assert_one_line_verdict(exercise, label)


def assert_one_line_verdict(exercise: str, label: str) -> None:
    """The check of ``exercise`` fails the wrong answer ``label`` with a one-line verdict."""
    check, answers = CORPUS[exercise]
    answer, calls = _watched(answers[label])
    with pytest.raises(CheckFailed) as caught:
        check(answer)
    message = str(caught.value)
    assert message.startswith("FAIL ") and "\n" not in message and "Hint: " in message, message
    assert "not implemented yet" not in message
    assert len(message) < 600, message
    if calls and calls[-1] is not None:  # the check stopped where the answer raised
        assert f"raised {type(calls[-1]).__name__}" in message, message


def test_the_corpus_holds_at_least_five_wrong_answers_per_exercise() -> None:
    counts = {exercise: len(answers) for exercise, (_, answers) in CORPUS.items()}
    for exercise, count in counts.items():
        print(f"{exercise}: {count} wrong answers")
    called = checks_in_the_lessons()
    assert len(counts) == len(called) >= 20
    assert sorted(check.__name__ for check, _ in CORPUS.values()) == sorted(called)
    assert min(counts.values()) >= 5, counts
