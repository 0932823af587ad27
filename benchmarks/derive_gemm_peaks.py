"""Derive costmodels/data/gemm_measured.csv from AIConfigurator's measured GEMM tables.

    python benchmarks/derive_gemm_peaks.py [--write]

AIConfigurator (PyPI ``aiconfigurator``, NVIDIA's configurator; the ``peer`` extra) ships
measured op tables per GPU system, runtime and runtime version. For each (GPU, runtime) this
takes the fastest GEMM of its table per format, BF16, FP8 (per-tensor) and NVFP4, as
2 m n k / latency, and prints the CSV (``--write`` replaces the shipped file). Needs
``aiconfigurator`` and pandas with a parquet engine (``pip install '.[peer]'``, best in its
own virtual environment). The planner only reads the CSV; nothing is fitted.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import aic_tables  # noqa: E402
from aic_tables import FORMATS, SYSTEMS  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "costmodels" / "data" / "gemm_measured.csv"
HEADER = ["gpu", "runtime", "runtime_version", "dtype", "tflops_max", "m", "n", "k", "latency_ms", "source"]


def rows(data_root: Path) -> list[list]:
    import pandas as pd  # the peer's own dependency

    out = []
    for f in sorted(data_root.glob("*/gemm/*/*/gemm_perf.parquet")):
        system, _, runtime, version = f.relative_to(data_root).parts[:4]
        if system not in SYSTEMS:
            continue
        d = pd.read_parquet(f)
        d = d.assign(tflops=2 * d.m * d.n * d.k / (d.latency * 1e-3) / 1e12)
        for fmt, part in sorted(d.groupby("gemm_dtype")):
            if fmt not in FORMATS:
                continue
            best = part.loc[part.tflops.idxmax()]
            out.append([SYSTEMS[system], runtime, version, FORMATS[fmt], round(float(best.tflops)), int(best.m),
                        int(best.n), int(best.k), round(float(best.latency), 4),
                        f"AIConfigurator 0.12.0 measured op table (aiconfigurator-core wheel, systems/data/{system}/"
                        f"gemm/{runtime}/{version}/gemm_perf.parquet): the fastest GEMM of the table, 2mnk / latency"])
    return out


def main(argv: list[str] | None = None) -> int:
    return aic_tables.run(__doc__, OUT, HEADER, rows, argv)


if __name__ == "__main__":
    sys.exit(main())
