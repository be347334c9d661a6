"""Check for lesson 10 (asyncio in Jupyter): run a coroutine from blocking code.

The learner writes ``run_blocking(coro)``: run the coroutine to completion and
return its result (or raise its exception), callable from plain synchronous code
even where an event loop is already running, as in a notebook cell, and without
patching that loop. The check calls it from the caller's thread (inside a cell:
the kernel's thread, whose loop is running) with a probe, a failing coroutine
and a real chat over a live ChatServer, then verifies that asyncio and the
caller's loop are exactly as they were.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

from ...client import ChatClient
from ...server import ChatServer
from ._common import fail, passed, run_learner

__all__ = ["check_run_blocking"]

CHECK = "check_run_blocking"
DEADLINE = 10.0  # seconds a single call may take before the check gives up

RunBlocking = Callable[[Coroutine[Any, Any, Any]], Any]


class _Hung(Exception):
    """The learner's function did not return in time (raised by the watchdog)."""


@contextlib.contextmanager
def _watchdog(seconds: float) -> Iterator[None]:
    """Interrupt a call that blocks forever, where a signal can (POSIX, main thread)."""
    usable = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def on_alarm(signum: int, frame: object) -> None:
        raise _Hung

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _loop_or_none() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _call(
    run_blocking: RunBlocking,
    coro: Coroutine[Any, Any, Any],
    expect: tuple[type[BaseException], ...] = (),
) -> Any:
    """Call the learner's ``run_blocking(coro)``; ``expect``: the coroutine's own errors."""
    try:
        with _watchdog(DEADLINE):
            return run_learner(CHECK, run_blocking, coro, expect=(_Hung, RuntimeError, *expect))
    except _Hung:
        coro.close()
        raise fail(
            CHECK,
            f"run_blocking did not return within {DEADLINE:g} s",
            "a coroutine given to the caller's own (running) loop only runs after the "
            "cell ends, so waiting for it there never ends: run it on a new loop, in "
            "another thread",
        ) from None
    except RuntimeError as error:
        coro.close()
        raise fail(
            CHECK,
            f"run_blocking raised RuntimeError: {error}",
            "the caller's loop is already running; start a new loop in another thread "
            "(asyncio.run inside a worker thread)",
        ) from None


async def _probe() -> tuple[int, asyncio.AbstractEventLoop]:
    await asyncio.sleep(0)
    return threading.get_ident(), asyncio.get_running_loop()


async def _boom() -> None:
    await asyncio.sleep(0)
    raise ValueError("boom")


async def _chat(url: str) -> list[str]:
    client = ChatClient(url, "ada", reconnect=False)
    try:
        await client.connect(5.0)
        await client.send_message("from a coroutine")
        await client.wait_for_message("from a coroutine", 5.0)
        return client.texts()
    finally:
        await client.close()


def _patched() -> bool:
    """Whether nest_asyncio (or the like) patched asyncio or the caller's loop."""
    loop = _loop_or_none()
    return bool(
        getattr(asyncio, "_nest_patched", False)
        or (loop is not None and getattr(loop, "_nest_patched", False))
    )


def check_run_blocking(run_blocking: RunBlocking) -> None:
    """Call ``run_blocking`` from this thread three times, then look for patches."""
    caller_loop = _loop_or_none()
    original_run = asyncio.run
    original_loop_methods = (
        (type(caller_loop).run_until_complete, type(caller_loop).run_forever)
        if caller_loop is not None
        else None
    )
    if _patched():
        raise fail(
            CHECK,
            "asyncio is already patched (nest_asyncio.apply() ran in this process)",
            "restart the kernel, and solve it without nest_asyncio",
        )

    result = _call(run_blocking, _probe())
    if not (isinstance(result, tuple) and len(result) == 2):
        if asyncio.iscoroutine(result):
            result.close()  # handed back unawaited: close it, or Python warns later
        raise fail(
            CHECK,
            f"run_blocking(coro) returned {result!r}, not the coroutine's result",
            "return what the coroutine returns",
        )
    _, loop_used = result
    if caller_loop is not None and loop_used is caller_loop:
        raise fail(
            CHECK,
            "the coroutine ran on the caller's own loop",
            "run it on a new loop in another thread, not on the kernel's",
        )

    boom = _boom()
    try:
        _call(run_blocking, boom, expect=(ValueError,))
    except ValueError:
        pass
    else:
        raise fail(
            CHECK,
            "a coroutine that raised ValueError made run_blocking return normally",
            "let the coroutine's exception propagate to the caller (future.result() does)",
        )

    with ChatServer() as server:
        texts = _call(run_blocking, _chat(server.url))
    if texts != ["from a coroutine"]:
        raise fail(
            CHECK,
            f"a chat coroutine returned {texts!r} through run_blocking",
            "return the coroutine's result unchanged",
        )

    loop_methods = (
        (type(caller_loop).run_until_complete, type(caller_loop).run_forever)
        if caller_loop is not None
        else None
    )
    if _patched() or asyncio.run is not original_run or loop_methods != original_loop_methods:
        raise fail(
            CHECK,
            "run_blocking patched asyncio or the caller's event loop",
            "do not patch the kernel's loop (nest_asyncio): start a new loop in a thread",
        )
    where = "a running loop (this kernel's)" if caller_loop is not None else "plain code"
    passed(CHECK, f"called from {where}: result, exception and a live chat came back, no patch")
