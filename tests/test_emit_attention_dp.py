"""Emitters for plans with attention data parallelism (``strategy.attention_dp`` > 1).

The plans are built with the planner itself (MoE models on DGX-H100 clusters) and the emitted
text is checked against the plan: the runtime's data-parallel flags with the plan's values, the
GPUs each node's process sees (in rank order), and one-line refusals, naming the field, for what a
runtime cannot express. Plans with attention_dp == 1 keep their old output, which the golden
files of tests/test_emit.py pin; here only their lack of any data-parallel flag is checked.
"""
from __future__ import annotations

import json
import re

import pytest
import yaml

from planner import api
from planner.emit import TARGETS, emit
from planner.plan.schema import Plan
from topologies.errors import InputError

from test_emit import ALLOWED, _check_lws, _flags, _gpus, _k8s_docs, _k8s_model, _pinned, _run, search_plans

PLANS = {
    # the planner's pick (tp=32 ep=32 attention_dp=16 over four 8-GPU nodes at the time of writing)
    "ds-x4": dict(topology="dgx-h100x4", model="deepseek-v3", isl=2048, osl=512),
    # every rank its own attention (TensorRT-LLM's only attention DP), over four nodes
    "ds-x4-adp32": dict(topology="dgx-h100x4", model="deepseek-v3", isl=2048, osl=512, attention_dp=32),
    # the same shape pinned to two attention groups of 8 GPUs (one per node)
    "ds-x4-adp2": dict(topology="dgx-h100x4", model="deepseek-v3", isl=2048, osl=512, attention_dp=2),
    # tp=8 ep=8 attention_dp=8 on one node
    "mix-x1": dict(topology="dgx-h100x1", model="mixtral-8x7b", tpot_ms=50, attention_dp=8),
    # tp=8 ep=8 attention_dp=2 on one node: attention groups of 4 GPUs
    "qwen-x1": dict(topology="dgx-h100x1", model="qwen3-235b-a22b", attention_dp=2),
    "ds-x4-sglang": dict(topology="dgx-h100x4", model="deepseek-v3", isl=2048, osl=512, runtime="sglang"),
    "mix-x1-trtllm": dict(topology="dgx-h100x1", model="mixtral-8x7b", tpot_ms=50, runtime="trtllm", attention_dp=8),
    # attention_dp pinned to 1: ordinary tensor parallelism
    "ds-x4-adp1": dict(topology="dgx-h100x4", model="deepseek-v3", isl=2048, osl=512, attention_dp=1),
}

# Data-parallel flags the emitters may add. vLLM 0.11: vllm/engine/arg_utils.py @ 99d7eb5d6a51
# (ParallelConfig group) and --headless from vllm/entrypoints/openai/cli_args.py make_arg_parser.
# vLLM >= 0.11.1: --all2all-backend (arg_utils.py of the 0.11.1 and 0.33.0 wheels).
# SGLang: python/sglang/srt/server_args.py (ServerArgs.dp_size, enable_dp_attention); from 0.5.22
# attn_dp_size (sglang/srt/arg_groups/fields/parallel.py of the 0.5.22 and 0.5.23 wheels).
VLLM_DP = {"--data-parallel-size", "--data-parallel-size-local", "--data-parallel-start-rank",
           "--data-parallel-address", "--data-parallel-rpc-port", "--headless", "--all2all-backend"}
SGLANG_DP = {"--dp-size", "--enable-dp-attention", "--attn-dp-size",
             # DeepEP for experts across nodes: SGLang's own DeepSeek launch configs (server_args.py
             # moe_a2a_backend, deepep_mode)
             "--moe-a2a-backend", "--deepep-mode"}
ALLOWED_DP = {"vllm": ALLOWED["vllm"] | VLLM_DP, "k8s": ALLOWED["k8s"] | VLLM_DP,
              "sglang": ALLOWED["sglang"] | SGLANG_DP, "trtllm": ALLOWED["trtllm"], "ray": ALLOWED["ray"]}


@pytest.fixture(scope="module")
def plans() -> dict[str, Plan]:
    out = search_plans(PLANS)
    for name, plan in out.items():  # the shapes these tests are about
        (g,) = plan.replica_groups
        s = g.strategy
        if name.endswith("adp1"):
            assert s.attention_dp == 1
        else:
            assert s.attention_dp > 1 and s.ep == s.tp and s.pp == 1, (name, s)
    return out


# -- helpers ---------------------------------------------------------------------------------------

