"""Mixture-of-experts serving: expert parallelism across nodes, attention data parallelism,
MLA's replicated latent KV, and the expert load-imbalance factor.

Every plan a test gets back is also validated by conftest's autouse check (schema and
:func:`planner.plan.check.check_plan`, which recomputes memory per GPU from the placement).
"""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from costmodels.compute import expert_load_factor
from costmodels.hardware import get_gpu
from costmodels.models import get_model
from costmodels.serving import evaluate_replica, max_batch_size
from costmodels.strategy import Links, Strategy
from planner import api, evaluation
from planner.cli import main
from planner.plan.check import check_plan
from topologies.errors import InfeasibleError
from topologies.graph import Link

DSV3 = "deepseek-v3"


def _nodes(replica) -> set[str]:
    return {k.node for k in replica.ranks}


# -- DeepSeek-V3 on H100 nodes ------------------------------------------------------------------

def test_deepseek_v3_does_not_fit_one_h100_node_and_the_error_names_both_ways_out():
    # 671 B parameters in FP8 (the checkpoint's own format) are 625 GiB: more than the 576 GiB
    # an 8x H100 node gives the runtime. The message names more GPUs (spread over nodes) and
    # 4-bit weights, the two ways to make it fit.
    with pytest.raises(InfeasibleError) as e:
        api.search(topology="dgx-h100x1", model=DSV3, isl=2048, osl=512, disaggregation="off")
    msg = str(e.value)
    assert "624.9 GiB" in msg and "int4" in msg
    assert "at least one more 8-GPU node or NVLink domain" in msg and "expert parallelism across them" in msg


def test_deepseek_v3_fits_four_h100_nodes_only_across_nodes():
    plan = api.search(topology="dgx-h100x4", model=DSV3, isl=2048, osl=512, disaggregation="off")
    assert plan.inputs.weight_dtype == "fp8"
    for g in plan.replica_groups:
        for r in g.replicas:
            assert len(_nodes(r)) >= 2, "no replica of DeepSeek-V3 fits one H100 node"
        m = g.memory_per_gpu_bytes
        assert m.total <= m.capacity
    assert check_plan(plan).ok
    # The planner's choice here is wide expert parallelism: experts over the GPUs of two or more
    # nodes (EP16 x2 and EP32 x1 are within 5 % of each other), attention data-parallel inside
    # each node, all-to-alls over the NICs.
    g = plan.replica_groups[0]
    assert g.strategy.ep == g.strategy.tp >= 16 and g.strategy.attention_dp > 1 and g.strategy.pp == 1
    assert g.links["ep"].kind == "nic" and g.links["ep_local"].kind == "nvlink"


def test_deepseek_v3_on_one_h100_node_with_4_bit_weights():
    plan = api.search(topology="dgx-h100x1", model=DSV3, isl=2048, osl=512, weight_dtype="int4",
                      disaggregation="off")
    assert plan.totals.gpus_used == 8 and check_plan(plan).ok


def test_check_plan_catches_an_overloaded_moe_gpu():
    plan = api.search(topology="dgx-h100x4", model=DSV3, isl=2048, osl=512, disaggregation="off")
    d = json.loads(plan.to_json())
    g = d["replica_groups"][0]
    # The same GPUs with attention over a quarter of the stage: each GPU now holds four times
    # the dense weights and a quarter of the batch's KV... and the recomputation must see it.
    g["strategy"]["attention_dp"] = 4
    g["strategy"]["batch_size"] *= 4
    problems = " ".join(check_plan(d).problems)
    assert "does not fit" in problems or "exceeds" in problems


def test_check_plan_refuses_an_attention_group_across_nodes():
    d = json.loads(api.search(topology="dgx-h100x4", model=DSV3, isl=2048, osl=512,
                              disaggregation="off", attention_dp=2).to_json())
    g = d["replica_groups"][0]
    assert g["strategy"]["tp"] == 16 and all(len({k["node"] for k in r["ranks"]}) == 2 for r in g["replicas"])
    assert check_plan(d).ok
    # attention groups of 16 GPUs would all-reduce over the NICs: not a layout the plan may claim
    g["strategy"]["attention_dp"] = 1
    assert any("TP group spans domains" in p for p in check_plan(d).problems)


# -- mechanisms -----------------------------------------------------------------------------------

