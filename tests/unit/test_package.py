"""The package's shape: public names, its version, pure modules, what it ships.

The lint and type checks run the tools in tests/system/test_code_checks.py.
"""

from __future__ import annotations

import ast
import importlib.metadata
import tomllib
from pathlib import Path

import pytest

import wslab
from wslab._version import UNKNOWN, _source_version, read_version

ROOT = Path(__file__).resolve().parents[2]
PURE_MODULES = [
    "protocol",
    "room",
    "retry",
    "clock",
    "errors",
    "display",
    "options",
    "frontend",
    "outbox",
    "chatstate",
    "rawlog",
    "engine",
    "presence",
    "moderation",
    "redact",
    "_version",
]
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
    "CheckFailed",
    "ClientProtocolError",
    "CloseCode",
    "ConfigurationError",
    "ErrorCode",
    "FakeClock",
    "Limits",
    "MissingExtraError",
    "MissingProgramError",
    "PendingMessage",
    "ProcessStartError",
    "ProtocolError",
    "RawEvent",
    "Reconnector",
    "RedisOptions",
    "RedisServer",
    "RetryPolicy",
    "Room",
    "ServerProcess",
    "ServerProtocolError",
    "StoreError",
    "SystemClock",
    "Timeouts",
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


def test_the_version_is_the_installed_distributions() -> None:
    assert wslab.__version__ == importlib.metadata.version("wslab")
    assert wslab.__version__ not in ("", UNKNOWN)


def test_no_source_file_writes_the_version_down() -> None:
    """pyproject.toml holds the one version: no module assigns ``__version__`` a literal."""
    literal = []
    for path in sorted((ROOT / "wslab").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            targets = node.targets if isinstance(node, ast.Assign) else []
            if isinstance(node, (ast.AnnAssign, ast.AugAssign)):
                targets = [node.target]
            names = [t.id for t in targets if isinstance(t, ast.Name)]
            value = getattr(node, "value", None)
            if "__version__" in names and isinstance(value, ast.Constant):
                literal.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert literal == []


def test_a_source_tree_never_installed_reads_its_pyproject(tmp_path: Path) -> None:
    """No metadata: the ``pyproject.toml`` beside the package, else ``0+unknown``."""
    missing = "wslab-never-installed"
    pyproject = tmp_path / "pyproject.toml"
    assert read_version(missing, pyproject) == UNKNOWN  # no file
    pyproject.write_text(f'[project]\nname = "{missing}"\nversion = "2.5.1"\n')
    assert read_version(missing, pyproject) == "2.5.1"
    pyproject.write_text('[project]\nname = "another"\nversion = "9.9"\n')
    assert read_version(missing, pyproject) == UNKNOWN  # another project's file
    pyproject.write_text(f'[project]\nname = "{missing}"\ndynamic = ["version"]\n')
    assert read_version(missing, pyproject) == UNKNOWN  # computed at build time
    pyproject.write_text("[project\n")
    assert read_version(missing, pyproject) == UNKNOWN  # not TOML
    ours = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert read_version(missing, ROOT / "pyproject.toml") == UNKNOWN  # name differs
    assert read_version("wslab", ROOT / "nowhere.toml") == wslab.__version__
    assert _source_version("wslab", ROOT / "pyproject.toml") == ours


def test_every_error_wslab_raises_on_purpose_is_a_wslab_error() -> None:
    from wslab.lab import checks, exercises
    from wslab.lab.checks._common import CheckFailed

    assert checks.CheckFailed is wslab.CheckFailed is CheckFailed
    assert exercises.MarkerError is wslab.errors.MarkerError
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
        wslab.CheckFailed,
        wslab.ConfigurationError,
        exercises.MarkerError,
    ):
        assert issubclass(error, wslab.WslabError), error
    assert issubclass(wslab.ChatConnectionError, ConnectionError)
    assert not issubclass(wslab.ConfigurationError, ConnectionError)  # a fix, not a retry
    assert issubclass(CheckFailed, AssertionError)
    assert issubclass(exercises.MarkerError, ValueError)


def test_the_error_tree_in_the_errors_docstring_names_every_error() -> None:
    """``wslab/errors.py`` draws the tree: every class of it is drawn, under its parent."""
    tree = wslab.errors.__doc__ or ""
    lines = tree.splitlines()
    for name in wslab.errors.__all__:
        if name == "WslabError":
            continue
        drawn = next(n for n, line in enumerate(lines) if f"── {name} " in line)
        column = lines[drawn].index("──") - 1  # where the parent's name starts, above
        parent = next(
            line[column:].split()[0]
            for line in reversed(lines[:drawn])
            if len(line) > column and line[column].isalpha()
        )
        assert parent == getattr(wslab.errors, name).__mro__[1].__name__, name
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


def test_the_readme_layout_lists_every_module() -> None:
    readme = (ROOT / "README.md").read_text()
    layout = readme[readme.index("## Layout") :]
    layout = layout[: layout.index("\n## ")]
    package = ROOT / "wslab"
    modules = [p.name for p in package.glob("*.py")]
    for layer in ("lab", "testing"):  # their modules by name; classroom/ as a folder
        modules += [p.name for p in (package / layer).glob("*.py") if p.name != "__init__.py"]
    modules += [f"{p.name}/" for p in package.iterdir() if (p / "__init__.py").exists()]
    missing = sorted(name for name in modules if f"  {name}" not in layout)
    assert missing == [], f"README's Layout does not list {missing}"
