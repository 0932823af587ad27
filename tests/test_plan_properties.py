"""Property tests over random valid topologies, models and workloads (hypothesis).

Every plan ``search`` returns must hold up on its own terms: the independent
``check_plan`` passes (the autouse fixture in conftest.py runs it on every plan built;
these tests also assert the rules directly), no GPU is used twice, no busy GPU is used,
TP groups stay inside one scale-up domain, memory fits, the SLOs asked for are met and
the requested rate is covered. And more GPUs never make the proven-best plan worse.
"""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from planner import api
from planner.plan.check import check_plan
from topologies.errors import InfeasibleError
from topologies.graph import Topology, gpu_id
from topologies.schema import TopologySpec

# GPU types with their node fabrics as sold (per-direction NVLink GB/s: H100/H200 SXM 450,
# A100 SXM 300, per the NVIDIA datasheets the built-in topologies cite; L40S has no NVLink).
NODE_KINDS = {
    "h100": ("H100-SXM-80GB", "nvswitch", 450.0),
    "a100": ("A100-SXM4-80GB", "nvswitch", 300.0),
    "h200": ("H200-SXM-141GB", "nvswitch", 450.0),
    "h100pcie": ("H100-PCIe-80GB", "nvlink-pairs", 300.0),
    "l40s": ("L40S-48GB", "pcie", None),
}
MODELS = ["llama-3.1-8b", "mistral-7b", "qwen3-32b", "llama-3.1-70b", "mixtral-8x7b", "qwen3-235b-a22b"]
SETTINGS = dict(deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def topologies(draw, *, min_nodes: int = 1, max_nodes: int = 3):
    """A valid topology dict: one or two node types, 1-3 nodes, some GPUs busy."""
    kinds = draw(st.lists(st.sampled_from(sorted(NODE_KINDS)), min_size=1, max_size=2, unique=True))
    node_types = {}
    for k in kinds:
        gpu, fabric, nvlink = NODE_KINDS[k]
        per_node = draw(st.sampled_from([2, 4, 8]))
        fab: dict = {"kind": fabric, "pcie_bandwidth_gbyte_per_s": 32.0 if k != "h100" else 64.0}
        if nvlink is not None:
            fab["nvlink_bandwidth_gbyte_per_s"] = nvlink
        if fabric == "nvlink-pairs":
            fab["pairs"] = [[i, i + 1] for i in range(0, per_node, 2)]
        node_types[k] = {"gpu": gpu, "gpus_per_node": per_node, "fabric": fab,
                         "nics": {"count": draw(st.sampled_from([1, 2, 8])),
                                  "bandwidth_gbit_per_s": draw(st.sampled_from([100.0, 200.0, 400.0]))}}
    n_nodes = draw(st.integers(min_value=min_nodes, max_value=max_nodes))
    nodes = []
    for i in range(n_nodes):
        t = draw(st.sampled_from(kinds))
        per_node = node_types[t]["gpus_per_node"]
        busy = draw(st.lists(st.integers(min_value=0, max_value=per_node - 1), max_size=per_node // 2, unique=True))
        nodes.append({"name": f"n{i}", "type": t, "unavailable_gpus": sorted(busy)})
    return {"name": "random", "node_types": node_types, "nodes": nodes, "network": {"kind": "single-switch"}}


def _topology(data: dict) -> Topology:
    spec = TopologySpec.model_validate(data)
    return Topology(spec, "0" * 64, source="random")


@st.composite
def requests(draw):
    objective = draw(st.sampled_from(["throughput", "throughput-per-gpu", "min-gpus", "latency"]))
    qps = draw(st.sampled_from([None, 0.5, 2.0, 10.0])) if objective != "min-gpus" else \
        draw(st.sampled_from([0.5, 2.0, 10.0]))
    return dict(model=draw(st.sampled_from(MODELS)),
                isl=draw(st.sampled_from([128, 1024, 4096])), osl=draw(st.sampled_from([16, 256, 1024])),
                tpot_ms=draw(st.sampled_from([None, 20.0, 50.0, 200.0])),
                ttft_ms=draw(st.sampled_from([None, 300.0, 2000.0])),
                qps=qps, objective=objective,
                weight_dtype=draw(st.sampled_from([None, "fp8"])))


@settings(max_examples=80, **SETTINGS)
@given(data=topologies(), req=requests())
def test_every_plan_keeps_the_rules(data, req):
    topo = _topology(data)
    try:
        plan = api.search(topology=topo, time_limit_s=5, **req)
    except InfeasibleError:
        assume(False)
        return
    assert check_plan(plan, topology=topo, model=req["model"]).ok
    used = [(k.node, k.gpu_index) for g in plan.replica_groups for r in g.replicas for k in r.ranks]
    assert len(used) == len(set(used)), "a GPU is used twice"
    assert len(used) == plan.totals.gpus_used
    for g in plan.replica_groups:
        assert g.memory_per_gpu_bytes.total <= g.memory_per_gpu_bytes.capacity
        for r in g.replicas:
            for k in r.ranks:
                a = topo.gpu(gpu_id(k.node, k.gpu_index))
                assert a["available"], f"busy GPU {k.node}:{k.gpu_index} used"
            at = g.strategy.tp // g.strategy.attention_dp  # an all-reduce group: the attention group
            for s in range(g.strategy.pp):
                for a in range(g.strategy.attention_dp):
                    doms = {topo.domain_of(gpu_id(k.node, k.gpu_index)) for k in r.ranks
                            if k.stage == s and k.tp_rank // at == a}
                    assert len(doms) == 1, f"TP group spans {doms}"
        m = g.metrics_per_replica
        if req["tpot_ms"] is not None:
            assert m.tpot_ms <= req["tpot_ms"] + 1e-6
        if req["ttft_ms"] is not None:
            assert m.ttft_ms <= req["ttft_ms"] + 1e-6
    if req["qps"]:
        assert plan.totals.requests_per_s >= req["qps"] * (1 - 1e-6)


@settings(max_examples=40, **SETTINGS)
@given(data=topologies(max_nodes=2), extra=st.integers(min_value=0, max_value=10),
       model=st.sampled_from(MODELS), isl=st.sampled_from([512, 2048]), osl=st.sampled_from([128, 512]),
       tpot_ms=st.sampled_from([None, 50.0]))
def test_more_gpus_never_lower_the_proven_best_throughput(data, extra, model, isl, osl, tpot_ms):
    """Add one node (a copy of an existing node's type, all GPUs free): when both searches
    prove optimality, the larger cluster's best throughput is at least the smaller's."""
    small = _topology(data)
    bigger = {**data, "nodes": [*data["nodes"],
                                {"name": "extra", "type": data["nodes"][extra % len(data["nodes"])]["type"],
                                 "unavailable_gpus": []}]}
    large = _topology(bigger)
    kw = dict(model=model, isl=isl, osl=osl, tpot_ms=tpot_ms, time_limit_s=10)
    try:
        before = api.search(topology=small, **kw)
    except InfeasibleError:
        assume(False)
        return
    after = api.search(topology=large, **kw)  # a superset of GPUs: cannot be infeasible
    assume(before.solver.status == "OPTIMAL" and after.solver.status == "OPTIMAL")
    assert after.totals.output_tokens_per_s >= before.totals.output_tokens_per_s * (1 - 1e-6), \
        (before.totals.output_tokens_per_s, after.totals.output_tokens_per_s)


@pytest.mark.parametrize("seed", range(3))
def test_random_topologies_are_valid_files(seed):
    """The generator only makes topologies the loader accepts (guards the tests above)."""
    from hypothesis import find

    data = find(topologies(min_nodes=seed + 1), lambda d: len(d["nodes"]) == seed + 1,
                settings=settings(database=None, derandomize=True))
    assert len(_topology(data).gpus()) >= 2
