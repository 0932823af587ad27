"""Llama 4 Scout and Maverick: MoE layers interleaved with dense ones and chunked attention are
priced layer by layer (parameter counts, memory and time per pipeline stage, layer splits)."""
from dataclasses import replace

import pytest

from costmodels.compute import StageShape, stage_step_time
from costmodels.hardware import get_gpu
from costmodels.memory import weight_bytes
from costmodels.models import get_model
from costmodels.serving import _heaviest_window, choose_layer_split, replica_memory
from costmodels.strategy import Strategy
from planner import api
from topologies.graph import Link

HIDDEN, HEADS, KV_HEADS, HEAD_DIM, VOCAB = 5120, 40, 8, 128, 202048  # both models' text_config
EXPERT_WIDTH, DENSE_WIDTH = 8192, 16384  # intermediate_size, intermediate_size_mlp


def _layer_params(experts: int) -> int:
    """One decoder layer from the published shapes, written out independently of ModelSpec:
    attention (q, k, v, o), two RMSNorms, and either a SwiGLU MLP of intermediate_size_mlp
    (experts == 0) or the router, ``experts`` routed experts and the shared expert."""
    attention = HIDDEN * HEADS * HEAD_DIM * 2 + HIDDEN * KV_HEADS * HEAD_DIM * 2
    mlp = 3 * HIDDEN * DENSE_WIDTH if not experts else (experts + 1) * 3 * HIDDEN * EXPERT_WIDTH + HIDDEN * experts
    return attention + mlp + 2 * HIDDEN


def test_maverick_alternates_dense_and_moe_layers_scout_is_all_moe():
    maverick, scout = get_model("llama-4-maverick-17b-128e"), get_model("llama-4-scout-17b-16e")
    assert maverick.mlp_kinds == "DM" * 24 and scout.mlp_kinds == "M" * 48
    assert [maverick.layer_params(i) for i in (0, 1)] == [_layer_params(0), _layer_params(128)]
    assert scout.total_params() == 48 * _layer_params(16) + 2 * VOCAB * HIDDEN + HIDDEN
    assert maverick.total_params() == 24 * (_layer_params(0) + _layer_params(128)) + 2 * VOCAB * HIDDEN + HIDDEN
    # 36 of 48 layers chunked (every 4th global): their KV is capped at the 8,192-token chunk.
    assert scout.kv_tokens_stored(20000, 48) == 12 * 20000 + 36 * 8192
    assert scout.kv_tokens_stored(4000, 48) == 48 * 4000  # within one chunk, as full attention


@pytest.mark.parametrize("split", [(23, 25), (24, 24), (1, 47), (2, 46)])
def test_maverick_stage_weights_follow_the_layer_pattern_under_pp(split):
    """Each stage holds the weights of its own layers: a stage starting on an odd layer has one
    MoE layer more than one starting on an even layer of the same length."""
    m, gpu = get_model("llama-4-maverick-17b-128e"), get_gpu("B200-180GB")
    s = Strategy(tp=4, pp=2, weight_dtype="fp8", kv_dtype="fp8", layer_split=split, runtime="trtllm")
    mem = replica_memory(m, gpu, s, batch=1, context=2048)
    start = 0
    for i, (n, stage) in enumerate(zip(split, mem, strict=True)):
        moe = sum(1 for layer in range(start, start + n) if layer % 2 == 1)
        assert m.moe_layers_in(start, n) == moe
        params = moe * _layer_params(128) + (n - moe) * _layer_params(0)
        layer_bytes = weight_bytes(params=params / 4, dtype="fp8")
        edge = VOCAB * HIDDEN / 4 * 2.0 + (HIDDEN * 2.0 if i == 1 else 0.0)  # 16-bit embedding / LM head + norm
        assert stage.weights == pytest.approx(layer_bytes + edge, rel=1e-12)
        start += n
    if split == (1, 47):  # one dense layer on stage 0: far lighter than one MoE layer would be
        assert mem[0].weights < mem[1].weights / 20


def test_step_time_prices_each_stage_by_its_own_layers():
    """A decode step of a stage holding Maverick's dense layer 0 reads ~0.3 B parameters; one
    holding MoE layer 1 reads the touched experts too, and pays its expert exchange."""
    m, gpu = get_model("llama-4-maverick-17b-128e"), get_gpu("B200-180GB")
    link = Link(bandwidth_bytes_per_s=900e9, latency_s=1e-6, kind="nvlink")
    kw = dict(tp=8, ep=8, attention_dp=8, weight_dtype="fp8", kv_dtype="fp8", prefill_tokens=0,
              prefill_context=0, decode_tokens=256, decode_context=2048, tp_link=link, runtime="trtllm")
    dense = stage_step_time(m, gpu, stage=StageShape(0, 1, False, False), **kw)
    moe = stage_step_time(m, gpu, stage=StageShape(1, 1, False, False), **kw)
    assert moe.linear_s > 2 * dense.linear_s and moe.comm_s > dense.comm_s
    assert moe.attention_s == dense.attention_s
    both = stage_step_time(m, gpu, stage=StageShape(0, 2, False, False), **kw)
    assert both.comm_s == pytest.approx(dense.comm_s + moe.comm_s)


def test_layer_split_caps_use_the_layers_each_stage_can_get():
    """A middle stage's memory cap is taken on its heaviest possible window of layers: an MoE
    layer for one layer of Maverick, and past DeepSeek-V3's three leading dense layers."""
    maverick, v3 = get_model("llama-4-maverick-17b-128e"), get_model("deepseek-v3")
    s = Strategy(tp=8, pp=3, weight_dtype="fp8")
    assert [_heaviest_window(maverick, s, n) for n in (1, 2, 3)] == [1, 0, 1]
    assert [_heaviest_window(v3, s, n) for n in (1, 3, 10)] == [3, 3, 3]
    assert _heaviest_window(get_model("llama-3.1-70b"), s, 5) == 0
    # Maverick in BF16 (~800 GB) on one-GPU stages of B200s: every stage of the chosen split fits.
    gpu = get_gpu("B200-180GB")
    for pp in (5, 6):
        one = Strategy(tp=1, pp=pp, runtime="vllm")
        split = choose_layer_split(maverick, gpu, one, isl=1024, osl=256)
        assert sum(split) == 48 and all(x.fits for x in replica_memory(maverick, gpu, replace(one, layer_split=split),
                                                                       batch=1, context=1280))


@pytest.mark.parametrize("model", ["meta-llama/Llama-4-Scout-17B-16E-Instruct",
                                   "meta-llama/Llama-4-Maverick-17B-128E-Instruct"])
def test_llama4_is_planned_on_a_b200_box(model):
    plan = api.search(topology="dgx-b200x1", model=model, isl=1024, osl=256, time_limit_s=5)
    assert plan.totals.gpus_used >= 1 and plan.totals.output_tokens_per_s > 0
    for group in plan.replica_groups:
        mem = group.memory_per_gpu_bytes
        assert mem.total <= mem.capacity and mem.kv_cache > 0
