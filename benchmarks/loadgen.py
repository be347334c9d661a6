"""The load generator: N light chat clients in one process, one of them the sender.

It runs in its own process, pinned to its own core by the caller, so that its work is
never counted as the server's. The clients are picows on uvloop: a frame costs them
about a microsecond, far less than a server spends sending it, so the server is what
saturates. Every client completes the chat handshake (``connecting`` -> ``connected``)
before the sender starts.

The sender writes messages whose text starts with ``seq=NNNNNNNN;``. A receiver finds
the sequence number with one ``rfind`` instead of parsing JSON (the last occurrence is
the new message in both the default and the seed-compatible event). A message is
*delivered* when the last of the N clients got it; its fan-out latency is the time from
its send to that moment, on the load process's monotonic clock.

Pacing: the sender keeps at most ``window`` messages in flight (it sends message ``i``
only once message ``i - window`` reached everyone), so queues stay bounded and the rate
measured is the rate the server sustains. Two phases run on the same connections:

* ``throughput``: ``messages`` messages with the given window;
* ``latency``: ``latency_messages`` messages with a window of 1 (the unloaded fan-out).

Run by :mod:`benchmarks.fanout`; it prints one JSON object on stdout::

    python -m benchmarks.loadgen --url ws://127.0.0.1:PORT/chat --wire chat --clients 100
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

import psutil
import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from .stats import percentile

__all__ = ["LoadSpec", "main", "run_load"]

WireName = Literal["chat", "socketio"]
SEQ_MARK = b"seq="
MESSAGE_LENGTH = 64


def message_text(seq: int) -> str:
    """The 64-character message text carrying sequence number ``seq``."""
    return f"seq={seq:08d};".ljust(MESSAGE_LENGTH, "x")


@dataclass(frozen=True)
class LoadSpec:
    """What one load run does. Sizes are bounded; ``time_limit`` bounds each phase."""

    url: str
    wire: WireName = "chat"
    clients: int = 10
    messages: int = 100
    window: int = 16
    latency_messages: int = 50
    time_limit: float = 20.0
    connect_concurrency: int = 50
    server_pid: int | None = None
    per_message: bool = False


class Wire(Protocol):
    """The framing of one server family: what to say to get in, and how to write."""

    def greeting(self, index: int) -> list[bytes]:
        """Frames to send as soon as the WebSocket is open."""
        ...

    def setup_reply(self, index: int, payload: bytes) -> tuple[bool, list[bytes]]:
        """Answer one frame received before the client is in the room.

        Returns (now in the room, frames to send). Raises RuntimeError on a refusal.
        """
        ...

    def write(self, seq: int) -> bytes:
        """The frame that writes message ``seq``."""
        ...

    def keepalive(self, payload: bytes) -> bytes | None:
        """The reply to an application-level ping, if this frame is one."""
        ...


def _connecting(index: int) -> dict[str, str]:
    return {"event": "connecting", "id": f"load{index}", "username": f"load {index}"}


def _write_message(seq: int) -> dict[str, str]:
    return {"event": "writeMessage", "message": message_text(seq), "clientMessageId": f"c{seq}"}


class ChatWire:
    """The wslab protocol (also spoken by the baseline server)."""

    def greeting(self, index: int) -> list[bytes]:
        return [json.dumps(_connecting(index)).encode()]

    def setup_reply(self, index: int, payload: bytes) -> tuple[bool, list[bytes]]:
        event = json.loads(payload)
        if event.get("event") == "error":
            raise RuntimeError(f"server refused client {index}: {event}")
        return event.get("event") == "connected", []

    def write(self, seq: int) -> bytes:
        return json.dumps(_write_message(seq)).encode()

    def keepalive(self, payload: bytes) -> bytes | None:
        return None


class SocketioWire:
    """Socket.IO v5 over Engine.IO v4, WebSocket transport only, namespace ``/``.

    Packets are text frames: ``0{...}`` open, ``40`` namespace connect, ``42[...]`` an
    event, ``2``/``3`` ping/pong (the server pings, the client answers).
    """

    def greeting(self, index: int) -> list[bytes]:
        return []

    def setup_reply(self, index: int, payload: bytes) -> tuple[bool, list[bytes]]:
        if payload.startswith(b"0{"):
            return False, [b"40"]
        if payload.startswith(b"40"):
            data = ["connecting", {k: v for k, v in _connecting(index).items() if k != "event"}]
            return False, [b"42" + json.dumps(data).encode()]
        if payload.startswith(b'42["connected"'):
            return True, []
        if payload.startswith(b"44"):
            raise RuntimeError(f"server refused client {index}: {payload[:200]!r}")
        return False, [reply] if (reply := self.keepalive(payload)) else []

    def write(self, seq: int) -> bytes:
        data = _write_message(seq)
        del data["event"]
        return b"42" + json.dumps(["writeMessage", data]).encode()

    def keepalive(self, payload: bytes) -> bytes | None:
        return b"3" if payload == b"2" else None


WIRES: dict[WireName, Wire] = {"chat": ChatWire(), "socketio": SocketioWire()}


def wire_url(url: str, wire: WireName) -> str:
    """The WebSocket URL to open for this wire (Socket.IO needs its query string)."""
    return url + "?EIO=4&transport=websocket" if wire == "socketio" else url


@dataclass
class PhaseResult:
    """The figures of one phase, as printed in the JSON result."""

    messages_sent: int = 0
    messages_delivered: int = 0
    deliveries: int = 0
    seconds: float = 0.0
    deliveries_per_s: float = 0.0
    messages_per_s: float = 0.0
    latency_p50_ms: float = 0.0
    latency_p99_ms: float = 0.0
    bytes_per_delivery: float = 0.0
    server_cpu_percent: float | None = None
    load_cpu_percent: float = 0.0
    timed_out: bool = False


@dataclass
class Tally:
    """Delivery bookkeeping shared by every client of the run (one event loop, no locks)."""

    clients: int
    total: int
    remaining: list[int] = field(default_factory=list)
    send_ns: list[int] = field(default_factory=list)
    done_ns: list[int] = field(default_factory=list)
    bytes_by_seq: list[int] = field(default_factory=list)
    delivered: int = 0
    deliveries: int = 0
    wire_bytes: int = 0
    failure: str | None = None
    progress: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.remaining = [self.clients] * self.total
        self.send_ns = [0] * self.total
        self.done_ns = [0] * self.total
        self.bytes_by_seq = [0] * self.total

    def receive(self, seq: int, payload_size: int) -> None:
        """Count one client's copy of message ``seq``."""
        # Plus the unmasked server frame header (RFC 6455 5.2), inlined: this is the hot path.
        size = payload_size + (2 if payload_size < 126 else 4 if payload_size < 65536 else 10)
        self.deliveries += 1
        self.wire_bytes += size
        self.bytes_by_seq[seq] += size
        left = self.remaining[seq] - 1
        self.remaining[seq] = left
        if left == 0:
            self.done_ns[seq] = time.perf_counter_ns()
            self.delivered += 1
            self.progress.set()

    def fail(self, reason: str) -> None:
        """Record the first failure and wake the sender."""
        if self.failure is None:
            self.failure = reason
        self.progress.set()


