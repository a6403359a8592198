"""The test suite's own rules: missing tools fail under ``CI=true`` (skip outside CI), ``eventually``,
``make test`` prints skip reasons."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from testtools import eventually, is_missing_tool_reason

HERE = Path(__file__).parent
ROOT = HERE.parent

SAMPLE = '''
import pytest
from testtools import require_module, require_tool

def test_tool():
    require_tool("no-such-tool-bitswarm")

def test_module():
    require_module("no_such_module_bitswarm")

def test_importorskip():
    pytest.importorskip("no_such_module_bitswarm_2")

def test_plain_skip_about_a_tool():
    pytest.skip("frobnicator is not installed (apt-get install frobnicator)")

@pytest.mark.skipif(True, reason="root can read a mode-000 file")
def test_not_a_tool():
    pass

def test_passes():
    pass
'''

MODULE_LEVEL = '''
import pytest
lt = pytest.importorskip("no_such_module_bitswarm_3")

def test_never_runs():
    pass
'''


def _run_sample(tmp_path: Path, ci: str | None) -> str:
    for name in ("conftest.py", "testtools.py"):
        shutil.copy(HERE / name, tmp_path / name)
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    (tmp_path / "test_module_level.py").write_text(MODULE_LEVEL)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-p", "no:randomly",
         "--continue-on-collection-errors", str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return proc.stdout + proc.stderr


def _counts(out: str) -> dict[str, int]:
    return {kind: int(n) for n, kind in re.findall(r"(\d+) (passed|failed|skipped|errors?)", out)}


def test_outside_ci_a_missing_tool_skips(tmp_path: Path) -> None:
    out = _run_sample(tmp_path, None)
    assert _counts(out) == {"passed": 1, "skipped": 6}, out
    assert "missing tool: no-such-tool-bitswarm" in out  # -rs shows the reasons


def test_in_ci_a_missing_tool_fails_and_other_skips_stay(tmp_path: Path) -> None:
    out = _run_sample(tmp_path, "true")
    counts = _counts(out)
    # four tests fail, the module-level importorskip is a collection error; the root skip stays
    assert counts.get("failed") == 4 and counts.get("skipped") == 1 and counts.get("passed") == 1, out
    assert counts.get("error", counts.get("errors")) == 1, out
    assert "root can read a mode-000 file" in out


@pytest.mark.parametrize(
    ("reason", "missing"),
    [
        ("could not import 'libtorrent': No module named 'libtorrent'", True),
        ("PostgreSQL is not installed (apt-get install -y postgresql)", True),
        ("/usr/bin/chromium is missing (apt-get install -y chromium)", True),
        ("missing tool: nginx", True),
        ("root can read a mode-000 file", False),
        ("no IPv6 loopback", False),
        ("recvmmsg is Linux only", False),
    ],
)
def test_missing_tool_reasons(reason: str, missing: bool) -> None:
    assert is_missing_tool_reason(reason) is missing


def test_eventually_polls_until_true_and_raises_the_last_assertion() -> None:
    start = time.monotonic()
    assert eventually(lambda: time.monotonic() - start > 0.05, timeout=5) is True

    def never() -> None:
        raise AssertionError("still 3")

    with pytest.raises(AssertionError, match="still 3"):
        eventually(never, timeout=0.05)
    with pytest.raises(AssertionError, match="the thing not true"):
        eventually(lambda: False, timeout=0.05, what="the thing")


def test_eventually_with_a_coroutine_function_lets_the_loop_run() -> None:
    async def main() -> None:
        flag = asyncio.Event()
        asyncio.get_running_loop().call_later(0.05, flag.set)

        async def is_set() -> bool:
            return flag.is_set()

        assert await eventually(is_set, timeout=5) is True

    asyncio.run(main())


def test_make_test_prints_skip_reasons() -> None:
    makefile = (ROOT / "Makefile").read_text()
    lines = [x for x in makefile.splitlines() if "-m pytest" in x]
    assert lines and all(" -rs" in x for x in lines), lines
