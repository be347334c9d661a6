"""The suite's own layout: every test file sits in a tier, and each tier marks its tests."""

from __future__ import annotations

import tomllib

import pytest

from tests.conftest import TESTS, TIERS, tier_of


def test_every_test_file_is_in_a_tier_folder() -> None:
    outside = [
        str(path.relative_to(TESTS))
        for path in sorted(TESTS.rglob("test_*.py"))
        if tier_of(path) is None
    ]
    assert outside == [], f"move these into one of tests/{{{','.join(TIERS)}}}/: {outside}"


def test_every_tier_is_a_package() -> None:
    assert [t for t in TIERS if not (TESTS / t / "__init__.py").exists()] == []


def test_this_test_is_marked_unit(request: pytest.FixtureRequest) -> None:
    marks = {mark.name for mark in request.node.iter_markers()}
    assert "unit" in marks and not marks & {"integration", "system", "e2e"}


def test_the_default_run_takes_every_tier_fastest_first_then_the_lessons() -> None:
    pyproject = tomllib.loads((TESTS.parent / "pyproject.toml").read_text())
    testpaths = pyproject["tool"]["pytest"]["ini_options"]["testpaths"]
    assert testpaths == [*(f"tests/{tier}" for tier in TIERS), "notebooks"]
