"""The host side of benchmarks/check_emitters.py, which needs no runtime installed: running the emitted
scripts under the recording stand-ins gives the commands the shell would run (variables expanded, one
record per node), and the semantic comparison flags a runtime config that differs from the plan."""
from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

from planner.emit import emit

from test_emit import PLANS, search_plans

_PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "check_emitters.py"
_spec = importlib.util.spec_from_file_location("check_emitters", _PATH)
ce = importlib.util.module_from_spec(_spec)
sys.modules["check_emitters"] = ce
_spec.loader.exec_module(ce)


@pytest.fixture(scope="module")
def plan():
    return search_plans({"p": PLANS["llama405b-dgx-h100x2-rdma200"]})["p"]


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_recorded_commands_are_the_shells(plan, tmp_path):
    """The pipeline over two nodes over Ray: the head runs `ray start --head` and `vllm serve`, the other
    node `ray start --address=node0:PORT` with RAY_HEAD_ADDR unset (the script's default, expanded)."""
    shim = ce.make_shims(tmp_path)
    launches = ce.script_launches(emit(plan, "vllm"), shim, tmp_path)
    by_node = {}
    for launch in launches:
        by_node.setdefault(launch.node, []).append(launch.argv[:2])
    assert by_node["node0"].count(["ray", "start"]) == 1 and ["vllm", "serve"] in by_node["node0"]
    worker = next(x for x in launches if x.node == "node1" and x.argv[:2] == ["ray", "start"])
    assert any(w.startswith("--address=node0:") for w in worker.argv)
    assert worker.env["CUDA_VISIBLE_DEVICES"] == "0,1,2,3,4,5,6,7"


def test_a_config_that_differs_from_the_plan_is_counted(plan):
    g = plan.replica_groups[0]
    want = ce.expected_vllm(g, multi_node=True)
    got = {**want, "gpu_memory_utilization": want["gpu_memory_utilization"] - 0.005}
    assert ce.mismatches(want, got) == []
    bad = {**got, "tp": want["tp"] * 2, "pp_layers": list(reversed(want["pp_layers"])) + [1],
           "gpu_memory_utilization": want["gpu_memory_utilization"] - 0.05}
    assert {m.split(":")[0] for m in ce.mismatches(want, bad)} == {"tp", "pp_layers", "gpu_memory_utilization"}


def test_at_least_twenty_plans():
    assert len(ce.PLANS) >= 20
