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
judging = importlib.import_module("emitcheck_judge")  # check_emitters.py's judging half, on its path


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
    assert judging.mismatches(want, got) == []
    bad = {**got, "tp": want["tp"] * 2, "pp_layers": list(reversed(want["pp_layers"])) + [1],
           "gpu_memory_utilization": want["gpu_memory_utilization"] - 0.05}
    assert {m.split(":")[0] for m in judging.mismatches(want, bad)} == {"tp", "pp_layers", "gpu_memory_utilization"}


def test_at_least_twenty_plans():
    assert len(ce.PLANS) >= 20


def _job(case, kind, node, config, file="sglang-g0.sh"):
    argv = ["python", "-m", "sglang.launch_server"] if kind == "sglang" else ["vllm", "serve", "m"]
    launch = ce.Launch(file, node, argv, {})
    job = ce.Job(case, "env", kind, {}, launch=launch, result={"status": "ok", "config": config})
    case.jobs.append(job)
    return job


def _sglang(port, node_rank=0, zmq_base=None):
    """A SGLang result as emitcheck_worker._sglang_ports reports it (attention DP on one node without
    --dist-init-addr: PortArgs.init_new reserves --port + 233 and the five ports after it)."""
    bound = [["port" if node_rank == 0 else "health-check port", port]]
    if zmq_base is not None:
        bound += [[f"zmq {i}", zmq_base + i] for i in range(6)] + [["dp handshake port", port + 13]]
    return {"bound_ports": bound, "port": port, "node_rank": node_rank}


def test_port_clashes_of_sglang_derived_ports(plan):
    """Issue 16 item 3: two attention-DP servers on one node at --port 30000 and 30001 both reserve
    30234-30238 (each its own --port + 233 onwards), and a node-rank-1 process's health-check server binds
    --port where another group's head serves; a port one process lists twice, other nodes and k8s pods
    (each its own IP) are no clash."""
    case = ce.Case("p", plan, "sglang", "0.5.23", "sglang-0.5.23")
    _job(case, "sglang", "n0", _sglang(30000, zmq_base=30233))
    _job(case, "sglang", "n0", _sglang(30001, zmq_base=30234))
    clashes = judging.port_clashes(case)
    assert sorted(int(c.split()[1]) for c in clashes) == list(range(30234, 30239))
    assert all("bound by both" in c and " on n0 " in c for c in clashes)

    apart = ce.Case("p", plan, "sglang", "0.5.23", "sglang-0.5.23")
    _job(apart, "sglang", "n0", _sglang(30000, zmq_base=30233))
    _job(apart, "sglang", "n0", _sglang(30007, zmq_base=30240))
    _job(apart, "sglang", "n1", _sglang(30000, zmq_base=30233))
    twice = _job(apart, "sglang", "n2", _sglang(30000))
    twice.result["config"]["bound_ports"].append(["dist-init port", 30000])
    assert judging.port_clashes(apart) == []

    _job(apart, "sglang", "n1", _sglang(30007, node_rank=1), file="sglang-g1.sh")
    _job(apart, "sglang", "n2", _sglang(30000, node_rank=1), file="sglang-g1.sh")
    (clash,) = judging.port_clashes(apart)
    assert clash.startswith("port 30000 on n2") and "health-check port" in clash

    pods = ce.Case("p", plan, "k8s", "0.33.0", "vllm-0.33.0")
    _job(pods, "sglang", "n0", _sglang(30000, zmq_base=30233))
    _job(pods, "sglang", "n0", _sglang(30001, zmq_base=30234))
    assert judging.port_clashes(pods) == []


def test_vllm_router_workers_must_be_the_api_servers(plan):
    """A vllm-router line is judged like sglang-router's: its parsed workers must be exactly the vLLM API
    servers' nodes and ports (a headless engine serves no HTTP)."""
    def case_with(workers):
        case = ce.Case("p", plan, "vllm", "0.33.0", "vllm-0.33.0")
        for node, port, headless in (("n0", 8000, False), ("n0", 8001, False), ("n1", None, True)):
            _job(case, "vllm", node, {"port": port, "headless": headless, "dp_rpc_port": None}, file="vllm-g0.sh")
        router = ce.Job(case, "vllm-router-0.1.17", "vllm-router", {}, launch=ce.Launch("vllm-router.sh", "", [], {}),
                        result={"status": "ok", "config": {"pd": False, "workers": workers, "port": 8080,
                                                           "prometheus_port": 29000}})
        case.jobs.append(router)
        return case

    assert judging.router_problems(case_with(["http://n0:8001", "http://n0:8000"])) == []
    (bad,) = judging.router_problems(case_with(["http://n0:8000", "http://n1:8000"]))
    assert "are not the servers'" in bad
    assert ce.program_env(["vllm-router", "--worker-urls", "http://n0:8000"], "vllm-0.33.0") == "vllm-router-0.1.17"