class LoadClient(WSListener):
    """One chat client: joins the room, then counts the messages it receives."""

    def __init__(self, index: int, wire: Wire, tally: Tally) -> None:
        super().__init__()
        self.index = index
        self.wire = wire
        self.tally = tally
        self.transport: WSTransport | None = None
        self.in_room: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.leaving = False
        self.counting = False

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        for frame in self.wire.greeting(self.index):
            transport.send(WSMsgType.TEXT, frame)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        # The hot path, kept short: only message frames carry the mark, so no type test.
        if self.counting:
            payload = frame.get_payload_as_bytes()
            mark = payload.rfind(SEQ_MARK)
            if mark >= 0:
                self.tally.receive(int(payload[mark + 4 : mark + 12]), len(payload))
                return
        kind = frame.msg_type
        if kind == WSMsgType.CLOSE:
            self._lost(f"server closed client {self.index} with {frame.get_close_code()}")
            transport.send_close(frame.get_close_code())
            transport.disconnect()
        elif kind == WSMsgType.TEXT:
            payload = frame.get_payload_as_bytes()
            if not self.counting:
                self._setup(transport, payload)
            elif reply := self.wire.keepalive(payload):
                transport.send(WSMsgType.TEXT, reply)

    def _setup(self, transport: WSTransport, payload: bytes) -> None:
        try:
            ready, replies = self.wire.setup_reply(self.index, payload)
        except RuntimeError as exc:
            self.in_room.set_exception(exc)
            return
        for reply in replies:
            transport.send(WSMsgType.TEXT, reply)
        if ready:
            self.counting = True
            self.in_room.set_result(None)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self._lost(f"client {self.index} disconnected")

    def _lost(self, reason: str) -> None:
        if self.leaving:
            return
        if not self.in_room.done():
            self.in_room.set_exception(RuntimeError(reason))
        self.tally.fail(reason)

    def send(self, frame: bytes) -> None:
        """Send one text frame."""
        assert self.transport is not None
        self.transport.send(WSMsgType.TEXT, frame)

    def leave(self) -> None:
        """Close this client's connection without counting it as a failure."""
        self.leaving = True
        if self.transport is not None and not self.transport.is_disconnected:
            self.transport.send_close()
            self.transport.disconnect()


