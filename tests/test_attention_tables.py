"""Attention priced from measured kernel tables (costmodels/attention_tables.py): decode and prompts."""
import csv
import random
from importlib import resources
from itertools import pairwise

import pytest

from costmodels import attention_tables as da
from costmodels.compute import StageShape, stage_step_time
from costmodels.hardware import get_gpu, gpu_catalog
from costmodels.models import get_model
from topologies.graph import Link

H100 = "H100-SXM-80GB"
NVLINK = Link(bandwidth_bytes_per_s=450e9, latency_s=0.0, kind="nvlink")


def _file_rows(gpu):
    text = resources.files("costmodels").joinpath("data", "decode_attention", f"{gpu}.csv").read_text(encoding="utf-8")
    return list(csv.reader(text.splitlines()))


def test_every_shipped_file_is_a_catalog_gpu_with_whole_rows():
    catalog = gpu_catalog()
    shipped = da._shipped()
    assert {"A100-SXM4-80GB", H100, "H200-SXM-141GB", "B200-180GB", "L40S-48GB"} <= set(shipped)
    for gpu, stem in shipped.items():
        assert gpu in catalog
        header, *rows = _file_rows(stem)
        assert header[:6] == ["runtime", "runtime_version", "kv_dtype", "head_dim", "q_per_kv", "context"]
        for r in rows:
            assert r[0] in ("vllm", "sglang", "trtllm") and r[2] in ("bf16", "fp8") and int(r[3]) in (64, 128, 256)
            assert len(r) == len(header) and any(r[6:]) and all(float(x) > 0 for x in r[6:] if x)


def test_a_measured_point_that_obeys_the_bounds_is_the_measurement():
    header, *rows = _file_rows(H100)
    units = [int(h.removeprefix("us_u")) for h in header[6:]]
    rows = [r for r in rows if r[:5] == ["trtllm", r[1], "bf16", "128", "8"]]
    grid = da._grid(H100, "trtllm", "bf16", 128, 8)
    hits = 0
    for r in random.Random(5).sample(rows, 10):
        ctx = int(r[5])
        for u, x in zip(units, r[6:], strict=True):
            if x:
                got = grid.seconds(u, ctx) * 1e6
                # held to the bounds (see dense_gemm.physical); a point that breaks them moves, not far
                assert got == pytest.approx(float(x), rel=0.3)
                hits += got == pytest.approx(float(x), rel=1e-9)
    assert hits > 50  # most measured points obey the bounds and are returned as measured


def test_time_never_falls_with_more_sequences_or_context():
    rng = random.Random(11)
    for gpu, runtime, kv in [(H100, "trtllm", "bf16"), ("A100-SXM4-80GB", "vllm", "bf16"), ("B200-180GB", "sglang", "fp8")]:
        grid = da.grid_for(gpu, runtime, kv, 128, 8)
        for _ in range(100):
            ctx = 2 ** rng.uniform(0, 18)
            pairs = sorted(2 ** rng.uniform(-1, 19) for _ in range(10))
            times = [grid.seconds(p, ctx) for p in pairs]
            assert all(b >= a * (1 - 1e-12) for a, b in pairwise(times))
            p = 2 ** rng.uniform(0, 17)
            ctxs = sorted(2 ** rng.uniform(0, 18) for _ in range(10))
            times = [grid.seconds(p, c) for c in ctxs]
            assert all(b >= a * (1 - 1e-12) for a, b in pairwise(times))


def test_small_batches_run_below_hbm_bandwidth_and_pay_a_floor():
    """Llama-3.1-70B TP8 on H100, TensorRT-LLM, BF16 KV: 24 sequences of 2,176 tokens take about 22 us a
    layer (the roofline at 2.6 TB/s says 10), one sequence 11-17 us whatever its context up to 4,096."""
    m = get_model("llama-3.1-70b")
    kw = dict(gpu=H100, runtime="trtllm", kv_dtype="bf16", at=8, layers=1)
    assert 18e-6 < da.decode_attention_s(m, sequences=24, context=2176, **kw) < 26e-6
    one = [da.decode_attention_s(m, sequences=1, context=c, **kw) for c in (128, 1024, 4096)]
    assert all(10e-6 < t < 18e-6 for t in one)


def test_no_table_no_price_and_no_path_from_a_name():
    m = get_model("llama-3.1-70b")
    kw = dict(runtime="vllm", kv_dtype="bf16", at=1, sequences=8, context=1024, layers=80)
    assert da.decode_attention_s(m, gpu="my-own-gpu", **kw) is None
    assert da.decode_attention_s(m, gpu="../../costmodels/data/decode_attention/" + H100, **kw) is None
    assert da.decode_attention_s(m, gpu=H100, **{**kw, "kv_dtype": "int4"}) is None
    # INT8 KV reads one byte an element, as FP8 does: the FP8 table prices it
    assert da.decode_attention_s(m, gpu=H100, **{**kw, "kv_dtype": "int8"}) == da.decode_attention_s(
        m, gpu=H100, **{**kw, "kv_dtype": "fp8"})
    assert da.decode_attention_s(get_model("deepseek-v3"), gpu=H100, **kw) is None  # MLA


