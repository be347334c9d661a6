"""What every exercise check shares: one-line verdicts and running the learner's code.

A check prints one line when the learner's code passes, and raises
:class:`CheckFailed` with one line (what is wrong, and a hint) when it does not,
so the notebook cell shows the verdict and nothing else. When the learner's
own function raises, :func:`run_learner` turns that into a verdict too: which
call, which exception, a hint, and the traceback cut to the learner's own lines
(the lines of the checks, of Python and of installed libraries left out).
"""

from __future__ import annotations

import linecache
import logging
import sys
import sysconfig
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from ...classroom.progress import kernel_reporter
from ...errors import CheckFailed
from ...loopthread import LoopThread

__all__ = [
    "TIMEOUT",
    "CheckFailed",
    "describe_call",
    "fail",
    "passed",
    "run_learner",
    "run_scenario",
    "show_verdicts_in_ipython",
]

T = TypeVar("T")

logger = logging.getLogger("wslab.lab.checks")


def passed(check: str, what: str) -> None:
    """Print the one-line success verdict of ``check``; in a class, teachers get it too."""
    print(f"PASS {check}: {what}")
    _tell_the_class(check, True)


def fail(check: str, what: str, hint: str) -> CheckFailed:
    """Build the one-line failure of ``check`` for the caller to raise; teachers get it.

    (In a class on JupyterHub: see :func:`_tell_the_class`.)
    """
    _tell_the_class(check, False)
    return CheckFailed(f"FAIL {check}: {what}. Hint: {hint}")


def _tell_the_class(check: str, ok: bool) -> None:
    """In a class on JupyterHub, send the verdict to the teachers (in the background).

    Prints one line the first time the class has this kernel's verdicts. Outside a
    hub it does nothing; whatever goes wrong, the check's own verdict stands.
    """
    try:
        notice = kernel_reporter().report(check, ok)
    except Exception:
        logger.exception("could not hand the verdict of %s to the class", check)
        return
    if notice is not None:
        print(notice)


RAISED_HINT = "call it yourself with that input, and read your lines below"


def run_learner(
    check: str,
    function: Callable[..., T],
    *args: Any,
    expect: tuple[type[BaseException], ...] = (),
    hint: str = RAISED_HINT,
) -> T:
    """Call the learner's ``function(*args)`` and return its result.

    A stub not written yet fails the check ("not implemented yet"). Any other
    exception, unless it is one of ``expect`` (the check's scenario wants it),
    fails the check with which call raised what, ``hint``, and the learner's own
    traceback lines.
    """
    try:
        return function(*args)
    except NotImplementedError:
        hint = "replace the raise NotImplementedError line with your code"
        raise fail(check, "not implemented yet", hint) from None
    except CheckFailed:
        raise
    except expect:
        raise
    except Exception as error:
        raise learner_raised(check, function, args, error, hint) from None


def _short(value: Any, width: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 4] + "..." + text[-1]


def describe_call(function: Callable[..., Any], args: tuple[Any, ...]) -> str:
    """``name(arg, ...)``: a call of the learner's function, each argument cut short."""
    name = getattr(function, "__name__", "your function")
    return f"{name}({', '.join(_short(arg) for arg in args)})"


def learner_raised(
    check: str,
    function: Callable[..., Any],
    args: tuple[Any, ...],
    error: BaseException,
    hint: str = RAISED_HINT,
) -> CheckFailed:
    """The verdict for an exception raised by the learner's own code."""
    message = str(error).splitlines()[0] if str(error) else ""
    if len(message) > 160:
        message = message[:157] + "..."
    what = f"{describe_call(function, args)} raised {type(error).__name__}"
    verdict = fail(check, f"{what}: {message}" if message else what, hint)
    verdict.trace = learner_lines(error.__traceback__)
    return verdict


def _not_learners() -> tuple[str, ...]:
    """Where code that is not the learner's lives: wslab, Python, installed packages."""
    paths = sysconfig.get_paths()
    places = {str(Path(__file__).resolve().parents[2])}
    places.update(paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib"))
    return tuple(str(Path(place).resolve()) for place in places if place)


def learner_lines(tb: TracebackType | None, limit: int = 6) -> tuple[str, ...]:
    """The learner's frames of a traceback, as lines a notebook can show (no paths).

    A frame of a notebook cell is named ``Cell In[n]``; another file by its name only.
    """
    skip = _not_learners()
    cells = _cell_numbers()
    lines: list[str] = []
    while tb is not None:
        code = tb.tb_frame.f_code
        filename = code.co_filename
        resolved = str(Path(filename).resolve()) if not filename.startswith("<") else filename
        if not resolved.startswith(skip):
            number = cells.get(filename)
            where = f"Cell In[{number}]" if number is not None else Path(filename).name
            lines.append(f"  {where}, line {tb.tb_lineno}, in {code.co_name}")
            source = linecache.getline(filename, tb.tb_lineno).strip()
            if source:
                lines.append(f"    {source}")
        tb = tb.tb_next
    return tuple(lines[-2 * limit :])


def _cell_numbers() -> dict[str, int]:
    """IPython's map from a cell's file name to its execution count (empty outside)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return dict(getattr(getattr(shell, "compile", None), "_filename_map", {}) or {})


TIMEOUT = 10.0  # seconds; every live step takes milliseconds, this only bounds a failure


def run_scenario(scenario: Callable[[], Coroutine[Any, Any, T]], timeout: float = 30.0) -> T:
    """Run ``scenario()`` on a fresh event loop in a thread of its own; return its result.

    Shared by the live checks. Callable from a notebook cell (the kernel's loop
    is running there, so the scenario cannot use it).

    Raises:
        TimeoutError: the scenario did not end within ``timeout`` seconds (it is cancelled).
    """
    with LoopThread("wslab-check") as thread:
        return thread.call(scenario(), timeout, what="the check's scenario did not end")


def _verdict_lines(error: BaseException) -> list[str]:
    """The lines a failed check shows: the verdict, then its hint on a line of its own."""
    verdict, sep, hint = str(error).partition(". Hint: ")
    lines = [verdict + "." if sep else verdict, *([f"Hint: {hint}"] if sep else [])]
    trace = tuple(getattr(error, "trace", ()))
    return [*lines, "Your code, where it raised:", *trace] if trace else lines


def _show_verdict(
    shell: Any, etype: type[BaseException], value: BaseException, tb: Any, tb_offset: Any = None
) -> None:
    # The cell still fails (an error output named CheckFailed, with the one-line
    # message as its value), but its traceback is the verdict, not our stack.
    shell._showtraceback(etype, value, _verdict_lines(value))


def show_verdicts_in_ipython() -> bool:
    """Make IPython show a :class:`CheckFailed` as its verdict, without a traceback.

    A verdict about an exception in the learner's code is followed by the
    learner's own lines (``trace``). Every other exception keeps its usual
    traceback. Does nothing outside IPython, or when another custom exception
    handler is installed. Returns whether the handler is in place. The kernel's
    thread (imported from a cell).
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