class CpuMeter:
    """User+system CPU seconds of the server process and of this one, between two reads."""

    def __init__(self, server_pid: int | None) -> None:
        self.server = psutil.Process(server_pid) if server_pid else None
        self.me = psutil.Process(os.getpid())

    def read(self) -> tuple[float, float]:
        """(server CPU seconds or NaN, load CPU seconds) so far."""
        def seconds(p: psutil.Process) -> float:
            t = p.cpu_times()
            return t.user + t.system

        return (seconds(self.server) if self.server else float("nan"), seconds(self.me))


async def _connect_all(spec: LoadSpec, tally: Tally) -> list[LoadClient]:
    wire = WIRES[spec.wire]
    url = wire_url(spec.url, spec.wire)
    gate = asyncio.Semaphore(spec.connect_concurrency)

    async def join(index: int) -> LoadClient:
        async with gate:
            _, client = await ws_connect(
                lambda: LoadClient(index, wire, tally),
                url,
                websocket_handshake_timeout=10,
                max_frame_size=64 * 1024 * 1024,
            )
            assert isinstance(client, LoadClient)
            await asyncio.wait_for(client.in_room, 10)
            return client

    return list(await asyncio.gather(*(join(i) for i in range(spec.clients))))


async def _send_phase(
    sender: LoadClient, tally: Tally, seqs: range, window: int, spec: LoadSpec, cpu: CpuMeter
) -> PhaseResult:
    wire = WIRES[spec.wire]
    result = PhaseResult()
    deliveries_before, bytes_before = tally.deliveries, tally.wire_bytes
    delivered_before = tally.delivered
    server_cpu0, load_cpu0 = cpu.read()
    start = time.perf_counter()
    deadline = start + spec.time_limit
    for seq in seqs:
        while result.messages_sent - (tally.delivered - delivered_before) >= window:
            tally.progress.clear()
            if tally.failure or time.perf_counter() > deadline:
                break
            try:
                await asyncio.wait_for(tally.progress.wait(), deadline - time.perf_counter())
            except TimeoutError:
                break
        if tally.failure or time.perf_counter() > deadline:
            result.timed_out = tally.failure is None
            break
        tally.send_ns[seq] = time.perf_counter_ns()
        sender.send(wire.write(seq))
        result.messages_sent += 1
    # Drain what is in flight, bounded too.
    drain_deadline = time.perf_counter() + min(5.0, spec.time_limit)
    sent_end = seqs.start + result.messages_sent
    while tally.delivered - delivered_before < result.messages_sent and not tally.failure:
        tally.progress.clear()
        left = drain_deadline - time.perf_counter()
        if left <= 0:
            result.timed_out = True
            break
        try:
            await asyncio.wait_for(tally.progress.wait(), left)
        except TimeoutError:
            continue
    done = [s for s in range(seqs.start, sent_end) if tally.remaining[s] == 0]
    end_ns = max((tally.done_ns[s] for s in done), default=0)
    elapsed = (end_ns / 1e9 - start) if done else time.perf_counter() - start
    server_cpu1, load_cpu1 = cpu.read()
    deliveries = tally.deliveries - deliveries_before
    latencies = [(tally.done_ns[s] - tally.send_ns[s]) / 1e6 for s in done]
    result.messages_delivered = len(done)
    result.deliveries = deliveries
    result.seconds = elapsed
    result.deliveries_per_s = deliveries / elapsed if elapsed > 0 else 0.0
    result.messages_per_s = len(done) / elapsed if elapsed > 0 else 0.0
    result.latency_p50_ms = percentile(latencies, 50)
    result.latency_p99_ms = percentile(latencies, 99)
    result.bytes_per_delivery = (tally.wire_bytes - bytes_before) / deliveries if deliveries else 0
    wall = time.perf_counter() - start
    if cpu.server is not None:
        result.server_cpu_percent = 100 * (server_cpu1 - server_cpu0) / wall
    result.load_cpu_percent = 100 * (load_cpu1 - load_cpu0) / wall
    return result


