"""Shared test configuration: Hypothesis profiles. Helpers live in ``testtools.py`` (importable by
name from every test directory; a ``conftest`` module is not, since subdirectories have their own)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
