"""The ``plan-search`` program: the command line, with a Ctrl-C at any moment said in one line.

``planner.cli`` imports click, pydantic and (per command) the solver and cost models; a
Ctrl-C during those first imports would otherwise end in a traceback. This module imports
nothing heavy itself, so the only code that can run before its ``try`` is the
interpreter's own start-up.

The process runs without Python's cyclic garbage collector, and everything still alive when the
command ends is frozen (``gc.freeze``) before the interpreter's own final collection. A
``plan-search`` process lives well under a second for most commands and allocates mostly objects
that live to its end: modules, pydantic schemas, cost tables, the topology graph. Collecting
them again and again, and once more at exit, took a fifth of an 8-GPU search's wall time
(``python benchmarks/startup.py``: see README, Start-up).
Reference counting still frees everything that is not in a cycle at once, and what does form
cycles is small: a few hundred to 2,700 objects per search, so a 1,024-GPU search peaks at the
same resident memory either way. ``sweep``, which runs any number of searches, turns the
collector back on. The library (``planner.api``) is untouched.
"""
from __future__ import annotations

import gc
import sys

INTERRUPTED_EXIT = 130  # 128 + SIGINT, what shells report for a Ctrl-C


def main() -> None:
    """Import and run the command line; a KeyboardInterrupt anywhere outside a command's own
    handling is one line on stderr and exit 130."""
    gc.disable()
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