def test_mla_latent_kv_is_whole_on_every_tp_rank_so_attention_dp_holds_more_sequences():
    # MLA stores one latent per token, the same on every TP rank: under TP=8 each GPU holds
    # every sequence's whole KV. Attention DP over the 8 GPUs holds each sequence once.
    m, gpu = get_model(DSV3), get_gpu("H200-SXM-141GB")
    ctx = 4096
    tp_only = max_batch_size(m, gpu, Strategy(tp=8, ep=8, weight_dtype="fp8"), context=ctx, cap=10**6)
    dep = max_batch_size(m, gpu, Strategy(tp=8, ep=8, attention_dp=8, weight_dtype="fp8"), context=ctx, cap=10**6)
    assert dep > 4 * tp_only
    # GQA splits KV heads over TP: with as many KV heads as GPUs (Mixtral: 8) attention DP buys no
    # KV room and costs weight copies; with fewer (Qwen3-235B: 4 over 8 GPUs, each head held
    # twice) attention groups of 4 hold each head once, and twice the sequences fit.
    h100 = get_gpu("H100-SXM-80GB")

    def room(name, adp):
        return max_batch_size(get_model(name), h100, Strategy(tp=8, ep=8, attention_dp=adp, weight_dtype="fp8"),
                              context=ctx, cap=10**6)
    assert room("mixtral-8x7b", 2) <= room("mixtral-8x7b", 1)
    assert room("qwen3-235b-a22b", 2) > 1.5 * room("qwen3-235b-a22b", 1)


def test_wide_ep_all_to_all_is_priced_on_the_nics():
    m, gpu = get_model(DSV3), get_gpu("H100-SXM-80GB")
    s = Strategy(tp=16, ep=16, attention_dp=16, weight_dtype="fp8")
    nvl = Link(450e9, 1e-6, "nvlink")
    tpots = []
    for nic_bytes_per_s in (100e9, 50e9, 25e9):
        links = Links(tp=nvl, ep=Link(nic_bytes_per_s, 8e-6, "nic"), ep_local=nvl, ep_local_ranks=8)
        tpots.append(evaluate_replica(m, gpu, s, isl=2048, osl=512, batch=512, links=links).tpot_s)
    assert tpots[0] < tpots[1] < tpots[2]
    # Inside one NVLink domain the launch keeps the runtimes' default exchange, an all-gather of
    # every group's tokens and a reduce-scatter: more bytes than DeepEP's all-to-all on the same
    # links, which the emitters select only for stages over several domains.
    one_domain = evaluate_replica(m, gpu, s, isl=2048, osl=512, batch=512, links=Links(tp=nvl, ep=nvl)).tpot_s
    a2a_on_nvlink = evaluate_replica(m, gpu, s, isl=2048, osl=512, batch=512,
                                     links=Links(tp=nvl, ep=nvl, ep_local=nvl, ep_local_ranks=8)).tpot_s
    assert a2a_on_nvlink < one_domain


def test_expert_load_factor_is_stated_and_changeable():
    # uniform random routing: the busiest of 16 ranks carries more than the mean, less so as
    # more tokens are routed; never more than all of them
    few, many = (expert_load_factor(routed=n * 8, ep=16) for n in (16, 4096))
    assert few > many > 1.0
    assert expert_load_factor(routed=1, ep=16) <= 16
    assert expert_load_factor(routed=8, ep=1) == 1.0
    assert expert_load_factor(routed=8, ep=16, imbalance=1.3) == 1.3


def test_expert_imbalance_slows_the_plan_and_is_recorded():
    kw = dict(topology="dgx-h100x4", model=DSV3, isl=2048, osl=512, disaggregation="off", attention_dp=16, ep=16)
    balanced = api.search(expert_imbalance=1.0, **kw)
    skewed = api.search(expert_imbalance=2.0, **kw)
    assert skewed.inputs.expert_imbalance == 2.0 and balanced.inputs.expert_imbalance == 1.0
    assert skewed.totals.output_tokens_per_s < balanced.totals.output_tokens_per_s
    # check_plan recomputes with the plan's own factor: tampering with it shows
    d = json.loads(skewed.to_json())
    d["inputs"]["expert_imbalance"] = 1.0
    assert any("recomputed" in p for p in check_plan(d).problems)


def test_cli_expert_imbalance_and_attention_dp_flags():
    r = CliRunner().invoke(main, ["search", "-t", "dgx-h100x4", "-m", DSV3, "--isl", "2048", "--osl", "512",
                                  "--disaggregation", "off", "--attention-dp", "2", "--expert-imbalance", "1.2",
                                  "--json"])
    assert r.exit_code == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["inputs"]["expert_imbalance"] == 1.2
    assert {g["strategy"]["attention_dp"] for g in d["replica_groups"]} == {2}
    r = CliRunner().invoke(main, ["search", "-t", "dgx-h100x4", "-m", DSV3, "--isl", "2048", "--osl", "512",
                                  "--disaggregation", "off"])
    assert "attn-dp" in r.stdout and "EP all-to-all nic" in r.stdout


