"""The ``bitswarm`` command line (Typer + Rich).

Every error bitswarm raises on purpose becomes one line on stderr and exit code 2 (``--debug``
shows the traceback instead).
"""

from __future__ import annotations

import sys

from bitswarm.cli._app import EXIT_USAGE, app, state
from bitswarm.errors import BitswarmError

# Command modules register themselves on import.
from bitswarm.cli import _commands  # noqa: F401  # isort: skip


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``bitswarm`` console script."""
    try:
        app(args=argv, standalone_mode=True)
    except BitswarmError as exc:
        if state.debug:
            raise
        print(f"bitswarm: error: {' '.join(str(exc).split())}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    except OSError as exc:
        if state.debug:
            raise
        print(f"bitswarm: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        sys.exit(EXIT_USAGE)


__all__ = ["app", "main"]
