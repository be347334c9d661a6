"""The Binder environment really runs the lessons.

Binder installs ``binder/requirements.txt`` on the Python of ``binder/runtime.txt``,
then runs ``binder/postBuild`` (``pip install --no-deps .``). This test does the
same in a fresh venv (on that Python when this machine has it, else on this one),
then runs two notebooks under ``pytest --nbval`` with a kernel of that venv: a
missing pin, a package left out of the wheel or a version that breaks a lesson
fails here instead of on a learner's screen.

Slow (a few hundred MB of wheels; pip's cache is reused) and bounded: every step
has a timeout.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

ROOT = Path(__file__).resolve().parents[2]
BINDER = ROOT / "binder"
# What only the Binder environment can show (the main suite runs every lesson on its
# own Python and packages): one student notebook (the widget stack as pinned; its check
# cell must fail with CheckFailed), and the solution of the lesson on scaling out (a
# check that passes, the pinned redis client, a redis-server from apt.txt and chat
# servers started with the venv's Python). (Its matplotlib import, which may print a
# font-cache notice on a fresh venv, is in a cell whose output nbval ignores.)
NOTEBOOKS = [
    "notebooks/00_start_here.ipynb",
    "notebooks/solutions/13_scaling_out.ipynb",
]
KERNEL = "wslab-binder-test"


def _binder_python() -> str:
    """The Python of runtime.txt if this machine has one, else the running Python."""
    version = (BINDER / "runtime.txt").read_text().strip().removeprefix("python-")
    pattern = os.path.expanduser(f"~/.pyenv/versions/{version}*/bin/python{version}")
    for candidate in [shutil.which(f"python{version}"), *sorted(glob.glob(pattern))]:
        if candidate is None:
            continue
        probe = subprocess.run(
            [candidate, "-c", "import ensurepip, venv"], capture_output=True, timeout=60
        )
        if probe.returncode == 0:  # a pyenv shim of an unselected version fails here
            return candidate
    return sys.executable


def _run(
    args: list[str],
    *,
    timeout: float,
    env: dict[str, str] | None = None,
    cwd: Path | str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a step; fail with the end of its output if it fails."""
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)
    assert result.returncode == 0, (
        f"{' '.join(args)} exited {result.returncode}\n"
        f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    )
    return result


def _package_copy(tmp: str) -> Path:
    """The files postBuild installs, copied: pip builds in the tree, so not in ours."""
    source = Path(tmp) / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "wslab", source / "wslab", ignore=ignore)
    shutil.copytree(BINDER, source / "binder")
    return source


@pytest.fixture(scope="module")
def binder_venv() -> Iterator[Path]:
    """A venv built the way Binder builds the image; removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="wslab-binder-") as tmp:
        venv = Path(tmp) / "venv"
        _run([_binder_python(), "-m", "venv", str(venv)], timeout=120)
        env = {
            **os.environ,
            "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
            "VIRTUAL_ENV": str(venv),
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "PIP_NO_INPUT": "1",
        }
        env.pop("PYTHONPATH", None)
        python = str(venv / "bin" / "python")
        _run(
            [python, "-m", "pip", "install", "-q", "-r", str(BINDER / "requirements.txt")],
            timeout=900,
            env=env,
        )
        _run(["bash", str(BINDER / "postBuild")], timeout=300, env=env, cwd=_package_copy(tmp))
        _run(
            [python, "-m", "ipykernel", "install", "--prefix", str(venv), "--name", KERNEL],
            timeout=120,
            env=env,
        )
        yield venv


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_binder_requirements_are_complete_and_consistent(binder_venv: Path) -> None:
    """pip check finds no missing or conflicting requirement among the pins."""
    _run([str(binder_venv / "bin" / "python"), "-m", "pip", "check"], timeout=120)


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_binder_installs_wslab_with_its_checks_not_the_work_tree(binder_venv: Path) -> None:
    """The installed wslab (from postBuild) has every module the lessons import."""
    code = (
        "import json, wslab, wslab.lab.widget, wslab.lab.checks.events, "
        "wslab.lab.checks.reconnect; "
        "print(json.dumps(wslab.__file__))"
    )
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    result = _run(
        [str(binder_venv / "bin" / "python"), "-c", code],
        timeout=120,
        env=env,  # a work tree on PYTHONPATH would be imported instead of the install
        cwd=tempfile.gettempdir(),
    )
    location = Path(json.loads(result.stdout))
    assert binder_venv in location.parents, f"wslab came from {location}, not the venv"


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_binder_environment_runs_the_notebooks(binder_venv: Path) -> None:
    """Two lessons pass pytest --nbval with a kernel of the Binder venv."""
    kernels = binder_venv / "share" / "jupyter"
    spec = json.loads((kernels / "kernels" / KERNEL / "kernel.json").read_text())
    assert spec["argv"][0].startswith(str(binder_venv)), spec["argv"]
    # A first notebook that fails unless nbval really runs the venv's kernel.
    probe = binder_venv.parent / "kernel_probe.ipynb"
    check = f"import sys\nassert sys.prefix == {str(binder_venv)!r}, sys.prefix"
    nbformat.write(new_notebook(cells=[new_code_cell(check)]), probe)
    # Our own ini: the project's addopts (say --nbval-current-env) must not apply here.
    ini = binder_venv.parent / "pytest.ini"
    ini.write_text("[pytest]\n")
    env = {**os.environ, "JUPYTER_PATH": str(kernels)}
    _run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-c",
            str(ini),
            "--rootdir",
            str(ROOT),
            "-q",
            "-p",
            "no:cacheprovider",
            "--nbval",
            "--nbval-kernel-name",
            KERNEL,
            "--nbval-sanitize-with",
            "notebooks/nbval-sanitize.cfg",
            str(probe),
            *NOTEBOOKS,
        ],
        timeout=600,
        env=env,
        cwd=ROOT,
    )