def test_evaluate_prices_a_wide_ep_layout_on_the_topology():
    ev = evaluation.evaluate(topology="dgx-h100x2", model=DSV3, tp=16, ep=16, attention_dp=16, isl=2048, osl=512)
    assert ev.span == "wide" and ev.reason is None and ev.metrics.fits
    assert ev.links.ep.kind == "nic" and ev.links.ep_local_ranks == 8
    d = ev.as_dict()
    assert d["attention_dp"] == 16 and d["links"]["ep"]["kind"] == "nic"


@pytest.mark.parametrize(("model", "weight_dtype", "bytes_per_element"), [
    ("qwen3-30b-a3b", "fp4", 0.5 + 1 / 16),  # NVFP4 from a 16-bit checkpoint: quantised, then gathered
    ("qwen3-30b-a3b", "fp8", 1.0),  # per-tensor FP8 likewise
    ("qwen3-30b-a3b", "bf16", 2.0),
    ("deepseek-v3", "fp8", 2.0),  # ships block-scaled FP8: gathered in 16 bits, quantised after
    ("gpt-oss-120b", "fp4", 2.0),  # ships MXFP4: gathered in 16 bits (the conservative side)
])
def test_trtllm_gathers_quantised_tokens_under_attention_dp(model, weight_dtype, bytes_per_element):
    """TensorRT-LLM quantises tokens to the experts' format before its attention-DP all-gather
    where it quantises them itself (NVFP4: 4-bit values and one FP8 scale per 16; per-tensor FP8:
    1 byte), gathers each routed copy's int32 expert index and fp32 weight beside them in every
    format, and reduce-scatters 16-bit sums; vLLM gathers 16-bit tokens alone. One MoE layer's
    communication at attention-group TP 1 is exactly those two collectives, recomputed here from
    the ring formula with the byte counts written out."""
    from costmodels import calibration as cal
    from costmodels.compute import StageShape, stage_step_time

    m, gpu = get_model(model), get_gpu("B200-180GB")
    layer = next(i for i in range(m.layers) if m.moe_layers_in(i, 1))
    link = Link(bandwidth_bytes_per_s=50e9, latency_s=2e-6, kind="pcie")
    ranks, tokens = 8, 4096.0

    def ring_s(total_bytes: float) -> float:  # ring all-gather / reduce-scatter of total_bytes
        return (cal.COLLECTIVE_BASE_LATENCY_S + (ranks - 1) / ranks * total_bytes / (50e9 * cal.COLLECTIVE_EFFICIENCY)
                + (ranks - 1) * (2e-6 + cal.COLLECTIVE_STEP_LATENCY_S))

    def comm(runtime: str) -> float:
        st = stage_step_time(m, gpu, stage=StageShape(layer, 1, False, False), tp=ranks, ep=ranks,
                             attention_dp=ranks, weight_dtype=weight_dtype, kv_dtype="fp8", prefill_tokens=0,
                             prefill_context=0, decode_tokens=tokens, decode_context=1024, tp_link=link,
                             runtime=runtime)
        return st.comm_s

    gather = ring_s(tokens * (m.hidden * bytes_per_element + m.experts_per_token * (4 + 4)))
    scatter = ring_s(tokens * m.hidden * 2)
    assert comm("trtllm") == pytest.approx(gather + scatter, rel=1e-9)
    assert comm("vllm") == pytest.approx(2 * scatter, rel=1e-9)


def test_attention_dp_steps_with_a_vanishing_prompt_share():
    """Under attention DP the share of steps carrying a prompt chunk is 1 - (1 - share)^dp; for a share
    below the float epsilon (a hand-edited plan's 10^29-token answers) that was 0 and the chunk step's
    prompt tokens divided by it (ZeroDivisionError from `plan-search emit`). It is dp x share there."""
    from costmodels.hardware import get_gpu
    from costmodels.models import get_model
    from costmodels.serving import evaluate_replica
    from costmodels.strategy import Strategy

    s = Strategy(tp=8, pp=1, ep=8, weight_dtype="bf16", kv_dtype="bf16", runtime="sglang", attention_dp=8)
    m = evaluate_replica(get_model("qwen3-30b-a3b"), get_gpu("H100-SXM-80GB"), s, isl=1024, osl=10**29, batch=64)
    assert m.tpot_s > 0 and m.output_tokens_per_s > 0