def _node_bodies(script: str) -> dict[str, str]:
    """The ``case "$NODE"`` branches of a generated script: node -> its lines."""
    return dict(re.findall(r"^([^\s)*]+)\)\n(.*?)^  ;;$", script, flags=re.M | re.S))


def _commands(body: str) -> list[str]:
    """Commands of a branch (comments dropped, continuation lines joined)."""
    out, cur = [], ""
    for line in body.splitlines():
        t = line.strip()
        if not t or t.startswith("#"):
            continue
        cur += (" " if cur else "") + t.removesuffix("\\").strip()
        if not t.endswith("\\"):
            out.append(cur)
            cur = ""
    return out


def _flag(cmd: str, name: str) -> str | None:
    m = re.search(rf"(?<![\w-]){re.escape(name)}(?:[ =](\S+))?(?=\s|$)", cmd)
    if not m:
        return None
    return m.group(1) if m.group(1) is not None and not m.group(1).startswith("--") else ""


def _visible(cmd: str) -> list[int]:
    return [int(x) for x in re.match(r"CUDA_VISIBLE_DEVICES=(\S+) ", cmd).group(1).split(",")]


def _rank_gpus(replica) -> dict[str, list[int]]:
    """node -> GPU indices of the replica's ranks there, in rank order."""
    out: dict[str, list[int]] = {}
    for k in sorted(replica.ranks, key=lambda k: k.rank):
        out.setdefault(k.node, []).append(k.gpu_index)
    return out


def _with(plan: Plan, **strategy) -> Plan:
    g = plan.replica_groups[0]
    return plan.model_copy(update={"replica_groups": [
        g.model_copy(update={"strategy": g.strategy.model_copy(update=strategy)})]})


def _with_ranks(plan: Plan, place) -> Plan:
    """The plan with replica 0's rank r moved to ``place(r) -> (node, gpu_index)``."""
    g = plan.replica_groups[0]
    r0 = g.replicas[0]
    ranks = [k.model_copy(update=dict(zip(("node", "gpu_index"), place(k.rank), strict=True))) for k in r0.ranks]
    return plan.model_copy(update={"replica_groups": [
        g.model_copy(update={"replicas": [r0.model_copy(update={"ranks": ranks}), *g.replicas[1:]]})]})


def _refusal(plan: Plan, target: str) -> InputError:
    with pytest.raises(InputError) as e:
        emit(plan, target)
    assert "\n" not in str(e.value)
    return e.value


# -- every target ----------------------------------------------------------------------------------

@pytest.mark.parametrize("target", TARGETS)
def test_flags_are_verified_ones(plans, target):
    for name, plan in plans.items():
        try:
            files = emit(plan, target)
        except InputError:
            continue
        text = "".join(files.values())
        assert _flags(text) <= ALLOWED_DP[target], (name, _flags(text) - ALLOWED_DP[target])
        assert emit(plan, target) == files  # deterministic


@pytest.mark.parametrize("target", ["vllm", "sglang", "trtllm", "k8s"])
def test_attention_dp_1_writes_no_data_parallel_flag(plans, target):
    text = "".join(emit(plans["ds-x4-adp1"], target).values())
    assert not _flags(text) & (VLLM_DP | SGLANG_DP)
    assert "enable_attention_dp" not in text and "attention_dp=" not in text
    # the default of the field and an explicit 1 are the same plan
    assert emit(_with(plans["ds-x4-adp1"], attention_dp=1), target) == emit(plans["ds-x4-adp1"], target)


