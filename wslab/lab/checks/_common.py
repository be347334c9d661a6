"""What every exercise check shares: one-line verdicts and running the learner's code.

A check prints one line when the learner's code passes, and raises
:class:`CheckFailed` with one line (what is wrong, and a hint) when it does not,
so the notebook cell shows the verdict and nothing else.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from ...errors import CheckFailed

__all__ = [
    "TIMEOUT",
    "CheckFailed",
    "fail",
    "passed",
    "run_learner",
    "run_scenario",
    "show_verdicts_in_ipython",
]

T = TypeVar("T")


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


def _verdict_lines(error: BaseException) -> list[str]:
    """The lines a failed check shows: the verdict, then its hint on a line of its own."""
    verdict, sep, hint = str(error).partition(". Hint: ")
    return [verdict + "." if sep else verdict, *([f"Hint: {hint}"] if sep else [])]


def _show_verdict(
    shell: Any, etype: type[BaseException], value: BaseException, tb: Any, tb_offset: Any = None
) -> None:
    # The cell still fails (an error output named CheckFailed, with the one-line
    # message as its value), but its traceback is the verdict, not our stack.
    shell._showtraceback(etype, value, _verdict_lines(value))


def show_verdicts_in_ipython() -> bool:
    """Make IPython show a :class:`CheckFailed` as its verdict, without a traceback.

    Every other exception keeps its usual traceback (a bug in the learner's code
    shows the learner's lines). Does nothing outside IPython, or when another
    custom exception handler is installed. Returns whether the handler is in
    place. The kernel's thread (imported from a cell).
    """
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None or not hasattr(shell, "set_custom_exc"):
        return False
    installed = tuple(getattr(shell, "custom_exceptions", ()))
    ours = tuple(t for t in installed if getattr(t, "__name__", "") == CheckFailed.__name__)
    if installed and installed != ours:
        return False  # someone else's handler: leave it alone
    shell.set_custom_exc((CheckFailed,), _show_verdict)
    return True
