"""Every close the kit performs is listed under its code in ``CloseCode.causes``.

The code under ``wslab/`` is parsed with :mod:`ast` (nothing is imported) and each
*close site* is found: a call of ``close``, ``aclose``, ``close_soon``, ``fail`` or
``send_close`` whose code is a ``CloseCode`` member, and each ``CloseSocket(socket,
code, reason)`` the room returns. A site's reason is read as a pattern: a literal, an
f-string or a ``"...".format(...)`` of a module constant (each ``{...}`` stands for
any text), a module constant, or a ``*CONSTANT`` tuple of code and reason. Then:

- each code a site uses lists a cause, and the site's reason matches the quoted
  ``(reason "...")`` of one of that code's causes (``N`` there stands for a number);
- each quoted reason is one some site writes (a cause no code has is not listed);
- the JavaScript the kit serves or embeds (``ws.close(1000, "...")``) is held to the
  same two rules;
- each ``CloseCode`` member named anywhere in the kit lists a cause, and 1012 none.

Closes that websockets itself makes (1002, 1007, 1009, keepalive's 1011) and the
ones a peer's disappearance causes (1005, 1006) have no site in the kit: their causes
quote no reason, and the table's text is all that says them.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from wslab.protocol import CloseCode

PACKAGE = Path(__file__).resolve().parents[2] / "wslab"
CLOSE_METHODS = {"close", "aclose", "close_soon", "fail", "send_close"}
QUOTED_REASON = re.compile(r'\(reason "([^"]*)"\)')
JS_CLOSE = re.compile(r"""\bws\.close\((\d{4}),\s*["']([^"']*)["']\)""")


@dataclass(frozen=True)
class CloseSite:
    """One close the kit writes: where, with which code, and its reason as a regex."""

    where: str
    code: CloseCode
    reason: str  # a regular expression; "" for a close without a reason


def _constants(body: list[ast.stmt]) -> dict[str, ast.expr]:
    """The ``NAME = value`` assignments in ``body`` (a module's or a function's)."""
    found: dict[str, ast.expr] = {}
    for node in body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name):
                found[target.id] = node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value:
            found[node.target.id] = node.value
    return found


def _template(text: str) -> str:
    """A ``str.format`` template as a regex: each ``{...}`` stands for any text."""
    return ".+".join(re.escape(part) for part in re.split(r"\{[^}]*\}", text))


def _reason(node: ast.expr | None, constants: dict[str, ast.expr]) -> str:
    """The regex a reason argument matches; raise when it cannot be read statically."""
    if node is None:
        return ""
    if isinstance(node, ast.Name) and node.id in constants:
        return _reason(constants[node.id], constants)
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return re.escape(node.value)
    if isinstance(node, ast.JoinedStr):
        return "".join(
            re.escape(part.value) if isinstance(part, ast.Constant) else ".+"
            for part in node.values
        )
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "format"
    ):
        template = node.func.value
        if isinstance(template, ast.Name):
            template = constants.get(template.id, template)
        if isinstance(template, ast.Constant) and isinstance(template.value, str):
            return _template(template.value)
    raise AssertionError(f"a close reason this test cannot read: {ast.unparse(node)}")


def _close_code(node: ast.expr) -> CloseCode | None:
    """``CloseCode.X`` as a member; None for any other expression (a code passed on)."""
    if (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "CloseCode"
    ):
        return CloseCode[node.attr]
    return None


def _arguments(call: ast.Call, constants: dict[str, ast.expr]) -> list[ast.expr]:
    """The positional arguments, a ``*CONSTANT`` tuple spelled out."""
    spelled: list[ast.expr] = []
    for argument in call.args:
        if isinstance(argument, ast.Starred) and isinstance(argument.value, ast.Name):
            value = constants.get(argument.value.id)
            if not isinstance(value, ast.Tuple):
                return []  # arguments passed on (``*args``): the caller is the site
            spelled += value.elts
        else:
            spelled.append(argument)
    return spelled


def _site(call: ast.Call, constants: dict[str, ast.expr], where: str) -> CloseSite | None:
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    if name not in CLOSE_METHODS and name != "CloseSocket":
        return None
    args = _arguments(call, constants)
    if name == "CloseSocket":  # CloseSocket(socket, code, reason)
        args = args[1:]
    keywords = {k.arg: k.value for k in call.keywords if k.arg}
    code_node = args[0] if args else keywords.get("code")
    code = None if code_node is None else _close_code(code_node)
    if code is None:
        return None  # no code, or one the caller chose: that caller is the site
    reason_node = args[1] if len(args) > 1 else keywords.get("reason")
    return CloseSite(where, code, _reason(reason_node, constants))


def _statements(scope: ast.AST) -> list[ast.stmt]:
    """A function's statements at any depth (a module: its top level only)."""
    if isinstance(scope, ast.Module):
        return scope.body
    return [node for node in ast.walk(scope) if isinstance(node, ast.stmt)]


