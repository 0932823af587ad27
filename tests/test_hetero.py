"""Heterogeneous fleets: plans over several GPU types, pipelines across types, uneven splits."""
from __future__ import annotations

import pytest
import yaml

from costmodels.hardware import get_gpu
from costmodels.memory import front_loaded_split
from costmodels.models import get_model
from costmodels.serving import choose_layer_split, replica_memory
from costmodels.strategy import Strategy
from planner import api
from planner.emit import emit
from planner.plan.check import check_plan
from planner.price.cluster import cluster_view
from planner.price.shapes import price_candidates
from topologies.errors import InfeasibleError, InputError
from topologies.graph import Topology
from topologies.load import load_topology, parse_topology

H100, A100 = "H100-SXM-80GB", "A100-SXM4-80GB"


def _only(topology: str, gpu: str) -> Topology:
    """The built-in topology with every node of other GPU types marked busy."""
    spec, _ = load_topology(topology)
    data = spec.model_dump(mode="json")
    types = {name: nt["gpu"] for name, nt in data["node_types"].items()}
    nodes = [{**n, "unavailable": types[n["type"]] != gpu} for n in (n.model_dump(mode="json")
                                                                     for n in spec.all_nodes())]
    return Topology(parse_topology({**data, "nodes": nodes, "node_groups": []}))


def _h100_plus_a100() -> Topology:
    return Topology(parse_topology({
        "name": "h100x1-a100x1",
        "node_types": {
            "h100": {"gpu": H100, "gpus_per_node": 8, "nics": {"count": 8, "bandwidth_gbit_per_s": 400},
                     "fabric": {"kind": "nvswitch", "nvlink_bandwidth_gbyte_per_s": 450}},
            "a100": {"gpu": A100, "gpus_per_node": 8, "nics": {"count": 8, "bandwidth_gbit_per_s": 200},
                     "fabric": {"kind": "nvswitch", "nvlink_bandwidth_gbyte_per_s": 300}}},
        "nodes": [{"name": "h0", "type": "h100"}, {"name": "a0", "type": "a100"}],
        "network": {"kind": "single-switch"}}))


@pytest.mark.parametrize("model, kw", [("llama-3.1-70b", {}), ("llama-3.1-8b", {"tpot_ms": 20}),
                                       ("qwen3-32b", {"isl": 4096, "osl": 512})])
def test_mixed_plan_uses_both_types_and_at_least_the_parts(model, kw):
    args = dict(model=model, **{"isl": 1024, "osl": 256, **kw})
    both = api.search(topology="mixed-h100x2-a100x2", **args)
    parts = [api.search(topology=_only("mixed-h100x2-a100x2", g), **args) for g in (H100, A100)]
    used = {x for g in both.replica_groups for x in (g.stage_gpus or [g.gpu])}
    assert used == {H100, A100}
    # plan totals are rounded to 0.1 token/s, so the parts' sum may carry up to 0.05 per part more
    assert both.totals.output_tokens_per_s >= sum(p.totals.output_tokens_per_s for p in parts) - 0.05 * len(parts)


def test_a_pipeline_across_types_serves_what_neither_part_can():
    """Llama-3.1-405B in BF16 is 810 GB of weights: more than one 8x80 GB node of either type
    holds, so each part alone is infeasible; a pipeline with a stage on each type serves it."""
    topo = _h100_plus_a100()
    for gpu in (H100, A100):
        part = Topology(parse_topology({**topo.spec.model_dump(mode="json"), "nodes": [
            {"name": n.name, "type": n.type, "unavailable": topo.spec.node_types[n.type].gpu != gpu}
            for n in topo.spec.all_nodes()]}))
        with pytest.raises(InfeasibleError):
            api.search(topology=part, model="llama-3.1-405b")
    plan = api.search(topology=topo, model="llama-3.1-405b")
    (g,) = plan.replica_groups
    assert set(g.stage_gpus) == {H100, A100} and len(g.stage_gpus) == g.strategy.pp
    split = g.strategy.layer_split
    h_layers = [n for n, t in zip(split, g.stage_gpus, strict=True) if t == H100]
    a_layers = [n for n, t in zip(split, g.stage_gpus, strict=True) if t == A100]
    assert sum(split) == 126 and min(h_layers) > max(a_layers), "the faster H100 stages take more layers"
    assert check_plan(plan, topology=topo, model="llama-3.1-405b").ok
    nodes = {k.stage: k.node for k in g.replicas[0].ranks}
    assert all(nodes[i] == ("h0" if t == H100 else "a0") for i, t in enumerate(g.stage_gpus))
    files = emit(plan, "vllm")
    assert "VLLM_PP_LAYER_PARTITION=" + ",".join(map(str, split)) in "".join(files.values())
    with pytest.raises(InputError, match="uneven layer split"):
        emit(plan, "trtllm", runtime_version="1.1")  # no pp_partition before 1.2
    # from 1.2 on (the default) the split is pinned in the extra-options YAML
    assert yaml.safe_load(emit(plan, "trtllm")["trtllm-g0-extra.yaml"]) == {"pp_partition": list(split)}


