"""Attention priced from measured kernel latencies: decode steps and prompt chunks.

Decode. A decode step's attention reads every running sequence's KV cache, so a roofline prices it
as the cache's bytes over HBM bandwidth. The kernels do not reach that bandwidth at the batches a
latency-bound plan runs: they split the work over (sequence, KV head) pairs, and too few pairs
leave SMs idle, while every call pays a floor of launch and reduction. On H100 under TensorRT-LLM,
Llama-3.1-70B at TP8 (8 query heads, 1 KV head per GPU) with 24 sequences of 2,176 tokens takes
about 22 us per layer where its 25.5 MiB of BF16 KV read at 2.6 TB/s would take 10 us, and a
single sequence takes 11-17 us at any context up to 4,096 tokens (AIConfigurator 0.12.0's measured
tables). Over 80 layers that is 1.8 ms of a 12 ms step that the roofline priced at 0.8 ms.

Prompts. Prompt attention is compute-bound, but far from peak at the head counts a TP shard keeps:
one 2,048-token prompt of that shard takes 47 us a layer on H100, 18 % of the BF16 peak; 16,384
tokens reach 51 %. A single efficiency constant cannot follow that.

``costmodels/data/decode_attention/<GPU>.csv`` (``benchmarks/derive_decode_attention.py``) and
``costmodels/data/prefill_attention/<GPU>.csv`` (``benchmarks/derive_prefill_attention.py``) hold,
per GPU, runtime, KV format, head size and query heads per KV head, the measured latency of one
layer's attention at each context (decode) or prompt length (prompts) and each power-of-two count
of (sequence, KV head) pairs, the count the measured latency depends on (see those scripts).
:func:`decode_attention_s` and :func:`prompt_attention_s` look a step up: linear in the pairs and
in the length between measured points, beyond the longest proportional to the length (decode
reads it) or to its square (a causal prompt's work), the nearest measured query-per-KV ratio. A
chunk of a prompt is priced as the share of a whole prompt that does the same work: C new tokens
after P cached ones attend to P + C/2 tokens on average, as C / L prompts of L = 2P + C tokens do.
Both return None where no table covers the GPU, KV format and head size; decode returns None for
MLA, whose compressed-space kernels differ (MLA prompts run as ordinary attention over decompressed
keys, one KV head per query head, and are priced from the 192-wide tables). The caller then prices
attention from its bytes and FLOPs. Where a decode table
covers it, the caller still never prices a step below the KV cache's bytes over HBM bandwidth:
the tables time one set of sequences over and over, which the L2 cache holds for small shapes
(the L40S, RTX PRO 6000 and A100 tables reach up to 3.6x, 2.4x and 1.5x those GPUs' HBM bandwidth), while a served batch
streams its cache from HBM.
"""
from __future__ import annotations

import bisect
import csv
import math
from collections.abc import Callable
from functools import cache, lru_cache
from importlib import resources

from costmodels.dense_gemm import along, physical
from costmodels.hardware import get_gpu, gpu_name_or_none
from costmodels.model_spec import ModelSpec

#: KV-cache formats whose attention runs another format's kernels, per table kind. Decode: FP16 as
#: BF16, INT8 as FP8 (one byte an element, read the same way). Prompts run their math in 16 bit
#: whatever the cache's format (only the new tokens' KV write differs, priced by the caller's
#: roofline), so formats without a table of their own use the BF16 one.
_KV_FORMAT = {"decode": {"bf16": "bf16", "fp16": "bf16", "fp8": "fp8", "int8": "fp8"},
              "prompt": {"bf16": "bf16", "fp16": "bf16", "fp8": "fp8", "int8": "bf16", "int4": "bf16",
                         "fp4": "bf16"}}
