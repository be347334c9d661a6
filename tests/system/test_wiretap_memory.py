"""WireTap's memory stays flat under large frames and a large POST (measured in its own process)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap

from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from tests.conftest import WAIT, run_bounded

MiB = 2**20
#: The tap's own process: prints its port, then its resident and peak MiB per line read.
TAP_PROCESS = textwrap.dedent(
    """
    import sys
    from wslab import WireTap

    def mib(field):
        line = next(l for l in open("/proc/self/status") if l.startswith(field))
        return int(line.split()[1]) // 1024

    with WireTap(sys.argv[1]) as tap:
        print(tap.port, flush=True)
        for _ in sys.stdin:
            kept = sum(len(r.payload) + len(r.text) for r in tap.records)
            print(mib("VmRSS"), mib("VmHWM"), kept, flush=True)
    """
)


class TapProcess:
    def __init__(self, target_url: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", TAP_PROCESS, target_url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self.stdin, self.stdout = self.process.stdin, self.process.stdout
        self.port = int(self.stdout.readline())

    def memory(self) -> tuple[int, int, int]:
        """Resident MiB, peak MiB, bytes kept by the records."""
        self.stdin.write("\n")
        self.stdin.flush()
        rss, peak, kept = self.stdout.readline().split()
        return int(rss), int(peak), int(kept)

    def stop(self) -> None:
        self.stdin.close()
        self.process.wait(WAIT)
        self.stdout.close()


def test_ten_frames_of_15_mib_leave_the_taps_memory_flat() -> None:
    async def scenario() -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        arrived = asyncio.Event()
        sizes: list[int] = []

        async def sink(socket: ServerConnection) -> None:
            async for message in socket:
                sizes.append(len(message))
                if len(sizes) == 10:
                    arrived.set()

        async with serve(sink, "127.0.0.1", 0, max_size=None, compression=None) as server:
            port = server.sockets[0].getsockname()[1]
            tap = await asyncio.to_thread(TapProcess, f"ws://127.0.0.1:{port}/")
            try:
                before = await asyncio.to_thread(tap.memory)
                payload = os.urandom(15 * MiB)
                url = f"ws://127.0.0.1:{tap.port}/"
                async with connect(url, max_size=None, compression=None) as client:
                    for _ in range(10):
                        await client.send(payload)
                    await asyncio.wait_for(arrived.wait(), 12 * WAIT)
                after = await asyncio.to_thread(tap.memory)
            finally:
                await asyncio.to_thread(tap.stop)
        assert sizes == [15 * MiB] * 10
        return before, after

    before, after = run_bounded(scenario(), 24 * WAIT)
    # Unbounded, the tap held each frame (150 MiB kept, a peak near 270 MiB).
    assert after[2] <= 10 * 64 * 1024 + 4096
    assert after[1] - before[0] < 40, (before, after)
