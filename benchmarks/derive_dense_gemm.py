"""Derive costmodels/data/dense_gemm/<GPU>.csv from AIConfigurator's measured GEMM tables.

    python benchmarks/derive_dense_gemm.py [--write]

AIConfigurator (PyPI ``aiconfigurator``, NVIDIA's configurator; the ``peer`` extra) ships measured
GEMM latencies per GPU system, runtime and runtime version, over a grid of rows m (tokens), output
width n and reduction depth k. For each (GPU, runtime, format) this keeps the newest runtime
version's table and writes one CSV row per (n, k) weight shape with the measured latency in
microseconds at every m of the grid (a wide row keeps the file small), one file per GPU (a search
reads only its GPU's). Without ``--write`` it prints every file's rows, each headed by its name. ``costmodels/dense_gemm.py``
prices a dense layer's projections from it. Needs ``aiconfigurator`` and pandas with a parquet
engine (``pip install '.[peer]'``, best in its own virtual environment). Nothing is fitted.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import aic_tables  # noqa: E402
from aic_tables import FORMATS, SYSTEMS  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "costmodels" / "data" / "dense_gemm"
#: the rows (tokens) of every table's grid; a table missing one of them is skipped whole
M_GRID = (1, 2, 4, 8, 16, 32, 48, 64, 80, 96, 128, 160, 192, 256, 512, 768, 1024, 2048, 4096, 8192)
HEADER = ["runtime", "runtime_version", "dtype", "n", "k"] + [f"us_m{m}" for m in M_GRID]


def rows(data_root: Path) -> dict[str, list[list]]:
    """File name (``<GPU>.csv``) -> its CSV rows."""
    import pandas as pd  # the peer's own dependency

    out: dict[str, list[list]] = {}
    for (system, runtime), f in sorted(aic_tables.newest(data_root, "*/gemm/*/*/gemm_perf.parquet").items()):
        d = pd.read_parquet(f)
        for fmt, part in sorted(d.groupby("gemm_dtype")):
            if fmt not in FORMATS:
                continue
            grid = part.pivot_table(index=["n", "k"], columns="m", values="latency", aggfunc="min")
            if not set(M_GRID) <= set(grid.columns):
                continue
            for (n, k), lat in grid[list(M_GRID)].iterrows():
                if lat.isna().any():
                    continue
                out.setdefault(f"{SYSTEMS[system]}.csv", []).append(
                    [runtime, f.parent.name, FORMATS[fmt], int(n), int(k)] + [f"{float(x) * 1e3:.4g}" for x in lat])
    return out


def main(argv: list[str] | None = None) -> int:
    return aic_tables.run(__doc__, OUT, HEADER, rows, argv)


if __name__ == "__main__":
    sys.exit(main())
