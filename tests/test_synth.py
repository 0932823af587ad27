"""Synthetic fleets (topologies.synth) and one end-to-end search on a two-type fleet."""
from __future__ import annotations

from collections import Counter

import pytest

from planner import search
from topologies.graph import Topology
from topologies.synth import synthetic_fleet

H100, A100, H200 = "H100-SXM-80GB", "A100-SXM4-80GB", "H200-SXM-141GB"


def _gpus_by_type(spec) -> Counter:
    """GPUs per node type (busy ones included)."""
    out: Counter = Counter()
    for n in spec.all_nodes():
        out[n.type] += spec.node_types[n.type].gpus_per_node
    return out


def _busy(spec) -> set[tuple[str, int]]:
    return {(n.name, i) for n in spec.all_nodes() for i in n.unavailable_gpus}


@pytest.mark.parametrize("gpus, types", [
    (8, (H100,)),
    (64, (H100,)),
    (512, (H100, A100)),
    (4096, (H100, A100)),
    (4080, (H100, A100, H200)),
])
def test_gpu_counts_split_evenly_per_type(gpus, types):
    spec = synthetic_fleet(gpus=gpus, gpu_types=types)
    by_type = _gpus_by_type(spec)
    assert sum(by_type.values()) == gpus
    assert {spec.node_types[t].gpu for t in by_type} == set(types)
    assert set(by_type.values()) == {gpus // len(types)}
    assert len(Topology(spec).gpus()) == gpus
    assert _busy(spec) == set()


def test_node_figures_and_network():
    spec = synthetic_fleet(gpus=4096, gpu_types=(H100, A100))
    figures = {nt.gpu: (nt.gpus_per_node, nt.fabric.kind, nt.fabric.nvlink_bandwidth_gbyte_per_s,
                        nt.nics.count, nt.nics.bandwidth_gbit_per_s) for nt in spec.node_types.values()}
    assert figures == {H100: (8, "nvswitch", 450, 8, 400), A100: (8, "nvswitch", 300, 8, 200)}
    assert spec.network.kind == "leaf-spine" and spec.network.oversubscription == 1.0
    racks = Counter(n.rack for n in spec.all_nodes())
    assert len(racks) == 16 and set(racks.values()) == {32}
    b200 = synthetic_fleet(gpus=8, gpu_types=("B200-180GB",))
    assert next(iter(b200.node_types.values())).fabric.nvlink_bandwidth_gbyte_per_s == 900
    assert synthetic_fleet(gpus=64).network.kind == "single-switch"  # 8 nodes, one rack
    assert synthetic_fleet(gpus=8).network.kind == "none"
    assert synthetic_fleet(gpus=64, nodes_per_rack=4).network.kind == "leaf-spine"


@pytest.mark.parametrize("fraction, expected", [(0.25, 16), (0.1, 6), (1.0, 64)])
def test_busy_fraction_applied(fraction, expected):
    spec = synthetic_fleet(gpus=64, gpu_types=(H100, A100), busy_fraction=fraction, seed=3)
    busy = _busy(spec)
    assert len(busy) == expected
    assert sum(_gpus_by_type(spec).values()) == 64  # busy GPUs stay in the fleet
    topo = Topology(spec)
    assert len(topo.gpus(available_only=True)) == 64 - expected
    # explicit nodes keep the names and racks the node groups would give
    plain = synthetic_fleet(gpus=64, gpu_types=(H100, A100))
    assert [(n.name, n.type, n.rack) for n in spec.all_nodes()] == \
        [(n.name, n.type, n.rack) for n in plain.all_nodes()]


def test_deterministic_for_a_seed():
    a = synthetic_fleet(gpus=512, gpu_types=(H100, A100), busy_fraction=0.3, seed=7)
    b = synthetic_fleet(gpus=512, gpu_types=(H100, A100), busy_fraction=0.3, seed=7)
    c = synthetic_fleet(gpus=512, gpu_types=(H100, A100), busy_fraction=0.3, seed=8)
    assert a == b and a.model_dump() == b.model_dump()
    assert _busy(a) != _busy(c)
    assert synthetic_fleet(gpus=64, seed=1) == synthetic_fleet(gpus=64, seed=2)  # seed unused when none busy


@pytest.mark.parametrize("kwargs", [
    {"gpus": 0},
    {"gpus": -8},
    {"gpus": 12},
    {"gpus": 8, "gpu_types": (H100, A100)},
    {"gpus": 4096, "gpu_types": (H100, A100, H200)},
    {"gpus": 8.0},
    {"gpus": 16, "gpu_types": ()},
    {"gpus": 16, "gpu_types": (H100, H100)},
    {"gpus": 8, "gpu_types": ("H100-PCIe-80GB",)},
    {"gpus": 8, "gpu_types": ("L40S-48GB",)},
    {"gpus": 8, "nodes_per_rack": 0},
    {"gpus": 8, "busy_fraction": -0.1},
    {"gpus": 8, "busy_fraction": 1.5},
])
def test_bad_arguments_raise_value_error(kwargs):
    with pytest.raises(ValueError):
        synthetic_fleet(**kwargs)


@pytest.mark.parametrize("busy_fraction", [0.0, 0.2])
def test_search_on_two_type_fleet_is_optimal_and_uses_each_gpu_once(busy_fraction):
    spec = synthetic_fleet(gpus=64, gpu_types=(H100, A100), busy_fraction=busy_fraction, seed=11)
    plan = search(topology=Topology(spec), model="llama-3.1-70b", isl=1024, osl=256, time_limit_s=30)
    assert plan.solver.status == "OPTIMAL"
    used = [(r.node, r.gpu_index) for g in plan.replica_groups for rep in g.replicas for r in rep.ranks]
    assert len(used) == len(set(used)), [gpu for gpu, n in Counter(used).items() if n > 1]
    assert len(used) == plan.totals.gpus_used
    assert not set(used) & _busy(spec)
    assert {g.gpu for g in plan.replica_groups} <= {H100, A100}
