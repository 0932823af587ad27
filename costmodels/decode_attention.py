"""Decode attention priced from measured kernel latencies.

A decode step's attention reads every running sequence's KV cache, so a roofline prices it as the
cache's bytes over HBM bandwidth. The kernels do not reach that bandwidth at the batches a
latency-bound plan runs: they split the work over (sequence, KV head) pairs, and too few pairs
leave SMs idle, while every call pays a floor of launch and reduction. On H100 under TensorRT-LLM,
Llama-3.1-70B at TP8 (8 query heads, 1 KV head per GPU) with 24 sequences of 2,176 tokens takes
about 22 us per layer where its 64 MiB of BF16 KV read at 2.6 TB/s would take 10 us, and a
single sequence takes 11 us at any context up to 4,096 tokens (AIConfigurator 0.12.0's measured
tables). Over 80 layers that is 1.8 ms of a 12 ms step that the roofline priced at 0.8 ms.

``costmodels/data/decode_attention/<GPU>.csv`` (``benchmarks/derive_decode_attention.py``) holds,
per GPU, runtime, KV format, head size and query heads per KV head, the measured latency of one
layer's decode attention at each context length and each power-of-two count of (sequence, KV
head) pairs, the count the measured latency depends on (see that script). :func:`decode_attention_s`
looks a step up: linear in the pairs and in the context between measured points, proportional to
either beyond the last (the kernel is bandwidth-bound there), the nearest measured query-per-KV
ratio. It returns None where no table covers the GPU, KV format and head size, and for MLA, whose
decode kernels differ; the caller then prices attention from its bytes and FLOPs. Where a table
covers it, the caller still never prices a step below the KV cache's bytes over HBM bandwidth:
the tables time one set of sequences over and over, which the L2 cache holds for small shapes
(the L40S and RTX PRO 6000 tables reach 1.4-3x those GPUs' HBM bandwidth), while a served batch
streams its cache from HBM.
"""
from __future__ import annotations

import bisect
import csv
import math
from functools import cache, lru_cache
from importlib import resources

from costmodels.dense_gemm import physical
from costmodels.hardware import gpu_name_or_none
from costmodels.models import ModelSpec

#: KV-cache formats whose attention runs another format's kernels: FP16 as BF16.
_KV_FORMAT = {"bf16": "bf16", "fp16": "bf16", "fp8": "fp8"}
#: Where a runtime has no table of its own for a GPU, the other runtimes' kernels are the nearest
#: measurement, in this order.
_RUNTIME_ORDER = ("trtllm", "vllm", "sglang")


class Grid:
    """One (GPU, runtime, KV format, head size, query heads per KV head) table: latency in seconds
    per layer at each measured context length and count of (sequence, KV head) pairs."""

    def __init__(self, units: tuple[int, ...], rows: dict[int, list[float | None]]) -> None:
        self.units = units
        self.contexts = tuple(sorted(rows))
        filled = [physical(units, tuple(_fill(units, rows[c]))) for c in self.contexts]
        # more context never takes less time: hold each column to a running maximum over context
        for i in range(1, len(filled)):
            filled[i] = [max(a, b) for a, b in zip(filled[i], filled[i - 1], strict=True)]
        self.rows = tuple(tuple(x * 1e-6 for x in r) for r in filled)

    def _at_units(self, row: tuple[float, ...], u: float) -> float:
        us = self.units
        if u <= us[0]:
            return row[0]
        if u >= us[-1]:
            return row[-1] * u / us[-1]
        i = bisect.bisect_left(us, u)
        f = (u - us[i - 1]) / (us[i] - us[i - 1])
        return row[i - 1] * (1 - f) + row[i] * f

    def seconds(self, pairs: float, context: float) -> float:
        """One layer's decode attention over ``pairs`` (sequence, KV head) pairs of ``context`` tokens."""
        cs = self.contexts
        if context <= cs[0]:
            return self._at_units(self.rows[0], pairs)
        if context >= cs[-1]:
            return self._at_units(self.rows[-1], pairs) * context / cs[-1]
        i = bisect.bisect_left(cs, context)
        f = (context - cs[i - 1]) / (cs[i] - cs[i - 1])
        return self._at_units(self.rows[i - 1], pairs) * (1 - f) + self._at_units(self.rows[i], pairs) * f


