"""Writing a sweep's table: CSV (always) or Parquet (with pyarrow), one row per request in grid
order, the columns of :data:`planner.sweep.spec.COLUMNS`.
"""
from __future__ import annotations

import csv
import io
from typing import Any

from planner.sweep.spec import COLUMN_TYPES, COLUMNS
from topologies.errors import InputError


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    return str(v)


def to_csv(rows: list[dict[str, Any]]) -> str:
    """The table as CSV text: a header of :data:`COLUMNS`, one line per row, empty cells for null."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in rows:
        w.writerow([_cell(r[c]) for c in COLUMNS])
    return buf.getvalue()


def require_pyarrow(output: str):
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise InputError("Parquet output needs pyarrow: pip install 'plan-search[parquet]' (or write a .csv)",
                         source=output) from None
    return pyarrow


def to_arrow(rows: list[dict[str, Any]]):
    """The table as a ``pyarrow.Table`` with typed, nullable columns."""
    pa = require_pyarrow("parquet")
    types = {"str": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_()}
    schema = pa.schema([pa.field(c, types[t], nullable=True) for c, t in COLUMN_TYPES.items()])
    return pa.Table.from_pydict({c: [r[c] for r in rows] for c in COLUMNS}, schema=schema)


def write_parquet(rows: list[dict[str, Any]], path: str) -> None:
    """Write the table to ``path`` as Parquet, whole or not at all (temp file, then rename)."""
    require_pyarrow(path)
    import pyarrow.parquet as pq

    from planner.outfile import replace_atomically

    table = to_arrow(rows)
    replace_atomically(path, lambda tmp: pq.write_table(table, tmp))
