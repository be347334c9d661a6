"""What the lessons show before a learner runs anything: no traceback, no machine's path.

A learner opens a notebook and reads its stored outputs first. In a student
notebook the only stored error is a check cell's verdict (``CheckFailed``, its
verdict and hint: a few lines); a solution notebook stores no error at all; and no
output names a path of the machine the notebooks were saved on.
"""

from __future__ import annotations

import ast
import contextlib
import io
import re
from pathlib import Path
from typing import Any

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
STUDENT = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
SOLUTION = sorted((NOTEBOOKS / "solutions").glob("[0-9][0-9]_*.ipynb"))
MACHINE_PATH = re.compile(r"/work/|/home/|/root/|/tmp/|/Users/|site-packages|[A-Z]:\\")


def texts(output: Any) -> list[str]:
    found = ["\n".join(output.get("traceback", []))] if "traceback" in output else []
    if "text" in output:
        found.append(output["text"])
    for kind, value in output.get("data", {}).items():
        if kind.startswith("text/"):
            found.append(value if isinstance(value, str) else "".join(value))
    return found


@pytest.mark.parametrize("path", STUDENT + SOLUTION, ids=lambda p: str(p.relative_to(NOTEBOOKS)))
def test_no_stored_output_names_a_path_of_the_machine(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            for text in texts(output):
                found = MACHINE_PATH.search(text)
                assert found is None, f"cell {index}: ...{text[max(0, found.start() - 60) :][:140]}"


@pytest.mark.parametrize("path", STUDENT, ids=lambda p: p.name)
def test_a_student_notebook_stores_only_short_verdicts(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    verdicts = 0
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            if output.output_type != "error":
                continue
            assert "check" in cell.metadata.get("tags", []), f"cell {index}: {output.ename}"
            assert output.ename == "CheckFailed", f"cell {index}: {output.ename}"
            assert 1 <= len(output.traceback) <= 3, f"cell {index}: {output.traceback}"
            assert output.traceback[0].startswith("FAIL "), output.traceback
            verdicts += 1
    checks = [c for c in nb.cells if "check" in c.get("metadata", {}).get("tags", [])]
    assert verdicts == len(checks), "every check cell stores its verdict"


@pytest.mark.parametrize("path", SOLUTION, ids=lambda p: p.name)
def test_a_solution_notebook_stores_no_error(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    for index, cell in enumerate(nb.cells):
        errors = [o for o in cell.get("outputs", []) if o.output_type == "error"]
        assert not errors, f"cell {index}: {errors[0].ename}"


# A cell shows the package's own source when it calls inspect.getsource (or a helper
# of the notebook that does) or reads a file of the package. nbval does not compare
# such a cell that ignores its output, so this test runs it again and compares.
SHOWS_SOURCE = re.compile(r"getsource\(|resources\.files\(\"wslab\"\)")


def shows_source(cell: Any, helpers: set[str]) -> bool:
    source = cell.source
    return bool(SHOWS_SOURCE.search(source)) or any(f"{name}(" in source for name in helpers)


def source_cells(nb: Any) -> list[int]:
    """The indices of the code cells that show source and whose output nbval ignores."""
    helpers: set[str] = set()
    found = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or not shows_source(cell, helpers):
            continue
        helpers |= set(re.findall(r"^def (\w+)\(", cell.source, re.M))
        if "nbval-ignore-output" in cell.metadata.get("tags", []):
            found.append(index)
    return found


def imports_only(cell: Any) -> bool:
    if cell.cell_type != "code":
        return False
    try:
        tree = ast.parse(cell.source)
    except SyntaxError:  # an IPython magic
        return False
    return all(isinstance(node, ast.Import | ast.ImportFrom) for node in tree.body)


SOURCE_SHOWN = [
    (path, index) for path in STUDENT + SOLUTION for index in source_cells(nbformat.read(path, 4))
]


def test_the_lessons_show_source_somewhere() -> None:
    assert len(SOURCE_SHOWN) >= 2  # the test below has something to compare


@pytest.mark.parametrize(
    ("path", "index"),
    SOURCE_SHOWN,
    ids=[f"{path.relative_to(NOTEBOOKS)}: cell {index}" for path, index in SOURCE_SHOWN],
)
def test_a_stored_source_excerpt_is_todays_source(path: Path, index: int) -> None:
    """Run the cell again after the notebook's imports and earlier such cells: same text."""
    nb = nbformat.read(path, as_version=4)
    shown = source_cells(nb)
    namespace: dict[str, Any] = {}
    for earlier, cell in enumerate(nb.cells[:index]):
        if imports_only(cell) or earlier in shown:
            with contextlib.redirect_stdout(io.StringIO()):
                exec(cell.source, namespace)  # the helpers that print source, defined
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(nb.cells[index].source, namespace)
    stored = "".join(o.text for o in nb.cells[index].outputs if o.output_type == "stream")
    assert stored == printed.getvalue(), f"cell {index} shows old source: run it again"
