"""``pip install wslab`` is light: the library needs websockets only, the lessons are an extra.

A fresh venv gets ``pip install .`` (pip's cache is reused; the package is built
from a copy, not the work tree), then must list ``websockets`` as its only
third-party distribution, serve and chat in a subprocess, run the CLI, and say
which extra to install when the widget is imported. Bounded: every step has a timeout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: What a fresh venv holds besides the project's own requirements.
TOOLING = {"pip", "setuptools", "wheel"}

CHAT = """
import json
from wslab import BlockingChatClient, ChatServer

with ChatServer() as server:
    with BlockingChatClient(server.url, "ann") as ann, BlockingChatClient(server.url, "bob") as bob:
        ann.send_message("hello from a light install")
        seen = bob.wait_for_message("hello from a light install")
        print(json.dumps({"from": seen["username"], "users": len(bob.users)}))
"""

DISTRIBUTIONS = """
import importlib.metadata, json
print(json.dumps(sorted({d.metadata["Name"].lower() for d in importlib.metadata.distributions()})))
"""

WIDGET = """
import importlib
import wslab
for name in ("wslab.lab.widget", "wslab.lab.browser"):
    try:
        importlib.import_module(name)
    except ImportError as error:
        print(isinstance(error, wslab.WslabError), str(error))
    else:
        print("imported")
"""


def _run(args: list[str], *, timeout: float, env: dict[str, str], cwd: Path | str) -> str:
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)
    assert result.returncode == 0, (
        f"{' '.join(args)} exited {result.returncode}\n{result.stdout[-3000:]}\n"
        f"{result.stderr[-3000:]}"
    )
    return result.stdout


@pytest.fixture(scope="module")
def light_venv() -> Iterator[tuple[Path, dict[str, str]]]:
    with tempfile.TemporaryDirectory(prefix="wslab-light-") as tmp:
        source = Path(tmp) / "source"
        source.mkdir()
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(ROOT / name, source / name)
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        shutil.copytree(ROOT / "wslab", source / "wslab", ignore=ignore)
        venv = Path(tmp) / "venv"
        env = {
            **os.environ,
            "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
            "VIRTUAL_ENV": str(venv),
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "PIP_NO_INPUT": "1",
        }
        env.pop("PYTHONPATH", None)
        _run([sys.executable, "-m", "venv", str(venv)], timeout=120, env=env, cwd=tmp)
        python = str(venv / "bin" / "python")
        _run([python, "-m", "pip", "install", "-q", str(source)], timeout=600, env=env, cwd=tmp)
        yield venv, env


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_websockets_is_the_only_third_party_dependency(
    light_venv: tuple[Path, dict[str, str]],
) -> None:
    venv, env = light_venv
    out = _run([str(venv / "bin" / "python"), "-c", DISTRIBUTIONS], timeout=60, env=env, cwd=venv)
    installed = set(json.loads(out)) - TOOLING
    assert installed == {"wslab", "websockets"}, installed


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_light_install_serves_and_chats_and_runs_the_cli(
    light_venv: tuple[Path, dict[str, str]],
) -> None:
    venv, env = light_venv
    python = str(venv / "bin" / "python")
    out = _run([python, "-c", CHAT], timeout=120, env=env, cwd=venv)
    assert json.loads(out) == {"from": "ann", "users": 2}
    help_text = _run([python, "-m", "wslab", "--help"], timeout=60, env=env, cwd=venv)
    assert "serve" in help_text
    (venv / "lessons" / "solutions").mkdir(parents=True)
    exercises = subprocess.run(
        [python, "-m", "wslab", "exercises", "--generate", "--root", str(venv / "lessons")],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=venv,
    )
    assert exercises.returncode == 2
    assert exercises.stderr.strip().endswith('pip install "wslab[lab]"'), exercises.stderr


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_widget_without_the_extra_says_which_extra_to_install(
    light_venv: tuple[Path, dict[str, str]],
) -> None:
    venv, env = light_venv
    out = _run([str(venv / "bin" / "python"), "-c", WIDGET], timeout=60, env=env, cwd=venv)
    lines = out.splitlines()
    assert len(lines) == 2, out
    for line in lines:  # the chat widget, then the browser socket
        assert line.startswith("True ") and 'pip install "wslab[lab]"' in line, out
