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
from derive_decode_attention import HEAD_DIMS, UNITS, attention_rows  # noqa: E402

#: 192: MLA prompts run as ordinary attention over decompressed keys (128 + 64 rotary dims)
PROMPT_HEAD_DIMS = (*HEAD_DIMS, 192)

OUT = Path(__file__).resolve().parents[1] / "costmodels" / "data" / "prefill_attention"
HEADER = ["runtime", "runtime_version", "kv_dtype", "head_dim", "q_per_kv", "prompt"] + [f"us_u{u}" for u in UNITS]


def rows(data_root: Path) -> dict[str, list[list]]:
    """File name (``<GPU>.csv``) -> its CSV rows (BF16 attention math only)."""
    return attention_rows(data_root, "context_attention_perf.parquet", PROMPT_HEAD_DIMS,
                          length=lambda d: d.isl, keep=lambda d: d.attn_dtype == "bfloat16")


def main(argv: list[str] | None = None) -> int:
    return aic_tables.run(__doc__, OUT, HEADER, rows, argv)


if __name__ == "__main__":
    sys.exit(main())
