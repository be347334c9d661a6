"""Checks for 02_wire: the accept key, unmasking, and reading a frame header.

Each check runs the learner's function on fixed cases first; when an answer is
wrong it recognises the usual mistakes (the GUID forgotten, a hex digest
base64-encoded, a 16-bit length read little-endian, a mask not cycled, ...) and
says which one. The accept key and the header checks end on a live connection:
the key a real server answers, and frames captured through a
:class:`~wslab.wiretap.WireTap`.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
from collections.abc import Callable, Mapping
from typing import Any

from websockets.frames import Frame
from websockets.streams import StreamReader

from ...client import BlockingChatClient
from ...errors import ChatConnectionError
from ...server import ChatServer
from ...wiretap import WireTap, build_frame
from ._common import fail, passed, run_learner

__all__ = ["check_accept_key", "check_parse_header", "check_unmask"]

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455, section 1.3
TIMEOUT = 10.0  # seconds; a live step takes milliseconds, this only bounds a failure

# ------------------------------------------------------------------ the accept key

_KEYS = [
    "dGhlIHNhbXBsZSBub25jZQ==",  # RFC 6455's example: accept s3pPLMBiTxaQ9kYGzzhZRbK+xOo=
    "x3JJHMbDL1EzLkh9GBhXDw==",
    "AQIDBAUGBwgJCgsMDQ4PEC==",
    "+/+/+/+/+/+/+/+/+/+/+w==",
]


def _accept(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def _accept_mistakes(key: str) -> list[tuple[Any, str]]:
    """Wrong answers learners give, each with the hint that fixes it."""
    right = hashlib.sha1((key + GUID).encode())
    mistakes: list[tuple[Any, str]] = [
        (
            base64.b64encode(hashlib.sha1(key.encode()).digest()).decode(),
            "the GUID is missing: hash key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'",
        ),
        (
            base64.b64encode(right.hexdigest().encode()).decode(),
            "you base64-encoded the hex digest: encode the 20 raw bytes of .digest()",
        ),
        (right.hexdigest(), "that is the hex digest: base64-encode the raw .digest() bytes"),
        (
            base64.b64encode(right.digest()),
            "return a str, not bytes: add .decode() after base64.b64encode(...)",
        ),
        (
            base64.b64encode(hashlib.sha1(base64.b64decode(key) + GUID.encode()).digest()).decode(),
            "use the key as the text it is: do not base64-decode it first",
        ),
        (
            base64.b64encode(hashlib.sha1((key + GUID.lower()).encode()).digest()).decode(),
            "the GUID is upper case, exactly as RFC 6455 writes it",
        ),
        (
            base64.b64encode(hashlib.sha256((key + GUID).encode()).digest()).decode(),
            "the hash is SHA-1 (hashlib.sha1), not SHA-256",
        ),
        (
            base64.b64encode(hashlib.sha1((GUID + key).encode()).digest()).decode(),
            "the key comes first, then the GUID",
        ),
    ]
    return mistakes


def _server_accept(key: str) -> str:
    """Ask a real server: send a handshake with ``key``, read its Sec-WebSocket-Accept."""
    with (
        ChatServer(port=0) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock,
    ):
        sock.sendall(
            (
                f"GET /chat HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                break
            head += chunk
    for line in head.decode("latin-1").split("\r\n"):
        name, _, value = line.partition(":")
        if name.lower() == "sec-websocket-accept":
            return value.strip()
    raise ChatConnectionError(f"the server did not accept the handshake: {head[:80]!r}")


def check_accept_key(accept_key: Callable[[str], str]) -> None:
    """``accept_key(key)`` must give the ``Sec-WebSocket-Accept`` a server answers.

    Four fixed keys (RFC 6455's example first), then a fresh random key sent to
    a live server, whose answer must equal yours.
    """
    name = "check_accept_key"
    for key in _KEYS:
        got = run_learner(name, accept_key, key)
        expected = _accept(key)
        if got == expected:
            continue
        for wrong, hint in _accept_mistakes(key):
            if got == wrong:
                raise fail(name, f"for the key {key!r} you returned {got!r}", hint)
        raise fail(
            name,
            f"for the key {key!r} you returned {got!r}, expected {expected!r}",
            "base64 of the SHA-1 digest of key + GUID, as a str",
        )
    fresh = base64.b64encode(os.urandom(16)).decode()
    served = _server_accept(fresh)
    got = run_learner(name, accept_key, fresh)
    if got != served:
        raise fail(name, f"a live server answered {served!r} to {fresh!r}, you {got!r}", "")
    passed(name, f"{len(_KEYS)} keys, and a live server's answer to a fresh key, all match")


# ------------------------------------------------------------------ unmasking

_UNMASK_CASES: list[tuple[bytes, bytes]] = [
    (b"Hello", b"\x37\xfa\x21\x3d"),  # RFC 6455 section 5.7: 7f 9f 4d 51 58
    (b"", b"\x01\x02\x03\x04"),
    (b"abc", b"\xff\x00\xff\x00"),
    ('{"event":"writeMessage","message":"héllo"}'.encode(), b"\xa1\xb2\xc3\xd4"),
    (bytes(range(256)) * 2, b"\x80\x7f\x00\xff"),
]


def _mask(payload: bytes, key: bytes) -> bytes:
    return bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def _unmask_hint(masked: bytes, key: bytes, got: Any) -> str:
    if not isinstance(got, (bytes, bytearray)):
        return f"return bytes (you returned a {type(got).__name__}): bytes(...) of the list"
    if got == masked:
        return "the payload came back unchanged: XOR each byte with a byte of the key"
    if len(got) != len(masked):
        if len(got) == min(4, len(masked)):
            return "only the first 4 bytes were unmasked: cycle the key, key[i % 4]"
        return f"{len(got)} bytes back for {len(masked)} in: one byte out per byte in"
    if got == bytes(b ^ key[0] for b in masked):
        return "every byte used key[0]: byte i uses key[i % 4]"
    if got == _mask(masked, key[::-1]):
        return "the key is used in its order: key[0] for byte 0, key[1] for byte 1, ..."
    return "byte i of the payload is masked[i] ^ key[i % 4]"


def check_unmask(unmask: Callable[[bytes, bytes], bytes]) -> None:
    """``unmask(payload, key)`` must undo a client's masking (RFC 6455 section 5.3).

    Five payloads (RFC's "Hello", empty, shorter than the key, UTF-8 JSON, 512
    bytes); unmasking twice must give the masked bytes back.
    """
    name = "check_unmask"
    for payload, key in _UNMASK_CASES:
        masked = _mask(payload, key)
        got = run_learner(name, unmask, masked, key)
        if got != payload or not isinstance(got, (bytes, bytearray)):
            what = (
                f"unmask({masked[:8].hex(' ')}{'...' if len(masked) > 8 else ''}, {key.hex(' ')})"
            )
            raise fail(
                name,
                f"{what} gave {bytes(got[:8]) if isinstance(got, (bytes, bytearray)) else got!r}"
                f", expected {payload[:8]!r}",
                _unmask_hint(masked, key, got),
            )
    passed(name, f"{len(_UNMASK_CASES)} payloads unmasked, from 0 to 512 bytes")


# ------------------------------------------------------------------ the frame header

_FIELDS = ("fin", "opcode", "masked", "length", "header_length")
_MASK = b"\x37\xfa\x21\x3d"


def _header_cases() -> list[tuple[str, bytes]]:
    return [
        ("a masked text frame", build_frame(0x1, b"Hello", mask=_MASK)),
        ("a server's text frame", build_frame(0x1, b"Hello")),
        ("a first fragment", build_frame(0x1, b"Hel", mask=_MASK, fin=False)),
        ("a last continuation", build_frame(0x0, b"lo", mask=_MASK)),
        ("an empty close frame", build_frame(0x8, b"", mask=_MASK)),
        ("a ping", build_frame(0x9, b"are you there?")),
        ("125 bytes", build_frame(0x2, bytes(125), mask=_MASK)),
        ("a 16-bit length (300)", build_frame(0x1, b"x" * 300, mask=_MASK)),
        ("a 16-bit length (65535)", build_frame(0x2, bytes(65535))),
        ("a 64-bit length (70000)", build_frame(0x2, bytes(70000), mask=_MASK)),
        # RSV1 set, as permessage-deflate marks a compressed message's first frame.
        ("a compressed frame (RSV1)", b"\xc1" + build_frame(0x1, b"\xf2\x00\x00")[1:]),
    ]


def _reference(frame: bytes) -> dict[str, Any]:
    """What websockets reads in ``frame`` (RSV bits cleared: it accepts none unnegotiated)."""
    reader = StreamReader()
    reader.feed_data(bytes([frame[0] & 0x8F]) + frame[1:])
    parser = Frame.parse(reader.read_exact, mask=bool(frame[1] & 0x80))
    try:
        next(parser)
    except StopIteration as stop:
        parsed: Frame = stop.value
    else:  # pragma: no cover - the cases are whole frames
        raise AssertionError("incomplete frame")
    return {
        "fin": parsed.fin,
        "opcode": int(parsed.opcode),
        "masked": bool(frame[1] & 0x80),
        "length": len(parsed.data),
        "header_length": len(frame) - len(parsed.data),
    }


def _header_hint(frame: bytes, expected: dict[str, Any], got: Mapping[str, Any]) -> str:
    marker = frame[1] & 0x7F
    if got.get("length") != expected["length"]:
        length = got.get("length")
        if length in (126, 127) and marker == length:
            extra = "2 bytes (16 bits)" if marker == 126 else "8 bytes (64 bits)"
            return f"{marker} is a marker: the length is in the next {extra}, big-endian"
        if marker == 126 and length == int.from_bytes(frame[2:4], "little"):
            return "the 16-bit length is big-endian (network order): int.from_bytes(b, 'big')"
        if marker == 127 and length == int.from_bytes(frame[2:10], "little"):
            return "the 64-bit length is big-endian (network order): int.from_bytes(b, 'big')"
        if length == len(frame):
            return "length is the payload's length, not the whole frame's"
        return "the 7 low bits of byte 1 are the length, or 126/127 for a longer one"
    if got.get("header_length") != expected["header_length"]:
        if expected["masked"] and got.get("header_length") == expected["header_length"] - 4:
            return "a masked frame's header also holds the 4-byte masking key"
        return "header: 2 bytes, + 2 or 8 for a long length, + 4 for a masking key"
    if got.get("opcode") != expected["opcode"]:
        return "the opcode is the 4 low bits of byte 0: byte0 & 0x0F (FIN and RSV are above)"
    if got.get("fin") != expected["fin"] or not isinstance(got.get("fin"), bool):
        return "fin is a bool, the top bit of byte 0: (byte0 & 0x80) != 0"
    return "masked is a bool, the top bit of byte 1: (byte1 & 0x80) != 0"


def _check_header(name: str, parse: Callable[[bytes], Any], what: str, frame: bytes) -> None:
    expected = _reference(frame)
    got = run_learner(name, parse, frame)
    if not isinstance(got, Mapping) or any(k not in got for k in _FIELDS):
        raise fail(
            name,
            f"for {what} you returned {got!r}",
            "return a dict with the keys " + ", ".join(_FIELDS),
        )
    values = {k: got[k] for k in _FIELDS}
    flags_ok = all(isinstance(values[k], bool) for k in ("fin", "masked"))
    if values != expected or not flags_ok:
        raise fail(
            name,
            f"for {what} ({frame[:4].hex(' ')} ...) you returned {values}, expected {expected}",
            _header_hint(frame, expected, values),
        )


def _captured_frames() -> list[bytes]:
    """Frames of a real chat session, as they travelled through a WireTap."""
    with ChatServer(port=0) as server, WireTap(server.url) as tap:
        with BlockingChatClient(tap.url, "checker", reconnect=False) as client:
            client.send_message("a message long enough for a 16-bit length: " + "x" * 150)
            client.wait_for(lambda c: not c.pending, TIMEOUT)
        return [record.raw for record in tap.frames]


def check_parse_header(parse_header: Callable[[bytes], Mapping[str, Any]]) -> None:
    """``parse_header(frame)`` must read a frame's header (RFC 6455 section 5.2).

    It returns ``{"fin", "opcode", "masked", "length", "header_length"}``. Checked
    on eleven built frames (7-, 16- and 64-bit lengths, masked or not, fragments,
    control frames, RSV1 set), then on every frame of a live session captured by a tap.
    """
    name = "check_parse_header"
    cases = _header_cases()
    for what, frame in cases:
        _check_header(name, parse_header, what, frame)
    captured = _captured_frames()
    for number, frame in enumerate(captured, 1):
        _check_header(name, parse_header, f"captured frame {number}", frame)
    passed(
        name,
        f"{len(cases)} built frames and {len(captured)} captured ones read as websockets does",
    )
