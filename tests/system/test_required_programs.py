"""What happens when a program is missing: a lesson that needs redis-server (13) or the
hub's programs (14) is skipped with the install command, and a test of the main suite
that needs redis-server fails with it.

Each case runs pytest in a subprocess whose PATH holds (or lacks) redis-server.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output

from tests.conftest import WAIT, unit

ROOT = Path(__file__).resolve().parents[2]
INSTALL = "sudo apt-get install redis-server"

# A cell that says whether redis-server is on PATH; its stored output is what it prints
# when it is, so the notebook passes only when it really ran there.
CELL = 'import shutil\nprint(shutil.which("redis-server") is not None)'


def path_without_redis(tmp_path: Path, program: str = "redis-server") -> str:
    """This PATH without the folders that hold ``program`` (plus an empty one)."""
    empty = tmp_path / "bin"
    empty.mkdir(exist_ok=True)
    folders = os.environ.get("PATH", "").split(os.pathsep)
    kept = [f for f in folders if f and not (Path(f) / program).exists()]
    return os.pathsep.join([str(empty), *kept])


def lesson_folder(tmp_path: Path, metadata: dict[str, object]) -> Path:
    """A copy of the lessons' pytest setup with one tiny notebook whose metadata is given."""
    folder = tmp_path / "course"
    folder.mkdir()
    for name in ("conftest.py", "nbval-sanitize.cfg"):
        shutil.copy(ROOT / "notebooks" / name, folder / name)
    (folder / "pytest.ini").write_text("[pytest]\n")
    cell = new_code_cell(CELL, execution_count=1)
    cell.outputs = [new_output("stream", name="stdout", text="True\n")]
    notebook = new_notebook(cells=[cell, new_code_cell("print(1 + 1)", execution_count=2)])
    notebook.cells[1].outputs = [new_output("stream", name="stdout", text="2\n")]
    notebook.metadata.update(metadata)
    nbformat.write(notebook, folder / "lesson.ipynb")
    return folder


def run_pytest(folder: Path, path: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": path, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=24 * WAIT,
    )


REQUIRES_REDIS = {"wslab": {"requires": ["redis-server"]}}

# Each test runs a pytest (and a kernel) in a subprocess.
pytestmark = pytest.mark.timeout(unit(240))


def test_a_lesson_that_needs_redis_server_is_skipped_with_the_install_command(
    tmp_path: Path,
) -> None:
    folder = lesson_folder(tmp_path, REQUIRES_REDIS)
    result = run_pytest(folder, path_without_redis(tmp_path), "--nbval", "-rs", "lesson.ipynb")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "2 skipped" in output and "passed" not in output, output
    assert "redis-server is not installed" in output and INSTALL in output, output
    assert "brew install redis" in output and "binder/apt.txt" in output, output


def test_a_lesson_that_needs_redis_server_runs_where_it_is_installed(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None:
        pytest.fail(f"redis-server is not installed: {INSTALL}")
    folder = lesson_folder(tmp_path, REQUIRES_REDIS)
    result = run_pytest(folder, os.environ["PATH"], "--nbval", "-rs", "lesson.ipynb")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "2 passed" in output and "skipped" not in output, output


def test_a_lesson_without_the_requirement_runs_anyway(tmp_path: Path) -> None:
    """Without the metadata nothing is skipped: the cell runs and its output differs."""
    folder = lesson_folder(tmp_path, {})
    result = run_pytest(folder, path_without_redis(tmp_path), "--nbval", "-rs", "lesson.ipynb")
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "1 failed, 1 passed" in output and "skipped" not in output, output


def test_a_suite_test_that_needs_redis_server_fails_without_it(tmp_path: Path) -> None:
    """The main suite's ``redis_server`` fixture fails (never skips) with the install command."""
    folder = tmp_path / "suite"
    folder.mkdir()
    (folder / "pytest.ini").write_text("[pytest]\n")
    (folder / "test_uses_redis.py").write_text(
        "from tests.conftest import redis_server  # noqa: F401\n\n\n"
        "def test_uses_redis(redis_server):\n"
        "    assert redis_server.ping()\n"
    )
    result = run_pytest(folder, path_without_redis(tmp_path), "-rfEs", "test_uses_redis.py")
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "1 error" in output and "skipped" not in output, output
    assert "redis-server is not installed" in output and INSTALL in output, output


def test_the_classroom_lesson_is_skipped_cell_by_cell_without_the_hubs_proxy(
    tmp_path: Path,
) -> None:
    """Lesson 14, both versions, where configurable-http-proxy is missing: no cell runs."""
    folder = lesson_folder(tmp_path, {})
    for version in ("14_classroom.ipynb", "solutions/14_classroom.ipynb"):
        shutil.copy(ROOT / "notebooks" / version, folder / version.replace("/", "_"))
    path = path_without_redis(tmp_path, "configurable-http-proxy")
    names = ["14_classroom.ipynb", "solutions_14_classroom.ipynb"]
    result = run_pytest(folder, path, "--nbval", "-rs", *names)
    output = result.stdout + result.stderr
    cells = sum(
        cell.cell_type == "code"
        for name in names
        for cell in nbformat.read(folder / name, as_version=4).cells
    )
    assert result.returncode == 0, output
    assert f"{cells} skipped" in output and "passed" not in output, output
    assert "configurable-http-proxy is not installed" in output, output
    assert "npm install -g configurable-http-proxy@5" in output, output