def test_sliding_window_layers_attend_to_their_window():
    m = get_model("gpt-oss-120b")
    assert m.sliding_window and m.sliding_layers
    kw = dict(gpu=H100, runtime="vllm", kv_dtype="bf16", at=1, sequences=16, layers=m.layers)
    short, long = (da.decode_attention_s(m, context=c, **kw) for c in (m.sliding_window, 16 * m.sliding_window))
    full = da.grid_for(H100, "vllm", "bf16", m.head_dim, m.heads / m.kv_heads)
    only_full = m.layers * full.seconds(16 * m.kv_heads, 16 * m.sliding_window)
    assert short < long < only_full


def test_the_step_prices_decode_attention_from_the_table():
    m, gpu = get_model("llama-3.1-70b"), get_gpu(H100)
    st = StageShape(0, m.layers, True, True)
    t = stage_step_time(m, gpu, stage=st, tp=8, ep=1, weight_dtype="bf16", kv_dtype="bf16", prefill_tokens=0,
                        prefill_context=0, decode_tokens=24, decode_context=2176, tp_link=NVLINK, runtime="trtllm")
    want = da.decode_attention_s(m, gpu=H100, runtime="trtllm", kv_dtype="bf16", at=8, sequences=24,
                                 context=2176, layers=m.layers)
    assert t.attention_s == pytest.approx(want, rel=1e-12)


def test_a_whole_prompt_is_the_measured_prompt():
    """One 2,048-token prompt of Llama-3.1-70B's TP8 shard on H100 (TensorRT-LLM) takes 47 us a layer:
    18 % of the BF16 peak, the share a single efficiency constant cannot follow."""
    m = get_model("llama-3.1-70b")
    t = da.prompt_attention_s(m, gpu=H100, runtime="trtllm", kv_dtype="bf16", at=8, tokens=2048, context=1024,
                              layers=1)
    header, *rows = _file_rows_prompt(H100)
    row = next(r for r in rows if r[0] == "trtllm" and r[2:6] == ["bf16", "128", "8", "2048"])
    assert t == pytest.approx(float(row[6]) * 1e-6, rel=0.02)
    flops = 4 * 8 * 128 * 2048 * 1024
    assert 0.1 < flops / t / get_gpu(H100).bf16_flop_per_s < 0.3


def test_a_chunk_costs_the_share_of_the_prompt_doing_the_same_work():
    m = get_model("llama-3.1-70b")
    kw = dict(gpu=H100, runtime="trtllm", kv_dtype="bf16", at=8, layers=1)
    chunk, prefix = 1024, 3072
    got = da.prompt_attention_s(m, tokens=chunk, context=prefix + chunk / 2, **kw)
    whole = 2 * prefix + chunk  # 1024 / 7168 of a 7,168-token prompt: the same causal work
    want = da.prompt_attention_s(m, tokens=whole, context=whole / 2, **kw) * chunk / whole
    assert got == pytest.approx(want, rel=1e-9)


def test_prompt_time_never_falls_with_more_prompts_or_longer_prompts():
    """More tokens at the same context, or the same number of prompts made longer, is more work. (The
    same tokens as fewer, longer prompts need not cost more: each prompt's query rows are padded to
    the kernel's tile, so 2,048 one-token prompts measure slower than one 2,048-token prompt.)"""
    m = get_model("llama-3.1-8b")
    rng = random.Random(2)
    for gpu, runtime in [(H100, "vllm"), ("A100-SXM4-80GB", "trtllm"), ("L40S-48GB", "sglang")]:
        kw = dict(gpu=gpu, runtime=runtime, kv_dtype="bf16", at=rng.choice([1, 2, 4]), layers=32)
        for _ in range(50):
            ctx = 2 ** rng.uniform(3, 15)
            toks = sorted(2 ** rng.uniform(0, 15) for _ in range(8))
            times = [da.prompt_attention_s(m, tokens=x, context=ctx, **kw) for x in toks]
            assert all(b >= a * (1 - 1e-12) for a, b in pairwise(times))
            prompts = 2 ** rng.uniform(-4, 6)
            lengths = sorted(2 ** rng.uniform(2, 15) for _ in range(8))
            times = [da.prompt_attention_s(m, tokens=prompts * n, context=n / 2, **kw) for n in lengths]
            assert all(b >= a * (1 - 1e-12) for a, b in pairwise(times)), (gpu, prompts, lengths, times)


