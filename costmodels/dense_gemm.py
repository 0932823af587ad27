"""Dense projections priced from measured GEMM latencies, shape by shape.

A GEMM's speed depends on all three of its sizes: its rows m (the step's tokens), its output width
n and its reduction depth k. Tensor parallelism narrows every projection (n or k falls by the TP
degree), and narrow GEMMs leave tensor cores idle: on A100 under TensorRT-LLM with 512 rows, an
8,192 x 8,192 BF16 weight runs at 217 TFLOPS and an 8,192 x 1,024 one (Llama-3.1-70B's output
projection at TP8) at 143 (AIConfigurator's measured tables). A single efficiency curve in m
cannot see this, so it priced TP8 too fast next to TP4 and picked it where TP4 measured better.

``costmodels/data/dense_gemm/<GPU>.csv`` (``benchmarks/derive_dense_gemm.py``) holds, per GPU, runtime
and format, the measured latency of every (n, k) weight shape of the table at a grid of rows m.
:func:`dense_layers_s` sums a stage's projections (QKV, output, the MLP's up/gate and down, shared
experts) at their per-GPU shapes: latency linear in m between the grid's rows, and per unit of
n x k bilinear in log2 n and log2 k between its shapes. It returns None where no table covers the GPU and format (the caller
then prices the layer from its FLOPs and weight bytes) and for MLA attention, whose low-rank
projections are priced from their FLOPs.
"""
from __future__ import annotations

import bisect
import csv
import math
from functools import cache, lru_cache
from importlib import resources

from costmodels.hardware import gpu_name_or_none
from costmodels.model_spec import ModelSpec

#: Weight formats whose GEMMs run another format's kernels, for every measured table (dense GEMMs
#: here, MoE layers in costmodels.moe_measured): FP16 as BF16.
KERNEL_FORMAT: dict[str, str] = {"fp16": "bf16"}
#: Where a runtime has no table of its own for a GPU, the GEMM libraries of the others (cuBLAS,
#: CUTLASS) are the nearest measurement, in this order.
_RUNTIME_ORDER = ("trtllm", "vllm", "sglang")


class Table:
    """One (GPU, runtime, format) table: measured latency per (n, k) cell at the grid's rows m, per
    unit of n x k, held to :func:`physical`."""

    def __init__(self, ms: tuple[int, ...], cells: dict[tuple[int, int], tuple[float, ...]]) -> None:
        self.ms = ms
        self.log_n = tuple(sorted({math.log2(n) for n, _ in cells}))
        self.log_k = tuple(sorted({math.log2(k) for _, k in cells}))
        self.per_nk = {(math.log2(n), math.log2(k)): tuple(x * 1e-6 / (n * k) for x in physical(ms, lat_us))
                       for (n, k), lat_us in cells.items()}

    def at_rows(self, cell: tuple[float, ...], m: float) -> float:
        """A latency curve over the grid's rows at m rows: linear in m between grid rows (so never falling
        as m grows), proportional to m beyond the last (the GEMM is compute-bound there)."""
        return along(self.ms, cell, m)

    def shape_curve(self, n: float, k: float) -> tuple[float, ...] | None:
        """Latency in seconds of an (n, k) weight at each of the grid's rows m: the neighbouring
        measured shapes' latencies scaled by n x k, weighted bilinearly in log2 n and log2 k;
        None off a ragged grid."""
        n0, n1, fn = _bracket(self.log_n, math.log2(max(n, 1.0)))
        k0, k1, fk = _bracket(self.log_k, math.log2(max(k, 1.0)))
        total = [0.0] * len(self.ms)
        for nn, wn in ((n0, 1 - fn), (n1, fn)):
            for kk, wk in ((k0, 1 - fk), (k1, fk)):
                if wn * wk == 0.0:
                    continue
                cell = self.per_nk.get((nn, kk))
                if cell is None:
                    return None
                for i, x in enumerate(cell):
                    total[i] += wn * wk * x * n * k
        return tuple(total)

    def seconds(self, m: float, n: float, k: float) -> float | None:
        """Latency of an (m x k) @ (k x n) GEMM (``shape_curve`` at m rows)."""
        curve = self.shape_curve(n, k)
        return None if curve is None else self.at_rows(curve, m)


