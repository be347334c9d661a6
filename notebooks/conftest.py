"""pytest configuration for the lessons: ``pytest --nbval`` works from anywhere.

It needs only the kit, pytest and nbval. Whether it runs inside the repository
(``pytest notebooks/``, or ``pytest`` at the root, whose test paths include this
folder) or on a copy of this folder elsewhere (``cd my-course && pytest --nbval``), it:

- turns nbval on, as ``--nbval`` does, when nbval is installed and enabled
  (``-p no:nbval`` leaves the lessons out), unless ``--nbval-lax`` was given;
- marks every cell ``lessons``, so ``-m "not lessons"`` leaves them out;
- sanitizes outputs with ``nbval-sanitize.cfg`` next to this file (ports, tokens,
  room ids and times differ from run to run), unless ``--nbval-sanitize-with``
  names another file;
- runs every notebook in a kernel of the Python running pytest, unless
  ``--nbval-kernel-name`` names a kernel;
- accepts the repository's ``timeout`` setting when pytest-timeout is not
  installed, instead of stopping on an unknown option;
- skips every cell of a notebook that needs a program this machine lacks, with
  the install command as the reason (``pytest -rs`` prints it). A notebook says
  what it needs in its metadata: ``"wslab": {"requires": ["redis-server"]}``
  (lesson 13), ``["configurable-http-proxy", "jupyterhub"]`` (lesson 14);
- skips every cell tagged ``browser`` with that reason: such a cell talks to the
  page that shows the notebook, so it runs only in JupyterLab in a browser (the
  repository's browser tests run it there), and its stored output was recorded there.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

SANITIZE = Path(__file__).resolve().parent / "nbval-sanitize.cfg"
BROWSER_CELL = (
    "a browser cell: it needs this notebook open in JupyterLab in a browser "
    "(the browser tests run it there); its stored output was recorded there"
)


def pytest_addoption(parser: Any, pluginmanager: Any) -> None:
    if not pluginmanager.has_plugin("timeout"):
        parser.addini("timeout", "per-test timeout of pytest-timeout (not installed: unused)")


def pytest_configure(config: Any) -> None:
    config.addinivalue_line("markers", "lessons: a cell of a notebook, run by nbval")
    option = config.option
    if not hasattr(option, "nbval_sanitize_with"):
        return  # nbval is not installed (or -p no:nbval): nothing to configure
    if not option.nbval_lax:
        option.nbval = True
    if option.nbval_sanitize_with is None and not getattr(option, "sanitize_with", None):
        option.nbval_sanitize_with = str(SANITIZE)
    if not option.nbval_kernel_name and not getattr(option, "current_env", False):
        option.nbval_current_env = True


def pytest_sessionstart() -> None:
    # On a new machine the first import of matplotlib writes "building the font cache"
    # to stderr; inside a lesson's kernel that would differ from the stored output.
    # Build the cache here, once, before any kernel starts.
    # (The lessons that plot need matplotlib; the others run without it.)
    with contextlib.suppress(ImportError):
        import matplotlib.font_manager  # noqa: F401


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    reasons: dict[Path, str | None] = {}
    for item in items:
        path = Path(str(item.path))
        if path.suffix != ".ipynb":
            continue
        item.add_marker("lessons")
        if path not in reasons:
            reasons[path] = _missing_program(path)
        if reasons[path] is not None:
            item.add_marker(pytest.mark.skip(reason=reasons[path]))
        elif "browser" in getattr(getattr(item, "cell", None), "metadata", {}).get("tags", []):
            item.add_marker(pytest.mark.skip(reason=BROWSER_CELL))


def _missing_program(notebook: Path) -> str | None:
    """Why ``notebook`` cannot run here (a program it requires is missing), or None."""
    try:
        metadata = json.loads(notebook.read_text(encoding="utf-8")).get("metadata", {})
    except (OSError, ValueError):
        return None  # nbval reports an unreadable notebook itself
    requires = metadata.get("wslab", {}).get("requires", [])
    for program in [requires] if isinstance(requires, str) else requires:
        # A Python program the lesson also imports (jupyterhub: the chat's service
        # runs with the kernel's Python) must be installed in this Python, not only
        # somewhere on PATH.
        importable = program not in _PYTHON_PROGRAMS or importlib.util.find_spec(program)
        if shutil.which(program) is None or not importable:
            from wslab.errors import MissingProgramError

            return str(MissingProgramError(program, _install_hint(program)))
    return None


#: The programs a lesson may require that are Python packages of the kernel's Python too.
_PYTHON_PROGRAMS = {"jupyterhub"}


def _install_hint(program: str) -> str:
    """How to install ``program``, one of the programs a lesson may require."""
    from wslab.testing.hub import HUB_INSTALL_HINT, PROXY_INSTALL_HINT
    from wslab.testing.processes import REDIS_INSTALL_HINT

    hints = {
        "redis-server": REDIS_INSTALL_HINT,
        "configurable-http-proxy": PROXY_INSTALL_HINT,
        "jupyterhub": HUB_INSTALL_HINT,
    }
    return hints.get(program, f"install {program}")
