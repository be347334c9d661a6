"""LoopThread: an asyncio event loop running in a thread of its own.

The server, the wire tap, the blocking client and the exercise checks each need
a loop that is not the caller's (a notebook cell's loop is busy running the
cell). This is the one way the kit runs one::

    caller thread                                  loop thread
    start()          -- starts, waits until ready -->  loop.run_forever()
    call(coro, t)    -- run_coroutine_threadsafe -->   coro runs; result or error back
    stop()           -- stops, cleans up, joins  -->   tasks cancelled, loop closed

``start()`` and ``stop()`` are safe to repeat: a stopped one starts again with a
fresh loop (a re-run cell). :class:`LoopService` is the life cycle of a
server on such a thread (the chat server, the wire tap).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine
from typing import Any, Self, TypeVar

__all__ = ["LoopService", "LoopThread"]

T = TypeVar("T")


class LoopThread:
    """An event loop in a daemon thread; other threads reach it through :meth:`call`.

    Args:
        name: the thread's name (it shows in stack dumps and debuggers).

    Every method may be called from any thread but the loop's own, except
    :meth:`in_thread` and :attr:`loop` (any thread).
    """

    def __init__(self, name: str = "wslab-loop") -> None:
        self.name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The running loop, or None when stopped."""
        return self._loop

    @property
    def running(self) -> bool:
        """Whether the thread is alive and its loop runs."""
        thread, loop = self._thread, self._loop
        return thread is not None and thread.is_alive() and loop is not None and loop.is_running()

    def in_thread(self) -> bool:
        """Whether the caller is on this loop's thread."""
        return threading.current_thread() is self._thread

    def start(self, timeout: float = 10.0) -> asyncio.AbstractEventLoop:
        """Start the thread and return its loop once it runs. Does nothing if running.

        Raises:
            TimeoutError: the loop did not run within ``timeout`` seconds.
        """
        with self._lock:
            if self.running and self._loop is not None:
                return self._loop
            loop = asyncio.new_event_loop()
            ready = threading.Event()
            loop.call_soon(ready.set)
            thread = threading.Thread(target=self._run, args=(loop,), name=self.name, daemon=True)
            self._loop, self._thread = loop, thread
            thread.start()
            if not ready.wait(timeout):
                raise TimeoutError(f"{self.name}: the event loop did not start within {timeout} s")
            return loop

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coroutine`` on the loop; return a future for its result.

        Raises:
            RuntimeError: the loop is not running (the coroutine is closed).
        """
        loop = self._loop
        if loop is None or not self.running:
            coroutine.close()
            raise RuntimeError(f"{self.name}: the event loop is not running")
        return asyncio.run_coroutine_threadsafe(coroutine, loop)

    def call(
        self,
        coroutine: Coroutine[Any, Any, T],
        timeout: float | None = None,
        *,
        what: str = "no result",
    ) -> T:
        """Run ``coroutine`` on the loop, wait for it, and return its result or raise its error.

        Raises:
            TimeoutError: it did not finish within ``timeout`` seconds (it is
                cancelled); the message is ``f"{what} within {timeout} s"``.
            RuntimeError: called from the loop's own thread (it would wait for itself),
                or the loop is not running.
        """
        if self.in_thread():
            coroutine.close()
            raise RuntimeError(f"{self.name}: call() from the loop's own thread would block it")
        future = self.submit(coroutine)
        try:
            return future.result(timeout)
        except TimeoutError:
            if future.done():
                return future.result()  # the coroutine's own TimeoutError, or a late result
            future.cancel()
            raise TimeoutError(f"{what} within {timeout} s") from None

    def stop(self) -> None:
        """Stop the loop, cancel what still runs on it, close it and join the thread.

        Safe to repeat.

        Raises:
            RuntimeError: called from the loop's own thread.
        """
        with self._lock:
            loop, thread = self._loop, self._thread
            if loop is None or thread is None:
                return
            if self.in_thread():
                raise RuntimeError(f"{self.name}: the loop cannot be stopped from its own thread")
            if not loop.is_closed():
                loop.call_soon_threadsafe(loop.stop)
            thread.join()
            self._loop, self._thread = None, None

    def __enter__(self) -> LoopThread:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @staticmethod
    def _run(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            try:
                _cancel_all(loop)
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                asyncio.set_event_loop(None)
                loop.close()


class LoopService:
    """The life cycle of something that serves from a :class:`LoopThread`.

    ``start()`` runs :meth:`_listen` on the thread and returns once it has; ``stop()``
    runs :meth:`_shutdown` there, then stops and joins the thread; both are safe to
    repeat, and ``with`` / ``async with`` blocks do both. Subclasses implement
    :meth:`_listen`, :meth:`_shutdown` and :attr:`_listening`.

    Call ``start``, ``stop`` and ``aclose`` from any thread but the service's own.
    """

    #: The noun error messages use ("the server did not start ...").
    _kind = "service"

    def __init__(self, thread_name: str) -> None:
        self._loop_thread = LoopThread(thread_name)
        self._life_lock = threading.Lock()

    async def _listen(self) -> None:
        """Bind and listen (on the loop thread); raise if it cannot."""
        raise NotImplementedError

    async def _shutdown(self, close_timeout: float) -> None:
        """Close everything and stop listening (on the loop thread)."""
        raise NotImplementedError

    @property
    def _listening(self) -> bool:
        raise NotImplementedError

    def _close_timeout(self, *, blocking: bool) -> float:
        """Seconds :meth:`_shutdown` may wait for peers (``blocking``: from ``stop()``)."""
        return 2.0

    def start(self, timeout: float = 10.0) -> Self:
        """Start serving; return ``self`` once listening. Does nothing if running.

        Raises:
            OSError: the address could not be bound (e.g. the port is in use).
            TimeoutError: it did not listen within ``timeout`` seconds.
        """
        with self._life_lock:
            if self.running:
                return self
            self._loop_thread.start(timeout)
            try:
                what = f"the {self._kind} did not start"
                self._loop_thread.call(self._listen(), timeout, what=what)
            except BaseException:
                self._loop_thread.stop()
                raise
        return self

    def stop(self) -> None:
        """Shut down, stop the loop and join the thread. Safe to repeat.

        Raises:
            RuntimeError: called from the service's own thread.
        """
        with self._life_lock:
            if self._loop_thread.loop is None:
                return
            self._check_not_own_thread()
            if self._loop_thread.running:
                self._loop_thread.call(self._shutdown(self._close_timeout(blocking=True)))
            self._loop_thread.stop()

    async def aclose(self) -> None:
        """Awaitable :meth:`stop`: the caller's loop keeps running while peers close."""
        if not self._loop_thread.running:
            return
        self._check_not_own_thread()
        coroutine = self._shutdown(self._close_timeout(blocking=False))
        await asyncio.wrap_future(self._loop_thread.submit(coroutine))
        with self._life_lock:
            self._loop_thread.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @property
    def running(self) -> bool:
        """Whether the thread is alive and the service listens."""
        return self._loop_thread.running and self._listening

    @property
    def _loop(self) -> asyncio.AbstractEventLoop | None:
        """The thread's loop while it runs."""
        return self._loop_thread.loop

    def _call(self, function: Callable[[], T]) -> T:
        """Run ``function`` on the service's thread and return its result.

        When the service is stopped nothing else touches its state, so
        ``function`` runs in the caller's thread.
        """
        if not self.running or self._loop_thread.in_thread():
            return function()

        async def call() -> T:
            return function()

        return self._loop_thread.call(call(), timeout=10)

    def _check_not_own_thread(self) -> None:
        if self._loop_thread.in_thread():
            raise RuntimeError(f"the {self._kind} cannot be stopped from its own thread")


async def stop_accepting(server: asyncio.Server, turns: int = 3) -> None:
    """Stop ``server`` accepting connections, then let those it accepted last arrive.

    asyncio makes an accepted connection's transport a loop turn after accepting it,
    and on Python 3.11 a transport made after ``Server.close()`` fails an assertion and
    leaves its socket open until it is collected. So a server stops accepting first,
    gives the connections already accepted ``turns`` turns to reach its protocol (which
    aborts them while closing), and only then closes. Loop thread only.
    """
    loop = asyncio.get_running_loop()
    for sock in server.sockets:
        loop.remove_reader(sock.fileno())
    for _ in range(turns):
        await asyncio.sleep(0)


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel the tasks still on ``loop`` and let them finish, as ``asyncio.run`` does."""
    tasks = asyncio.all_tasks(loop)
    if not tasks:
        return
    for task in tasks:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
