"""Every error the kit raises on purpose is in the ``WslabError`` tree.

The modules under ``wslab/`` are parsed with :mod:`ast` (nothing is imported):

- each ``raise`` of a built-in exception is one that ``wslab/errors.py`` allows: a
  wrong argument (``ValueError``, ``TypeError``), ``AttributeError`` in a module's
  ``__getattr__``, ``NotImplementedError`` as the whole body of an abstract method, or
  a place listed in :data:`ALLOWED` with its reason (each entry must still be used);
- each exception class defined in the kit derives from ``WslabError``, but for the
  private ones in :data:`PRIVATE_EXCEPTIONS`, which never leave their module;
- each one under ``WslabError`` is drawn in the tree of ``wslab/errors.py``'s docstring.
"""

from __future__ import annotations

import ast
import builtins
from collections.abc import Iterator
from pathlib import Path

import wslab.errors

ROOT = Path(__file__).resolve().parents[2]
BUILTIN_EXCEPTIONS = {
    name
    for name, value in vars(builtins).items()
    if isinstance(value, type) and issubclass(value, BaseException)
}
WRONG_ARGUMENT = {"ValueError", "TypeError"}

#: (module, built-in exception) -> why it is not a WslabError there.
ALLOWED: dict[tuple[str, str], str] = {
    ("wslab/loopthread.py", "RuntimeError"): (
        "a call from the loop's own thread, or on a loop that is not running (errors.py)"
    ),
    ("wslab/lab/widget.py", "RuntimeError"): (
        "called off the kernel's event loop: asyncio's own error, with what to do (errors.py)"
    ),
    ("wslab/loopthread.py", "TimeoutError"): "start() and call() ran out of time (errors.py)",
    ("wslab/wiretap.py", "TimeoutError"): "WireTap.wait_for ran out of time (errors.py)",
    ("wslab/lab/browser.py", "TimeoutError"): "BrowserSocket.wait_for ran out of time (errors.py)",
    ("wslab/lab/checks/scaling.py", "TimeoutError"): (
        "a check's wait for Redis's state ran out of time (errors.py)"
    ),
    ("wslab/testing/processes.py", "ConnectionResetError"): (
        "_ping's 'no reply': an OSError its callers catch and retry; it never leaves the module"
    ),
    ("wslab/testing/processes.py", "AssertionError"): "marks a line that cannot be reached",
    ("wslab/lab/checks/wire.py", "AssertionError"): (
        "the check's own frames are whole: marks a branch that cannot be taken"
    ),
    ("wslab/lab/exercises.py", "SystemExit"): (
        "the exercises command line ends with one line and exit status 1"
    ),
}

#: (module, class) -> why this exception class is outside the tree.
PRIVATE_EXCEPTIONS: dict[tuple[str, str], str] = {
    ("wslab/wiretap.py", "_BodyTooLarge"): "raised and caught inside the HTTP decoder",
    ("wslab/lab/checks/asyncio_kernel.py", "_Hung"): (
        "the check's own alarm; caught by the check, which says what hung"
    ),
}


def modules() -> Iterator[tuple[str, ast.Module]]:
    for path in sorted((ROOT / "wslab").rglob("*.py")):
        yield str(path.relative_to(ROOT)), ast.parse(path.read_text(), str(path))


def _raised_name(node: ast.Raise) -> str | None:
    """The built-in exception ``node`` raises by name (``raise X`` or ``raise X(...)``)."""
    exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
    if isinstance(exc, ast.Name) and exc.id in BUILTIN_EXCEPTIONS:
        return exc.id
    return None


