"""A teacher's CI runs the lessons with nothing but the kit, pytest and nbval.

The test builds a fresh venv, installs the kit (with the extra the lessons need,
when the project defines one), pytest and nbval (not pytest-timeout, not the
test extras), then runs ``pytest --nbval`` the three ways a teacher would:

- on a copy of ``notebooks/`` outside the repository (only the notebooks' own
  ``conftest.py`` configures nbval there: the sanitizer, the kernel), with two
  lessons: the student notebook of 00 (a chat widget, a check cell that must fail
  with CheckFailed) and the solution of 05 (a live server and a check that passes);
- from the repository's root, where its pytest configuration applies (and must
  not fail for want of an optional plugin);
- from inside ``notebooks/`` in the repository.

The copy is the full path; in the repository only its configuration differs, so
each of the two runs there takes one of the two lessons. pip's cache and its
configured indexes are used, as for any install.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ["00_start_here.ipynb", "solutions/05_broadcast.ipynb"]


def _run(
    args: list[str], *, timeout: float, env: dict[str, str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    """Run a step; fail with the end of its output if it fails."""
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)
    assert result.returncode == 0, (
        f"{' '.join(args)} (in {cwd}) exited {result.returncode}\n"
        f"{result.stdout[-5000:]}\n{result.stderr[-3000:]}"
    )
    return result


def _kit_requirement(source: Path) -> str:
    """The kit as a lesson-taker installs it: with its ``lab`` extra if it has one."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project.get("optional-dependencies", {})
    return f"{source}[lab]" if "lab" in extras else str(source)


@pytest.fixture(scope="module")
def teacher() -> Iterator[tuple[Path, dict[str, str], Path]]:
    """(the venv's python, its environment, a scratch folder); removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="wslab-teacher-") as tmp:
        scratch = Path(tmp)
        source = scratch / "source"  # pip builds in the tree it installs: not in ours
        source.mkdir()
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(ROOT / name, source / name)
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        shutil.copytree(ROOT / "wslab", source / "wslab", ignore=ignore)

        venv = scratch / "venv"
        env = {
            **os.environ,
            "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
            "VIRTUAL_ENV": str(venv),
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "PIP_NO_INPUT": "1",
        }
        for name in ("PYTHONPATH", "JUPYTER_PATH", "PYTEST_ADDOPTS", "PYTEST_PLUGINS"):
            env.pop(name, None)
        _run([sys.executable, "-m", "venv", str(venv)], timeout=120, env=env, cwd=scratch)
        python = venv / "bin" / "python"
        install = [str(python), "-m", "pip", "install", "-q", _kit_requirement(source)]
        _run([*install, "pytest", "nbval"], timeout=900, env=env, cwd=scratch)
        yield python, env, scratch


def _pytest_nbval(
    python: Path, env: dict[str, str], cwd: Path, notebooks: list[str]
) -> subprocess.CompletedProcess[str]:
    result = _run(
        [str(python), "-m", "pytest", "--nbval", "-q", *notebooks], timeout=600, env=env, cwd=cwd
    )
    assert " passed" in result.stdout and "failed" not in result.stdout, result.stdout
    return result


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_the_minimal_environment_has_no_optional_plugins(
    teacher: tuple[Path, dict[str, str], Path],
) -> None:
    """The venv really is minimal: no pytest-timeout, no test extras; the kit is installed."""
    python, env, scratch = teacher
    probe = (
        "import importlib.util as u, wslab\n"
        "print(u.find_spec('pytest_timeout') is None, u.find_spec('hypothesis') is None,"
        " u.find_spec('playwright') is None, wslab.__file__)"
    )
    out = _run([str(python), "-c", probe], timeout=60, env=env, cwd=scratch).stdout.split()
    assert out[:3] == ["True", "True", "True"], out
    assert out[3].startswith(str(python.parent.parent)), f"wslab came from {out[3]}"


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_nbval_on_a_copy_of_the_notebooks_elsewhere(
    teacher: tuple[Path, dict[str, str], Path],
) -> None:
    python, env, scratch = teacher
    course = scratch / "my-course"
    shutil.copytree(ROOT / "notebooks", course, ignore=shutil.ignore_patterns("__pycache__"))
    result = _pytest_nbval(python, env, course, NOTEBOOKS)
    assert f"rootdir: {course}" in result.stdout or "rootdir" not in result.stdout


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_nbval_inside_the_repository(teacher: tuple[Path, dict[str, str], Path]) -> None:
    """From the root and from inside notebooks/, the repository's pytest configuration
    applies; one lesson each (the copy above runs both in full)."""
    python, env, _ = teacher
    _pytest_nbval(python, env, ROOT, [f"notebooks/{NOTEBOOKS[1]}"])
    _pytest_nbval(python, env, ROOT / "notebooks", NOTEBOOKS[:1])


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_the_classroom_lesson_is_skipped_without_the_classroom_extra(
    teacher: tuple[Path, dict[str, str], Path],
) -> None:
    """Lesson 14 starts a JupyterHub whose chat runs with the kernel's Python: in a venv
    with the lessons' extra only, every cell is skipped with the pip line, even on a
    machine where another Python's ``jupyterhub`` is on PATH (this one's is)."""
    python, env, scratch = teacher
    course = scratch / "hub-course"
    course.mkdir()
    shutil.copy2(ROOT / "notebooks" / "conftest.py", course)
    shutil.copy2(ROOT / "notebooks" / "nbval-sanitize.cfg", course)
    shutil.copy2(ROOT / "notebooks" / "14_classroom.ipynb", course)
    result = _run(
        [str(python), "-m", "pytest", "--nbval", "-q", "-rs", "14_classroom.ipynb"],
        timeout=600,
        env=env,
        cwd=course,
    )
    assert " skipped" in result.stdout and "passed" not in result.stdout, result.stdout
    assert 'pip install "wslab[classroom]"' in result.stdout, result.stdout
