"""vLLM over Ray, three nodes and more: vLLM decides which node runs which stage (issue 16, item 7).

The launch file says so, with the release's own rule (planner/emit/ray_order.py); where the stages
differ it checks vLLM's order against the plan's before ``vllm serve``. The check runs here against a
stand-in ``ray`` module that reports a made-up cluster, so both of vLLM's orderings (by workers and IP
address up to 0.20, by Ray node id from 0.21) are exercised on orders that match and orders that do not.
"""
from __future__ import annotations

import json
import shlex
import subprocess
import sys
import textwrap

import pytest

from planner.emit import emit
from planner.plan.schema import Plan

from test_emit import search_plans
from test_emit_versions import _reshape

PLANS = {"llama405b": dict(topology="dgx-h100x2-rdma200", model="llama-3.1-405b")}


@pytest.fixture(scope="module")
def base() -> Plan:
    return search_plans(PLANS)["llama405b"]


def _three_nodes(base: Plan, split: list[int] | None = None, gpus=(8, 4, 4), tp: int = 4) -> Plan:
    """One replica of 16 GPUs (tp=4 pp=4, or tp=8 pp=2) over node0 (8 GPUs), node1 and node2 (4 each), or
    ``gpus``; the layer split as even as the 126 layers allow, or ``split``."""
    where = [(f"node{i}", x) for i, n in enumerate(gpus) for x in range(n)]
    pp = 16 // tp
    layers = sum(base.replica_groups[0].strategy.layer_split)
    near = [layers // pp + (1 if i < layers % pp else 0) for i in range(pp)]
    return _reshape(base, [where], tp=tp, pp=pp, layer_split=split or near)


def _script(plan: Plan, version: str) -> str:
    return emit(plan, "vllm", runtime_version=version)["vllm-g0.sh"]


def _check_argv(script: str) -> list[str] | None:
    """The argv of the order check the script runs (None: no check)."""
    words = shlex.split(script, comments=True)
    for i, w in enumerate(words):
        if w == "-c" and words[i + 1].startswith("import json, sys, ray"):
            return words[i - 1:i + 5]
    return None


def test_two_nodes_say_nothing(base):
    script = _script(base, "0.33")
    assert "node order" not in script and "--resources" not in script and _check_argv(script) is None


def test_alike_stages_only_say_vllm_decides(base):
    plan = _three_nodes(base, gpus=(4, 4, 4, 4), tp=8)  # 63 + 63 layers, 4 GPUs a node
    for version, key in (("0.11", "fewest GPUs first, then by IP address"), ("0.33", "by Ray node id")):
        script = _script(plan, version)
        assert f"vLLM {version}.0, not this file, gives ranks to nodes" in script and key in script
        assert "any order runs the plan as priced" in script
        assert "--resources" not in script and _check_argv(script) is None


@pytest.mark.parametrize("version,rule", [("0.11.0", "ip"), ("0.20.2", "ip"), ("0.21.0", "node-id"),
                                          ("0.33.0", "node-id")])
def test_differing_stages_are_checked(base, version, rule):
    plan = _three_nodes(base)  # node0 holds two stages, the others one: not interchangeable
    script = _script(plan, version)
    argv = _check_argv(script)
    assert argv is not None and argv[0] == "python3"
    assert argv[3:] == [rule, json.dumps([["node0", 8], ["node1", 4], ["node2", 4]], separators=(",", ":")), version]
    for n in ("node0", "node1", "node2"):
        assert f"--resources='{{\"plan_node_{n}\": 1}}'" in script
    # the check stands between the cluster being complete and vllm serve
    assert script.index("until python3") < script.index("import json, sys, ray") < script.index("vllm serve meta-llama")


def test_uneven_split_is_checked(base):
    layers = sum(base.replica_groups[0].strategy.layer_split)
    plan = _three_nodes(base, split=[layers // 4 - 2, layers // 4, layers // 4, layers - 3 * (layers // 4) + 2],
                        gpus=(4, 4, 8))
    assert _check_argv(_script(plan, "0.33")) is not None


STUB = textwrap.dedent('''
    import json, os
    _C = json.loads(os.environ["STUB_CLUSTER"])
    def init(address=None):
        pass
    def nodes():
        return [{"NodeID": n["id"], "Alive": True, "NodeManagerAddress": n["ip"],
                 "Resources": {"GPU": float(n["gpus"]), "plan_node_" + n["name"]: 1.0}} for n in _C["nodes"]]
    class _Ctx:
        def get_node_id(self):
            return _C["here"]
    def get_runtime_context():
        return _Ctx()
''')


def _run_check(argv: list[str], cluster: dict, tmp_path) -> subprocess.CompletedProcess:
    (tmp_path / "ray.py").write_text(STUB, encoding="utf-8")
    env = {"PYTHONPATH": str(tmp_path), "STUB_CLUSTER": json.dumps(cluster), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, *argv[1:]], env=env, capture_output=True, text=True, timeout=60)


def _cluster(here: str, *nodes: tuple[str, str, str, int]) -> dict:
    return {"here": here, "nodes": [dict(name=a, id=b, ip=c, gpus=d) for a, b, c, d in nodes]}


@pytest.mark.parametrize("version", ["0.11.0", "0.33.0"])
def test_check_passes_when_vllm_order_is_the_plans(base, version, tmp_path):
    argv = _check_argv(_script(_three_nodes(base), version))
    # node1 sorts before node2 both by IP (10.0.0.10 < 10.0.0.9 as text) and by node id (a1 < b2)
    ok = _cluster("ff", ("node2", "b2", "10.0.0.9", 4), ("node0", "ff", "10.0.0.1", 8), ("node1", "a1", "10.0.0.10", 4))
    r = _run_check(argv, ok, tmp_path)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("version,swap", [
    ("0.11.0", ("10.0.0.2", "a1", "10.0.0.10", "b2")),   # node2's IP sorts first as text
    ("0.33.0", ("10.0.0.1", "b2", "10.0.0.2", "a1"))])   # node2's node id sorts first
def test_check_stops_when_vllm_would_reorder(base, version, swap, tmp_path):
    argv = _check_argv(_script(_three_nodes(base), version))
    ip1, id1, ip2, id2 = swap
    bad = _cluster("ff", ("node0", "ff", "10.0.0.5", 8), ("node1", id1, ip1, 4), ("node2", id2, ip2, 4))
    r = _run_check(argv, bad, tmp_path)
    assert r.returncode == 1
    assert len(r.stderr.strip().splitlines()) == 1
    assert "node0 (8 GPUs), node2 (4 GPUs), node1 (4 GPUs) in that order" in r.stderr
    assert "of the plan need node0 (8 GPUs), node1 (4 GPUs), node2 (4 GPUs)" in r.stderr


def test_ip_rule_puts_fewer_gpus_first(base, tmp_path):
    # vLLM up to 0.20 sorts the non-head nodes by workers first: a 2-GPU node goes before a 4-GPU one
    plan = _three_nodes(base, gpus=(8, 6, 2))
    argv = _check_argv(_script(plan, "0.11"))
    cluster = _cluster("h", ("node0", "h", "10.0.0.1", 8), ("node1", "x", "10.0.0.2", 6), ("node2", "y", "10.0.0.3", 2))
    r = _run_check(argv, cluster, tmp_path)
    assert r.returncode == 1 and "node0 (8 GPUs), node2 (2 GPUs), node1 (6 GPUs) in that order" in r.stderr