def test_check_plan_catches_a_bad_cross_type_split():
    topo = _h100_plus_a100()
    plan = api.search(topology=topo, model="llama-3.1-405b")
    g = plan.replica_groups[0]

    def with_split(split):
        s = g.strategy.model_copy(update={"layer_split": split})
        return plan.model_copy(update={"replica_groups": [g.model_copy(update={"strategy": s})]})

    # every layer but one per other stage on the last A100 stage: more than its memory holds
    a_last = max(i for i, t in enumerate(g.stage_gpus) if t == A100)
    heavy = [1] * g.strategy.pp
    heavy[a_last] = 126 - (g.strategy.pp - 1)
    problems = check_plan(with_split(heavy), topology=topo, model="llama-3.1-405b").problems
    assert any(f"stage {a_last}: memory" in p and A100 in p for p in problems), problems
    short = with_split([1] * g.strategy.pp)
    assert any("does not cover 126 layers" in p for p in check_plan(short, topology=topo,
                                                                    model="llama-3.1-405b").problems)
    swapped = plan.model_copy(update={"replica_groups": [g.model_copy(update={"stage_gpus": g.stage_gpus[::-1]})]})
    assert not check_plan(swapped, topology=topo, model="llama-3.1-405b").ok


def test_split_balances_speed_and_fits_every_stage():
    model = get_model("llama-3.1-70b")
    h, a = get_gpu(H100), get_gpu(A100)
    s = Strategy(tp=2, pp=3)
    for gpus in ([h, h, h], [h, a, a], [a, a, h]):
        split = choose_layer_split(model, gpus, s, isl=1024, osl=256)
        assert sum(split) == model.layers and min(split) >= 1
        mems = replica_memory(model, gpus, Strategy(tp=2, pp=3, layer_split=split), batch=1, context=1280)
        assert all(m.fits for m in mems)
        per_h = [n for n, g in zip(split, gpus, strict=True) if g is h]
        per_a = [n for n, g in zip(split, gpus, strict=True) if g is a]
        if per_h and per_a:
            assert min(per_h) > max(per_a), (gpus, split)  # H100 reads HBM 1.6x faster than A100
    # on one type, a large vocabulary's LM head makes the last stage the lighter one
    small = get_model("llama-3.1-8b")
    split = choose_layer_split(small, h, Strategy(tp=1, pp=2), isl=1024, osl=256)
    assert split[0] > split[1] and sum(split) == small.layers


def test_trtllm_plans_keep_the_runtimes_own_split():
    view = cluster_view(Topology(*load_topology("mixed-h100x2-a100x2")))
    model = get_model("llama-3.1-8b")
    req = api.make_request(model, isl=1024, osl=256, runtime="trtllm")
    cands = price_candidates(model, view, req).candidates
    assert cands and not any(c.hetero for c in cands)
    assert all(not c.strategy.layer_split or c.strategy.layer_split == front_loaded_split(model.layers, c.strategy.pp)
               for c in cands)
    vllm = price_candidates(model, view, api.make_request(model, isl=1024, osl=256)).candidates
    assert any(c.hetero for c in vllm) and any(c.strategy.layer_split for c in vllm)
