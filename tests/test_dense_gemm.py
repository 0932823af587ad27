"""Dense projections priced from measured GEMM tables (costmodels/dense_gemm.py)."""
import csv
import random
from importlib import resources
from itertools import pairwise

import pytest

from costmodels import dense_gemm
from costmodels.dense_gemm import dense_layers_s, projections, table_for
from costmodels.hardware import gpu_catalog
from costmodels.memory import replicated_kv_params_per_layer
from costmodels.models import get_model

A100 = "A100-SXM4-80GB"


def _file_rows(gpu):
    text = (resources.files("costmodels") / "data" / "dense_gemm" / f"{gpu}.csv").read_text(encoding="utf-8")
    return list(csv.reader(text.splitlines()))


def test_every_shipped_file_is_a_catalog_gpu_with_whole_rows():
    catalog = gpu_catalog()
    shipped = dense_gemm._shipped()
    assert {A100, "H100-SXM-80GB", "B200-180GB", "B300-288GB"} <= set(shipped)
    for gpu, stem in shipped.items():
        assert gpu in catalog
        header, *rows = _file_rows(stem)
        assert header[:5] == ["runtime", "runtime_version", "dtype", "n", "k"]
        assert all(h.startswith("us_m") for h in header[5:])
        for r in rows:
            assert r[0] in ("vllm", "sglang", "trtllm") and r[2] in ("bf16", "fp8", "fp4")
            assert len(r) == len(header) and all(float(x) > 0 for x in r[5:])


def test_a_grid_point_is_the_measurement():
    header, *rows = _file_rows(A100)
    ms = [int(h.removeprefix("us_m")) for h in header[5:]]
    rows = [r for r in rows if r[0] == "trtllm" and r[2] == "bf16"]
    t = table_for(A100, "trtllm", "bf16")
    for r in random.Random(7).sample(rows, 20):
        n, k = int(r[3]), int(r[4])
        lat = dense_gemm.physical(tuple(ms), tuple(float(x) for x in r[5:]))
        for i, m in enumerate(ms):
            assert t.seconds(m, n, k) == pytest.approx(lat[i] * 1e-6, rel=1e-9)


def test_measured_curves_are_held_to_the_hardware_bounds_only_where_they_break_them():
    """More rows never take less time nor more time per row; a curve obeying both is unchanged."""
    header, *rows = _file_rows("H200-SXM-141GB")
    ms = tuple(int(h.removeprefix("us_m")) for h in header[5:])
    changed = 0
    for r in rows:
        raw = tuple(float(x) for x in r[5:])
        got = dense_gemm.physical(ms, raw)
        assert all(b >= a for a, b in pairwise(got))
        assert all(b / mb <= a / ma * (1 + 1e-12) for a, b, ma, mb in zip(got, got[1:], ms, ms[1:], strict=False))
        obeys = all(b >= a for a, b in pairwise(raw)) and all(b / mb <= a / ma for a, b, ma, mb
                                                                   in zip(raw, raw[1:], ms, ms[1:], strict=False))
        assert (list(raw) == got) == obeys
        changed += not obeys
    assert 0 < changed < len(rows)  # the bounds correct some measured curves, not most


@pytest.mark.parametrize("gpu,runtime,dtype", [(A100, "trtllm", "fp16"), ("H100-SXM-80GB", "vllm", "fp8"),
                                               ("B200-180GB", "trtllm", "fp4")])
def test_time_never_falls_as_rows_grow(gpu, runtime, dtype):
    t = table_for(gpu, runtime, dtype)
    rng = random.Random(3)
    for _ in range(200):
        n, k = 2 ** rng.uniform(6, 16), 2 ** rng.uniform(6, 14)  # the tables stop at 16,384 x 65,536
        m = sorted(2 ** rng.uniform(-1, 15) for _ in range(12))
        times = [t.seconds(x, n, k) for x in m]
        assert all(b >= a * (1 - 1e-12) for a, b in pairwise(times)), (n, k, m, times)


def test_no_table_no_price_and_no_path_from_a_name():
    m = get_model("llama-3.1-70b")
    kw = dict(runtime="vllm", weight_dtype="bf16", at=1, rows=64, dense_layers=80, moe_layers=0)
    assert dense_layers_s(m, gpu="my-own-gpu", **kw) is None
    assert dense_layers_s(m, gpu="../../costmodels/data/dense_gemm/" + A100, **kw) is None
    assert dense_layers_s(m, gpu=A100, **{**kw, "weight_dtype": "int4"}) is None  # weight-only: the FLOP model
    assert dense_layers_s(get_model("deepseek-v3"), gpu="H100-SXM-80GB", **kw) is None  # MLA


@pytest.mark.parametrize("name", ["llama-3.1-70b", "qwen3-32b", "llama-3.1-8b", "mixtral-8x7b"])
@pytest.mark.parametrize("at", [1, 2, 8, 16])
def test_projections_are_the_layers_dense_weights(name, at):
    """The shapes priced hold exactly the dense parameters the memory and FLOP model count."""
    m = get_model(name)
    layers, moe = m.layers, m.moe_layers_in(0, m.layers)
    got = sum(n * k * count for n, k, count in projections(m, at, layers - moe, moe))
    want = (moe * (m.attention_params_per_layer() + m.shared_expert_params())
            + (layers - moe) * (m.attention_params_per_layer() + m.dense_mlp_params())) / at \
        + layers * replicated_kv_params_per_layer(m, at)
    assert got == pytest.approx(want, rel=1e-9)


def test_narrow_tp_shards_run_below_ideal_scaling_on_a100():
    """The mechanism: Llama-3.1-70B's projections at 512 rows take more than half as long at TP8
    as at TP4 (measured: narrower GEMMs reach a smaller share of the tensor cores)."""
    m = get_model("llama-3.1-70b")
    kw = dict(gpu=A100, runtime="trtllm", weight_dtype="fp16", rows=512, dense_layers=80, moe_layers=0)
    tp4, tp8 = dense_layers_s(m, at=4, **kw), dense_layers_s(m, at=8, **kw)
    assert 0.55 < tp8 / tp4 < 0.8