def along(xs: tuple[int, ...], ys: tuple[float, ...], x: float) -> float:
    """A measured curve ys over the sizes xs at x: the first value below the first size, linear
    between sizes, proportional to x beyond the last (the kernel is saturated there)."""
    if x <= xs[0]:
        return ys[0]
    if x >= xs[-1]:
        return ys[-1] * x / xs[-1]
    i = bisect.bisect_left(xs, x)
    f = (x - xs[i - 1]) / (xs[i] - xs[i - 1])
    return ys[i - 1] * (1 - f) + ys[i] * f


def physical(ms: tuple[int, ...], latencies: tuple[float, ...]) -> list[float]:
    """A measured latency curve over rows m held to two bounds the hardware obeys, which a table
    can break by noise or clock throttling in long kernels: more rows never take less time, and
    never more time per row (m rows can always run as smaller GEMMs, so the time per row at m is at
    most that at fewer rows). Without the second, a step split into more chunks could cost less
    than one, and TPOT could fall as the batch grew.

    >>> physical((1, 2, 4), (5.0, 4.0, 12.0))
    [5.0, 5.0, 10.0]
    """
    out: list[float] = []
    best = -1  # the earlier row with the least time per row, which bounds every later one
    for i, (m, lat) in enumerate(zip(ms, latencies, strict=True)):
        lat = max(lat, out[-1]) if out else lat
        if best >= 0:
            lat = min(lat, out[best] * m / ms[best])
        out.append(lat)
        if best < 0 or lat / m < out[best] / ms[best]:
            best = i
    return out


def _bracket(xs: tuple[float, ...], x: float) -> tuple[float, float, float]:
    """Neighbours of x in xs and x's position between them (0-1), clamped to the ends."""
    x = min(max(x, xs[0]), xs[-1])
    if len(xs) == 1:
        return xs[0], xs[0], 0.0
    i = min(max(bisect.bisect_left(xs, x), 1), len(xs) - 1)
    lo, hi = xs[i - 1], xs[i]
    return lo, hi, (x - lo) / (hi - lo) if hi > lo else 0.0


@lru_cache(maxsize=1)
def _shipped() -> dict[str, str]:
    """Catalog GPU name -> the stem of its shipped file (the files are named as the tables name
    their GPUs; an alias such as "B300" resolves to the catalog's "B300-288GB")."""
    folder = resources.files("costmodels") / "data" / "dense_gemm"
    stems = sorted(f.name.removesuffix(".csv") for f in folder.iterdir() if f.name.endswith(".csv"))
    return {gpu_name_or_none(stem) or stem: stem for stem in stems}


@cache
def _gpu_lines(gpu: str) -> tuple[tuple[int, ...], dict[tuple[str, str], list[str]]]:
    """The grid's rows m and, per (runtime, dtype), the raw CSV lines of one catalog GPU's file
    (none: no file). Lines are split into numbers only for the table a caller asks for."""
    stem = _shipped().get(gpu)  # a name from an input never becomes a path
    if stem is None:
        return (), {}
    f = resources.files("costmodels") / "data" / "dense_gemm" / f"{stem}.csv"
    header, *lines = f.read_text(encoding="utf-8").splitlines()
    ms = tuple(int(h.removeprefix("us_m")) for h in header.split(",")[5:])
    out: dict[tuple[str, str], list[str]] = {}
    for line in lines:
        runtime, _version, dtype, _ = line.split(",", 3)
        out.setdefault((runtime, dtype), []).append(line)
    return ms, out


