"""MoE plans never carry a layout a runtime would reject (hypothesis over random MoE configs).

The rules the runtimes enforce (vLLM, SGLang and TensorRT-LLM argument checks): attention
heads divisible by the attention TP (``tp / attention_dp``); KV heads and attention TP dividing
one another (MLA exempt); experts divisible by EP; the MoE part's ``moe_tp x moe_ep`` equal to
the stage's GPUs (``tp % ep == 0``); attention DP dividing tp; experts per token at most the
experts; per runtime: vLLM's EP is all of the stage or nothing, TensorRT-LLM's attention DP
gives every rank its own attention, SGLang's DP attention runs with ep = tp. Every candidate
priced and every plan returned, and the launch lines emitted for it, must keep them.
"""
from __future__ import annotations

import re

from hypothesis import HealthCheck, assume, given, settings, strategies as st

from costmodels.hf_config import model_from_config
from planner import api
from planner.emit import emit
from planner.price.cluster import cluster_view
from planner.price.shapes import price_candidates
from topologies.errors import InfeasibleError, InputError
from topologies.graph import Topology
from topologies.load import load_topology


@st.composite
def moe_configs(draw):
    heads = draw(st.sampled_from([8, 16, 24, 32, 48, 64]))
    kv_heads = draw(st.sampled_from([h for h in (1, 2, 4, 8, heads) if heads % h == 0]))
    head_dim = draw(st.sampled_from([64, 128]))
    experts = draw(st.sampled_from([4, 6, 8, 12, 16, 32, 60, 64, 128]))
    return {
        "model_type": "mixtral",
        "hidden_size": heads * head_dim,
        "intermediate_size": draw(st.sampled_from([1024, 2048, 4096, 8192])),
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "num_hidden_layers": draw(st.integers(min_value=2, max_value=40)),
        "num_local_experts": experts,
        "num_experts_per_tok": draw(st.integers(min_value=1, max_value=min(experts, 8))),
        "vocab_size": draw(st.sampled_from([32000, 50000, 128256])),
        "max_position_embeddings": 32768,
        "tie_word_embeddings": False,
    }


TOPO = Topology(*load_topology("dgx-h100x2"))


def _valid(model, tp: int, ep: int, adp: int = 1, runtime: str = "vllm") -> bool:
    if tp % adp:
        return False
    at = tp // adp
    kv_ok = model.is_mla or model.kv_heads % at == 0 or at % model.kv_heads == 0
    ok = model.heads % at == 0 and kv_ok and model.experts % ep == 0 and tp % ep == 0 and ep <= model.experts
    if runtime == "vllm":  # --enable-expert-parallel: EP is the whole stage or nothing
        ok = ok and ep in (1, tp)
    if runtime == "trtllm" and adp > 1:  # enable_attention_dp: attention on every rank alone
        ok = ok and adp == tp
    if runtime == "sglang" and adp > 1:
        ok = ok and ep == tp
    return ok


FLAG_VALUE = re.compile(r"(?:--|\b)(tensor-parallel-size|tp-size|pipeline-parallel-size|pp-size|ep-size|"
                        r"tp_size|moe_expert_parallel_size|ep_size):? (\d+)")


@settings(max_examples=45, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=moe_configs(), isl=st.sampled_from([256, 2048]), osl=st.sampled_from([64, 512]),
       runtime=st.sampled_from(["vllm", "sglang", "trtllm"]))
def test_moe_layouts_are_ones_runtimes_accept(cfg, isl, osl, runtime):
    model = model_from_config(cfg, name="random-moe")
    assert model.is_moe and model.experts_per_token <= model.experts
    req = api.make_request(model, isl=isl, osl=osl, runtime=runtime)
    cands = price_candidates(model, cluster_view(TOPO), req).candidates
    for c in cands:
        assert _valid(model, c.strategy.tp, c.strategy.ep, c.strategy.attention_dp, runtime), c.label()
    try:
        plan = api.search(topology=TOPO, model=model, isl=isl, osl=osl, disaggregation="off", time_limit_s=5,
                          runtime=runtime)
    except InfeasibleError:
        assume(False)
        return
    for g in plan.replica_groups:
        assert _valid(model, g.strategy.tp, g.strategy.ep, g.strategy.attention_dp, runtime)
    for target in {"vllm": ("vllm",), "sglang": ("sglang",), "trtllm": ("trtllm",)}[runtime]:
        try:
            text = "".join(emit(plan, target, model_path="/models/random-moe").values())
        except InputError:
            # the emitter refuses a layout its runtime cannot launch (e.g. SGLang's equal ranks per
            # node): refused in one line, never written wrong
            continue
        # vLLM's --tensor-parallel-size is the attention TP (tp / attention_dp; its DP size the rest);
        # SGLang's --tp-size and TensorRT-LLM's tp_size count all of a stage's GPUs
        attention_tp = {g.strategy.tp // g.strategy.attention_dp for g in plan.replica_groups}
        stage_gpus = {g.strategy.tp for g in plan.replica_groups}
        for flag, value in FLAG_VALUE.findall(text):
            n = int(value)
            if flag == "tensor-parallel-size":
                assert n in attention_tp and model.heads % n == 0
            elif flag in ("tp-size", "tp_size"):
                assert n in stage_gpus
            elif flag in ("ep-size", "moe_expert_parallel_size", "ep_size"):
                assert model.experts % n == 0
