"""The checks of 02_wire pass right answers and reject the usual wrong ones with a hint."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from typing import Any

import pytest

from wslab.lab.checks._common import CheckFailed
from wslab.lab.checks.wire import check_accept_key, check_parse_header, check_unmask

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


# ------------------------------------------------------------------ accept key


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def test_accept_key_passes_the_right_answer(capsys: pytest.CaptureFixture[str]) -> None:
    check_accept_key(accept_key)
    assert capsys.readouterr().out.startswith("PASS check_accept_key:")


@pytest.mark.parametrize(
    ("wrong", "hint"),
    [
        (lambda k: base64.b64encode(hashlib.sha1(k.encode()).digest()).decode(), "GUID is missing"),
        (
            lambda k: base64.b64encode(
                hashlib.sha1((k + GUID).encode()).hexdigest().encode()
            ).decode(),
            "hex digest",
        ),
        (lambda k: hashlib.sha1((k + GUID).encode()).hexdigest(), "hex digest"),
        (lambda k: base64.b64encode(hashlib.sha1((k + GUID).encode()).digest()), "not bytes"),
        (
            lambda k: base64.b64encode(
                hashlib.sha1(base64.b64decode(k) + GUID.encode()).digest()
            ).decode(),
            "base64-decode",
        ),
        (
            lambda k: base64.b64encode(hashlib.sha1((k + GUID.lower()).encode()).digest()).decode(),
            "upper case",
        ),
        (
            lambda k: base64.b64encode(hashlib.sha256((k + GUID).encode()).digest()).decode(),
            "SHA-1",
        ),
        (
            lambda k: base64.b64encode(hashlib.sha1((GUID + k).encode()).digest()).decode(),
            "key comes first",
        ),
        (lambda k: "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "expected"),  # only the RFC's example
    ],
    ids=[
        "no-guid",
        "b64-of-hexdigest",
        "hexdigest",
        "bytes",
        "decoded-key",
        "lowercase-guid",
        "sha256",
        "guid-first",
        "hard-coded",
    ],
)
def test_accept_key_rejects_a_wrong_answer(wrong: Callable[[str], Any], hint: str) -> None:
    with pytest.raises(CheckFailed, match=f"FAIL check_accept_key: .*{hint}"):
        check_accept_key(wrong)


def test_accept_key_rejects_a_stub() -> None:
    def stub(key: str) -> str:
        raise NotImplementedError("your code here")

    with pytest.raises(CheckFailed, match="not implemented yet"):
        check_accept_key(stub)


# ------------------------------------------------------------------ unmask


def unmask(payload: bytes, key: bytes) -> bytes:
    return bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def test_unmask_passes_the_right_answer(capsys: pytest.CaptureFixture[str]) -> None:
    check_unmask(unmask)
    check_unmask(lambda p, k: bytearray(b ^ k[i % 4] for i, b in enumerate(p)))
    assert capsys.readouterr().out.startswith("PASS check_unmask:")


@pytest.mark.parametrize(
    ("wrong", "hint"),
    [
        (lambda p, k: bytes(b ^ m for b, m in zip(p, k, strict=False)), "cycle the key"),
        (lambda p, k: p, "unchanged"),
        (lambda p, k: [b ^ k[i % 4] for i, b in enumerate(p)], "return bytes"),
        (lambda p, k: bytes(b ^ k[0] for b in p), "key\\[0\\]"),
        (lambda p, k: bytes(b ^ k[::-1][i % 4] for i, b in enumerate(p)), "in its order"),
        (lambda p, k: bytes(b ^ k[i % 3] for i, b in enumerate(p)), "key\\[i % 4\\]"),
        (lambda p, k: bytes(b ^ k[i % 4] for i, b in enumerate(p)).decode("latin-1"), "bytes"),
    ],
    ids=["no-cycling", "unchanged", "list", "first-byte-only", "reversed", "mod-3", "str"],
)
def test_unmask_rejects_a_wrong_answer(wrong: Callable[[bytes, bytes], Any], hint: str) -> None:
    with pytest.raises(CheckFailed, match=f"FAIL check_unmask: .*{hint}"):
        check_unmask(wrong)


# ------------------------------------------------------------------ parse header


def parse_header(frame: bytes) -> dict[str, Any]:
    fin = bool(frame[0] & 0x80)
    opcode = frame[0] & 0x0F
    masked = bool(frame[1] & 0x80)
    length = frame[1] & 0x7F
    header_length = 2
    if length == 126:
        length = int.from_bytes(frame[2:4], "big")
        header_length = 4
    elif length == 127:
        length = int.from_bytes(frame[2:10], "big")
        header_length = 10
    if masked:
        header_length += 4
    return {
        "fin": fin,
        "opcode": opcode,
        "masked": masked,
        "length": length,
        "header_length": header_length,
    }


def variant(**changes: Callable[[bytes, dict[str, Any]], Any]) -> Callable[[bytes], Any]:
    """parse_header with some fields computed wrongly."""

    def parse(frame: bytes) -> dict[str, Any]:
        right = parse_header(frame)
        return {**right, **{k: f(frame, right) for k, f in changes.items()}}

    return parse


def little_endian(frame: bytes, right: dict[str, Any]) -> int:
    marker = frame[1] & 0x7F
    if marker == 126:
        return int.from_bytes(frame[2:4], "little")
    if marker == 127:
        return int.from_bytes(frame[2:10], "little")
    return marker


def test_parse_header_passes_the_right_answer(capsys: pytest.CaptureFixture[str]) -> None:
    check_parse_header(parse_header)
    out = capsys.readouterr().out
    assert out.startswith("PASS check_parse_header: 11 built frames and ")


@pytest.mark.parametrize(
    ("wrong", "hint"),
    [
        (variant(length=lambda f, r: f[1] & 0x7F), "126 is a marker"),
        (
            variant(
                length=lambda f, r: r["length"] if f[1] & 0x7F != 127 else 127,
                header_length=lambda f, r: r["header_length"],
            ),
            "127 is a marker",
        ),
        (variant(length=little_endian), "big-endian"),
        (
            variant(
                length=lambda f, r: (
                    int.from_bytes(f[2:4], "big") if f[1] & 0x7F == 127 else r["length"]
                )
            ),
            "7 low bits",
        ),  # reads a 64-bit length as 16 bits
        (variant(length=lambda f, r: len(f)), "not the whole frame"),
        (variant(header_length=lambda f, r: r["header_length"] - 4 * r["masked"]), "masking key"),
        (variant(opcode=lambda f, r: f[0] & 0x7F), "4 low bits"),
        (variant(opcode=lambda f, r: f[0]), "4 low bits"),
        (variant(fin=lambda f, r: f[0] & 0x80), "fin is a bool"),
        (variant(fin=lambda f, r: bool(f[0] & 0x01)), "fin is a bool"),
        (variant(masked=lambda f, r: f[1] & 0x80), "masked is a bool"),
        (lambda f: (True, 1, True, 5, 6), "return a dict"),
        (lambda f: {"fin": True, "opcode": 1}, "return a dict with the keys"),
    ],
    ids=[
        "ignores-16-bit-length",
        "ignores-64-bit-length",
        "little-endian",
        "64-bit-as-16",
        "frame-length",
        "no-mask-in-header",
        "opcode-with-rsv",
        "whole-byte",
        "fin-as-int",
        "fin-wrong-bit",
        "masked-as-int",
        "tuple",
        "missing-keys",
    ],
)
def test_parse_header_rejects_a_wrong_answer(wrong: Callable[[bytes], Any], hint: str) -> None:
    with pytest.raises(CheckFailed, match=f"FAIL check_parse_header: .*{hint}"):
        check_parse_header(wrong)
