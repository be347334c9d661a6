"""The package's version, read once at import (``wslab.__version__``).

The installed distribution's metadata says it (what ``pip show wslab`` prints), so
the number is written in one place only: ``pyproject.toml``. A source tree that pip
never installed (a checkout on ``PYTHONPATH``) has no metadata: then the version is
read from the ``pyproject.toml`` beside the package, and ``"0+unknown"`` (a valid
version that sorts below every release) when there is none. A checkout on
``PYTHONPATH`` while another copy of wslab is installed reports the installed copy's
version: the metadata is the one answer pip and ``importlib.metadata`` agree on.

Pure: any thread.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

__all__ = ["UNKNOWN", "read_version"]

#: The version of a source tree with neither metadata nor a readable ``pyproject.toml``.
UNKNOWN = "0+unknown"
_PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def read_version(distribution: str = "wslab", pyproject: Path = _PYPROJECT) -> str:
    """The installed ``distribution``'s version, else its ``pyproject.toml``'s, else UNKNOWN."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return _source_version(distribution, pyproject)


def _source_version(distribution: str, pyproject: Path) -> str:
    import tomllib  # only a source tree that was never installed needs it

    try:
        project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return UNKNOWN
    version = project.get("version")
    if project.get("name") != distribution or not isinstance(version, str):
        return UNKNOWN  # another project's file, or a version computed at build time
    return version
