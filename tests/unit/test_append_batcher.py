"""AppendBatcher: a server's new messages go to Redis in batches, in their order.

A fake stands in for Redis: it records each batch and answers it when the test lets
it, so these tests need no Redis and no sockets.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from wslab.backplane import AppendBatcher
from wslab.engine import Append, AppendResult
from wslab.errors import BackplaneError

T = TypeVar("T")


def message(text: str) -> Append:
    draft = {"messageId": 0, "id": "ann", "username": "Ann", "message": text, "ts": "t"}
    return Append("s1", draft, "", text)  # type: ignore[arg-type]


class FakeRedis:
    """Numbers each batch's messages once the test opens its gate; keeps the batches."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.gates: list[asyncio.Future[None]] = []
        self.numbered = 0

    async def send(self, appends: list[Append]) -> list[AppendResult]:
        self.batches.append([append.sent for append in appends])
        gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.gates.append(gate)
        await gate
        results = []
        for _ in appends:
            self.numbered += 1
            results.append(AppendResult(True, self.numbered))
        return results

    async def open_gate(self, index: int) -> None:
        while len(self.gates) <= index:
            await asyncio.sleep(0)
        self.gates[index].set_result(None)


def run(scenario: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(scenario, 5.0))


def test_messages_sent_while_a_batch_is_out_go_together_in_the_next_one() -> None:
    async def scenario() -> None:
        redis = FakeRedis()
        batcher = AppendBatcher(redis.send)
        first = batcher.submit(message("a"))
        while not redis.batches:
            await asyncio.sleep(0)
        later = [batcher.submit(message(text)) for text in "bcd"]
        assert batcher.backlog == 4
        await redis.open_gate(0)
        await redis.open_gate(1)
        answers = await asyncio.gather(first, *later)
        assert redis.batches == [["a"], ["b", "c", "d"]]
        assert [answer.message_id for answer in answers] == [1, 2, 3, 4]
        assert batcher.backlog == 0 and batcher.last is later[-1]

    run(scenario())


def test_a_batch_holds_at_most_limit_messages_in_their_order() -> None:
    async def scenario() -> None:
        redis = FakeRedis()
        batcher = AppendBatcher(redis.send, limit=2)
        answers = [batcher.submit(message(text)) for text in "abcde"]
        for gate in range(3):
            await redis.open_gate(gate)
        results = await asyncio.gather(*answers)
        assert redis.batches == [["a", "b"], ["c", "d"], ["e"]]
        assert [result.message_id for result in results] == [1, 2, 3, 4, 5]

    run(scenario())


def test_a_failed_batch_fails_it_and_every_waiting_message_with_the_error() -> None:
    async def scenario() -> None:
        lost = BackplaneError("Redis at redis://127.0.0.1:1 failed (append): gone")

        async def failing(appends: list[Append]) -> list[AppendResult]:
            await asyncio.sleep(0)
            raise lost

        batcher = AppendBatcher(failing)
        sent = batcher.submit(message("a"))
        await asyncio.sleep(0)
        waiting = batcher.submit(message("b"))
        for answer in (sent, waiting):
            with pytest.raises(BackplaneError):
                await answer
        assert batcher.backlog == 0
        # The batcher starts again with the next message.
        again = batcher.submit(message("c"))
        assert not again.done()
        batcher.fail(lost)
        with pytest.raises(BackplaneError):
            await again

    run(scenario())


def test_fail_ends_every_waiting_message_and_stops_sending() -> None:
    async def scenario() -> None:
        redis = FakeRedis()
        batcher = AppendBatcher(redis.send)
        answers = [batcher.submit(message(text)) for text in "ab"]
        while not redis.batches:
            await asyncio.sleep(0)
        batcher.fail(BackplaneError("the server is stopping"))
        done, _ = await asyncio.wait(answers)
        assert all(answer.cancelled() or answer.exception() for answer in done)
        assert batcher.backlog == 0 and redis.batches == [["a", "b"]]

    run(scenario())
