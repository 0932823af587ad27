"""The plans ``check_emitters.py`` emits for every target: dense, pipelines across nodes, uneven
splits, mixed GPU types, MoE with EP, attention DP and wide EP, pools, a TensorRT-LLM plan.
"""
from __future__ import annotations

import json

from planner import api
from planner.plan.schema import Plan

# -- the plans ----------------------------------------------------------------------------------------

def _searched(**kw) -> Plan:
    plan = api.search(**{"disaggregation": "off", **kw}, time_limit_s=10.0, workers=1, seed=0)
    return Plan.model_validate(json.loads(plan.to_json()))


def _uneven_three_nodes() -> Plan:
    """Llama-3.1-405B, one replica tp=4 pp=4 over three nodes (8, 4, 4 GPUs), layers 32/32/31/31
    (the fixture of tests/test_emit_ray_order.py)."""
    from test_emit_ray_order import _three_nodes
    return _three_nodes(_searched(topology="dgx-h100x2-rdma200", model="llama-3.1-405b"))


def _uneven_split() -> Plan:
    """Llama-3.1-405B tp=8 pp=2 over two nodes with an uneven split, 70 + 56 layers."""
    from test_emit_ray_order import _three_nodes
    return _three_nodes(_searched(topology="dgx-h100x2-rdma200", model="llama-3.1-405b"), split=[70, 56],
                        gpus=(8, 8), tp=8)


#: name -> api.search arguments (disaggregation off unless given), or a function building the plan.
PLANS: dict[str, object] = {
    # dense, one node and pipelines across nodes (tests/test_emit.py PLANS)
    "llama70b-h100x2": dict(topology="dgx-h100x2", model="llama-3.1-70b", tpot_ms=50),
    "llama405b-h100x2-pp": dict(topology="dgx-h100x2-rdma200", model="llama-3.1-405b"),
    "llama8b-h100x1": dict(topology="dgx-h100x1", model="llama-3.1-8b", tpot_ms=20),
    "qwen2.5-72b-h200x1-kvfp8": dict(topology="hgx-h200x1", model="qwen2.5-72b", kv_dtype="fp8", tpot_ms=40),
    "llama70b-h100x1-fp8": dict(topology="dgx-h100x1", model="llama-3.1-70b", weight_dtype="fp8", tpot_ms=30),
    "mistral7b-l40sx4": dict(topology="pcie-l40sx4", model="mistral-7b", tpot_ms=30),
    "llama70b-a100x4": dict(topology="hgx-a100x4", model="llama-3.1-70b", tpot_ms=80),
    "gemma2-27b-l4x4": dict(topology="pcie-l4x4", model="gemma-2-27b"),
    # uneven splits
    "llama405b-uneven-3-nodes": _uneven_three_nodes,
    "llama405b-uneven-70-56": _uneven_split,
    # mixed GPU types
    "llama405b-mixed": dict(topology="mixed-h100x2-a100x2", model="llama-3.1-405b"),
    "llama70b-mixed": dict(topology="mixed-h100x2-a100x2", model="llama-3.1-70b", tpot_ms=60),
    # MoE with expert parallelism, attention DP, wide EP (tests/test_emit_attention_dp.py PLANS)
    "ds-v3-x4-wide-ep": dict(topology="dgx-h100x4", model="deepseek-v3", isl=2048, osl=512),
    "ds-v3-x4-adp2": dict(topology="dgx-h100x4", model="deepseek-v3", isl=2048, osl=512, attention_dp=2),
    "ds-v3-x4-adp1": dict(topology="dgx-h100x4", model="deepseek-v3", isl=2048, osl=512, attention_dp=1),
    "mixtral8x7b-adp8": dict(topology="dgx-h100x1", model="mixtral-8x7b", tpot_ms=50, attention_dp=8),
    "qwen3-235b-adp2": dict(topology="dgx-h100x1", model="qwen3-235b-a22b", attention_dp=2),
    # four attention-DP servers on one node (issue 16 item 3: their derived ports must not overlap)
    "mixtral8x7b-adp2-x4-sglang": dict(topology="dgx-h100x1", model="mixtral-8x7b", tpot_ms=50, attention_dp=2,
                                       runtime="sglang"),
    "qwen3-30b-ep": dict(topology="dgx-h100x1", model="qwen3-30b-a3b", tpot_ms=30),
    "ds-v3-x4-sglang": dict(topology="dgx-h100x4", model="deepseek-v3", isl=2048, osl=512, runtime="sglang"),
    "mixtral8x22b-h200x2": dict(topology="hgx-h200x2", model="mixtral-8x22b", tpot_ms=60),
    # prefill/decode pools (SGLang)
    "llama70b-pools": dict(topology="dgx-h100x2", model="llama-3.1-70b", isl=8192, osl=256, tpot_ms=40,
                           runtime="sglang", disaggregation="auto"),
    "qwen3-235b-pools": dict(topology="dgx-h100x4", model="qwen3-235b-a22b", isl=4096, osl=512, tpot_ms=50,
                             runtime="sglang", disaggregation="only"),
    # a TensorRT-LLM plan emitted for vLLM (issue 16 item 1)
    "llama405b-a100-trtllm": dict(topology="hgx-a100x4", model="llama-3.1-405b", runtime="trtllm"),
}


def build_plan(name: str) -> Plan:
    spec = PLANS[name]
    return spec() if callable(spec) else _searched(**spec)
