"""Measured MoE layers: latency of a whole expert layer, looked up instead of derived.

An MoE layer is more than its two expert GEMMs: routing, the permutation of tokens to their
experts and back, activation quantisation and the final weighted sum all run per (token,
expert) pair, and small experts (Qwen3-30B-A3B: 128 experts of 768 x 2048) keep the GEMMs far
from peak. A GEMM-efficiency model fitted on large experts (Mixtral's 14336 x 4096) prices
small ones several times too fast. Where a measured table covers the runtime, GPU, weight
format, expert shape and split, the layer's time is read from it.

The table, ``costmodels/data/moe_measured.csv``, holds TensorRT-LLM's MoE layer latencies
measured by AIConfigurator 0.12.0 (NVIDIA's configurator; its op tables are published
measurements), balanced routing, CUTLASS path, for the catalog's expert shapes
(``benchmarks/derive_moe_tables.py`` regenerates it). Between measured token counts the
latency is interpolated in log-log; below the smallest it is the smallest's; above the
largest it grows in proportion to the tokens (the layer is compute-bound there). A curve is made
non-decreasing in the tokens first (``_never_falling``).
"""
from __future__ import annotations

import bisect
import csv
import math
from functools import lru_cache
from importlib import resources

from costmodels.hardware import gpu_name_or_none
from costmodels.model_spec import ModelSpec

Key = tuple[str, str, str, int, int, int, int, int, int]


@lru_cache(maxsize=1)
def _table() -> dict[Key, tuple[tuple[float, ...], tuple[float, ...]]]:
    """(gpu, runtime, dtype, hidden, inter, topk, experts, moe_tp, moe_ep) -> (tokens, seconds)."""
    text = (resources.files("costmodels") / "data" / "moe_measured.csv").read_text(encoding="utf-8")

    points: dict[Key, list[tuple[float, float]]] = {}
    for r in csv.DictReader(text.splitlines()):
        gpu = gpu_name_or_none(r["gpu"])
        if gpu is None:
            continue
        key = (gpu, r["runtime"], r["dtype"], int(r["hidden"]), int(r["inter"]), int(r["topk"]), int(r["experts"]),
               int(r["moe_tp"]), int(r["moe_ep"]))
        points.setdefault(key, []).append((float(r["tokens"]), float(r["latency_ms"]) * 1e-3))
    return {k: _never_falling(sorted(v)) for k, v in points.items()}


def _never_falling(points: list[tuple[float, float]]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(tokens, seconds) with each latency raised to the largest at fewer tokens: a measured curve
    can dip where the runtime switches kernels (Llama 4 Scout's layer on H100 in FP8: 2.98 ms at
    1,000 tokens, 1.86 ms at 2,000), and more tokens never take less time; a dip made TPOT fall
    as the batch grew.

    >>> _never_falling([(1.0, 3.0), (2.0, 2.0), (4.0, 5.0)])
    ((1.0, 2.0, 4.0), (3.0, 3.0, 5.0))
    """
    xs, ys, worst = [], [], 0.0
    for x, y in points:
        worst = max(worst, y)
        xs.append(x)
        ys.append(worst)
    return tuple(xs), tuple(ys)


def measured_moe_layer_s(model: ModelSpec, *, gpu: str, runtime: str, weight_dtype: str, moe_tp: int, moe_ep: int,
                         tokens: float) -> float | None:
    """One MoE layer's time on one GPU for ``tokens`` tokens entering it, from the measured
    table, or None where the table has no curve for this runtime, GPU, format, shape and split."""
    if tokens <= 0:
        return 0.0
    key = (gpu, runtime, weight_dtype, model.hidden, model.moe_intermediate, model.experts_per_token, model.experts,
           moe_tp, moe_ep)
    curve = _table().get(key)
    if curve is None or len(curve[0]) < 2:
        return None
    xs, ys = curve
    if tokens <= xs[0]:
        return ys[0]
    if tokens >= xs[-1]:
        return ys[-1] * tokens / xs[-1]
    i = bisect.bisect_right(xs, tokens)
    x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
    f = math.log(tokens / x0) / math.log(x1 / x0)
    return math.exp(math.log(y0) + f * math.log(y1 / y0))
