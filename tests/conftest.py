"""Shared test configuration: Hypothesis profiles, and missing tools fail under ``CI=true``.

Helpers live in ``testtools.py`` (importable by name from every test directory; a ``conftest``
module is not, since subdirectories have their own).

A test that needs an external tool skips when it is missing, but only outside CI: with ``CI=true``
every skip whose reason says a tool or package is missing (``testtools.is_missing_tool_reason``:
``pytest.importorskip``, ``require_tool``, "... is not installed" ...) is reported as a failure,
whether it happens at collection (a module-level ``importorskip``), in a fixture or in the test.
Skips for other reasons ("root can read a mode-000 file", "no IPv6 loopback") stay skips.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Generator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from testtools import in_ci, is_missing_tool_reason

settings.register_profile("ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


def pytest_configure(config: pytest.Config) -> None:
    """Every command a test runs keeps its state (the one-shot commands' resume data) in a directory
    of this test run, not in the user's ``~/.local/state``: ``XDG_STATE_HOME`` for the run."""
    os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="bitswarm-test-state-")
    # the peer commands and the daemon map their port on the router by default: a test run never asks
    # this machine's real gateway (tests/net and tests/session/test_session_reachability.py unset it)
    os.environ["BITSWARM_NO_PORT_MAPPING"] = "1"


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(os.environ.get("XDG_STATE_HOME", ""), ignore_errors=True)


def _skip_reason(report: pytest.CollectReport | pytest.TestReport) -> str | None:
    """The reason of a skipped report (None if it is not a skip, or an expected failure)."""
    if not report.skipped or hasattr(report, "wasxfail"):
        return None
    longrepr: Any = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def _fail_missing_tool(report: pytest.CollectReport | pytest.TestReport) -> None:
    reason = _skip_reason(report)
    if reason is None or not in_ci() or not is_missing_tool_reason(reason):
        return
    report.outcome = "failed"
    report.longrepr = f"CI=true: a tool this test needs is missing (no skipping in CI): {reason}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    report = yield
    _fail_missing_tool(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, Any, Any]:
    report = yield
    _fail_missing_tool(report)
    return report
