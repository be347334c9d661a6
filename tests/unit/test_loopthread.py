"""LoopThread and LoopService: one event loop in a thread, started and stopped safely."""

from __future__ import annotations

import asyncio
import threading

import pytest

from wslab.loopthread import LoopService, LoopThread


async def where() -> tuple[int, asyncio.AbstractEventLoop]:
    return threading.get_ident(), asyncio.get_running_loop()


async def boom() -> None:
    raise ValueError("boom")


def test_call_runs_on_the_thread_and_returns_or_raises() -> None:
    with LoopThread("test-loop") as thread:
        ident, loop = thread.call(where(), 5)
        assert ident != threading.get_ident() and loop is thread.loop
        with pytest.raises(ValueError, match="boom"):
            thread.call(boom(), 5)


def test_a_call_over_its_timeout_is_cancelled_and_says_what() -> None:
    cancelled = threading.Event()

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    with LoopThread() as thread:
        with pytest.raises(TimeoutError, match=r"the test did not end within 0\.05 s"):
            thread.call(forever(), 0.05, what="the test did not end")
        assert cancelled.wait(5)


def test_a_coroutines_own_timeout_error_is_passed_on_as_it_is() -> None:
    async def times_out() -> None:
        raise TimeoutError("mine")

    with LoopThread() as thread, pytest.raises(TimeoutError, match="mine"):
        thread.call(times_out(), 5)


def test_start_and_stop_are_safe_to_repeat_and_leave_no_thread() -> None:
    before = set(threading.enumerate())
    thread = LoopThread("test-repeat")
    thread.stop()  # never started
    first = thread.start()
    assert thread.start() is first and thread.running
    thread.stop()
    thread.stop()
    assert not thread.running and thread.loop is None and first.is_closed()
    second = thread.start()  # a re-run cell: a fresh loop
    assert second is not first
    thread.stop()
    assert set(threading.enumerate()) - before == set()


def test_stop_cancels_what_still_runs_on_the_loop() -> None:
    started, cancelled = threading.Event(), threading.Event()

    async def lingering() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    thread = LoopThread()
    thread.start()
    thread.submit(lingering())
    assert started.wait(5)
    thread.stop()
    assert cancelled.is_set()


def test_the_loop_thread_cannot_wait_for_itself_or_stop_itself() -> None:
    with LoopThread() as thread:

        async def inside() -> str:
            with pytest.raises(RuntimeError, match="own thread"):
                thread.call(where())
            with pytest.raises(RuntimeError, match="own thread"):
                thread.stop()
            return "ok"

        assert thread.call(inside(), 5) == "ok"


def test_submitting_to_a_stopped_thread_is_a_runtime_error() -> None:
    with pytest.raises(RuntimeError, match="not running"):
        LoopThread("stopped").submit(where())


class Service(LoopService):
    _kind = "toy"

    def __init__(self, fail: bool = False) -> None:
        super().__init__("test-service")
        self.fail = fail
        self.up = False
        self.shutdowns = 0

    async def _listen(self) -> None:
        if self.fail:
            raise OSError("address in use")
        self.up = True

    async def _shutdown(self, close_timeout: float) -> None:
        self.shutdowns += 1
        self.up = False

    @property
    def _listening(self) -> bool:
        return self.up


def test_a_service_starts_stops_and_restarts() -> None:
    service = Service()
    assert service.start() is service and service.running
    assert service.start() is service  # no second thread
    assert service._call(lambda: threading.current_thread().name) == "test-service"
    service.stop()
    service.stop()
    assert not service.running and service.shutdowns == 1
    with service:
        assert service.running
    assert service.shutdowns == 2


def test_a_service_that_cannot_listen_raises_and_leaves_no_thread() -> None:
    before = set(threading.enumerate())
    with pytest.raises(OSError, match="address in use"):
        Service(fail=True).start()
    assert set(threading.enumerate()) - before == set()


def test_aclose_from_another_loop() -> None:
    service = Service().start()

    async def close() -> None:
        await service.aclose()

    asyncio.run(close())
    assert not service.running and service.shutdowns == 1
