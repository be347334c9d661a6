"""Exercises: make the student notebooks from the solutions, and check both.

The solution notebooks in ``notebooks/solutions/`` are the source of truth. In a
solution's code cell, the answer sits between two marker lines::

    def broadcast_targets(sockets, sender):
        # BEGIN SOLUTION
        return [s for s in sockets if s != sender]
        # END SOLUTION

``--generate`` writes ``notebooks/<same name>.ipynb`` where each such region is
replaced by ``raise NotImplementedError("your code here")`` at the marker's
indentation, and where every cell tagged ``check`` also gets the tag
``raises-exception`` (nbval then expects that cell to fail). Cells tagged
``browser`` need JupyterLab in a browser: they keep the outputs recorded there
and are never executed by ``--check``. A student notebook
whose cells already match is left alone, so its stored outputs survive; a
rewritten one has no outputs until it is executed again, which
``--generate --execute`` does (it runs each student notebook it handles in a
fresh kernel of this Python, every cell but the browser ones, and stores what
they print: the check cells' verdicts included).

``--check`` verifies, per notebook, that the student version is the one generated
from its solution, that the solution has at least one region and one check cell,
and (unless ``--no-execute``) executes both in a fresh kernel of this Python:
every solution cell must pass, and in the student version exactly the check cells
must fail, each with ``CheckFailed``. It also verifies what the student notebook
stores: each check cell shows its verdict, a short ``CheckFailed`` (a few lines,
no traceback, no path of the machine it ran on). It prints one line per notebook
and returns 1 if anything is wrong.

Run from the folder that holds ``notebooks/`` (or from ``notebooks/`` or
``notebooks/solutions/``), or name the notebooks folder with ``--root``::

    python -m wslab exercises --generate --execute
    python -m wslab exercises --check
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import MarkerError

__all__ = [
    "BEGIN",
    "END",
    "STUB",
    "MarkerError",
    "NotebookReport",
    "check",
    "generate",
    "student_source",
]

BEGIN = "# BEGIN SOLUTION"
END = "# END SOLUTION"
STUB = 'raise NotImplementedError("your code here")'
CHECK_TAG = "check"
# Cells that need a browser front end (JupyterLab): never executed here, and their
# stored outputs, recorded in a real browser, are kept.
BROWSER_TAG = "browser"
RAISES_TAG = "raises-exception"
EXPECTED_ERROR = "CheckFailed"
CELL_TIMEOUT = 60  # seconds; a lesson cell takes well under one


def student_source(source: str) -> tuple[str, int]:
    """Replace every solution region of one cell's source by the stub.

    Returns the new source and how many regions were replaced.

    Raises:
        MarkerError: an END without a BEGIN, a BEGIN inside a region, or a
            region left open.
    """
    out: list[str] = []
    regions = 0
    inside = False
    for line in source.split("\n"):
        marker = line.strip()
        if marker == BEGIN:
            if inside:
                raise MarkerError(f"{BEGIN!r} inside a solution region")
            inside = True
            regions += 1
            indent = line[: len(line) - len(line.lstrip())]
            out.append(indent + STUB)
        elif marker == END:
            if not inside:
                raise MarkerError(f"{END!r} without {BEGIN!r}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise MarkerError(f"{BEGIN!r} without {END!r}")
    return "\n".join(out), regions


def _tags(cell: Any) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def make_student(solution: Any) -> tuple[Any, int, int]:
    """Build the student notebook from a solution notebook (outputs cleared).

    Returns the notebook, its number of solution regions and of check cells.
    """
    student = copy.deepcopy(solution)
    regions = checks = 0
    for cell in student.cells:
        if cell.cell_type != "code":
            continue
        cell.source, found = student_source(cell.source)
        regions += found
        if BROWSER_TAG not in _tags(cell):
            cell.outputs = []
            cell.execution_count = None
        if CHECK_TAG in _tags(cell):
            checks += 1
            tags = _tags(cell)
            if RAISES_TAG not in tags:
                tags.append(RAISES_TAG)
            cell.metadata["tags"] = tags
    return student, regions, checks


def _shape(nb: Any) -> list[tuple[str, str, list[str]]]:
    """What must be equal between a stored and a generated student notebook."""
    return [(c.cell_type, c.source, sorted(_tags(c))) for c in nb.cells]


def _pairs(root: Path, names: Sequence[str]) -> list[tuple[str, Path, Path]]:
    solutions = sorted((root / "solutions").glob("*.ipynb"))
    wanted = {Path(n).stem for n in names}
    pairs = [(p.stem, p, root / p.name) for p in solutions if not wanted or p.stem in wanted]
    missing = wanted - {stem for stem, _, _ in pairs}
    if missing:
        raise SystemExit(f"no solution notebook for: {', '.join(sorted(missing))}")
    return pairs


def _nbformat() -> Any:
    """nbformat, imported when needed (``serve`` does not need it; it has no types)."""
    import nbformat

    return nbformat


def generate(root: Path, names: Sequence[str] = (), *, execute: bool = False) -> int:
    """Write the student notebooks of ``root/solutions`` (all, or ``names``) into ``root``.

    With ``execute``, also run each of them (rewritten or not) and store its outputs.
    """
    nbformat = _nbformat()
    for stem, solution_path, student_path in _pairs(root, names):
        solution = nbformat.read(solution_path, as_version=4)
        student, regions, checks = make_student(solution)
        stored = nbformat.read(student_path, as_version=4) if student_path.exists() else None
        if stored is not None and _shape(stored) == _shape(student):
            student = stored  # its outputs are kept
            print(f"unchanged {stem}")
            if not execute:
                continue
        else:
            nbformat.write(student, student_path)
            print(f"wrote     {stem}: {regions} solution regions, {checks} check cells")
        if execute:
            started = time.monotonic()
            nbformat.write(_execute(student, student_path.parent), student_path)
            print(f"executed  {stem}: outputs stored ({time.monotonic() - started:.1f} s)")
        else:
            print(f"          its outputs are cleared: {store_command(root, stem)}")
    return 0


def store_command(root: Path, stem: str) -> str:
    """The command that stores the outputs of the student notebook ``stem``."""
    where = "" if root == find_root(Path.cwd()) else f" --root {root}"
    return f"store them with: python -m wslab exercises --generate --execute{where} {stem}"


# ---------------------------------------------------------------------------- check


@dataclass
class NotebookReport:
    """What ``--check`` found for one notebook."""

    name: str
    problems: list[str] = field(default_factory=list)
    regions: int = 0
    checks: int = 0
    seconds: float = 0.0
    executed: bool = False

    def line(self) -> str:
        if self.problems:
            first, *rest = self.problems
            return "\n".join([f"FAIL {self.name}: {first}", *(f"     {p}" for p in rest)])
        if not self.executed:
            return (
                f"ok   {self.name}: {self.regions} solution regions, {self.checks} check cells; "
                "the student notebook matches its solution and stores its verdicts "
                "(not executed)"
            )
        return (
            f"ok   {self.name}: {self.regions} solution regions, {self.checks} check cells; "
            f"solution passes, student fails only its checks ({self.seconds:.1f} s)"
        )


def _execute(nb: Any, cwd: Path) -> Any:
    """Run every cell of ``nb`` in a fresh kernel of this Python; errors are recorded."""
    import ipykernel.kernelspec
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    class CurrentPythonSpecs(KernelSpecManager):
        # Like nbval --nbval-current-env: whatever the notebook names, use this Python.
        def get_kernel_spec(self, kernel_name: str) -> Any:
            return self.kernel_spec_class(
                resource_dir=ipykernel.kernelspec.RESOURCES,
                **ipykernel.kernelspec.get_kernel_dict(),
            )

    nb = copy.deepcopy(nb)
    km = KernelManager(kernel_name="python3", kernel_spec_manager=CurrentPythonSpecs())
    client = NotebookClient(
        nb,
        km=km,
        timeout=CELL_TIMEOUT,
        allow_errors=True,
        store_widget_state=False,
        skip_cells_with_tag=BROWSER_TAG,
        resources={"metadata": {"path": str(cwd)}},
    )
    # The kernel's own log (startup warnings) goes to a file, shown only on failure.
    with tempfile.TemporaryFile(mode="w+", encoding="utf-8") as log:
        try:
            client.execute(stdout=log, stderr=log)
        except Exception:
            log.seek(0)
            sys.stderr.write(log.read())
            raise
        finally:
            if km.has_kernel:
                km.shutdown_kernel(now=True)
    return nb


# A stored verdict is the verdict and its hint; a path in it is a machine's traceback.
VERDICT_LINES = 4
# (A URL's path is not one: it follows its host, not a space or a quote.)
MACHINE_PATH = re.compile(r"site-packages|\.py:\d+|(?<![\w:/.-])(?:/[\w.+-]+){3,}")


def stored_problems(student: Any, stem: str, root: Path, solution: Any = None) -> list[str]:
    """What is wrong with the outputs a student notebook stores (empty: nothing).

    With its ``solution`` (a notebook of the same cells), a code cell that stores
    outputs there and none here is a problem too: the student notebook was not run.
    Browser cells are left out: they run only in a browser.
    """
    problems = []
    solved = solution.cells if solution is not None else [None] * len(student.cells)
    for index, (cell, solved_cell) in enumerate(zip(student.cells, solved, strict=True)):
        if cell.cell_type != "code":
            continue
        if (
            solved_cell is not None
            and solved_cell.get("outputs")
            and not cell.get("outputs")
            and not {BROWSER_TAG, CHECK_TAG} & set(_tags(cell))  # a check: its verdict, below
        ):
            problems.append(f"student cell {index} stores no output (its solution does)")
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if CHECK_TAG in _tags(cell) and not any(o.get("ename") == EXPECTED_ERROR for o in errors):
            problems.append(f"student check cell {index} stores no {EXPECTED_ERROR} verdict")
        for output in errors:
            text = "\n".join(output.get("traceback", []))
            if len(text.splitlines()) > VERDICT_LINES or MACHINE_PATH.search(text):
                problems.append(f"student cell {index} stores a traceback, not a short verdict")
    if problems:
        problems.append(store_command(root, stem))
    return problems


def _errors(nb: Any) -> dict[int, str]:
    """The cells that raised: cell index -> exception name."""
    found = {}
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                found[index] = output.get("ename", "?")
    return found


def _check_one(stem: str, solution_path: Path, student_path: Path, run: bool) -> NotebookReport:
    nbformat = _nbformat()
    report = NotebookReport(stem)
    started = time.monotonic()
    solution = nbformat.read(solution_path, as_version=4)
    try:
        expected, report.regions, report.checks = make_student(solution)
    except MarkerError as error:
        report.problems.append(f"solution markers: {error}")
        return report
    if report.regions == 0:
        report.problems.append(f"the solution has no {BEGIN!r} region")
    if report.checks == 0:
        report.problems.append(f"the solution has no code cell tagged {CHECK_TAG!r}")
    if not student_path.exists():
        report.problems.append(f"{student_path} is missing: run --generate")
        return report
    stored = nbformat.read(student_path, as_version=4)
    if _shape(stored) != _shape(expected):
        report.problems.append(
            "the student notebook is not the one generated from its solution: run --generate"
        )
    else:
        report.problems.extend(stored_problems(stored, stem, student_path.parent, solution))
    if not run or report.problems:
        report.seconds = time.monotonic() - started
        return report
    report.executed = True

    check_cells = {i for i, c in enumerate(solution.cells) if CHECK_TAG in _tags(c)}
    solved_errors = _errors(_execute(solution, solution_path.parent))
    for index, name in sorted(solved_errors.items()):
        report.problems.append(f"solution cell {index} raised {name}")
    student_errors = _errors(_execute(stored, student_path.parent))
    for index, name in sorted(student_errors.items()):
        if index not in check_cells:
            report.problems.append(f"student cell {index} raised {name} (only checks may fail)")
        elif name != EXPECTED_ERROR:
            report.problems.append(
                f"student check cell {index} raised {name}, not {EXPECTED_ERROR}"
            )
    for index in sorted(check_cells - set(student_errors)):
        report.problems.append(f"student check cell {index} passed without a solution")
    report.seconds = time.monotonic() - started
    return report


def check(root: Path, names: Sequence[str] = (), *, run: bool = True, jobs: int = 1) -> int:
    """Check the notebooks of ``root`` (all, or ``names``); print one line each."""
    pairs = _pairs(root, names)
    problems = 0
    wanted = {Path(n).stem for n in names}
    for orphan in sorted(root.glob("*.ipynb")):
        if not (root / "solutions" / orphan.name).exists() and (
            not wanted or orphan.stem in wanted
        ):
            print(f"FAIL {orphan.stem}: a student notebook without a solution")
            problems += 1
    with ThreadPoolExecutor(max(1, jobs)) as pool:
        futures = [pool.submit(_check_one, *pair, run) for pair in pairs]
        for future in futures:
            report = future.result()
            print(report.line(), flush=True)
            problems += bool(report.problems)
    verdict = "all ok" if not problems else f"{problems} with problems"
    print(f"checked {len(pairs)} notebooks: {verdict}")
    return 1 if problems else 0


# ---------------------------------------------------------------------------- command line


def find_root(start: Path) -> Path | None:
    """The notebooks folder seen from ``start``: its ``notebooks/``, or itself.

    ``start`` may be a course folder (holding ``notebooks/solutions/``), the
    notebooks folder (holding ``solutions/``), or ``solutions/`` itself.
    """
    for relative in (Path("notebooks"), Path("."), Path("..")):
        if (start / relative / "solutions").is_dir():
            return relative
    return None


def _at_least_one(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is out of range: must be >= 1")
    return value


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Add the ``exercises`` subcommand to the parser's subcommands."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "exercises",
        help="generate the student notebooks, or check them against the solutions",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--generate", action="store_true", help="write the student notebooks")
    action.add_argument("--check", action="store_true", help="check (and execute) both versions")
    parser.add_argument("names", nargs="*", help="notebooks to handle, e.g. 01_events (all)")
    parser.add_argument("--root", type=Path, default=None, help="the notebooks folder")
    parser.add_argument("--no-execute", action="store_true", help="--check without running")
    parser.add_argument(
        "--execute", action="store_true", help="--generate, then run and store the outputs"
    )
    parser.add_argument(
        "--jobs", type=_at_least_one, default=1, help="notebooks executed at once, >= 1 (1)"
    )
    return parser


def run(args: argparse.Namespace) -> int:
    """Carry out ``python -m wslab exercises ...``."""
    root = args.root or find_root(Path.cwd())
    if root is None:
        print(
            "no notebooks here: run this in the folder that holds notebooks/solutions/ "
            "(or in notebooks/), or name that folder with --root"
        )
        return 2
    if not (root / "solutions").is_dir():
        print(f"no solutions folder in {root}")
        return 2
    if args.execute and not args.generate:
        print("--execute goes with --generate (--check always executes, unless --no-execute)")
        return 2
    missing = [name for name in ("nbformat", "nbclient") if importlib.util.find_spec(name) is None]
    if missing:
        print(f'exercises needs {" and ".join(missing)}: pip install "wslab[lab]"', file=sys.stderr)
        return 2
    if args.generate:
        return generate(root, args.names, execute=args.execute)
    return check(root, args.names, run=not args.no_execute, jobs=args.jobs)
