"""What every test on a real JupyterHub shares: its skip, its marks, the service's names."""

from __future__ import annotations

from typing import Any

import pytest

from wslab.testing.hub import missing_hub_programs

#: The install line when the hub or its proxy is missing, else ``None``.
MISSING = missing_hub_programs()
#: The chat's service name on the tests' hubs, its prefix and the scopes about it.
SERVICE = "wslab"
PREFIX = f"/services/{SERVICE}/"
ACCESS = f"access:services!service={SERVICE}"
READ = f"read:services!service={SERVICE}"


def hub_marks(timeout: float | None = None) -> list[Any]:
    """A module's ``pytestmark``: skipped with the install line without the hub's
    programs, slow, and a per-test limit of ``timeout`` seconds if given (a hub
    starts in about 10 s, so a module's first test needs more than the default)."""
    marks = [pytest.mark.skipif(MISSING is not None, reason=MISSING or ""), pytest.mark.slow]
    return marks if timeout is None else [*marks, pytest.mark.timeout(timeout)]
