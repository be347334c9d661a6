"""The exercise tool: student notebooks generated from the solutions, and checked.

``--check`` executes notebooks on a small course here; on the real lessons it
compares the files only (``--no-execute``), since nbval runs every lesson, solution
and student notebook alike, in the same ``python -m pytest``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from tests.conftest import unit
from wslab.lab.exercises import STUB, MarkerError, make_student, stored_problems, student_source

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"


def run_tool(
    *args: str, cwd: Path = ROOT, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wslab", "exercises", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# ------------------------------------------------------------------ the generator (pure)


def test_a_region_becomes_the_stub_at_the_markers_indentation() -> None:
    source = "def f(x):\n    # BEGIN SOLUTION\n    y = x + 1\n    return y\n    # END SOLUTION\n"
    assert student_source(source) == (f"def f(x):\n    {STUB}\n", 1)


def test_code_outside_the_regions_is_kept_and_several_regions_count() -> None:
    source = (
        "a = 1\n# BEGIN SOLUTION\nb = 2\n# END SOLUTION\n"
        "c = 3\n# BEGIN SOLUTION\nd = 4\n# END SOLUTION"
    )
    assert student_source(source) == (f"a = 1\n{STUB}\nc = 3\n{STUB}", 2)


@pytest.mark.parametrize(
    "source",
    [
        "# BEGIN SOLUTION\nx = 1\n",
        "x = 1\n# END SOLUTION\n",
        "# BEGIN SOLUTION\n# BEGIN SOLUTION\n# END SOLUTION\n",
    ],
)
def test_unpaired_markers_are_an_error(source: str) -> None:
    with pytest.raises(MarkerError):
        student_source(source)


def _pair(solution_body: str, check_body: str) -> nbformat.NotebookNode:
    return new_notebook(
        cells=[
            new_markdown_cell("# A lesson"),
            new_code_cell(solution_body),
            new_code_cell(check_body, metadata={"tags": ["check"]}),
        ],
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
    )


SOLVED = "def answer():\n    # BEGIN SOLUTION\n    return 42\n    # END SOLUTION"
CHECK = (
    "from wslab.lab.checks._common import fail, passed, run_learner\n"
    "if run_learner('check_answer', answer) != 42:\n"
    "    raise fail('check_answer', 'wrong', 'try 42')\n"
    "passed('check_answer', 'the answer')"
)


def test_the_student_version_tags_check_cells_and_drops_outputs() -> None:
    solution = _pair(SOLVED, CHECK)
    solution.cells[1].outputs = [nbformat.v4.new_output("stream", text="old\n")]
    student, regions, checks = make_student(solution)
    assert (regions, checks) == (1, 1)
    assert student.cells[1].source == f"def answer():\n    {STUB}"
    assert student.cells[1].outputs == []
    assert student.cells[2].metadata["tags"] == ["check", "raises-exception"]
    assert solution.cells[2].metadata["tags"] == ["check"]  # the solution is untouched


def test_a_student_cell_without_the_outputs_of_its_solution_is_flagged() -> None:
    """Pure: a code cell stores outputs in the solution and none in the student notebook."""
    solution = _pair(SOLVED, CHECK)
    solution.cells.insert(2, new_code_cell("print(1)"))
    solution.cells.insert(3, new_code_cell("show()", metadata={"tags": ["browser"]}))
    for cell, text in zip(solution.cells[1:], ("", "1\n", "shown\n", "PASS\n"), strict=True):
        cell.outputs = [nbformat.v4.new_output("stream", text=text)] if text else []
    student, _, _ = make_student(solution)
    student.cells[4].outputs = [
        nbformat.v4.new_output("error", ename="CheckFailed", evalue="", traceback=["FAIL x"])
    ]
    problems = stored_problems(student, "01_tiny", Path("course"), solution)
    # The browser cell runs only in a browser; the check cell stores its verdict.
    assert problems[:-1] == ["student cell 2 stores no output (its solution does)"]
    assert problems[-1].startswith("store them with: ")
    student.cells[2].outputs = [nbformat.v4.new_output("stream", text="1\n")]
    assert stored_problems(student, "01_tiny", Path("course"), solution) == []


# ------------------------------------------------------------------ the command, on a tiny tree


def _tree(tmp_path: Path, solution: nbformat.NotebookNode) -> Path:
    (tmp_path / "solutions").mkdir()
    nbformat.write(solution, tmp_path / "solutions" / "01_tiny.ipynb")
    return tmp_path


@pytest.mark.timeout(unit(240))
def test_generate_then_check_passes_and_generate_again_changes_nothing(tmp_path: Path) -> None:
    root = _tree(tmp_path, _pair(SOLVED, CHECK))
    assert run_tool("--generate", "--execute", "--root", str(root)).returncode == 0
    first = (root / "01_tiny.ipynb").read_text()
    again = run_tool("--generate", "--root", str(root))
    assert "unchanged 01_tiny" in again.stdout
    assert (root / "01_tiny.ipynb").read_text() == first
    result = run_tool("--check", "--root", str(root), timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^ok   01_tiny: 1 solution regions, 1 check cells;", result.stdout, re.M)


@pytest.mark.timeout(unit(240))
def test_check_reports_a_stale_student_notebook(tmp_path: Path) -> None:
    root = _tree(tmp_path, _pair(SOLVED, CHECK))
    run_tool("--generate", "--root", str(root))
    changed = _pair(SOLVED, CHECK + "\nprint('a check cell changed after --generate')")
    nbformat.write(changed, root / "solutions" / "01_tiny.ipynb")
    result = run_tool("--check", "--no-execute", "--root", str(root))
    assert result.returncode == 1
    assert "FAIL 01_tiny: the student notebook is not the one generated" in result.stdout


@pytest.mark.timeout(unit(240))
def test_check_reports_a_solution_that_fails_its_own_check(tmp_path: Path) -> None:
    wrong = SOLVED.replace("return 42", "return 41")
    root = _tree(tmp_path, _pair(wrong, CHECK))
    run_tool("--generate", "--execute", "--root", str(root))
    result = run_tool("--check", "--root", str(root), timeout=120)
    assert result.returncode == 1
    assert "FAIL 01_tiny: solution cell 2 raised CheckFailed" in result.stdout


@pytest.mark.timeout(unit(240))
def test_check_reports_a_notebook_without_exercise(tmp_path: Path) -> None:
    root = _tree(tmp_path, _pair("x = 1", "print(x)"))
    run_tool("--generate", "--root", str(root))
    result = run_tool("--check", "--no-execute", "--root", str(root))
    assert result.returncode == 1
    assert "has no '# BEGIN SOLUTION' region" in result.stdout


# ------------------------------------------------------------------ the real lessons


def test_every_lesson_passes_the_exercise_check_without_running_it_again() -> None:
    """Each student notebook is the one generated from its solution and stores its verdicts.

    Running them is nbval's part: ``python -m pytest`` runs every solution and every
    student notebook under nbval (notebooks/), which fails a solution cell that
    raises, a student cell that raises outside its checks, and a check cell that
    stops raising or raises another verdict than the stored ``CheckFailed``. What
    ``--check`` adds by executing is tested above on a small course.
    """
    solutions = sorted((NOTEBOOKS / "solutions").glob("*.ipynb"))
    assert solutions, "no solution notebooks"
    result = run_tool("--check", "--no-execute", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    for solution in solutions:
        line = rf"^ok   {re.escape(solution.stem)}: \d+ solution regions, \d+ check cells; "
        assert re.search(line, result.stdout, re.M), f"no ok line for {solution.stem}"
    assert result.stdout.rstrip().endswith(f"checked {len(solutions)} notebooks: all ok")


# ------------------------------------------------------------------ stored outputs, course copies


def test_generate_says_the_command_that_stores_the_outputs_it_cleared(tmp_path: Path) -> None:
    root = _tree(tmp_path, _pair(SOLVED, CHECK))
    result = run_tool("--generate", cwd=tmp_path)
    assert "wrote     01_tiny" in result.stdout
    command = "python -m wslab exercises --generate --execute 01_tiny"
    assert f"its outputs are cleared: store them with: {command}" in result.stdout
    stored = nbformat.read(root / "01_tiny.ipynb", as_version=4)
    assert all(not cell.get("outputs") for cell in stored.cells)


def test_check_flags_a_student_notebook_without_its_stored_verdicts(tmp_path: Path) -> None:
    root = _tree(tmp_path, _pair(SOLVED, CHECK))
    run_tool("--generate", "--root", str(root))
    result = run_tool("--check", "--no-execute", "--root", str(root))
    assert result.returncode == 1
    assert "FAIL 01_tiny: student check cell 2 stores no CheckFailed verdict" in result.stdout
    assert f"--generate --execute --root {root} 01_tiny" in result.stdout


def test_execute_stores_the_short_verdict_and_check_no_execute_says_nothing_ran(
    tmp_path: Path,
) -> None:
    root = _tree(tmp_path, _pair(SOLVED, CHECK))
    assert run_tool("--generate", "--execute", cwd=root).returncode == 0
    stored = nbformat.read(root / "01_tiny.ipynb", as_version=4)
    (verdict,) = stored.cells[2].outputs
    assert verdict.ename == "CheckFailed"
    assert verdict.traceback == [
        "FAIL check_answer: not implemented yet.",
        "Hint: replace the raise NotImplementedError line with your code",
    ]
    result = run_tool("--check", "--no-execute", cwd=root)
    assert result.returncode == 0, result.stdout
    assert "(not executed)" in result.stdout
    assert "solution passes" not in result.stdout


def test_check_flags_a_stored_traceback_with_a_machine_path(tmp_path: Path) -> None:
    root = _tree(tmp_path, _pair(SOLVED, CHECK))
    run_tool("--generate", "--execute", "--root", str(root))
    stored = nbformat.read(root / "01_tiny.ipynb", as_version=4)
    stored.cells[2].outputs[0].traceback.insert(0, "File /home/me/wslab/lab/checks/x.py:43")
    nbformat.write(stored, root / "01_tiny.ipynb")
    result = run_tool("--check", "--no-execute", "--root", str(root))
    assert result.returncode == 1
    assert "student cell 2 stores a traceback, not a short verdict" in result.stdout


@pytest.mark.parametrize("where", [".", "notebooks", "notebooks/solutions"])
def test_a_course_copy_is_found_from_the_working_directory(tmp_path: Path, where: str) -> None:
    (tmp_path / "notebooks").mkdir()
    _tree(tmp_path / "notebooks", _pair(SOLVED, CHECK))
    run_tool("--generate", "--execute", "--root", str(tmp_path / "notebooks"))
    result = run_tool("--check", "--no-execute", cwd=tmp_path / where)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "checked 1 notebooks: all ok" in result.stdout


def test_outside_a_course_the_tool_says_where_to_run_it(tmp_path: Path) -> None:
    result = run_tool("--check", cwd=tmp_path)
    assert result.returncode == 2
    assert "no notebooks here" in result.stdout
    assert "site-packages" not in result.stdout
