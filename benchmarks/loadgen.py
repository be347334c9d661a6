"""The load generator: N light chat clients in one process, one of them the sender.

It runs in its own process, pinned to its own core by the caller, so that its work is
never counted as the server's. The clients are picows on uvloop: receiving a frame costs
them about half of what a Python server spends sending it (both sides pay a system call
per frame), so the server is what saturates; each result reports both CPU figures.
Every client completes the chat handshake (``connecting`` -> ``connected``) before the
sender starts.

The sender writes messages whose text starts with ``seq=NNNNNNNN;``. A receiver finds
the sequence number with one ``rfind`` instead of parsing JSON (the last occurrence is
the new message in both the default and the seed-compatible event). A message is
*delivered* when the last of the N clients got it; its fan-out latency is the time from
its send to that moment, on the load process's monotonic clock.

Pacing: the sender keeps at most ``window`` messages in flight (it sends message ``i``
only once message ``i - window`` reached everyone), so queues stay bounded and the rate
measured is the rate the server sustains. On the same connections, after ``warmup``
unmeasured messages (which also fill a capped history), each of ``runs`` runs has two
phases:

* ``throughput``: ``messages`` messages with the given window;
* ``latency``: ``latency_messages`` messages with a window of 1 (the unloaded fan-out).

Several servers of one chat (``--url`` given more than once) share the clients round
robin, the sender on the first; ``--server-pid`` may be repeated too (servers and the
Redis they share), and the server CPU figures are then their sum.

Run by :mod:`benchmarks.fanout`; it prints one JSON object on stdout::

    python -m benchmarks.loadgen --url ws://127.0.0.1:PORT/chat --wire chat --clients 100
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import psutil
import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from .stats import percentile
from .targets import WireName

__all__ = ["LoadSpec", "main", "run_load"]

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
    warmup: int = 0
    runs: int = 1
    time_limit: float = 20.0
    connect_concurrency: int = 50
    server_pid: int | None = None
    #: handshake headers per client: client i sends ``headers[i % n]`` (none when empty)
    headers: tuple[tuple[tuple[str, str], ...], ...] = ()
    #: more servers of the same chat: client i connects to ``[url, *more_urls][i % n]``
    more_urls: tuple[str, ...] = ()
    #: more processes whose CPU counts as the server's (other servers, their Redis)
    more_server_pids: tuple[int, ...] = ()
    per_message: bool = False
    #: connect, report, then keep the clients idle until stdin closes (memory runs)
    hold: bool = False
    #: connect, report the join time and the server's CPU for it, leave (join runs)
    join_only: bool = False


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
    """The wslab protocol (also spoken by the baseline server).

    ``features`` go into ``connecting`` (``["presence"]``: batched presence events).
    """

    def __init__(self, features: tuple[str, ...] = ()) -> None:
        self.features = list(features)

    def greeting(self, index: int) -> list[bytes]:
        data: dict[str, Any] = dict(_connecting(index))
        if self.features:
            data["features"] = self.features
        return [json.dumps(data).encode()]

    def setup_reply(self, index: int, payload: bytes) -> tuple[bool, list[bytes]]:
        # Every server here writes compact JSON with "event" first: a prefix test spares
        # the load from parsing connectedUserList, which grows with the room.
        if payload.startswith(b'{"event":"connected"'):
            return True, []
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


WIRES: dict[WireName, Wire] = {
    "chat": ChatWire(),
    "chat-presence": ChatWire(("presence",)),
    "socketio": SocketioWire(),
}


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
    #: CPU used by every other process on the machine meanwhile (100 = one core)
    other_cpu_percent: float = 0.0
    #: CPU time per delivery: the work done, less sensitive to a busy machine than rates
    server_cpu_us_per_delivery: float | None = None
    load_cpu_us_per_delivery: float | None = None
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
            if not self.in_room.done():
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


@dataclass(frozen=True)
class CpuSample:
    """CPU seconds (user + system) used so far by the server(s), this process, and all cores."""

    server: float
    load: float
    machine: float


def process_cpu_seconds(pid: int) -> float:
    """User+system CPU seconds of a process, all its threads, at nanosecond resolution.

    Linux exposes every process's CPU clock as ``((~pid) << 3) | 2`` (clock_getcpuclockid);
    psutil's figure, the fallback, moves in 10 ms ticks: too coarse for short runs.
    """
    try:
        return time.clock_gettime(((~pid) << 3) | 2)
    except OSError:
        t = psutil.Process(pid).cpu_times()
        return float(t.user + t.system)


class CpuMeter:
    """Reads :class:`CpuSample` values; the machine figure exposes other work on the box.

    ``server_pids``: the processes that serve (their CPU is summed); none gives NaN.
    """

    def __init__(self, *server_pids: int | None) -> None:
        self.servers = [pid for pid in server_pids if pid]

    def read(self) -> CpuSample:
        """A sample now (``server`` is NaN without a server pid)."""
        total = psutil.cpu_times()
        busy = sum(total) - total.idle - getattr(total, "iowait", 0.0)
        server = sum(map(process_cpu_seconds, self.servers)) if self.servers else float("nan")
        return CpuSample(server, time.process_time(), busy)


async def _connect_all(spec: LoadSpec, tally: Tally) -> list[LoadClient]:
    wire = WIRES[spec.wire]
    urls = [wire_url(url, spec.wire) for url in (spec.url, *spec.more_urls)]
    gate = asyncio.Semaphore(spec.connect_concurrency)

    async def join(index: int) -> LoadClient:
        async with gate:
            _, client = await ws_connect(
                lambda: LoadClient(index, wire, tally),
                urls[index % len(urls)],
                websocket_handshake_timeout=10,
                max_frame_size=64 * 1024 * 1024,
                extra_headers=spec.headers[index % len(spec.headers)] if spec.headers else None,
            )
            assert isinstance(client, LoadClient)
            await asyncio.wait_for(client.in_room, 10)
            return client

    return list(await asyncio.gather(*(join(i) for i in range(spec.clients))))


async def _wait_for_progress(tally: Tally, until: float) -> bool:
    """Wait until some message is fully delivered; False on failure or at ``until``."""
    tally.progress.clear()
    if tally.failure:
        return False
    try:
        await asyncio.wait_for(tally.progress.wait(), until - time.perf_counter())
    except TimeoutError:
        return False
    return not tally.failure


async def _send_phase(
    sender: LoadClient, tally: Tally, seqs: range, window: int, spec: LoadSpec, cpu: CpuMeter
) -> PhaseResult:
    """Send ``seqs`` with at most ``window`` in flight, drain, and measure the phase."""
    wire = WIRES[spec.wire]
    before = (tally.deliveries, tally.wire_bytes, tally.delivered)
    sent = 0
    timed_out = False
    cpu0 = cpu.read()
    start = time.perf_counter()
    deadline = start + spec.time_limit
    for seq in seqs:
        while sent - (tally.delivered - before[2]) >= window:
            if not await _wait_for_progress(tally, deadline):
                break
        if tally.failure or time.perf_counter() > deadline:
            timed_out = tally.failure is None
            break
        tally.send_ns[seq] = time.perf_counter_ns()
        sender.send(wire.write(seq))
        sent += 1
    # Drain what is in flight, bounded too.
    drain_deadline = time.perf_counter() + min(5.0, spec.time_limit)
    while tally.delivered - before[2] < sent and not tally.failure:
        progressed = await _wait_for_progress(tally, drain_deadline)
        if not progressed and time.perf_counter() >= drain_deadline:
            timed_out = True
            break
    cpu1 = cpu.read()
    wall = time.perf_counter() - start
    done = [s for s in range(seqs.start, seqs.start + sent) if tally.remaining[s] == 0]
    end = max((tally.done_ns[s] for s in done), default=0) / 1e9
    elapsed = end - start if done else wall
    deliveries = tally.deliveries - before[0]
    latencies = [(tally.done_ns[s] - tally.send_ns[s]) / 1e6 for s in done]
    server = cpu1.server - cpu0.server  # NaN without a server pid
    load = cpu1.load - cpu0.load
    others = cpu1.machine - cpu0.machine - load - (0.0 if math.isnan(server) else server)
    return PhaseResult(
        messages_sent=sent,
        messages_delivered=len(done),
        deliveries=deliveries,
        seconds=elapsed,
        deliveries_per_s=deliveries / elapsed if elapsed > 0 else 0.0,
        messages_per_s=len(done) / elapsed if elapsed > 0 else 0.0,
        latency_p50_ms=percentile(latencies, 50),
        latency_p99_ms=percentile(latencies, 99),
        bytes_per_delivery=(tally.wire_bytes - before[1]) / deliveries if deliveries else 0.0,
        server_cpu_percent=None if math.isnan(server) else 100 * server / wall,
        load_cpu_percent=100 * load / wall,
        other_cpu_percent=100 * max(0.0, others) / wall,
        server_cpu_us_per_delivery=(
            1e6 * server / deliveries if deliveries and not math.isnan(server) else None
        ),
        load_cpu_us_per_delivery=1e6 * load / deliveries if deliveries else None,
        timed_out=timed_out,
    )


async def _wait_for_stdin_close(limit: float) -> None:
    """Return when the parent closes our stdin (or after ``limit`` seconds)."""
    loop = asyncio.get_running_loop()
    closed: asyncio.Future[None] = loop.create_future()
    fd = sys.stdin.fileno()

    def readable() -> None:
        if not os.read(fd, 4096) and not closed.done():
            closed.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await asyncio.wait_for(closed, limit)
    except TimeoutError:
        pass
    finally:
        loop.remove_reader(fd)


async def run_load(spec: LoadSpec) -> dict[str, Any]:
    """Connect, run both phases, disconnect; return the result as plain data."""
    per_run = spec.messages + spec.latency_messages
    tally = Tally(spec.clients, spec.warmup + spec.runs * per_run)
    cpu = CpuMeter(spec.server_pid, *spec.more_server_pids)
    cpu0 = cpu.read()
    started = time.perf_counter()
    clients = await asyncio.wait_for(_connect_all(spec, tally), 30 + spec.clients / 20)
    connect_s = time.perf_counter() - started
    if spec.join_only:
        cpu1 = cpu.read()
        for client in clients:
            client.leave()
        return {
            "clients": spec.clients,
            "connect_s": connect_s,
            "server_cpu_s": cpu1.server - cpu0.server,
            "load_cpu_s": cpu1.load - cpu0.load,
            "failure": tally.failure,
        }
    # Let the join announcements of the last clients settle before measuring.
    await asyncio.sleep(0.2)
    if spec.hold:
        print(json.dumps({"connected": len(clients), "connect_s": connect_s}), flush=True)
        await _wait_for_stdin_close(spec.time_limit)
        for client in clients:
            client.leave()
        return {"clients": spec.clients, "connect_s": connect_s, "failure": tally.failure}
    sender = clients[0]
    next_seq = 0

    async def phase(count: int, window: int) -> PhaseResult:
        nonlocal next_seq
        seqs = range(next_seq, next_seq + count)
        next_seq += count
        return await _send_phase(sender, tally, seqs, window, spec, cpu)

    if spec.warmup:
        await phase(spec.warmup, spec.window)
    runs = []
    for _ in range(spec.runs):
        if tally.failure:
            break
        throughput = await phase(spec.messages, spec.window)
        latency = await phase(spec.latency_messages, 1)
        runs.append({"throughput": asdict(throughput), "latency": asdict(latency)})
    out: dict[str, Any] = {
        "url": spec.url,
        "wire": spec.wire,
        "clients": spec.clients,
        "window": spec.window,
        "warmup": spec.warmup,
        "connect_s": connect_s,
        "runs": runs,
        "failure": tally.failure,
    }
    if spec.per_message:
        out["per_message"] = {
            "bytes_per_delivery": [b / spec.clients for b in tally.bytes_by_seq],
            "latency_ms": [
                (d - s) / 1e6 if d else None
                for d, s in zip(tally.done_ns, tally.send_ns, strict=True)
            ],
            "done_s": [d / 1e9 if d else None for d in tally.done_ns],
        }
    for client in clients:
        client.leave()
    return out


def main(argv: list[str] | None = None) -> None:
    """Command line of the load process; prints one JSON object."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.loadgen")
    parser.add_argument("--url", required=True, action="append", help="repeat: several servers")
    parser.add_argument("--wire", choices=sorted(WIRES), default="chat")
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--latency-messages", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=0)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--time-limit", type=float, default=20.0)
    parser.add_argument("--server-pid", type=int, action="append", help="repeat: CPU summed")
    parser.add_argument("--per-message", action="store_true")
    parser.add_argument("--hold", action="store_true")
    parser.add_argument("--join-only", action="store_true")
    parser.add_argument(
        "--headers-file", help="a JSON list of header objects, one per client (round robin)"
    )
    args = parser.parse_args(argv)
    headers: tuple[tuple[tuple[str, str], ...], ...] = ()
    if args.headers_file:
        with open(args.headers_file, encoding="utf-8") as file:
            headers = tuple(tuple(h.items()) for h in json.load(file))
    pids = args.server_pid or []
    spec = LoadSpec(
        url=args.url[0],
        more_urls=tuple(args.url[1:]),
        wire=args.wire,
        clients=args.clients,
        messages=args.messages,
        window=args.window,
        latency_messages=args.latency_messages,
        warmup=args.warmup,
        runs=args.runs,
        time_limit=args.time_limit,
        server_pid=pids[0] if pids else None,
        more_server_pids=tuple(pids[1:]),
        per_message=args.per_message,
        hold=args.hold,
        join_only=args.join_only,
        headers=headers,
    )
    # Reference cycles are few here; a collection pass mid-run would only add jitter.
    gc.disable()
    result = uvloop.run(run_load(spec))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
