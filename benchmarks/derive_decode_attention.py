"""Derive costmodels/data/decode_attention/<GPU>.csv from AIConfigurator's measured decode-attention tables.

    python benchmarks/derive_decode_attention.py [--write]

AIConfigurator (PyPI ``aiconfigurator``, NVIDIA's configurator; the ``peer`` extra) ships the
measured latency of one decode-attention call (one layer, one new token per sequence) per GPU
system, runtime and runtime version, over batch size, query heads, KV heads, head size, KV-cache
format and context length. Measured on H100 under TensorRT-LLM, the latency depends on the batch and
the KV heads almost only through their product, the number of (sequence, KV head) pairs the kernel
splits over its SMs: 8 query / 1 KV heads at batch 64, 16/2 at 32, 32/4 at 16 and 64/8 at 8 all
take 43-44 us at 2,048 tokens of context. So for each (GPU, runtime, KV format, head size, query
heads per KV head) this keeps the newest runtime version's table and writes one CSV row per
context length with the latency in microseconds at every power-of-two count of pairs
(``us_u<pairs>``; the median over the measured shapes giving that count, blank where none was
measured). Full attention only (no sliding window), head sizes 64, 128 and 256 (MLA has its own
kernels), KV-head counts that are powers of two. One file per GPU. ``costmodels/attention_tables.py``
prices decode attention from it. Needs ``aiconfigurator`` and pandas with a parquet engine
(``pip install '.[peer]'``, best in its own virtual environment). Nothing is fitted.
"""
from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import aic_tables  # noqa: E402
from aic_tables import SYSTEMS  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "costmodels" / "data" / "decode_attention"
#: (sequence, KV head) pairs per call: the columns of every file
UNITS = tuple(2 ** i for i in range(18))
HEAD_DIMS = (64, 128, 256)
KV_FORMATS = {"bfloat16": "bf16", "fp8": "fp8"}
HEADER = ["runtime", "runtime_version", "kv_dtype", "head_dim", "q_per_kv", "context"] + [f"us_u{u}" for u in UNITS]


def attention_rows(data_root: Path, table: str, head_dims: tuple[int, ...], length: Callable, keep: Callable
                   ) -> dict[str, list[list]]:
    """File name (``<GPU>.csv``) -> its CSV rows, from every system's newest ``attention/.../<table>``:
    ``length(d)`` gives each measurement's length column (decode: context; prompts: prompt length),
    ``keep(d)`` any further filter on the measurements."""
    import pandas as pd  # the peer's own dependency

    out: dict[str, list[list]] = {}
    for (system, runtime), f in sorted(aic_tables.newest(data_root, f"*/attention/*/*/{table}").items()):
        d = pd.read_parquet(f)
        if "window_size" in d:
            d = d[d.window_size == 0]
        kv = d.num_key_value_heads
        d = d[d.head_dim.isin(head_dims) & d.kv_cache_dtype.isin(KV_FORMATS) & (d.beam_width == 1)
              & ((kv & (kv - 1)) == 0) & (d.num_heads % kv == 0) & keep(d)]
        d = d.assign(q_per_kv=d.num_heads // d.num_key_value_heads, units=d.batch_size * d.num_key_value_heads,
                     length=length(d))
        d = d[d.units.isin(UNITS)]
        # one latency per measured shape (the minimum of repeats), then the median over shapes
        per_shape = d.groupby(["kv_cache_dtype", "head_dim", "q_per_kv", "length", "units", "batch_size"]).latency.min()
        grid = per_shape.groupby(["kv_cache_dtype", "head_dim", "q_per_kv", "length", "units"]).median().unstack("units")
        for (kvd, hd, ratio, n), lat in grid.iterrows():
            out.setdefault(f"{SYSTEMS[system]}.csv", []).append(
                [runtime, f.parent.name, KV_FORMATS[kvd], int(hd), int(ratio), int(n)]
                + ["" if pd.isna(lat.get(u)) else f"{float(lat[u]) * 1e3:.4g}" for u in UNITS])
    return out


def rows(data_root: Path) -> dict[str, list[list]]:
    """File name (``<GPU>.csv``) -> its CSV rows (context = the prompt's 1 token + the steps decoded)."""
    return attention_rows(data_root, "generation_attention_perf.parquet", HEAD_DIMS,
                          length=lambda d: d.isl + d.step, keep=lambda d: True)


def main(argv: list[str] | None = None) -> int:
    return aic_tables.run(__doc__, OUT, HEADER, rows, argv)


if __name__ == "__main__":
    sys.exit(main())