def _is_abstract(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """A body of a docstring and ``raise NotImplementedError`` only."""
    body = function.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    return len(body) == 1 and isinstance(body[0], ast.Raise)


def _allowed_by_shape(name: str, function: ast.AST | None) -> bool:
    functions = ast.FunctionDef | ast.AsyncFunctionDef
    if name in WRONG_ARGUMENT:
        return True
    if name == "AttributeError":
        return isinstance(function, functions) and function.name == "__getattr__"
    if name == "NotImplementedError":
        return isinstance(function, functions) and _is_abstract(function)
    return False


def builtin_raises() -> list[tuple[str, int, str, ast.AST | None]]:
    """Every ``raise`` of a built-in exception: module, line, name, enclosing function."""
    found = []
    for module, tree in modules():
        enclosing: dict[int, ast.AST] = {}
        for node in ast.walk(tree):  # outer functions first: the innermost one wins
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                enclosing.update({id(inner): node for inner in ast.walk(node)})
        for node in ast.walk(tree):
            if isinstance(node, ast.Raise) and (name := _raised_name(node)):
                found.append((module, node.lineno, name, enclosing.get(id(node))))
    return found


def test_every_builtin_exception_raised_on_purpose_is_allowed() -> None:
    raises = builtin_raises()
    assert len(raises) > 20  # the scan sees the kit's raises
    outside = [
        f"{module}:{line} raise {name}"
        for module, line, name, function in raises
        if not _allowed_by_shape(name, function) and (module, name) not in ALLOWED
    ]
    assert outside == [], (
        "raise a WslabError subclass (wslab/errors.py) here, or add the place to ALLOWED"
        f" with its reason: {outside}"
    )
    used = {(module, name) for module, _, name, _ in raises}
    assert [place for place in ALLOWED if place not in used] == []  # no stale entry


def exception_classes() -> dict[str, tuple[str, list[str]]]:
    """The kit's exception classes: name -> (module, names of its bases)."""
    classes = {
        node.name: (module, [ast.unparse(base).split(".")[-1] for base in node.bases])
        for module, tree in modules()
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
    }
    found: dict[str, tuple[str, list[str]]] = {}
    while True:  # a class is an exception when one of its bases is
        more = {
            name: entry
            for name, entry in classes.items()
            if name not in found and any(b in BUILTIN_EXCEPTIONS or b in found for b in entry[1])
        }
        if not more:
            return found
        found.update(more)


def _ancestors(name: str, classes: dict[str, tuple[str, list[str]]]) -> set[str]:
    seen = set()
    todo = [name]
    while todo:
        for base in classes.get(todo.pop(), ("", []))[1]:
            if base not in seen:
                seen.add(base)
                todo.append(base)
    return seen


def test_every_exception_class_in_the_kit_is_a_wslab_error() -> None:
    classes = exception_classes()
    assert {"WslabError", "HubAPIError", "CheckFailed", "_Hung"} <= set(classes)
    outside = sorted(
        f"{module}: {name}"
        for name, (module, _) in classes.items()
        if name != "WslabError"
        and "WslabError" not in _ancestors(name, classes)
        and (module, name) not in PRIVATE_EXCEPTIONS
    )
    assert outside == [], f"derive these from a WslabError subclass: {outside}"
    defined = {(module, name) for name, (module, _) in classes.items()}
    assert [place for place in PRIVATE_EXCEPTIONS if place not in defined] == []  # no stale one


def test_the_errors_docstring_draws_every_wslab_error_in_the_kit() -> None:
    classes = exception_classes()
    tree = wslab.errors.__doc__ or ""
    in_tree = [name for name in classes if "WslabError" in _ancestors(name, classes)]
    assert [name for name in in_tree if f"── {name} " not in tree] == []


def test_the_errors_the_kit_used_to_raise_outside_the_tree_keep_their_builtin_base() -> None:
    from wslab.testing.hub import HubAPIError

    assert issubclass(HubAPIError, wslab.errors.ClassroomError)
    assert issubclass(HubAPIError, RuntimeError)  # what callers caught before
    error = HubAPIError("GET", "/users", 403, "forbidden")
    assert (error.status, error.body, str(error)) == (
        403,
        "forbidden",
        "GET /users: HTTP 403 forbidden",
    )
