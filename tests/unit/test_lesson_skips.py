"""Why nbval skips a lesson's cell: the reason is given, never a bare "Skipped".

The lessons' ``notebooks/conftest.py`` marks each cell tagged ``browser`` to be
skipped with :data:`BROWSER_CELL` as its reason (``pytest -rs`` prints it).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def lessons_conftest() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lessons_conftest", NOTEBOOKS / "conftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Cell:
    """What nbval's item for one cell offers the conftest: a path, a cell, markers."""

    def __init__(self, notebook: Path, tags: list[str]) -> None:
        self.path = notebook
        self.cell = SimpleNamespace(metadata={"tags": tags})
        self.markers: list[Any] = []

    def add_marker(self, marker: Any) -> None:
        self.markers.append(marker)


def test_a_browser_cell_is_skipped_with_the_reason() -> None:
    conftest = lessons_conftest()
    notebook = NOTEBOOKS / "08_chat.ipynb"  # requires no program
    browser, plain = Cell(notebook, ["browser"]), Cell(notebook, ["nbval-ignore-output"])
    conftest.pytest_collection_modifyitems(None, [browser, plain])
    skips = [m for m in browser.markers if getattr(m, "name", None) == "skip"]
    assert [m.kwargs["reason"] for m in skips] == [conftest.BROWSER_CELL]
    assert conftest.BROWSER_CELL == (
        "a browser cell: it needs this notebook open in JupyterLab in a browser "
        "(the browser tests run it there); its stored output was recorded there"
    )
    assert not any(getattr(m, "name", None) == "skip" for m in plain.markers)


def test_a_lesson_has_browser_cells_to_skip() -> None:
    tagged = [p for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb") if '"browser"' in p.read_text()]
    assert tagged, "no browser cell: the skip above has nothing to do"