#: Catalog GPUs with no table of their own that carry a tabled GPU's die (same SMs, other clocks,
#: memory or links; NVIDIA's datasheets): priced from that GPU's table, scaled by the two GPUs'
#: datasheet BF16 peaks (prompts, compute-bound) or HBM bandwidths (decode).
SAME_DIE = {"H800-SXM-80GB": "H100-SXM-80GB", "H100-PCIe-80GB": "H100-SXM-80GB", "H100-NVL-94GB": "H100-SXM-80GB",
            "GH200-480GB": "H100-SXM-80GB", "H20-96GB": "H100-SXM-80GB", "H200-NVL-141GB": "H200-SXM-141GB",
            "A100-SXM4-40GB": "A100-SXM4-80GB", "A100-PCIe-40GB": "A100-SXM4-80GB",
            "A100-PCIe-80GB": "A100-SXM4-80GB", "L40-48GB": "L40S-48GB", "RTX-6000-Ada-48GB": "L40S-48GB",
            "RTX-PRO-6000-Blackwell-Workstation": "RTX-PRO-6000-Blackwell-Server"}
#: Where a runtime has no table of its own for a GPU, the other runtimes' kernels are the nearest
#: measurement, in this order.
_RUNTIME_ORDER = ("trtllm", "vllm", "sglang")


class Grid:
    """One (GPU, runtime, KV format, head size, query heads per KV head) table: latency in seconds
    per layer at each measured length (decode: context; prompts: prompt length) and count of
    (sequence, KV head) pairs. ``length_power``: how time grows with the length beyond the longest
    measured (1: decode reads the context; 2: a causal prompt's work)."""

    def __init__(self, units: tuple[int, ...], rows: dict[int, list[float | None]], length_power: int = 1) -> None:
        self.units = units
        self.length_power = length_power
        self.contexts = tuple(sorted(rows))
        # a call never takes less than the fastest measured call of the table (launch and reduction)
        floor = min(x for r in rows.values() for x in r if x is not None)
        filled = [physical(units, tuple(max(x, floor) for x in _fill(units, rows[c], length_power == 2)))
                  for c in self.contexts]
        # more context never takes less time: hold each column to a running maximum over context
        for i in range(1, len(filled)):
            filled[i] = [max(a, b) for a, b in zip(filled[i], filled[i - 1], strict=True)]
        self.rows = tuple(tuple(x * 1e-6 for x in r) for r in filled)

    def seconds(self, pairs: float, context: float) -> float:
        """One layer's attention over ``pairs`` (sequence, KV head) pairs of ``context`` tokens
        (decode: attended; prompts: the prompt's length)."""
        cs = self.contexts
        if context <= cs[0]:
            return along(self.units, self.rows[0], pairs)
        if context >= cs[-1]:
            return along(self.units, self.rows[-1], pairs) * (context / cs[-1]) ** self.length_power
        i = bisect.bisect_left(cs, context)
        f = (context - cs[i - 1]) / (cs[i] - cs[i - 1])
        return along(self.units, self.rows[i - 1], pairs) * (1 - f) + along(self.units, self.rows[i], pairs) * f


def _fill(units: tuple[int, ...], row: list[float | None], proportional_below: bool = False) -> list[float]:
    """A row's unmeasured points: below the first measured, that latency (decode: the floor of a
    call), or for prompts (``proportional_below``) that latency scaled by the pairs (a prompt's
    work grows with its pairs; the caller floors it); beyond the last, proportional to the pairs
    (each pair adds its bytes or work at the saturated rate); a gap between two measured points,
    linear between them."""
    known = {i: x for i, x in enumerate(row) if x is not None}
    first, last = min(known), max(known)
    out: list[float] = []
    for i in range(len(row)):
        if i in known:
            out.append(known[i])
        elif i < first:
            out.append(known[first] * units[i] / units[first] if proportional_below else known[first])
        elif i > last:
            out.append(known[last] * units[i] / units[last])
        else:
            lo = max(j for j in known if j < i)
            hi = min(j for j in known if j > i)
            f = (units[i] - units[lo]) / (units[hi] - units[lo])
            out.append(known[lo] * (1 - f) + known[hi] * f)
    return out


#: the table kinds: folder under costmodels/data, and how time grows beyond the longest length
_KINDS = {"decode": ("decode_attention", 1), "prompt": ("prefill_attention", 2)}


