import pytest

from topologies.errors import InputError
from topologies.graph import Topology
from topologies.load import builtin_topology_names, load_topology, parse_topology

EXPECTED = {"dgx-h100x1", "dgx-h100x2", "dgx-h100x4", "hgx-h200x2", "hgx-a100x4", "pcie-l40sx1", "gb200-nvl72x1",
            "mixed-h100x2-a100x2", "dgx-h100x2-rdma200"}
#: Single boxes and cloud instances (issue 14), with the GPU each must hold and its fabric.
BOXES = {"pcie-a100x4": ("A100-PCIe-80GB", 4, "pcie"), "pcie-a100x8": ("A100-PCIe-80GB", 8, "nvlink-pairs"),
         "dgx-a100x1": ("A100-SXM4-80GB", 8, "nvswitch"), "hgx-h200x1": ("H200-SXM-141GB", 8, "nvswitch"),
         "dgx-b200x1": ("B200-180GB", 8, "nvswitch"), "mi300xx1": ("MI300X-192GB", 8, "nvswitch"),
         "pcie-l4x4": ("L4-24GB", 4, "pcie"), "pcie-l40sx4": ("L40S-48GB", 4, "pcie"),
         "ws-rtx4090x2": ("RTX-4090-24GB", 2, "pcie"), "p5.48xlarge": ("H100-SXM-80GB", 8, "nvswitch"),
         "a3-highgpu-8g": ("H100-SXM-80GB", 8, "nvswitch"), "nd-h100-v5": ("H100-SXM-80GB", 8, "nvswitch")}


def topo(name):
    spec, sha = load_topology(name)
    return Topology(spec, sha)


def test_builtins_present_and_valid():
    assert EXPECTED <= set(builtin_topology_names())
    for n in builtin_topology_names():
        t = topo(n)
        assert t.gpus() and len(t.content_sha256) == 64


@pytest.mark.parametrize("name", sorted(BOXES))
def test_single_boxes_and_cloud_instances_cite_sources_and_plan(name):
    from planner import api

    spec, _ = load_topology(name)
    gpu, count, fabric = BOXES[name]
    (nt,) = spec.node_types.values()
    assert (nt.gpu, nt.gpus_per_node, nt.fabric.kind) == (gpu, count, fabric)
    assert "Source" in spec.description
    plan = api.search(topology=name, model="llama-3.1-8b", disaggregation="off", time_limit_s=20)
    assert {g.gpu for g in plan.replica_groups} == {gpu} and plan.totals.gpus_used <= count


def test_links_from_the_graph():
    t = topo("dgx-h100x2")
    assert t.link("dgx0/gpu0", "dgx0/gpu5").bandwidth_bytes_per_s == 450e9
    cross = t.link("dgx0/gpu0", "dgx1/gpu0")
    assert cross.kind == "nic" and cross.bandwidth_bytes_per_s == 400e9 / 8
    assert cross.latency_s > t.link("dgx0/gpu0", "dgx0/gpu1").latency_s
    assert t.domain_of("dgx0/gpu3") == "dgx0" and t.nvlink_domain_of("dgx1/gpu3") == "dgx1"


def test_slowest_link_shares_a_nic():
    t = topo("dgx-h100x2-rdma200")  # one 200 Gb/s NIC per node
    group = [f"node0/gpu{i}" for i in range(4)] + [f"node1/gpu{i}" for i in range(4)]
    lk = t.slowest_link(group)
    assert lk.kind == "nic"
    assert lk.bandwidth_bytes_per_s == pytest.approx(200e9 / 8 / 4)


def test_nvl72_is_one_domain():
    t = topo("gb200-nvl72x1")
    assert len(t.domains) == 1
    (gpus,) = t.domains.values()
    assert len(gpus) == 72
    assert t.slowest_link(gpus).kind == "nvlink"
    assert t.domain_of("gb200-tray0/gpu0") == t.domain_of("gb200-tray17/gpu3") == "nvl72-0"


def test_pcie_server_has_no_nvlink_domain():
    t = topo("pcie-l40sx1")
    assert t.nvlink_domain_of("l40s0/gpu0") is None
    assert t.domain_of("l40s0/gpu0") == "l40s0"
    assert t.link("l40s0/gpu0", "l40s0/gpu1").kind == "pcie"


def test_leaf_spine_oversubscription():
    t = topo("mixed-h100x2-a100x2")
    inside_rack = t.link("h100-0/gpu0", "h100-1/gpu0")
    across = t.slowest_link([f"h100-0/gpu{i}" for i in range(8)] + [f"a100-0/gpu{i}" for i in range(8)])
    assert across.bandwidth_bytes_per_s < inside_rack.bandwidth_bytes_per_s


def _base(**over):
    d = {"name": "t", "node_types": {"n": {"gpu": "H100", "gpus_per_node": 8,
                                           "fabric": {"kind": "nvswitch", "nvlink_bandwidth_gbyte_per_s": 450},
                                           "nics": {"count": 8, "bandwidth_gbit_per_s": 400}}},
         "nodes": [{"name": "a", "type": "n"}, {"name": "b", "type": "n"}]}
    d.update(over)
    return d


def test_unavailable_gpus_marked():
    d = _base(nodes=[{"name": "a", "type": "n", "unavailable_gpus": [1, 2]}, {"name": "b", "type": "n",
                                                                             "unavailable": True}])
    t = Topology(parse_topology(d))
    assert len(t.gpus(available_only=True)) == 6


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d["nodes"].append({"name": "a", "type": "n"}), "duplicate node name"),
    (lambda d: d["nodes"][0].update(unavailable_gpus=[8]), "out of range"),
    (lambda d: d["node_types"]["n"].update(gpus_per_node=0), "gpus_per_node"),
    (lambda d: d["node_types"]["n"].update(colour="red"), "unknown key"),
    (lambda d: d["node_types"]["n"].pop("nics"), "cannot reach"),
    (lambda d: d["nodes"][0].update(type="m"), "unknown node type"),
])
def test_bad_topologies(mutate, field):
    d = _base()
    mutate(d)
    with pytest.raises(InputError, match=field):
        parse_topology(d, source="f.yaml")


def test_yaml_alias_bomb_refused(tmp_path):
    lines = ['a0: &a0 ["x","x","x","x","x","x","x","x","x"]']
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]")
    f = tmp_path / "bomb.yaml"
    f.write_text("\n".join(lines))
    with pytest.raises(InputError, match="alias"):
        load_topology(str(f))


def test_yaml_with_too_many_values_refused(tmp_path, monkeypatch):
    """A 16 MiB flow list of a million numbers took the pure-Python loader 26 s and 780 MB before any other
    limit applied; the loader counts values as it reads them (the limit lowered here to keep the test quick)."""
    import topologies.load as tl

    monkeypatch.setattr(tl, "MAX_YAML_NODES", 1000)
    f = tmp_path / "big.yaml"
    f.write_text("grid:\n  isl: [" + ", ".join(["1"] * 2000) + "]\n")
    with pytest.raises(InputError, match="more than 1,000 YAML values"):
        tl.read_structured_file(f)
    f.write_text("grid:\n  isl: [" + ", ".join(["1"] * 900) + "]\n")
    assert len(tl.read_structured_file(f)[0]["grid"]["isl"]) == 900


def test_unknown_builtin_suggests():
    with pytest.raises(InputError, match="did you mean .dgx-h100x"):
        load_topology("dgx-h100x3")
