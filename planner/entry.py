"""The ``plan-search`` program: the command line, with a Ctrl-C at any moment said in one line.

``planner.cli`` imports click, pydantic and (per command) the solver and cost models; a
Ctrl-C during those first imports would otherwise end in a traceback. This module imports
nothing heavy itself, so the only code that can run before its ``try`` is the
interpreter's own start-up.

The process collects cyclic garbage rarely: a young collection once per 100,000 net allocations
instead of Python's 700 (``gc.set_threshold``), and everything still alive when the command ends is
frozen (``gc.freeze``) before the interpreter's final collection. Nearly everything a command
allocates lives to its end (modules, pydantic schemas, cost tables, the topology graph), and
collecting it over and over, then once more at exit, took a fifth of an 8-GPU search's wall time
(``python benchmarks/startup.py``: see README, Start-up). The collector is not turned off: each
CP-SAT model (``CpModel``) refers to itself, so a frontier or a top-k, one model per solve, would
otherwise keep every model it built until exit (a 10-point frontier on 1,024 GPUs peaked at
196 MB with the collector off, 152 MB with these thresholds, 143 MB with Python's). The
library (``planner.api``) keeps Python's defaults.
"""
from __future__ import annotations

import gc
import sys

INTERRUPTED_EXIT = 130  # 128 + SIGINT, what shells report for a Ctrl-C
#: Young collections every 100,000 net allocations, the middle one every 50 of those, a full one
#: every 1,000 middle ones (Python's defaults: 700, 10, 10); see the module docstring.
COLLECTOR_THRESHOLDS = (100_000, 50, 1_000)


def main() -> None:
    """Import and run the command line; a KeyboardInterrupt anywhere outside a command's own
    handling is one line on stderr and exit 130."""
    gc.set_threshold(*COLLECTOR_THRESHOLDS)
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
