"""Measured MoE layer latencies (costmodels/data/moe_measured.csv) and how they are read."""
import csv
import math
from importlib import resources

import pytest

from costmodels.hardware import gpu_catalog
from costmodels.models import get_model
from costmodels.moe_measured import _table, measured_moe_layer_s

QWEN3_30B = get_model("qwen3-30b-a3b")


def test_the_table_is_measurements_of_catalog_shapes():
    text = (resources.files("costmodels") / "data" / "moe_measured.csv").read_text(encoding="utf-8")
    rows = list(csv.DictReader(text.splitlines()))
    assert rows
    shapes = {(m.hidden, m.moe_intermediate, m.experts_per_token, m.experts)
              for m in map(get_model, ["mixtral-8x7b", "qwen3-30b-a3b", "qwen3-235b-a22b", "deepseek-v3"])}
    seen = {(int(r["hidden"]), int(r["inter"]), int(r["topk"]), int(r["experts"])) for r in rows}
    assert shapes <= seen
    for r in rows:
        assert r["runtime"] == "trtllm" and r["dtype"] in ("bf16", "fp8", "fp4")
        assert float(r["latency_ms"]) > 0 and int(r["tokens"]) >= 1
    assert all(k[0] in gpu_catalog() for k in _table())


def test_reads_measured_points_and_interpolates_between_them():
    xs, ys = _table()[("B200-180GB", "trtllm", "fp4", 2048, 768, 8, 128, 1, 1)]
    kw = dict(gpu="B200-180GB", runtime="trtllm", weight_dtype="fp4", moe_tp=1, moe_ep=1)
    for x, y in zip(xs, ys, strict=True):
        assert measured_moe_layer_s(QWEN3_30B, tokens=x, **kw) == pytest.approx(y)
    for a, b, ya, yb in zip(xs, xs[1:], ys, ys[1:], strict=False):
        mid = measured_moe_layer_s(QWEN3_30B, tokens=math.sqrt(a * b), **kw)
        assert min(ya, yb) * (1 - 1e-12) <= mid <= max(ya, yb) * (1 + 1e-12)
    # beyond the largest count the layer is compute-bound: time grows with the tokens
    assert measured_moe_layer_s(QWEN3_30B, tokens=2 * xs[-1], **kw) == pytest.approx(2 * ys[-1])
    assert measured_moe_layer_s(QWEN3_30B, tokens=0.5, **kw) == pytest.approx(ys[0])


def test_no_curve_means_no_answer():
    kw = dict(gpu="B200-180GB", weight_dtype="fp4", moe_tp=1, moe_ep=1, tokens=64)
    assert measured_moe_layer_s(QWEN3_30B, runtime="vllm", **kw) is None  # only TensorRT-LLM's tables
    assert measured_moe_layer_s(get_model("llama-3.1-8b"), runtime="trtllm", **kw) is None  # not an MoE shape
    assert measured_moe_layer_s(QWEN3_30B, runtime="trtllm", **{**kw, "moe_tp": 3}) is None


def test_small_experts_are_far_from_peak_and_large_ones_near_it():
    """The reason for the table: at 8,192 tokens Qwen3-30B-A3B's 768-wide experts run at a few
    percent of B200's FP4 peak, Mixtral's 14,336-wide experts at most of H100's FP8 peak."""
    b200, h100 = gpu_catalog()["B200-180GB"], gpu_catalog()["H100-SXM-80GB"]
    mix = get_model("mixtral-8x7b")
    t = 8192
    small = measured_moe_layer_s(QWEN3_30B, gpu=b200.name, runtime="trtllm", weight_dtype="fp4", moe_tp=1, moe_ep=1,
                                 tokens=t)
    large = measured_moe_layer_s(mix, gpu=h100.name, runtime="trtllm", weight_dtype="fp8", moe_tp=2, moe_ep=1, tokens=t)
    flops_small = 2 * t * QWEN3_30B.experts_per_token * 3 * QWEN3_30B.hidden * QWEN3_30B.moe_intermediate
    flops_large = 2 * t * mix.experts_per_token * 3 * mix.hidden * mix.moe_intermediate / 2
    assert flops_small / small / b200.fp4_flop_per_s < 0.1
    assert flops_large / large / h100.fp8_flop_per_s > 0.5
