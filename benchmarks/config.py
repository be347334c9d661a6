"""The sizes of a full run and of a ``--quick`` smoke run, as plain data."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FULL", "QUICK", "Sizes"]


@dataclass(frozen=True)
class Sizes:
    """Every count and time bound a benchmark run uses."""

    #: fan-out: client counts, runs per point (the median is reported), in-flight window,
    #: unmeasured messages first (they also fill the default history cap of 100)
    clients: tuple[int, ...]
    runs: int
    window: int
    warmup: int
    #: fan-out: deliveries aimed at per run (messages = deliveries / clients, clamped)
    deliveries: int
    min_messages: int
    max_messages: int
    latency_messages: int
    time_limit: float
    #: history cost: messages sent (= final history length), receiving clients
    history: int
    history_clients: int
    history_bucket: int
    #: memory and start-up: idle client counts, seconds idle before reading RSS, starts timed
    memory_clients: tuple[int, ...]
    memory_settle: float
    start_repeats: int
    #: reconnect: drops timed, herd size
    reconnect_drops: int
    herd_clients: int
    #: join storms: client counts, fresh-server runs per point (the median is reported)
    join_clients: tuple[int, ...]
    join_runs: int
    #: the real herd: ChatClients, client processes, store on/off runs, time bound (s)
    real_herd_clients: int
    real_herd_processes: int
    real_herd_limit: float
    #: fan-out through Redis: total client counts (spread over the servers)
    redis_clients: tuple[int, ...]
    #: a class on a hub: students joining at once through the hub's proxy
    classroom_clients: tuple[int, ...]

    def messages_for(self, clients: int) -> int:
        """Messages to send to ``clients`` receivers in one fan-out run."""
        return max(self.min_messages, min(self.max_messages, self.deliveries // clients))

    def latency_messages_for(self, clients: int) -> int:
        """Messages sent one at a time for fan-out latency (fewer when each is slow)."""
        return max(20, min(self.latency_messages, 20_000 // clients))


FULL = Sizes(
    clients=(10, 100, 1000),
    runs=3,
    window=16,
    warmup=100,
    deliveries=200_000,
    min_messages=200,
    max_messages=5000,
    latency_messages=100,
    time_limit=10.0,
    history=2000,
    history_clients=10,
    history_bucket=100,
    memory_clients=(1000, 10_000),
    memory_settle=1.0,
    start_repeats=50,
    reconnect_drops=20,
    herd_clients=1000,
    join_clients=(100, 1000),
    join_runs=3,
    real_herd_clients=1000,
    real_herd_processes=4,
    real_herd_limit=60.0,
    redis_clients=(100, 1000),
    classroom_clients=(300,),
)

QUICK = Sizes(
    clients=(10,),
    runs=1,
    window=16,
    warmup=10,
    deliveries=500,
    min_messages=50,
    max_messages=50,
    latency_messages=20,
    time_limit=5.0,
    history=50,
    history_clients=10,
    history_bucket=10,
    memory_clients=(10,),
    memory_settle=0.2,
    start_repeats=5,
    reconnect_drops=3,
    herd_clients=1000,
    join_clients=(20,),
    join_runs=1,
    real_herd_clients=20,
    real_herd_processes=1,
    real_herd_limit=20.0,
    redis_clients=(10,),
    classroom_clients=(20,),
)