@pytest.mark.parametrize("target", ["vllm", "sglang", "trtllm", "k8s"])
def test_refuses_attention_dp_with_pipeline_stages(plans, target):
    # the replica's 8 GPUs as 2 stages of 4 (ranks renumbered, so the plan holds together but for the shape)
    plan = _with(plans["mix-x1"], tp=4, pp=2, attention_dp=4, ep=4, layer_split=[16, 16])
    g = plan.replica_groups[0]
    reps = [r.model_copy(update={"ranks": [k.model_copy(update={"stage": k.rank // 4, "tp_rank": k.rank % 4})
                                           for k in r.ranks]}) for r in g.replicas]
    plan = plan.model_copy(update={"replica_groups": [g.model_copy(update={"replicas": reps})]})
    e = _refusal(plan, target)
    assert e.field == "replica_groups.g0.strategy.pp" and "attention_dp=4" in str(e)


@pytest.mark.parametrize("target", ["vllm", "sglang", "trtllm", "k8s"])
def test_refuses_attention_dp_that_does_not_divide_tp(plans, target):
    e = _refusal(_with(plans["mix-x1"], attention_dp=3), target)
    assert e.field == "replica_groups.g0.strategy.attention_dp"


# -- vLLM ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["mix-x1", "qwen-x1"])
def test_vllm_one_node(plans, name):
    plan = plans[name]
    (g,) = plan.replica_groups
    s = g.strategy
    d, at = s.attention_dp, s.tp // s.attention_dp
    text = emit(plan, "vllm")["vllm-g0.sh"]
    assert f"attention_dp={d}" in text.splitlines()[1]
    bodies = _node_bodies(text)
    for r in g.replicas:
        ((node, gpus),) = _rank_gpus(r).items()
        (cmd,) = [c for c in _commands(bodies[node]) if "vllm serve" in c and _visible(c) == gpus]
        assert _visible(cmd) == gpus  # engine j gets visible GPUs j*at .. (j+1)*at-1: attention group j
        assert _flag(cmd, "--tensor-parallel-size") == str(at)
        assert _flag(cmd, "--data-parallel-size") == str(d)
        assert _flag(cmd, "--max-num-seqs") == str(s.batch_size // d)  # per engine
        assert _flag(cmd, "--max-num-batched-tokens") == str(s.max_num_batched_tokens)  # per scheduler
        assert _flag(cmd, "--enable-expert-parallel") == ""
        for absent in ("--data-parallel-size-local", "--headless", "--distributed-executor-backend"):
            assert _flag(cmd, absent) is None
    assert "ray start" not in text


@pytest.mark.parametrize("name", ["ds-x4", "ds-x4-adp2"])
def test_vllm_multi_node_data_parallel_launch(plans, name):
    plan = plans[name]
    (g,) = plan.replica_groups
    s = g.strategy
    d, at = s.attention_dp, s.tp // s.attention_dp
    text = emit(plan, "vllm")["vllm-g0.sh"]
    assert "ray start" not in text and "--distributed-executor-backend" not in text
    bodies = _node_bodies(text)
    rpc_ports = set()
    for r in g.replicas:
        per_node = _rank_gpus(r)
        nodes = list(per_node)
        assert len(nodes) > 1
        head = nodes[0]
        start = 0
        for node in nodes:
            (cmd,) = [c for c in _commands(bodies[node]) if "vllm serve" in c]
            assert _visible(cmd) == per_node[node]
            local = len(per_node[node]) // at
            assert _flag(cmd, "--tensor-parallel-size") == str(at)
            assert _flag(cmd, "--data-parallel-size") == str(d)
            assert _flag(cmd, "--data-parallel-size-local") == str(local)
            assert _flag(cmd, "--max-num-seqs") == str(s.batch_size // d)
            assert _flag(cmd, "--enable-expert-parallel") == ""
            rpc_ports.add(_flag(cmd, "--data-parallel-rpc-port"))
            if node == head:
                assert _flag(cmd, "--headless") is None and _flag(cmd, "--data-parallel-start-rank") is None
                assert _flag(cmd, "--port") == "8000"
                assert _flag(cmd, "--data-parallel-address") == f'"$DP_HEAD_IP_{head}"'
                # required on the head, checked before anything starts
                assert (f'  if [ -z "${{DP_HEAD_IP_{head}:-}}" ]; then printf \'%s\\n\' \'set DP_HEAD_IP_{head} to the IP '
                        f'address of {head}\' >&2; exit 2; fi') in bodies[head]
            else:
                assert _flag(cmd, "--headless") == "" and _flag(cmd, "--port") is None
                assert _flag(cmd, "--data-parallel-start-rank") == str(start)
                assert f"  dp_head={head}\n" in bodies[node]
                assert _flag(cmd, "--data-parallel-address") == f'"${{DP_HEAD_IP_{head}:-$dp_head}}"'
            start += local
        assert start == d  # every attention group is one engine on one node
    assert rpc_ports == {"13345"}  # replicas do not share a head node here


def test_vllm_refuses_what_it_cannot_launch(plans):
    # expert parallelism over fewer GPUs than the replica: vLLM's expert group is all data-parallel ranks
    e = _refusal(_with(plans["qwen-x1"], ep=4), "vllm")
    assert e.field == "replica_groups.g0.strategy.ep" and "ep=4" in str(e)
    e = _refusal(_with(plans["qwen-x1"], ep=1), "vllm")
    assert e.field == "replica_groups.g0.strategy.ep"
    # an attention group (8 GPUs under attention_dp=2) spread over two nodes
    spans = _with_ranks(plans["ds-x4-adp2"], lambda r: ("dgx1", r - 4) if 4 <= r < 12 else ("dgx0", r % 8))
    e = _refusal(spans, "vllm")
    assert e.field == "replica_groups.g0.replicas.0.ranks" and "attention group 0" in str(e)
    # a node's attention groups that are not consecutive DP ranks (groups of 4: dgx0, dgx1, dgx0, dgx1)
    mixed = _with_ranks(_with(plans["ds-x4-adp2"], attention_dp=4),
                        lambda r: ("dgx0" if (r // 4) % 2 == 0 else "dgx1", (r // 8) * 4 + r % 4))
    e = _refusal(mixed, "vllm")
    assert e.field == "replica_groups.g0.replicas.0.ranks" and "consecutive" in str(e)
    for target in ("vllm", "k8s"):
        assert _refusal(spans, target).field == "replica_groups.g0.replicas.0.ranks"


# -- SGLang ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["0.5.21", "0.5.23"])
@pytest.mark.parametrize("name", ["ds-x4-sglang", "ds-x4", "qwen-x1", "mix-x1"])
def test_sglang_dp_attention(plans, name, version):
    plan = plans[name]
    (g,) = plan.replica_groups
    s = g.strategy
    d = s.attention_dp
    text = emit(plan, "sglang", runtime_version=version)["sglang-g0.sh"]
    bodies = _node_bodies(text)
    for r in g.replicas:
        per_node = _rank_gpus(r)
        for rank, (node, gpus) in enumerate(per_node.items()):
            (cmd,) = [c for c in _commands(bodies[node]) if "sglang.launch_server" in c
                      and _visible(c) == gpus and _flag(c, "--node-rank") in (None, str(rank))]
            assert _flag(cmd, "--tp-size") == str(s.tp)  # the GPUs of the server, as SGLang means it
            if version == "0.5.21":  # before --attn-dp-size: the old spelling
                assert _flag(cmd, "--dp-size") == str(d) and _flag(cmd, "--enable-dp-attention") == ""
                assert _flag(cmd, "--attn-dp-size") is None
            else:  # 0.5.22 on: --attn-dp-size, not the deprecated flag (nor --dp-size, which counts replicas)
                assert _flag(cmd, "--attn-dp-size") == str(d)
                assert _flag(cmd, "--dp-size") is None and _flag(cmd, "--enable-dp-attention") is None
            assert _flag(cmd, "--ep-size") == str(s.ep)
            # both are totals that SGLang divides by dp_size under DP attention
            assert _flag(cmd, "--max-running-requests") == str(s.batch_size)
            assert _flag(cmd, "--chunked-prefill-size") == str(s.max_num_batched_tokens * d)
            if len(per_node) > 1:
                assert _flag(cmd, "--nnodes") == str(len(per_node))
                assert f"  dist_head={next(iter(per_node))}\n" in bodies[node]
                assert _flag(cmd, "--dist-init-addr").startswith('"${DIST_INIT_HOST:-$dist_head}:')
            else:
                assert _flag(cmd, "--nnodes") is None


# -- TensorRT-LLM ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["mix-x1-trtllm"])
def test_trtllm_enable_attention_dp(plans, name):
    plan = plans[name]
    (g,) = plan.replica_groups
    s = g.strategy
    files = emit(plan, "trtllm")
    assert yaml.safe_load(files["trtllm-g0-extra.yaml"]) == {"enable_attention_dp": True}
    text = files["trtllm-g0.sh"]
    bodies = _node_bodies(text)
    for r in g.replicas:
        per_node = _rank_gpus(r)
        head = next(iter(per_node))
        (cmd,) = [c for c in _commands(bodies[head]) if "trtllm-serve" in c]
        assert _visible(cmd) == per_node[head]
        assert _flag(cmd, "--tp_size") == str(s.tp) and _flag(cmd, "--ep_size") == str(s.ep)
        assert _flag(cmd, "--max_batch_size") == str(s.batch_size // s.attention_dp)  # per rank
        assert _flag(cmd, "--max_num_tokens") == str(s.max_num_batched_tokens)
        # a path beside the script, not relative to the directory it is started from
        assert '--extra_llm_api_options "$(dirname "$0")"/trtllm-g0-extra.yaml' in cmd
        if len(per_node) > 1:
            hosts = ",".join(f"{n}:{len(v)}" for n, v in per_node.items())
            assert f"mpirun -H {hosts} -np {s.tp} " in cmd


def test_trtllm_yaml_keeps_fp8_kv(plans):
    files = emit(_with(plans["mix-x1-trtllm"], kv_dtype="fp8"), "trtllm")
    fraction = _flag(next(c for c in _commands(files["trtllm-g0.sh"]) if "trtllm-serve" in c),
                     "--kv_cache_free_gpu_memory_fraction")
    # the YAML's kv_cache_config replaces the one the flag built: the planned fraction is repeated there
    assert yaml.safe_load(files["trtllm-g0-extra.yaml"]) == {
        "enable_attention_dp": True, "kv_cache_config": {"dtype": "fp8", "free_gpu_memory_fraction": float(fraction)}}
    assert 0 < float(fraction) < 1


def test_trtllm_refuses_attention_dp_over_several_nodes(plans):
    # the planner prices wide EP only for runtimes whose all-to-all backend the emitters set
    assert all(g.strategy.attention_dp == 1 or len({k.node for r in g.replicas for k in r.ranks}) == 1
               for g in api.search(topology="dgx-h100x4", model="deepseek-v3", isl=2048, osl=512,
                                   runtime="trtllm", disaggregation="off").replica_groups)
    e = _refusal(plans["ds-x4-adp32"], "trtllm")
    assert e.field.startswith("replica_groups.g0.replicas.") and "--runtime vllm or sglang" in str(e)


def test_wide_replicas_use_deepep(plans):
    # vLLM 0.11.0 reads the backend from the environment only; from 0.11.1 the flag sets it, and from
    # 0.16.0 the variable is ignored, so newer releases get the flag and no variable
    old = emit(plans["ds-x4"], "vllm", runtime_version="0.11")["vllm-g0.sh"]
    assert old.count("VLLM_ALL2ALL_BACKEND=deepep_high_throughput ") == 4  # every node of both replicas
    assert "--all2all-backend" not in old
    for version in ("0.11.1", "0.33", None):
        new = emit(plans["ds-x4"], "vllm", runtime_version=version)["vllm-g0.sh"]
        assert new.count("--all2all-backend deepep_high_throughput") == 4 and "VLLM_ALL2ALL_BACKEND" not in new
    k8s_old = emit(plans["ds-x4"], "k8s", runtime_version="0.11.0")["k8s-g0.yaml"]
    assert "VLLM_ALL2ALL_BACKEND" in k8s_old and "--all2all-backend" not in k8s_old
    assert "image: vllm/vllm-openai:v0.11.0" in k8s_old
    k8s_new = emit(plans["ds-x4"], "k8s")["k8s-g0.yaml"]
    replicas = len(plans["ds-x4"].replica_groups[0].replicas)  # one LeaderWorkerSet each: leader and worker
    assert "VLLM_ALL2ALL_BACKEND" not in k8s_new
    assert k8s_new.count("--all2all-backend deepep_high_throughput") == 2 * replicas
    assert "image: vllm/vllm-openai:v0.33.0" in k8s_new
    sglang = emit(plans["ds-x4-sglang"], "sglang")["sglang-g0.sh"]
    assert sglang.count("--moe-a2a-backend deepep") == 4 and "--deepep-mode auto" in sglang
    # one node: the runtimes' default exchange, which the plan priced there
    for version in ("0.11", "0.33"):
        one = emit(plans["mix-x1"], "vllm", runtime_version=version)["vllm-g0.sh"]
        assert "VLLM_ALL2ALL_BACKEND" not in one and "--all2all-backend" not in one
    assert "--moe-a2a-backend" not in emit(_with(plans["mix-x1"]), "sglang")["sglang-g0.sh"]


def test_trtllm_refuses_attention_groups_of_several_gpus(plans):
    e = _refusal(plans["qwen-x1"], "trtllm")  # attention_dp=2 of tp=8
    assert e.field == "replica_groups.g0.strategy.attention_dp" and "attention_dp=2" in str(e)


def test_cli_refusal_is_one_line_and_writes_nothing(plans, tmp_path):
    p = tmp_path / "plan.json"
    p.write_text(plans["qwen-x1"].to_json(), encoding="utf-8")
    out_dir = tmp_path / "out"
    code, out, err = _run(["emit", "--plan", p, "--target", "trtllm", "-o", out_dir])
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "replica_groups.g0.strategy.attention_dp:" in err
    assert not out_dir.exists()
    code, out, err = _run(["emit", "--plan", p, "--target", "vllm", "-o", out_dir])
    assert code == 0, err
    assert "--data-parallel-size 2" in (out_dir / "vllm-g0.sh").read_text()


# -- Ray -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["ds-x4", "mix-x1"])
def test_ray_one_bundle_per_rank(plans, name):
    plan = plans[name]
    spec = json.loads(emit(plan, "ray")["ray-placement.json"])
    (g,) = plan.replica_groups
    assert len(spec["placement_groups"]) == len(g.replicas)
    for e, r in zip(spec["placement_groups"], g.replicas, strict=True):
        ranks = sorted(r.ranks, key=lambda k: k.rank)
        assert e["ranks"] == list(range(g.strategy.tp))
        assert e["bundle_nodes"] == [k.node for k in ranks]
        assert e["bundle_gpu_indices"] == [k.gpu_index for k in ranks]
        assert e["strategy"] == ("PACK" if len({k.node for k in ranks}) > 1 else "STRICT_PACK")


# -- Kubernetes ------------------------------------------------------------------------------------

def test_k8s_one_node_deployment(plans):
    pytest.importorskip("kubernetes")
    plan = plans["qwen-x1"]
    (g,) = plan.replica_groups
    s = g.strategy
    service, deployment = _k8s_docs(emit(plan, "k8s")["k8s-g0.yaml"])
    _k8s_model(service, "V1Service")
    _k8s_model(deployment, "V1Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert _pinned(pod) == ["dgx0"] and _gpus(pod) == s.tp
    argv = pod["containers"][0]["command"]
    assert argv[:2] == ["vllm", "serve"]
    value = {argv[i]: argv[i + 1] for i in range(3, len(argv) - 1) if argv[i].startswith("--")}
    assert value["--tensor-parallel-size"] == str(s.tp // s.attention_dp)
    assert value["--data-parallel-size"] == str(s.attention_dp)
    assert value["--max-num-seqs"] == str(s.batch_size // s.attention_dp)
    assert "--enable-expert-parallel" in argv and "--headless" not in argv


def test_k8s_multi_node_leader_worker_set(plans):
    pytest.importorskip("kubernetes")
    plan = plans["ds-x4"]
    (g,) = plan.replica_groups
    s = g.strategy
    d, at = s.attention_dp, s.tp // s.attention_dp
    docs = _k8s_docs(emit(plan, "k8s")["k8s-g0.yaml"])
    assert [x["kind"] for x in docs] == ["Service"] + ["LeaderWorkerSet"] * len(g.replicas)
    for r, doc in zip(g.replicas, docs[1:], strict=True):
        _check_lws(doc)
        per_node = _rank_gpus(r)
        nodes = list(per_node)
        t = doc["spec"]["leaderWorkerTemplate"]
        assert t["size"] == len(nodes)
        leader, worker = t["leaderTemplate"]["spec"], t["workerTemplate"]["spec"]
        assert _pinned(leader) == nodes[:1] and _gpus(leader) == len(per_node[nodes[0]])
        assert _pinned(worker) == nodes[1:] and _gpus(worker) == len(per_node[nodes[1]])
        lead_sh, work_sh = leader["containers"][0]["command"][2], worker["containers"][0]["command"][2]
        (lead,) = [c for c in _commands(lead_sh) if "vllm serve" in c]
        (work,) = [c for c in _commands(work_sh) if "vllm serve" in c]
        for cmd in (lead, work):
            assert _flag(cmd, "--tensor-parallel-size") == str(at) and _flag(cmd, "--data-parallel-size") == str(d)
            assert _flag(cmd, "--data-parallel-rpc-port") == "13345"
        assert _flag(lead, "--data-parallel-size-local") == str(len(per_node[nodes[0]]) // at)
        assert _flag(lead, "--data-parallel-address") == '"$POD_IP"' and _flag(lead, "--port") == "8000"
        assert {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}} in \
            leader["containers"][0]["env"]
        assert _flag(work, "--headless") == "" and _flag(work, "--data-parallel-start-rank") == '"$START"'
        assert _flag(work, "--data-parallel-address") == '"$LWS_LEADER_ADDRESS"'
        starts = re.findall(r"^(\d+)\) START=(\d+) ;;$", work_sh, flags=re.M)
        expected, start = [], len(per_node[nodes[0]]) // at
        for w, node in enumerate(nodes[1:], 1):
            expected.append((str(w), str(start)))
            start += len(per_node[node]) // at
        assert starts == expected and start == d
        assert "ray start" not in lead_sh + work_sh
        assert "$(" not in lead_sh + work_sh  # nothing for the kubelet's $(VAR) expansion to touch