def test_no_prompt_table_no_price():
    m = get_model("llama-3.1-70b")
    kw = dict(runtime="vllm", kv_dtype="bf16", at=1, tokens=2048, context=1024, layers=80)
    assert da.prompt_attention_s(m, gpu="my-own-gpu", **kw) is None
    assert da.prompt_attention_s(m, gpu="MI300X-192GB", **kw) is None
    # prompts run their math in 16 bit whatever the cache's format: INT8 and INT4 caches use the BF16 table
    for kv in ("int8", "int4"):
        assert da.prompt_attention_s(m, gpu=H100, **{**kw, "kv_dtype": kv}) == da.prompt_attention_s(m, gpu=H100, **kw)
    assert da.prompt_attention_s(get_model("deepseek-v3"), gpu=H100, **kw) > 0  # MLA prompts: ordinary attention


def _file_rows_prompt(gpu):
    text = resources.files("costmodels").joinpath("data", "prefill_attention", f"{gpu}.csv").read_text(encoding="utf-8")
    return list(csv.reader(text.splitlines()))


def test_a_same_die_gpu_without_a_table_uses_its_siblings_scaled_by_its_datasheet():
    """H100 PCIe is H100 SXM's die at a lower clock and bandwidth: its prompts take the SXM table's
    time times the BF16 peak ratio, its decode attention times the HBM bandwidth ratio. A GPU with no
    sibling and no table has no measured price."""
    m = get_model("llama-3.1-70b")
    sxm, pcie = get_gpu(H100), get_gpu("H100-PCIe-80GB")
    assert "H100-PCIe-80GB" not in da._shipped("prompt") and da.SAME_DIE["H100-PCIe-80GB"] == H100
    kw = dict(runtime="trtllm", kv_dtype="bf16", at=8, layers=80)
    p = {g.name: da.prompt_attention_s(m, gpu=g.name, tokens=4096, context=2048, flop_per_s=g.bf16_flop_per_s, **kw)
         for g in (sxm, pcie)}
    assert p[pcie.name] == pytest.approx(p[H100] * sxm.bf16_flop_per_s / pcie.bf16_flop_per_s, rel=1e-12)
    d = {g.name: da.decode_attention_s(m, gpu=g.name, sequences=16, context=2048,
                                       hbm_bytes_per_s=g.hbm_bandwidth_bytes_per_s, **kw) for g in (sxm, pcie)}
    want = d[H100] * sxm.hbm_bandwidth_bytes_per_s / pcie.hbm_bandwidth_bytes_per_s
    assert d[pcie.name] == pytest.approx(want, rel=1e-12)
    for name in da.SAME_DIE.values():
        assert name in da._shipped("prompt") and name in da._shipped("decode")
    for name in da.SAME_DIE:
        assert name in gpu_catalog()


def test_every_shipped_prompt_file_is_a_catalog_gpu_with_whole_rows():
    for gpu, stem in da._shipped("prompt").items():
        assert gpu in gpu_catalog()
        header, *rows = _file_rows_prompt(stem)
        assert header[:6] == ["runtime", "runtime_version", "kv_dtype", "head_dim", "q_per_kv", "prompt"]
        for r in rows:
            assert r[0] in ("vllm", "sglang", "trtllm") and r[2] in ("bf16", "fp8") and int(r[3]) in (64, 128, 192, 256)
            assert len(r) == len(header) and any(r[6:]) and all(float(x) > 0 for x in r[6:] if x)


def test_a_long_prompt_chunk_costs_its_share_where_the_table_starts_above_one_pair():
    """A100 under TensorRT-LLM measured MHA (query-per-KV 1) from 4 pairs up: fewer pairs of a long
    prompt cost their share of the time, not the first measured column's."""
    m = get_model("llama-2-7b")
    kw = dict(gpu="A100-SXM4-80GB", runtime="trtllm", kv_dtype="bf16", at=8, layers=1, context=8192)
    times = [da.prompt_attention_s(m, tokens=t, **kw) for t in (4096, 8192, 16384)]
    assert times[0] < times[1] < times[2]


def test_a_head_size_without_a_table_uses_the_nearest_scaled_by_size():
    """A100's tables measured head size 128 only: GPT-J's 256-wide heads cost twice a 128-wide head's
    time (twice the bytes and FLOPs), DeepSeek's 192-wide prompt heads 1.5 times."""
    a100 = "A100-SXM4-80GB"
    grid, scale = da.grid_and_scale(a100, "trtllm", "bf16", 256, 1.0, "prompt")
    assert scale == 2.0 and grid is da.grid_for(a100, "trtllm", "bf16", 128, 1.0, "prompt")
    assert da.grid_and_scale(a100, "trtllm", "bf16", 192, 1.0, "prompt")[1] == 1.5
    assert da.grid_and_scale(H100, "trtllm", "bf16", 192, 1.0, "prompt")[1] == 1.0  # measured there
    assert da.grid_and_scale("MI300X-192GB", "vllm", "bf16", 128, 1.0, "prompt") is None
