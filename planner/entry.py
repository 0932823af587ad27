"""The ``plan-search`` program: the command line, with a Ctrl-C at any moment said in one line.

``planner.cli`` imports click, pydantic and (per command) the solver and cost models; a
Ctrl-C during those first imports would otherwise end in a traceback. This module imports
nothing heavy itself, so the only code that can run before its ``try`` is the
interpreter's own start-up.

Everything still alive when the command ends is frozen (``gc.freeze``) before the interpreter
exits, so its final collection skips it. Nearly everything a command allocates lives to its end
(modules, pydantic schemas, cost tables, the topology graph), and walking all of it once more at
exit took about a seventh of an 8-GPU search's wall time (``python benchmarks/startup.py``: see
README, Start-up). The collector itself keeps Python's thresholds: each CP-SAT model
(``CpModel``) refers to itself, so a frontier or a top-k, one model per solve, needs its
collections (with the collector off a 10-point frontier on 1,024 GPUs peaked at 196 MB, against
143 MB; with rarer collections, 152-172 MB).
"""
from __future__ import annotations

import gc
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
    finally:
        gc.freeze()  # the interpreter's collection at exit skips what the command leaves behind


if __name__ == "__main__":
    main()