def close_sites() -> list[CloseSite]:
    """Every close with a ``CloseCode`` member in the kit's Python and JavaScript."""
    sites = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        module = _constants(tree.body)
        names: dict[int, dict[str, ast.expr]] = {}  # a call -> the names it can see
        for scope in ast.walk(tree):  # outer scopes first: an inner one's names win
            if isinstance(scope, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef):
                local = {**module, **_constants(_statements(scope))}
                names.update({id(n): local for n in ast.walk(scope) if isinstance(n, ast.Call)})
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                where = f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"
                site = _site(node, names[id(node)], where)
                if site is not None:
                    sites.append(site)
    for path in sorted([*PACKAGE.rglob("*.js"), *PACKAGE.rglob("*.py")]):
        for match in JS_CLOSE.finditer(path.read_text()):
            where = f"{path.relative_to(PACKAGE.parent)} (JavaScript)"
            sites.append(CloseSite(where, CloseCode(int(match[1])), re.escape(match[2])))
    return sites


def documented_reasons(code: CloseCode) -> list[str]:
    """The reasons quoted in ``code``'s causes, ``N`` standing for a number (or a size)."""
    return [
        re.sub(r"\bN\b", "\0", quoted)
        for cause in code.causes
        for quoted in QUOTED_REASON.findall(cause)
    ]


def _matches(site: CloseSite, quoted: str) -> bool:
    """Whether the documented reason ``quoted`` (``\\0`` for N) fits the site's pattern."""
    example = quoted.replace("\0", "7")
    return re.fullmatch(site.reason, example) is not None


SITES = close_sites()


def test_the_scan_finds_the_closes_the_kit_is_known_to_make() -> None:
    found = {(site.code, site.reason) for site in SITES}
    assert (CloseCode.POLICY_VIOLATION, re.escape("id taken")) in found
    assert (CloseCode.NORMAL_CLOSURE, re.escape("join timeout")) in found  # the client's
    assert (CloseCode.POLICY_VIOLATION, re.escape("no hub user")) in found
    assert (CloseCode.GOING_AWAY, re.escape("server stopping")) in found  # a keyword call
    assert (CloseCode.NORMAL_CLOSURE, re.escape("widget closed")) in found  # JavaScript
    assert any(site.reason == ".+" + re.escape(" protocol errors") for site in SITES)  # f-string
    assert any("server\\ full" in site.reason for site in SITES)  # a constant's .format()
    assert any("backplane" in site.reason for site in SITES)  # *(code, reason)
    assert len(SITES) >= 14


@pytest.mark.parametrize("site", SITES, ids=lambda site: f"{site.where}-{int(site.code)}")
def test_each_close_site_is_a_cause_of_its_code(site: CloseSite) -> None:
    assert site.code.causes, f"{site.where}: closes with {site.code!r}, which lists no cause"
    if not site.reason:
        return
    quoted = documented_reasons(site.code)
    assert any(_matches(site, reason) for reason in quoted), (
        f"{site.where}: closes with {int(site.code)} and a reason matching {site.reason!r};"
        f' add the cause with (reason "...") to _CLOSE_CAUSES in wslab/protocol.py'
    )


@pytest.mark.parametrize("code", list(CloseCode), ids=lambda code: str(int(code)))
def test_each_reason_a_cause_quotes_is_written_by_some_close(code: CloseCode) -> None:
    used = [site for site in SITES if site.code == code]
    for quoted in documented_reasons(code):
        assert any(_matches(site, quoted) for site in used), (
            f"{int(code)}: no close in the kit sends the reason {quoted!r}"
        )


def test_every_close_code_the_kit_names_lists_its_causes() -> None:
    named: set[CloseCode] = set()
    for path in PACKAGE.rglob("*.py"):
        if path.name == "protocol.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            code = _close_code(node) if isinstance(node, ast.Attribute) else None
            if code is not None:
                named.add(code)
    assert named, "no CloseCode member found in the code"
    assert CloseCode.SERVICE_RESTART not in named  # the kit never sends 1012
    assert [code for code in named if not code.causes] == []
    assert not CloseCode.SERVICE_RESTART.causes


def test_each_code_the_server_has_several_reasons_for_lists_them_all() -> None:
    causes = " ".join(CloseCode.TRY_AGAIN_LATER.causes)
    for cause in ("max_clients", "max_buffer", "Redis"):
        assert cause in causes
    causes = " ".join(CloseCode.POLICY_VIOLATION.causes)
    for cause in ("id taken", "max_strikes", "join_timeout", "hub user"):
        assert cause in causes
    assert "websockets closes it" in " ".join(CloseCode.PROTOCOL_ERROR.causes)
