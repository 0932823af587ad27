"""Derive costmodels/data/prefill_attention/<GPU>.csv from AIConfigurator's measured prompt-attention tables.

    python benchmarks/derive_prefill_attention.py [--write]

AIConfigurator (PyPI ``aiconfigurator``, NVIDIA's configurator; the ``peer`` extra) ships the
measured latency of one layer's prompt (context) attention, causal over whole prompts with no
cached prefix, per GPU system, runtime and runtime version, over batch size, prompt length,
query heads, KV heads, head size and formats. As for decode attention
(``derive_decode_attention.py``), the work is split over (sequence, KV head) pairs, so for each
(GPU, runtime, KV format, head size, query heads per KV head) this keeps the newest runtime
version's table and writes one CSV row per prompt length with the latency in microseconds at
every power-of-two count of pairs (``us_u<pairs>``; the median over the measured shapes giving
that count, blank where none was measured). BF16 attention math only, full attention (no
sliding window), head sizes 64, 128, 256 and 192 (MLA's prompts), KV-head counts that are powers of two. One file per
GPU. ``costmodels/attention_tables.py`` prices prompt attention from it. Needs ``aiconfigurator``
and pandas with a parquet engine (``pip install '.[peer]'``, best in its own virtual
environment). Nothing is fitted.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import aic_tables  # noqa: E402
from aic_tables import SYSTEMS  # noqa: E402
from derive_decode_attention import HEAD_DIMS, KV_FORMATS, UNITS, newest  # noqa: E402

#: 192: MLA prompts run as ordinary attention over decompressed keys (128 + 64 rotary dims)
PROMPT_HEAD_DIMS = (*HEAD_DIMS, 192)

OUT = Path(__file__).resolve().parents[1] / "costmodels" / "data" / "prefill_attention"
HEADER = ["runtime", "runtime_version", "kv_dtype", "head_dim", "q_per_kv", "prompt"] + [f"us_u{u}" for u in UNITS]


def rows(data_root: Path) -> dict[str, list[list]]:
    """File name (``<GPU>.csv``) -> its CSV rows."""
    import pandas as pd  # the peer's own dependency

    out: dict[str, list[list]] = {}
    for (system, runtime), f in sorted(newest(data_root, "context_attention_perf.parquet").items()):
        d = pd.read_parquet(f)
        if "window_size" in d:
            d = d[d.window_size == 0]
        kv = d.num_key_value_heads
        d = d[d.head_dim.isin(PROMPT_HEAD_DIMS) & d.kv_cache_dtype.isin(KV_FORMATS) & (d.attn_dtype == "bfloat16")
              & (d.beam_width == 1) & ((kv & (kv - 1)) == 0) & (d.num_heads % kv == 0)]
        d = d.assign(q_per_kv=d.num_heads // kv, units=d.batch_size * kv)
        d = d[d.units.isin(UNITS)]
        per_shape = d.groupby(["kv_cache_dtype", "head_dim", "q_per_kv", "isl", "units", "batch_size"]).latency.min()
        grid = per_shape.groupby(["kv_cache_dtype", "head_dim", "q_per_kv", "isl", "units"]).median().unstack("units")
        for (kvd, hd, ratio, isl), lat in grid.iterrows():
            out.setdefault(f"{SYSTEMS[system]}.csv", []).append(
                [runtime, f.parent.name, KV_FORMATS[kvd], int(hd), int(ratio), int(isl)]
                + ["" if pd.isna(lat.get(u)) else f"{float(lat[u]) * 1e3:.4g}" for u in UNITS])
    return out


def main(argv: list[str] | None = None) -> int:
    return aic_tables.run(__doc__, OUT, HEADER, rows, argv)


if __name__ == "__main__":
    sys.exit(main())