@cache
def _table(gpu: str, runtime: str, dtype: str) -> Table | None:
    ms, lines = _gpu_lines(gpu)
    if (runtime, dtype) not in lines:
        return None
    cells = {}
    for r in csv.reader(lines[(runtime, dtype)]):
        cells[(int(r[3]), int(r[4]))] = tuple(float(x) for x in r[5:])
    return Table(ms, cells)


def table_for(gpu: str, runtime: str, weight_dtype: str) -> Table | None:
    """The runtime's own table for the GPU and format, else another runtime's, else None."""
    fmt = KERNEL_FORMAT.get(weight_dtype, weight_dtype)
    for rt in (runtime, *_RUNTIME_ORDER):
        t = _table(gpu, rt, fmt)
        if t is not None:
            return t
    return None


def projections(model: ModelSpec, at: int, dense_layers: int, moe_layers: int) -> list[tuple[float, float, int]]:
    """(n, k, layers) of one attention-group GPU's dense projections over a stage with these layer
    counts: attention in every layer, the dense MLP in dense layers, shared experts in MoE layers.
    K/V are replicated when the group outnumbers the KV heads (one whole head per GPU)."""
    layers = dense_layers + moe_layers
    kv_per_gpu = max(model.kv_heads / at, 1.0)
    q = model.heads / at * model.head_dim
    mats = [(q + 2 * kv_per_gpu * model.head_dim, float(model.hidden), layers),  # QKV
            (float(model.hidden), q, layers)]  # output projection
    up = 2 if model.gated_mlp else 1
    if dense_layers and model.intermediate:
        inter = model.intermediate / at
        mats += [(up * inter, float(model.hidden), dense_layers), (float(model.hidden), inter, dense_layers)]
    if moe_layers and model.shared_experts:
        inter = model.shared_experts * (model.shared_intermediate or model.moe_intermediate) / at
        mats += [(up * inter, float(model.hidden), moe_layers), (float(model.hidden), inter, moe_layers)]
    return mats


@lru_cache(maxsize=4096)
def _stage_curve(model: ModelSpec, gpu: str, runtime: str, weight_dtype: str, at: int, dense_layers: int,
                 moe_layers: int) -> tuple[Table, tuple[float, ...]] | None:
    """The table and the stage's summed projection latency at each of its grid rows. Latency is
    linear in each cell's measurements, so the sum of the projections' curves is the stage's
    curve; a search asks for the same stage thousands of times."""
    table = table_for(gpu, runtime, weight_dtype)
    if table is None:
        return None
    total = [0.0] * len(table.ms)
    for n, k, layers in projections(model, at, dense_layers, moe_layers):
        curve = table.shape_curve(n, k)
        if curve is None:
            return None
        for i, x in enumerate(curve):
            total[i] += layers * x
    return table, tuple(total)


def dense_layers_s(model: ModelSpec, *, gpu: str, runtime: str, weight_dtype: str, at: int, rows: float,
                   dense_layers: int, moe_layers: int) -> float | None:
    """Measured time of one step's dense projections over the stage's layers at ``rows`` tokens
    per GPU, or None where no measured table covers them (see the module docstring)."""
    if model.is_mla or rows <= 0:
        return None
    found = _stage_curve(model, gpu, runtime, weight_dtype, at, dense_layers, moe_layers)
    if found is None:
        return None
    table, curve = found
    return table.at_rows(curve, rows)


def lm_head_s(model: ModelSpec, *, gpu: str, runtime: str, at: int, rows: float) -> float | None:
    """Measured time of the LM head (vocab / at outputs, hidden inputs; kept in 16 bit by the
    runtimes whatever the weights' format) at ``rows`` sampling sequences, or None without a table."""
    table = table_for(gpu, runtime, "bf16")
    if table is None or rows <= 0:
        return None
    return table.seconds(rows, model.vocab / at, float(model.hidden))