@lru_cache(maxsize=2)
def _shipped(kind: str = "decode") -> dict[str, str]:
    """Catalog GPU name -> the stem of its shipped file of this kind."""
    folder = resources.files("costmodels") / "data" / _KINDS[kind][0]
    stems = sorted(f.name.removesuffix(".csv") for f in folder.iterdir() if f.name.endswith(".csv"))
    return {gpu_name_or_none(stem) or stem: stem for stem in stems}


@cache
def _gpu_lines(gpu: str, kind: str = "decode") -> tuple[tuple[int, ...], dict[tuple[str, str, int], dict[int, list[str]]]]:
    """The pair counts of the columns and, per (runtime, KV format, head size), each measured
    query-per-KV ratio's raw CSV lines (none: no file)."""
    stem = _shipped(kind).get(gpu)  # a name from an input never becomes a path
    if stem is None:
        return (), {}
    f = resources.files("costmodels") / "data" / _KINDS[kind][0] / f"{stem}.csv"
    header, *lines = f.read_text(encoding="utf-8").splitlines()
    units = tuple(int(h.removeprefix("us_u")) for h in header.split(",")[6:])
    out: dict[tuple[str, str, int], dict[int, list[str]]] = {}
    for line in lines:
        runtime, _version, kv, hd, ratio, _ = line.split(",", 5)
        out.setdefault((runtime, kv, int(hd)), {}).setdefault(int(ratio), []).append(line)
    return units, out


@cache
def _grid(gpu: str, runtime: str, kv: str, head_dim: int, ratio: int, kind: str = "decode") -> Grid:
    units, lines = _gpu_lines(gpu, kind)
    rows = {int(r[5]): [float(x) if x else None for x in r[6:]]
            for r in csv.reader(lines[(runtime, kv, head_dim)][ratio])}
    return Grid(units, rows, _KINDS[kind][1])


@lru_cache(maxsize=1024)
def grid_for(gpu: str, runtime: str, kv_dtype: str, head_dim: int, q_per_kv: float, kind: str = "decode") -> Grid | None:
    """The runtime's own table for the GPU, KV format and head size (else another runtime's) at the
    measured query-per-KV ratio nearest ``q_per_kv`` in log scale, or None."""
    kv = _KV_FORMAT[kind].get(kv_dtype)
    if kv is None:
        return None
    _, lines = _gpu_lines(gpu, kind)
    for rt in (runtime, *_RUNTIME_ORDER):
        ratios = lines.get((rt, kv, head_dim))
        if ratios:
            want = math.log2(max(q_per_kv, 1.0))
            ratio = min(ratios, key=lambda r: (abs(math.log2(r) - want), -r))
            return _grid(gpu, rt, kv, head_dim, ratio, kind)
    return None


def grid_and_scale(gpu: str, runtime: str, kv_dtype: str, head_dim: int, q_per_kv: float,
                   kind: str) -> tuple[Grid, float] | None:
    """:func:`grid_for` at the head size, else at the nearest measured head size (log scale) with
    its times scaled by head_dim / that size: a head's bytes (decode) and FLOPs (prompts) are
    proportional to its size. None without any table for the GPU and KV format."""
    grid = grid_for(gpu, runtime, kv_dtype, head_dim, q_per_kv, kind)
    if grid is not None:
        return grid, 1.0
    kv = _KV_FORMAT[kind].get(kv_dtype)
    sizes = sorted({hd for (_, k, hd) in _gpu_lines(gpu, kind)[1] if k == kv})
    if not sizes or head_dim <= 0:
        return None
    nearest = min(sizes, key=lambda hd: (abs(math.log2(hd / head_dim)), hd))
    grid = grid_for(gpu, runtime, kv_dtype, nearest, q_per_kv, kind)
    return None if grid is None else (grid, head_dim / nearest)


def _over_layers(model: ModelSpec, layers: int, per_layer: Callable[[float], float], context: float) -> float:
    """``layers`` layers' time, ``per_layer(c)`` a layer's at c tokens of context: full-attention
    layers at ``context``, the model's share of sliding-window layers at most at its window."""
    full = per_layer(context)
    if not model.sliding_window or not model.sliding_layers:
        return layers * full
    share = model.sliding_layers / model.layers
    return layers * ((1 - share) * full + share * per_layer(min(context, model.sliding_window)))


