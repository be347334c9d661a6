"""The package's shape: public names, pure modules, and the lint and type checks."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

import wslab

ROOT = Path(__file__).resolve().parent.parent
PURE_MODULES = ["protocol", "room", "engine", "presence", "retry", "clock", "errors", "display"]
IO_IMPORTS = {"asyncio", "websockets", "threading", "socket", "ipywidgets", "IPython"}


def imported_roots(module: str) -> set[str]:
    tree = ast.parse((ROOT / "wslab" / f"{module}.py").read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


PUBLIC = [
    "BackplaneError",
    "BlockingChatClient",
    "BrowserSocket",
    "ChatClient",
    "ChatConnectionError",
    "ChatServer",
    "ChatWidget",
    "ClientProtocolError",
    "CloseCode",
    "ConfigurationError",
    "ErrorCode",
    "FakeClock",
    "MissingExtraError",
    "MissingProgramError",
    "PendingMessage",
    "ProcessStartError",
    "ProtocolError",
    "RawEvent",
    "Reconnector",
    "RedisServer",
    "RetryPolicy",
    "Room",
    "ServerProcess",
    "ServerProtocolError",
    "StoreError",
    "SystemClock",
    "WireRecord",
    "WireTap",
    "WslabError",
    "backoff",
    "chat",
    "describe_close",
    "have_redis_server",
    "should_retry",
]


def test_every_public_name_is_exported_and_exists() -> None:
    assert wslab.__all__ == PUBLIC  # a change to the public surface is a decision: update both
    for name in wslab.__all__:
        assert getattr(wslab, name) is not None


def test_every_error_wslab_raises_on_purpose_is_a_wslab_error() -> None:
    from wslab.lab.checks._common import CheckFailed

    for error in (
        wslab.ProtocolError,
        wslab.ClientProtocolError,
        wslab.ServerProtocolError,
        wslab.ChatConnectionError,
        wslab.MissingExtraError,
        wslab.StoreError,
        wslab.MissingProgramError,
        wslab.ProcessStartError,
        wslab.BackplaneError,
        wslab.ConfigurationError,
        CheckFailed,
    ):
        assert issubclass(error, wslab.WslabError), error
    assert issubclass(wslab.ChatConnectionError, ConnectionError)
    assert not issubclass(wslab.ConfigurationError, ConnectionError)  # a fix, not a retry
    assert issubclass(CheckFailed, AssertionError)
    assert wslab.protocol.ProtocolError is wslab.ProtocolError


def test_a_bad_frame_says_which_side_sent_it() -> None:
    from wslab.protocol import ErrorCode, parse_client_event, parse_server_event

    with pytest.raises(wslab.ClientProtocolError) as from_client:
        parse_client_event("{not json")
    with pytest.raises(wslab.ServerProtocolError) as from_server:
        parse_server_event('{"event": "nope"}')
    assert from_client.value.code is ErrorCode.BAD_JSON
    assert from_server.value.code is ErrorCode.UNKNOWN_EVENT
    assert not isinstance(from_client.value, wslab.ServerProtocolError)
    assert not isinstance(from_server.value, wslab.ClientProtocolError)


@pytest.mark.parametrize("module", PURE_MODULES)
def test_pure_modules_import_no_io(module: str) -> None:
    assert imported_roots(module) & IO_IMPORTS == set()


def test_the_server_never_imports_the_widget_and_the_client_never_the_server() -> None:
    source = (ROOT / "wslab" / "server.py").read_text()
    assert "widget" not in {n.split(".")[-1] for n in imported_roots("server")}
    assert "from .widget" not in source
    assert "from .server" not in (ROOT / "wslab" / "client.py").read_text()


def test_the_package_ships_its_type_marker_and_page() -> None:
    assert (ROOT / "wslab" / "py.typed").exists()
    for name in ["index.html", "chat.js", "chat.css"]:
        assert (ROOT / "wslab" / "static" / name).exists()


def run_module(module: str, *arguments: str) -> None:
    """Run a tool of this interpreter's environment (no PATH lookup: a venv need not be active)."""
    if importlib.util.find_spec(module) is None:
        pytest.fail(f"{module} is not installed: pip install -e '.[dev]'")
    command = [sys.executable, "-m", module, *arguments]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_lint_is_clean() -> None:
    run_module("ruff", "check", "wslab", "tests", "benchmarks")


def test_ruff_format_is_clean() -> None:
    run_module("ruff", "format", "--check", "wslab", "tests", "benchmarks")


def test_mypy_strict_is_clean() -> None:
    run_module("mypy")


def test_the_readme_layout_lists_every_module() -> None:
    readme = (ROOT / "README.md").read_text()
    layout = readme[readme.index("## Layout") :]
    layout = layout[: layout.index("\n## ")]
    modules = sorted(p.name for p in (ROOT / "wslab").glob("*.py"))
    missing = [name for name in modules if f"  {name}" not in layout]
    assert missing == [], f"README's Layout does not list {missing}"
