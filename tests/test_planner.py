"""The planner end to end: choices, constraints, objectives, output contract."""
import json

import jsonschema
import pytest

from planner import check_plan, search
from planner.plan.schema import Plan, json_schema, load_json_schema
from topologies.errors import InfeasibleError, InputError
from topologies.graph import Topology
from topologies.load import parse_topology


def _groups(plan):
    return [(g.gpu, g.strategy.tp, g.strategy.pp, g.strategy.dp) for g in plan.replica_groups]


def _assert_valid(plan, **kw):
    jsonschema.validate(json.loads(plan.to_json()), load_json_schema())
    report = check_plan(plan, **kw)
    assert report.ok, report.problems


def test_schema_file_matches_models():
    assert load_json_schema() == json.loads(json.dumps(json_schema()))


def test_default_search_is_optimal_and_valid():
    p = search(topology="dgx-h100x2", model="llama-3.1-70b")
    assert p.solver.status == "OPTIMAL" and p.solver.gap == 0
    assert p.totals.gpus_used <= 16
    _assert_valid(p)


def test_same_inputs_same_bytes():
    a = search(topology="mixed-h100x2-a100x2", model="llama-3.1-70b", tpot_ms=80).to_json()
    b = search(topology="mixed-h100x2-a100x2", model="llama-3.1-70b", tpot_ms=80).to_json()
    assert a == b


def test_multi_node_model_keeps_tp_inside_a_node_over_slow_network():
    # 405B in BF16 needs more than one node's 640 GiB. Over 200 Gb/s between nodes the
    # plan keeps every TP group inside a node and crosses nodes with the pipeline.
    for allow in (False, True):
        p = search(topology="dgx-h100x2-rdma200", model="llama-3.1-405b", allow_cross_domain_tp=allow)
        _assert_valid(p)
        for g in p.replica_groups:
            assert g.links["tp"].kind == "nvlink"
            for r in g.replicas:
                for stage in {k.stage for k in r.ranks}:
                    assert len({k.node for k in r.ranks if k.stage == stage}) == 1
            assert len({k.node for r in g.replicas for k in r.ranks}) == 2  # the model spans both nodes
            assert g.strategy.pp >= 2


def test_latency_objective_uses_a_whole_node_for_tp():
    p = search(topology="dgx-h100x1", model="llama-3.1-70b", objective="latency")
    assert [g.strategy.tp for g in p.replica_groups] == [8]
    _assert_valid(p)


def test_nvl72_tp_exceeds_8():
    p = search(topology="gb200-nvl72x1", model="llama-3.1-405b", objective="latency")
    assert max(g.strategy.tp for g in p.replica_groups) > 8
    _assert_valid(p)


def test_unavailable_gpus_never_used():
    d = {"name": "busy", "network": {"kind": "single-switch"},
         "node_types": {"n": {"gpu": "H100-SXM-80GB", "gpus_per_node": 8,
                              "fabric": {"kind": "nvswitch", "nvlink_bandwidth_gbyte_per_s": 450},
                              "nics": {"count": 8, "bandwidth_gbit_per_s": 400}}},
         "nodes": [{"name": "a", "type": "n", "unavailable_gpus": [0, 3, 5]}, {"name": "b", "type": "n",
                                                                               "unavailable": True}]}
    t = Topology(parse_topology(d))
    p = search(topology=t, model="llama-3.1-8b")
    used = {(k.node, k.gpu_index) for g in p.replica_groups for r in g.replicas for k in r.ranks}
    assert used and not used & {("a", 0), ("a", 3), ("a", 5)} and all(n == "a" for n, _ in used)
    _assert_valid(p, topology=t)


def test_min_gpus_serves_qps_with_fewer_gpus():
    full = search(topology="dgx-h100x2", model="llama-3.1-8b", tpot_ms=50)
    small = search(topology="dgx-h100x2", model="llama-3.1-8b", tpot_ms=50, qps=5, objective="min-gpus")
    assert small.totals.gpus_used < full.totals.gpus_used
    assert small.totals.requests_per_s >= 5
    _assert_valid(small)


def test_throughput_per_gpu_not_below_throughput_objective():
    # both objectives weigh unified replicas and prefill/decode pools alike
    for runtime in ("sglang", "vllm"):
        a = search(topology="dgx-h100x1", model="llama-3.1-70b", tpot_ms=60, runtime=runtime)
        b = search(topology="dgx-h100x1", model="llama-3.1-70b", tpot_ms=60, objective="throughput-per-gpu",
                   runtime=runtime)
        assert b.totals.output_tokens_per_s_per_gpu >= a.totals.output_tokens_per_s_per_gpu - 1e-6
        assert a.totals.output_tokens_per_s >= b.totals.output_tokens_per_s - 1e-6


def test_slos_are_met():
    p = search(topology="hgx-h200x2", model="llama-3.1-70b", ttft_ms=500, tpot_ms=40, qps=8)
    for g in p.replica_groups:
        assert g.metrics_per_replica.tpot_ms <= 40 and g.metrics_per_replica.ttft_ms <= 500
    _assert_valid(p)


def test_max_gpus_honoured():
    p = search(topology="dgx-h100x4", model="llama-3.1-8b", max_gpus=5)
    assert p.totals.gpus_used <= 5


def test_heterogeneous_cluster_uses_both_types():
    p = search(topology="mixed-h100x2-a100x2", model="llama-3.1-70b")
    assert {g.gpu for g in p.replica_groups} == {"H100-SXM-80GB", "A100-SXM4-80GB"}
    _assert_valid(p)


def test_moe_model_plans_and_verifies():
    p = search(topology="dgx-h100x4", model="deepseek-v3")
    _assert_valid(p)
    p = search(topology="dgx-h100x1", model="mixtral-8x7b", tpot_ms=40)
    _assert_valid(p)


def test_infeasible_tpot_names_the_nearest_relaxation():
    with pytest.raises(InfeasibleError, match=r"relax --tpot-ms to \d"):
        search(topology="dgx-h100x1", model="llama-3.1-70b", tpot_ms=1)


def test_model_too_big_for_cluster():
    with pytest.raises(InfeasibleError, match="GiB of weights"):
        search(topology="pcie-l40sx1", model="llama-3.1-405b")


def test_min_gpus_needs_qps():
    with pytest.raises(InputError, match="--qps"):
        search(topology="dgx-h100x1", model="llama-3.1-8b", objective="min-gpus")


def test_plan_round_trips_through_json():
    p = search(topology="dgx-h100x1", model="qwen3-32b")
    again = Plan.model_validate_json(p.to_json())
    assert again.to_json() == p.to_json()
