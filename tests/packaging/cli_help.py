"""``bitswarm ... --help`` as text, and which options of a command line it does not list (shared by
the README, compose and systemd checks)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from functools import cache

BW = [sys.executable, "-m", "bitswarm"]
ENV = {**os.environ, "BITSWARM_NO_PUBLIC_DHT": "1", "COLUMNS": "250", "TERMINAL_WIDTH": "250"}
#: accepted by every command (``bitswarm.cli._globals``)
GLOBAL = {"--debug", "--verbose", "-v", "-vv", "--quiet", "-q", "--log-file", "--log-json", "--version"}


@cache
def help_text(command: tuple[str, ...]) -> str:
    proc = subprocess.run([*BW, *command, "--help"], capture_output=True, text=True, timeout=60, env=ENV)
    assert proc.returncode == 0, (command, proc.stderr)
    return proc.stdout


def command_of(words: list[str]) -> tuple[str, ...]:
    """The command (with its subcommand, for ``ctl``, ``index-peer`` and ``dht lookup``) ``bitswarm
    WORDS`` runs."""
    if len(words) > 1 and (words[0] in ("ctl", "index-peer") or words[:2] == ["dht", "lookup"]):
        return tuple(words[:2])
    return (words[0],)


def unknown_options(words: list[str]) -> list[str]:
    """The ``-x``/``--xyz`` words of ``bitswarm WORDS`` that its command's ``--help`` does not list."""
    command = command_of(words)
    text = help_text(command)
    missing = []
    for word in words[len(command) :]:
        option = word.split("=", 1)[0]
        listed = re.search(rf"(^|[\s,│]){re.escape(option)}([\s,/=│]|$)", text, re.M)
        if option.startswith("-") and option not in GLOBAL and not listed:
            missing.append(option)
    return missing


def options_in(words: list[str]) -> int:
    """How many option words ``words`` has (to assert a check looked at something)."""
    return sum(1 for w in words if w.startswith("-") and w.split("=", 1)[0] not in GLOBAL)
