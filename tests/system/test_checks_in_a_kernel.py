"""What a notebook shows when a check fails, run in a real kernel."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from tests.conftest import unit


@pytest.mark.timeout(unit(180))
def test_a_failed_check_shows_its_verdict_and_a_learners_bug_its_own_lines(
    tmp_path: Path,
) -> None:
    """In a real kernel: a failed check is one error output of 1-3 lines, no traceback,
    still named CheckFailed (what nbval and ``exercises --check`` read); a bug in the
    learner's function is a verdict too (which call, which exception, a hint), followed
    by the learner's own lines only: no line of wslab, and no path of the machine."""
    nb = new_notebook(
        cells=[
            new_code_cell(
                "from wslab.lab.checks.broadcast import check_broadcast\n\n"
                "def recipients(members, sender, with_me):\n"
                "    return list(members)\n\n"
                "check_broadcast(recipients)"
            ),
            new_code_cell(
                "def recipients(members, sender, with_me):\n"
                "    return members[99]  # the learner's bug\n\n"
                "check_broadcast(recipients)"
            ),
            new_code_cell("print('after')"),
        ],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}},
    )
    path = tmp_path / "tiny.ipynb"
    nbformat.write(nb, path)
    # A kernel of this Python, driven from another process (its sockets die with it).
    run = (
        "import sys, nbformat, nbclient\n"
        "nb = nbformat.read(sys.argv[1], as_version=4)\n"
        "nbclient.NotebookClient(nb, timeout=60, allow_errors=True, kernel_name='python3',"
        " resources={'metadata': {'path': sys.argv[2]}}).execute()\n"
        "nbformat.write(nb, sys.argv[1])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", run, str(path), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    done = nbformat.read(path, as_version=4)
    (verdict,) = done.cells[0].outputs
    assert verdict["output_type"] == "error" and verdict["ename"] == "CheckFailed"
    assert verdict["evalue"].startswith("FAIL check_broadcast: recipients(")
    assert 1 <= len(verdict["traceback"]) <= 3
    shown = "\n".join(verdict["traceback"])
    assert "Traceback" not in shown and "File " not in shown
    assert shown.startswith("FAIL check_broadcast:") and "\nHint: " in shown

    (bug,) = done.cells[1].outputs
    assert bug["output_type"] == "error" and bug["ename"] == "CheckFailed"
    assert re.match(r"FAIL check_broadcast: recipients\(.*\) raised IndexError: ", bug["evalue"])
    shown = bug["traceback"]
    assert shown[1].startswith("Hint: ") and shown[2] == "Your code, where it raised:"
    assert re.fullmatch(r"  Cell In\[\d+\], line 2, in recipients", shown[3]), shown
    assert shown[4:] == ["    return members[99]  # the learner's bug"]
    assert "wslab" not in "\n".join(shown) and "/" not in "\n".join(shown[2:])
    assert done.cells[2].outputs[0]["text"] == "after\n"
