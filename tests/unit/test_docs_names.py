"""Every ``Class.attribute`` the docs name in code spans exists in the code."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

import wslab

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: `Room.close`, `room.Room._claim`, `wslab.client.ChatClient.users` in a code span.
NAME = re.compile(r"`(?:[a-z_.]+\.)?([A-Z][A-Za-z0-9]+)\.([A-Za-z_][A-Za-z0-9_]*)")


def _classes() -> dict[str, list[type]]:
    """Every class defined in a wslab module, by name."""
    found: dict[str, list[type]] = {}
    for module in pkgutil.walk_packages(wslab.__path__, "wslab."):
        try:
            loaded = importlib.import_module(module.name)
        except ImportError:  # an optional extra this machine lacks
            continue
        for name, value in vars(loaded).items():
            if inspect.isclass(value) and value.__module__ == loaded.__name__:
                found.setdefault(name, []).append(value)
    return found


def _named() -> list[tuple[str, str, str]]:
    return [
        (f"{path.relative_to(ROOT)}:{number}", match[1], match[2])
        for path in DOCS
        for number, line in enumerate(path.read_text().splitlines(), 1)
        for match in NAME.finditer(line)
    ]


CLASSES = _classes()


def _has(cls: type, attribute: str) -> bool:
    """A class attribute, a declared field, or one its methods set on ``self``."""
    if hasattr(cls, attribute):
        return True
    for base in inspect.getmro(cls):
        if attribute in getattr(base, "__annotations__", {}):
            return True
        try:
            source = inspect.getsource(base)
        except (OSError, TypeError):
            continue
        if re.search(rf"\bself\.{attribute}\s*(?::[^=]+)?=[^=]", source):
            return True
    return False


@pytest.mark.parametrize(("where", "cls", "attribute"), _named(), ids=lambda v: str(v))
def test_a_method_the_docs_name_exists(where: str, cls: str, attribute: str) -> None:
    if cls not in CLASSES:
        pytest.skip(f"{cls} is not a wslab class")
    assert any(_has(c, attribute) for c in CLASSES[cls]), f"{where}: {cls}.{attribute}"
