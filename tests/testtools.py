"""Small helpers shared by the test suites (import as ``from testtools import ...``)."""

from __future__ import annotations

import shutil

import pytest


def require_tool(name: str) -> str:
    """Path of a real reference tool; skips the test (with the install hint) when it is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (make test installs it as root: apt-get install ...)")
    return path
