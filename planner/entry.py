"""The ``plan-search`` program: the command line, with a Ctrl-C at any moment said in one line.

``planner.cli`` imports click, pydantic and (per command) the solver and cost models; a
Ctrl-C during those first imports would otherwise end in a traceback. This module imports
nothing heavy itself, so the only code that can run before its ``try`` is the
interpreter's own start-up.
"""
from __future__ import annotations

import sys

INTERRUPTED_EXIT = 130  # 128 + SIGINT, what shells report for a Ctrl-C


def main() -> None:
    """Import and run the command line; a KeyboardInterrupt anywhere outside a command's own
    handling is one line on stderr and exit 130."""
    try:
        from planner.cli import main as cli
        cli()
    except KeyboardInterrupt:
        sys.stderr.write("plan-search: interrupted\n")
        sys.stderr.flush()
        sys.exit(INTERRUPTED_EXIT)


if __name__ == "__main__":
    main()
