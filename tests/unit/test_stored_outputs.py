"""What the lessons show before a learner runs anything: no traceback, no machine's path.

A learner opens a notebook and reads its stored outputs first. In a student
notebook the only stored error is a check cell's verdict (``CheckFailed``, its
verdict and hint: a few lines); a solution notebook stores no error at all; and no
output names a path of the machine the notebooks were saved on.
"""

from __future__ import annotations

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
