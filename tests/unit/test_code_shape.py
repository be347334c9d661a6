"""The library's code keeps a readable shape: no class over 350 lines, no function over 80.

Each module under ``wslab/`` is parsed with :mod:`ast` (nothing is imported); a class
or a function counts from its first decorator to its last line, docstring included.
"""

from __future__ import annotations

import ast
from pathlib import Path

import wslab

MAX_CLASS_LINES = 350
MAX_FUNCTION_LINES = 80
PACKAGE = Path(wslab.__file__).parent


def _lines(node: ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    assert node.end_lineno is not None
    return node.end_lineno - first + 1


def oversized(source: str, name: str) -> list[str]:
    """Every class over :data:`MAX_CLASS_LINES` and function over :data:`MAX_FUNCTION_LINES`."""
    found = []
    for node in ast.walk(ast.parse(source, name)):
        if isinstance(node, ast.ClassDef):
            limit, kind = MAX_CLASS_LINES, "class"
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            limit, kind = MAX_FUNCTION_LINES, "function"
        else:
            continue
        if (length := _lines(node)) > limit:
            found.append(f"{name}:{node.lineno} {kind} {node.name} is {length} lines (> {limit})")
    return found


def test_no_class_over_350_lines_and_no_function_over_80() -> None:
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) > 10, f"no modules found under {PACKAGE}"
    found = []
    for path in modules:
        found += oversized(path.read_text(encoding="utf-8"), str(path.relative_to(PACKAGE.parent)))
    assert not found, "too long:\n" + "\n".join(found)


def test_the_shape_check_counts_from_the_decorator_and_names_the_offender() -> None:
    def source(body_lines: int) -> str:
        body = "\n".join(f"        x{i} = {i}" for i in range(body_lines))
        return f"class Small:\n    @staticmethod\n    def long() -> None:\n{body}\n"

    assert oversized(source(MAX_FUNCTION_LINES - 2), "m.py") == []  # exactly the limit
    assert oversized(source(MAX_FUNCTION_LINES - 1), "m.py") == [
        f"m.py:3 function long is {MAX_FUNCTION_LINES + 1} lines (> {MAX_FUNCTION_LINES})"
    ]