async def run_load(spec: LoadSpec) -> dict[str, Any]:
    """Connect, run both phases, disconnect; return the result as plain data."""
    tally = Tally(spec.clients, spec.messages + spec.latency_messages)
    cpu = CpuMeter(spec.server_pid)
    started = time.perf_counter()
    clients = await asyncio.wait_for(_connect_all(spec, tally), 30 + spec.clients / 20)
    connect_s = time.perf_counter() - started
    # Let the join announcements of the last clients settle before measuring.
    await asyncio.sleep(0.2)
    sender = clients[0]
    throughput = await _send_phase(
        sender, tally, range(spec.messages), spec.window, spec, cpu
    )
    latency = await _send_phase(
        sender, tally, range(spec.messages, tally.total), 1, spec, cpu
    )
    out: dict[str, Any] = {
        "url": spec.url,
        "wire": spec.wire,
        "clients": spec.clients,
        "window": spec.window,
        "connect_s": connect_s,
        "throughput": asdict(throughput),
        "latency": asdict(latency),
        "failure": tally.failure,
    }
    if spec.per_message:
        out["per_message"] = {
            "bytes_per_delivery": [b / spec.clients for b in tally.bytes_by_seq],
            "latency_ms": [
                (d - s) / 1e6 if d else None for d, s in zip(tally.done_ns, tally.send_ns, strict=True)
            ],
            "done_s": [d / 1e9 if d else None for d in tally.done_ns],
        }
    for client in clients:
        client.leave()
    return out


def main(argv: list[str] | None = None) -> None:
    """Command line of the load process; prints one JSON object."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.loadgen")
    parser.add_argument("--url", required=True)
    parser.add_argument("--wire", choices=sorted(WIRES), default="chat")
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--latency-messages", type=int, default=50)
    parser.add_argument("--time-limit", type=float, default=20.0)
    parser.add_argument("--server-pid", type=int)
    parser.add_argument("--per-message", action="store_true")
    args = parser.parse_args(argv)
    spec = LoadSpec(
        url=args.url,
        wire=args.wire,
        clients=args.clients,
        messages=args.messages,
        window=args.window,
        latency_messages=args.latency_messages,
        time_limit=args.time_limit,
        server_pid=args.server_pid,
        per_message=args.per_message,
    )
    # Reference cycles are few here; a collection pass mid-run would only add jitter.
    gc.disable()
    result = uvloop.run(run_load(spec))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
