"""The ``plan-search`` command line: a thin click layer over :mod:`planner`, one module per
command (``search``, ``evaluate`` and ``explain``, ``emit``, ``topology``, ``catalog``,
``sweep``), the group and the flags they share in ``group.py``, and the output they print:
``report.py`` (text) and ``plot.py`` (the frontier drawn).

Every command loads, calls one library function and prints. Expected failures
(:class:`topologies.errors.PlanSearchError`) become one line on stderr and exit code 2 (bad input) or 3
(no plan meets the request); anything else is a bug and keeps its traceback.
"""
from planner.cli import catalog, emit, evaluate, search, sweep, topology  # noqa: F401  (each registers its commands)
from planner.cli.group import main

__all__ = ["main"]