def _table_gpu(gpu: str, kind: str, own_rate: float) -> tuple[str, float]:
    """The GPU whose table prices ``gpu`` and the factor its times are scaled by: itself and 1, or
    its same-die sibling (``SAME_DIE``) scaled by the sibling's datasheet rate (BF16 peak for
    prompts, HBM bandwidth for decode) over ``own_rate``, this GPU's; unscaled without a rate."""
    if gpu in _shipped(kind) or gpu not in SAME_DIE or own_rate <= 0:
        return gpu, 1.0
    sibling = get_gpu(SAME_DIE[gpu])
    rate = sibling.bf16_flop_per_s if kind == "prompt" else sibling.hbm_bandwidth_bytes_per_s
    return sibling.name, rate / own_rate


@lru_cache(maxsize=65536)  # a search asks for the same step many times
def decode_attention_s(model: ModelSpec, *, gpu: str, runtime: str, kv_dtype: str, at: int, sequences: float,
                       context: float, layers: int, hbm_bytes_per_s: float = 0.0) -> float | None:
    """Measured time of one step's decode attention over ``layers`` layers for ``sequences``
    sequences of ``context`` tokens on one GPU of an attention group of ``at`` GPUs, or None where
    no table covers it (see the module docstring). Sliding-window layers attend to at most their
    window. ``hbm_bytes_per_s``: this GPU's datasheet bandwidth, to scale a same-die sibling's table."""
    if model.is_mla or sequences <= 0 or layers <= 0:
        return None
    table_gpu, scale = _table_gpu(gpu, "decode", hbm_bytes_per_s)
    kv_per_gpu = max(model.kv_heads / at, 1.0)  # KV heads are replicated when the group outnumbers them
    found = grid_and_scale(table_gpu, runtime, kv_dtype, model.head_dim, model.heads / at / kv_per_gpu, "decode")
    if found is None:
        return None
    grid, size_scale = found
    pairs = sequences * kv_per_gpu
    return scale * size_scale * _over_layers(model, layers, lambda c: grid.seconds(pairs, c), context)


@lru_cache(maxsize=65536)
def prompt_attention_s(model: ModelSpec, *, gpu: str, runtime: str, kv_dtype: str, at: int, tokens: float,
                       context: float, layers: int, flop_per_s: float = 0.0) -> float | None:
    """Measured time of one step's prompt attention over ``layers`` layers for ``tokens`` new prompt
    tokens each attending to ``context`` tokens on average, on one GPU of an attention group of
    ``at`` GPUs, or None where no table covers it. Priced as tokens / L whole prompts of L = 2 x
    context tokens (the same causal work; see the module docstring), at least one call's floor.
    ``flop_per_s``: this GPU's datasheet BF16 peak, to scale a same-die sibling's table."""
    if tokens <= 0 or layers <= 0:
        return None
    gpu, scale = _table_gpu(gpu, "prompt", flop_per_s)
    if model.is_mla:
        # MLA prompts run as ordinary attention over decompressed keys and values, one KV head per
        # query head, at the query-key head size (nope + rope dims), in 16-bit math
        kv_per_gpu = model.heads / at
        found = grid_and_scale(gpu, runtime, "bf16", model.qk_nope_head_dim + model.qk_rope_head_dim, 1.0, "prompt")
    else:
        kv_per_gpu = max(model.kv_heads / at, 1.0)
        found = grid_and_scale(gpu, runtime, kv_dtype, model.head_dim, model.heads / at / kv_per_gpu, "prompt")
    if found is None:
        return None
    grid, size_scale = found

    def one_layer(length: float) -> float:
        length = max(length, 1.0)
        pairs = tokens / length * kv_per_gpu
        if pairs >= grid.units[0]:
            return grid.seconds(pairs, length)
        # less than one prompt's pairs: that share of a whole prompt's time, never below a call's floor
        return max(grid.seconds(grid.units[0], length) * pairs / grid.units[0], grid.rows[0][0])

    return scale * size_scale * _over_layers(model, layers, lambda c: one_layer(2 * c), context)
