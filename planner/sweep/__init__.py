"""Sweeps: one table of ``search`` results over a grid of requests (``plan-search sweep``).

``spec.py`` reads and validates the sweep file (the format is in its docstring), ``run.py``
runs the rows (in this process, local processes or Ray tasks) and ``table.py`` writes CSV or
Parquet. The names below are the sweep's library interface.
"""
from planner.sweep.run import SweepResult, replica_groups_summary, require_ray, run_point, run_sweep
from planner.sweep.spec import COLUMNS, SEARCH_DEFAULTS, SEARCH_KEYS, STATUSES, Sweep, load_sweep, sweep_from_spec
from planner.sweep.table import require_pyarrow, to_arrow, to_csv, write_parquet

__all__ = ["COLUMNS", "SEARCH_DEFAULTS", "SEARCH_KEYS", "STATUSES", "Sweep", "SweepResult", "load_sweep",
           "replica_groups_summary", "require_pyarrow", "require_ray", "run_point", "run_sweep", "sweep_from_spec",
           "to_arrow", "to_csv", "write_parquet"]
