#!/usr/bin/env python3
"""Generate ``man/bitswarm.1`` from the command line itself (every command, its arguments and options,
their help), so the man page never drifts from ``bitswarm --help``.

    .venv/bin/python packaging/gen_manpage.py            # write man/bitswarm.1
    .venv/bin/python packaging/gen_manpage.py --check    # exit 1 if man/bitswarm.1 is out of date

``tests/packaging/test_packaging.py`` runs the check. Deterministic: no date, only the version.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MAN_PAGE = ROOT / "man" / "bitswarm.1"


#: root options the page leaves out (help, and Typer's completion installers: see SHELL COMPLETION)
_NOT_IN_PAGE = ("help", "install_completion", "show_completion")


def _esc(text: str) -> str:
    """Roff-escape ``text``: backslashes, and a leading dot or quote on any line."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    text = "".join(c if c.isascii() else f"\\[u{ord(c):04X}]" for c in text)  # groff reads ASCII
    return "\n".join(("\\&" + line if line[:1] in (".", "'") else line) for line in text.splitlines())


def _para(text: str | None) -> str:
    return _esc(" ".join((text or "").split()))


def _option(param: Any) -> list[str]:
    names = ", ".join([*param.opts, *param.secondary_opts])
    metavar = "" if getattr(param, "is_flag", False) or getattr(param, "count", False) else _metavar(param)
    lines = [".TP", f"\\fB{_esc(names)}\\fR" + (f" \\fI{_esc(metavar)}\\fR" if metavar else "")]
    help_text = _para(getattr(param, "help", None))
    default = param.default
    if (
        default not in (None, False, 0, "", ())
        and not callable(default)
        and not getattr(param, "count", False)
        and "default" not in help_text
    ):
        help_text += f" (default: {_esc(str(default))})"
    lines.append(help_text or "")
    return lines


def _metavar(param: Any) -> str:
    """``TEXT``, ``INTEGER``, ``PATH`` ... (or the parameter's own metavar; arguments: their name)."""
    if param.metavar:
        return str(param.metavar)
    if param.param_type_name == "argument":
        return str(param.name).upper()
    choices = getattr(param.type, "choices", None)
    return "[" + "|".join(map(str, choices)) + "]" if choices else str(param.type.name).upper()


def _command(path: list[str], command: Any) -> list[str]:
    args = [p for p in command.params if p.param_type_name == "argument"]
    opts = [p for p in command.params if p.param_type_name == "option" and p.name != "help"]
    usage = " ".join([*path, "[OPTIONS]", *(_metavar(a) for a in args)])
    out = [f".SS {_esc(' '.join(path))}", f"\\fB{_esc(usage)}\\fR", ".PP", _para(command.help)]
    for arg in args:
        out += [".TP", f"\\fI{_esc(_metavar(arg))}\\fR", _para(getattr(arg, "help", None))]
    for opt in opts:
        out += _option(opt)
    subcommands = getattr(command, "commands", {})
    for name in sorted(subcommands):
        out += _command([*path, name], subcommands[name])
    return out


def render() -> str:
    """The man page, roff source."""
    import typer.main

    from bitswarm import __version__
    from bitswarm.cli import app
    from bitswarm.cli._globals import GLOBAL_HELP

    root = typer.main.get_command(app)
    lines = [
        f'.TH BITSWARM 1 "" "bitswarm {__version__}" "User Commands"',
        ".SH NAME",
        "bitswarm \\- BitTorrent peer, tracker, DHT node and file index",
        ".SH SYNOPSIS",
        "\\fBbitswarm\\fR [\\fIGLOBAL OPTIONS\\fR] \\fICOMMAND\\fR [\\fIOPTIONS\\fR] [\\fIARGS\\fR]...",
        ".SH DESCRIPTION",
        _para(root.help),
        ".SH GLOBAL OPTIONS",
        _para(GLOBAL_HELP.split(" Exit codes:")[0]),
    ]
    for opt in root.params:
        if opt.param_type_name == "option" and opt.name not in _NOT_IN_PAGE:
            lines += _option(opt)
    lines.append(".SH COMMANDS")
    commands: dict[str, Any] = root.commands  # type: ignore[attr-defined]
    for name in sorted(commands):
        lines += _command(["bitswarm", name], commands[name])
    lines += [
        ".SH EXIT STATUS",
        ".TP", "0", "success",
        ".TP", "1", "the operation failed at run time (a torrent error, an unreachable service, a bug)",
        ".TP", "2", "bad input or usage (one line on stderr)",
        ".TP", "130", "stopped by Ctrl\\-C or SIGTERM before it finished",
        ".SH SHELL COMPLETION",
        "\\fBbitswarm \\-\\-install\\-completion\\fR installs completion for the current shell;",
        "\\fBbitswarm \\-\\-show\\-completion\\fR prints it.",
        ".SH ENVIRONMENT",
        ".TP", "BITSWARM_LOG", "level of the log on stderr (debug, info, warning ...)",
        ".SH SEE ALSO",
        "README.md and docs/ in the bitswarm sources; \\fBbitswarm COMMAND \\-\\-help\\fR.",
    ]  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not MAN_PAGE.exists() or MAN_PAGE.read_text() != text:
            print(
                f"{MAN_PAGE} is out of date (a command's options or help changed): regenerate it with "
                ".venv/bin/python packaging/gen_manpage.py and commit it",
                file=sys.stderr,
            )
            return 1
        return 0
    MAN_PAGE.parent.mkdir(exist_ok=True)
    MAN_PAGE.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