def _fill(units: tuple[int, ...], row: list[float | None]) -> list[float]:
    """A row's unmeasured points: below the first measured, that latency (the floor); beyond the
    last, proportional to the pairs (each pair adds its bytes at the saturated bandwidth); a gap
    between two measured points, linear between them."""
    known = {i: x for i, x in enumerate(row) if x is not None}
    first, last = min(known), max(known)
    out: list[float] = []
    for i in range(len(row)):
        if i in known:
            out.append(known[i])
        elif i < first:
            out.append(known[first])
        elif i > last:
            out.append(known[last] * units[i] / units[last])
        else:
            lo = max(j for j in known if j < i)
            hi = min(j for j in known if j > i)
            f = (units[i] - units[lo]) / (units[hi] - units[lo])
            out.append(known[lo] * (1 - f) + known[hi] * f)
    return out


@lru_cache(maxsize=1)
def _shipped() -> dict[str, str]:
    """Catalog GPU name -> the stem of its shipped file."""
    folder = resources.files("costmodels") / "data" / "decode_attention"
    stems = sorted(f.name.removesuffix(".csv") for f in folder.iterdir() if f.name.endswith(".csv"))
    return {gpu_name_or_none(stem) or stem: stem for stem in stems}


@cache
def _gpu_lines(gpu: str) -> tuple[tuple[int, ...], dict[tuple[str, str, int], dict[int, list[str]]]]:
    """The pair counts of the columns and, per (runtime, KV format, head size), each measured
    query-per-KV ratio's raw CSV lines (none: no file)."""
    stem = _shipped().get(gpu)  # a name from an input never becomes a path
    if stem is None:
        return (), {}
    f = resources.files("costmodels") / "data" / "decode_attention" / f"{stem}.csv"
    header, *lines = f.read_text(encoding="utf-8").splitlines()
    units = tuple(int(h.removeprefix("us_u")) for h in header.split(",")[6:])
    out: dict[tuple[str, str, int], dict[int, list[str]]] = {}
    for line in lines:
        runtime, _version, kv, hd, ratio, _ = line.split(",", 5)
        out.setdefault((runtime, kv, int(hd)), {}).setdefault(int(ratio), []).append(line)
    return units, out


@cache
def _grid(gpu: str, runtime: str, kv: str, head_dim: int, ratio: int) -> Grid:
    units, lines = _gpu_lines(gpu)
    rows = {int(r[5]): [float(x) if x else None for x in r[6:]]
            for r in csv.reader(lines[(runtime, kv, head_dim)][ratio])}
    return Grid(units, rows)


@lru_cache(maxsize=1024)
def grid_for(gpu: str, runtime: str, kv_dtype: str, head_dim: int, q_per_kv: float) -> Grid | None:
    """The runtime's own table for the GPU, KV format and head size (else another runtime's) at the
    measured query-per-KV ratio nearest ``q_per_kv`` in log scale, or None."""
    kv = _KV_FORMAT.get(kv_dtype)
    if kv is None:
        return None
    _, lines = _gpu_lines(gpu)
    for rt in (runtime, *_RUNTIME_ORDER):
        ratios = lines.get((rt, kv, head_dim))
        if ratios:
            want = math.log2(max(q_per_kv, 1.0))
            ratio = min(ratios, key=lambda r: (abs(math.log2(r) - want), -r))
            return _grid(gpu, rt, kv, head_dim, ratio)
    return None


def decode_attention_s(model: ModelSpec, *, gpu: str, runtime: str, kv_dtype: str, at: int, sequences: float,
                       context: float, layers: int) -> float | None:
    """Measured time of one step's decode attention over ``layers`` layers for ``sequences``
    sequences of ``context`` tokens on one GPU of an attention group of ``at`` GPUs, or None where
    no table covers it (see the module docstring). Sliding-window layers attend to at most their
    window."""
    if model.is_mla or sequences <= 0 or layers <= 0:
        return None
    kv_per_gpu = max(model.kv_heads / at, 1.0)  # KV heads are replicated when the group outnumbers them
    grid = grid_for(gpu, runtime, kv_dtype, model.head_dim, model.heads / at / kv_per_gpu)
    if grid is None:
        return None
    pairs = sequences * kv_per_gpu
    full = grid.seconds(pairs, context)
    if not model.sliding_window or not model.sliding_layers:
        return layers * full
    share = model.sliding_layers / model.layers
    return layers * ((1 - share) * full + share * grid.seconds(pairs, min(context, model.sliding_window)))
