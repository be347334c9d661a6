"""pytest configuration for the lessons (run with ``pytest --nbval``)."""

from __future__ import annotations


def pytest_sessionstart() -> None:
    # On a new machine the first import of matplotlib writes "building the font cache"
    # to stderr; inside a lesson's kernel that would differ from the stored output.
    # Build the cache here, once, before any kernel starts.
    import matplotlib.font_manager  # noqa: F401
