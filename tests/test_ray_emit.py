"""`plan-search emit --target ray` against a real Ray cluster (local, several Ray nodes, no GPU needed).

The cluster is started from the emitted ``ray-start.sh`` lines: one Ray node per plan node with
the ``--num-gpus`` and ``--resources`` that file gives it (Ray counts GPUs as logical resources,
so none has to exist), plus a head without GPUs. The placement groups are created by the
emitted ``ray_placement.py`` from the emitted ``ray-placement.json``; the test then asks Ray
(``placement_group_table(pg)["bundles_to_node_id"]``) where each bundle landed and compares it
with the Ray node it started for the bundle's plan node.

Plans: the two-node llama-3.1-405b plan of tests/test_emit.py (tp=2 pp=8, ranks 0-7 on node0,
8-15 on node1), the same replica with its ranks alternating between the nodes (which PACK's
own packing would not produce, so only the custom node resources can place it), and two
one-node replicas (STRICT_PACK). Needs the ``ray`` extra (``pip install -e '.[test,ray]'``).
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import time

import pytest

ray = pytest.importorskip("ray")

from ray.cluster_utils import Cluster  # noqa: E402
from ray.util.placement_group import placement_group_table, remove_placement_group  # noqa: E402

from planner import api  # noqa: E402
from planner.emit import emit  # noqa: E402
from planner.plan.schema import Plan  # noqa: E402

SMALL_STORE = 80 * 1024 * 1024  # bytes of object store per Ray node: the cluster stores nothing
START = re.compile(r"^(\S+)\)\n.*?ray start .*?--num-gpus=(\d+) --resources='([^']*)'", re.MULTILINE | re.DOTALL)


@pytest.fixture(scope="module")
def plan() -> Plan:
    p = api.search(topology="dgx-h100x2-rdma200", model="llama-3.1-405b", time_limit_s=10.0, workers=1, seed=0,
                   disaggregation="off")
    return Plan.model_validate(json.loads(p.to_json()))


def _variant(plan: Plan, replicas: list[list[tuple[str, int]]]) -> Plan:
    """The plan's group with its replicas replaced: one (node, gpu_index) per rank, in rank order. Replicas
    of another size than the plan's become one pipeline stage of that many GPUs (so the plan holds together)."""
    g = plan.replica_groups[0]
    s = g.strategy
    size = len(replicas[0])
    if size != s.tp * s.pp:
        s = s.model_copy(update={"tp": size, "pp": 1, "layer_split": [sum(s.layer_split)]})
    template = g.replicas[0].ranks[0]
    new = []
    for i, placement in enumerate(replicas):
        ranks = [template.model_copy(update={"rank": j, "stage": j // s.tp, "tp_rank": j % s.tp, "node": n,
                                             "gpu_index": gi})
                 for j, (n, gi) in enumerate(placement)]
        new.append(g.replicas[0].model_copy(update={"index": i, "ranks": ranks}))
    return plan.model_copy(update={"replica_groups": [g.model_copy(update={"replicas": new, "strategy": s})]})


@pytest.fixture(scope="module")
def files(plan) -> dict[str, str]:
    return emit(plan, "ray")


@pytest.fixture(scope="module")
def cluster(files):
    """Head (no GPUs) plus one Ray node per line of the emitted ray-start.sh; yields plan node -> Ray node id."""
    stats = os.environ.get("RAY_USAGE_STATS_ENABLED")
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"  # a test cluster reports nothing anywhere
    starts = START.findall(files["ray-start.sh"])
    assert [n for n, _, _ in starts] == ["node0", "node1"]
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "num_gpus": 0, "include_dashboard": False,
                                                       "object_store_memory": SMALL_STORE})
    try:
        ids = {}
        for node, gpus, resources in starts:
            ids[node] = c.add_node(num_cpus=1, num_gpus=int(gpus), resources=json.loads(resources),
                                   object_store_memory=SMALL_STORE).node_id
        c.wait_for_nodes()
        ray.init(address=c.address, logging_level="WARNING")
        yield ids
    finally:
        ray.shutdown()
        c.shutdown()
        if stats is None:
            os.environ.pop("RAY_USAGE_STATS_ENABLED", None)
        else:
            os.environ["RAY_USAGE_STATS_ENABLED"] = stats


@pytest.fixture(scope="module")
def placement_script(files, tmp_path_factory):
    d = tmp_path_factory.mktemp("ray-emit")
    for name, text in files.items():
        (d / name).write_text(text, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("emitted_ray_placement", d / "ray_placement.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _place_and_check(ray_files: dict[str, str], ids: dict[str, str], script) -> list[dict]:
    spec = json.loads(ray_files["ray-placement.json"])
    pgs = script.create_placement_groups(spec, timeout_s=30.0, lifetime=None)
    try:
        for e, pg in zip(spec["placement_groups"], pgs, strict=True):
            landed = placement_group_table(pg)["bundles_to_node_id"]
            want = {i: ids[n] for i, n in enumerate(e["bundle_nodes"])}
            assert landed == want, f"{e['name']}: bundles not on their plan nodes"
        assert script.placement_problems(spec, pgs) == []  # the emitted checker agrees
    finally:
        for pg in pgs:
            remove_placement_group(pg)
        _wait_gpus_free(sum(len(e["bundles"]) for e in spec["placement_groups"]))
    return spec["placement_groups"]


def _wait_gpus_free(n: int, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while ray.available_resources().get("GPU", 0) < ray.cluster_resources().get("GPU", 0):
        assert time.monotonic() < deadline, f"the {n} GPUs of removed placement groups were not released"
        time.sleep(0.2)


def test_two_node_plan_lands_on_its_nodes(plan, files, cluster, placement_script):
    groups = _place_and_check(files, cluster, placement_script)
    assert len(groups) == 1 and groups[0]["strategy"] == "PACK"
    assert groups[0]["bundle_nodes"] == ["node0"] * 8 + ["node1"] * 8
    assert groups[0]["bundles"][0] == {"GPU": 1, "plan_node_node0": 0.001}


def test_interleaved_ranks_land_on_their_nodes(plan, cluster, placement_script):
    """Ranks alternating node0, node1, ...: PACK alone would fill one node first; the node resources decide."""
    odd = _variant(plan, [[(f"node{j % 2}", j // 2) for j in range(16)]])
    groups = _place_and_check(emit(odd, "ray"), cluster, placement_script)
    assert groups[0]["bundle_nodes"][:4] == ["node0", "node1", "node0", "node1"]


def test_one_node_replicas_strict_pack(plan, cluster, placement_script):
    two = _variant(plan, [[("node1", j) for j in range(8)], [("node0", j) for j in range(8)]])
    groups = _place_and_check(emit(two, "ray"), cluster, placement_script)
    assert [g["strategy"] for g in groups] == ["STRICT_PACK", "STRICT_PACK"]
    assert [g["bundle_nodes"][0] for g in groups] == ["node1", "node0"]
