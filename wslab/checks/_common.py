"""What every exercise check shares: one-line verdicts and running the learner's code.

A check prints one line when the learner's code passes, and raises
:class:`CheckFailed` with one line (what is wrong, and a hint) when it does not,
so the notebook cell shows the verdict and nothing else.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from ..errors import WslabError

__all__ = ["TIMEOUT", "CheckFailed", "fail", "passed", "run_learner", "run_scenario"]

T = TypeVar("T")


class CheckFailed(WslabError, AssertionError):
    """The learner's code did not do what the exercise asks (message: one line)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        # A one-line traceback: the learner needs the verdict, not our stack.
        self.__suppress_context__ = True


def passed(check: str, what: str) -> None:
    """Print the one-line success verdict of ``check``."""
    print(f"PASS {check}: {what}")


def fail(check: str, what: str, hint: str) -> CheckFailed:
    """Build the one-line failure of ``check``; the caller raises it."""
    return CheckFailed(f"FAIL {check}: {what}. Hint: {hint}")


def run_learner(check: str, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call the learner's function; a stub that is not written yet fails the check."""
    try:
        return function(*args, **kwargs)
    except NotImplementedError:
        hint = "replace the raise NotImplementedError line with your code"
        raise fail(check, "not implemented yet", hint) from None


TIMEOUT = 10.0  # seconds; every live step takes milliseconds, this only bounds a failure


def run_scenario(scenario: Callable[[], Coroutine[Any, Any, T]], timeout: float = 30.0) -> T:
    """Run ``scenario()`` on a fresh event loop in a worker thread; return its result.

    Shared by the live checks. Callable from a notebook cell (the kernel's loop
    is running there, so the scenario cannot use it).
    """
    with ThreadPoolExecutor(1, thread_name_prefix="wslab-check") as pool:
        return pool.submit(lambda: asyncio.run(scenario())).result(timeout)
