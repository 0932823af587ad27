"""Launch files the runtimes accept, for the release they are written for (issue 16, items 1-5).

* vLLM's own cross-field rule (SchedulerConfig: max_num_batched_tokens >= max_num_seqs) is enforced
  by the vLLM and Kubernetes emitters; a plan priced for another runtime that breaks it is refused in
  one line naming the fix (re-plan with --runtime vllm).
* ``--runtime-version`` picks the release: vLLM's all-to-all backend as a variable (0.11.0) or a flag
  (0.11.1 on), SGLang's --attn-dp-size (0.5.22 on), TensorRT-LLM's pp_partition (1.2 on).
* Every port an SGLang server binds, per node, from the emitted commands alone (the rules of
  sglang/srt/server_args.py PortArgs.init_new, managers/data_parallel_controller.py and
  entrypoints/engine.py, SGLang 0.5.15 to 0.5.23, re-derived here from the commands rather than taken
  from the emitter): no two servers of a plan share one.
* TensorRT-LLM's extra-options YAML: the planned KV fraction inside kv_cache_config, the path beside the
  script (run from another directory, with a stub trtllm-serve), shellcheck clean.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess

import pytest
import yaml

from planner.emit import emit
from planner.emit.versions import SUPPORTED, text
from planner.plan.schema import Plan, Rank, Replica
from topologies.errors import InputError

from test_emit import _run, search_plans

PLANS = {
    "llama70b": dict(topology="dgx-h100x2", model="llama-3.1-70b", tpot_ms=50),
    "mix": dict(topology="dgx-h100x1", model="mixtral-8x7b", tpot_ms=50, attention_dp=8),
    "llama405b": dict(topology="dgx-h100x2-rdma200", model="llama-3.1-405b"),
}


@pytest.fixture(scope="module")
def plans() -> dict[str, Plan]:
    return search_plans(PLANS)


def _with(plan: Plan, inputs: dict | None = None, **strategy) -> Plan:
    g = plan.replica_groups[0]
    update = {"replica_groups": [g.model_copy(update={"strategy": g.strategy.model_copy(update=strategy)})]}
    if inputs:
        update["inputs"] = plan.inputs.model_copy(update=inputs)
    return plan.model_copy(update=update)


def _reshape(plan: Plan, placements: list[list[tuple[str, int]]], **strategy) -> Plan:
    """The plan's one group with ``strategy`` changed and one replica per entry of ``placements``: the
    (node, GPU index) of each rank in rank order (stage = rank // tp)."""
    g = plan.replica_groups[0]
    s = g.strategy.model_copy(update={**strategy, "dp": len(placements)})
    replicas = [Replica(index=i, ranks=[Rank(rank=r, stage=r // s.tp, tp_rank=r % s.tp, node=n, gpu_index=x)
                                        for r, (n, x) in enumerate(where)])
                for i, where in enumerate(placements)]
    return plan.model_copy(update={"replica_groups": [g.model_copy(update={"strategy": s, "replicas": replicas})]})


def _refusal(plan: Plan, target: str, **kw) -> InputError:
    with pytest.raises(InputError) as e:
        emit(plan, target, **kw)
    assert "\n" not in str(e.value)
    return e.value


# -- 1. vLLM's SchedulerConfig rule ---------------------------------------------------------------------

def _budget_below_batch(plan: Plan, runtime: str) -> Plan:
    # the case: a TensorRT-LLM plan's budget (trtllm-bench's 2048 at pp=8) under a larger batch
    return _with(plan, inputs={"runtime": runtime}, batch_size=2435, max_num_batched_tokens=2048)


@pytest.mark.parametrize("target", ["vllm", "k8s"])
def test_vllm_refuses_budget_below_max_num_seqs(plans, target):
    e = _refusal(_budget_below_batch(plans["llama70b"], "trtllm"), target)
    assert e.field == "replica_groups.g0.strategy.max_num_batched_tokens"
    assert "--max-num-batched-tokens 2048 below --max-num-seqs 2435" in str(e)
    assert "priced for trtllm; re-plan with --runtime vllm" in str(e)
    # a vLLM plan edited by hand into the same pair: the fix is in the plan, not another runtime
    e = _refusal(_budget_below_batch(plans["llama70b"], "vllm"), target)
    assert "re-plan" not in str(e) and "raise max_num_batched_tokens" in str(e)
    # the boundary: equal is accepted (vLLM refuses only tokens < seqs)
    emit(_with(plans["llama70b"], inputs={"runtime": "trtllm"}, batch_size=2048, max_num_batched_tokens=2048), target)


def test_vllm_rule_is_per_data_parallel_engine(plans):
    # with attention DP, --max-num-seqs is per engine (batch // attention_dp): 4096 // 8 = 512 <= 2048
    ok = _with(plans["mix"], batch_size=4096, max_num_batched_tokens=2048)
    assert "--max-num-seqs 512" in emit(ok, "vllm")["vllm-g0.sh"]
    _refusal(_with(plans["mix"], batch_size=8 * 2049, max_num_batched_tokens=2048), "vllm")


def test_other_runtimes_take_the_pair(plans):
    # SGLang and TensorRT-LLM accept max_num_batched_tokens < batch (TensorRT-LLM only warns)
    plan = _budget_below_batch(plans["llama70b"], "trtllm")
    assert "--max-running-requests 2435" in emit(plan, "sglang")["sglang-g0.sh"]
    assert "--max_num_tokens 2048" in emit(plan, "trtllm")["trtllm-g0.sh"]


def test_cli_refusal_names_the_fix(plans, tmp_path):
    p = tmp_path / "plan.json"
    p.write_text(_budget_below_batch(plans["llama70b"], "trtllm").to_json(), encoding="utf-8")
    code, out, err = _run(["emit", "--plan", p, "--target", "vllm", "-o", tmp_path / "out"])
    assert code == 2 and out == "" and not (tmp_path / "out").exists()
    assert len(err.strip().splitlines()) == 1 and "re-plan with --runtime vllm" in err


# -- the version option ---------------------------------------------------------------------------------

@pytest.mark.parametrize("target,version,says", [
    ("vllm", "0.10.2", "0.11.0 to 0.33.0"), ("vllm", "0.34", "0.11.0 to 0.33.0"), ("k8s", "1.0", "vllm"),
    ("sglang", "0.5.6", "0.5.15 to 0.5.23"), ("trtllm", "0.21", "1.0.0 to 1.2.1"),
    ("vllm", "latest", "not a release number"), ("vllm", "0.11.0rc1", "not a release number"),
    ("ray", "0.11", "takes no runtime version")])
def test_runtime_version_refused(plans, target, version, says):
    e = _refusal(plans["llama70b"], target, runtime_version=version)
    assert e.source == "--runtime-version" and says in str(e)


@pytest.mark.parametrize("target,runtime", [("vllm", "vLLM"), ("sglang", "SGLang"), ("trtllm", "TensorRT-LLM")])
def test_every_file_names_its_release(plans, target, runtime):
    lo, hi = SUPPORTED[target]
    for v in (lo, hi):
        files = emit(plans["llama70b"], target, runtime_version=text(v))
        script = files[f"{target}-g0.sh"]
        assert script.splitlines()[1].startswith(f"# {runtime} {text(v)} launch ")
    k8s = emit(plans["llama70b"], "k8s", runtime_version="0.11")["k8s-g0.yaml"]
    assert "runtime vLLM 0.11.0 only (image vllm/vllm-openai:v0.11.0)" in k8s


def test_cli_runtime_version(plans, tmp_path):
    p = tmp_path / "plan.json"
    p.write_text(plans["llama70b"].to_json(), encoding="utf-8")
    code, out, err = _run(["emit", "--plan", p, "--target", "vllm", "--runtime-version", "0.11"])
    assert code == 0 and "# vLLM 0.11.0 launch" in out, err
    code, out, err = _run(["emit", "--plan", p, "--target", "vllm", "--runtime-version", "9"])
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and "--runtime-version" in err


# -- 3. SGLang ports ------------------------------------------------------------------------------------

def _servers(files: dict[str, str]) -> list[tuple[str, dict]]:
    """(node, flags) of every ``sglang.launch_server`` in the scripts, the node from its ``case`` branch."""
    out = []
    for name, body in files.items():
        if not name.startswith("sglang-") or name == "sglang-router.sh":
            continue
        node = None
        for line in body.replace("\\\n", " ").splitlines():
            m = re.fullmatch(r"'?([A-Za-z0-9._-]+)'?\)", line.strip())
            if m:
                node = m.group(1)
            elif "sglang.launch_server" in line:
                words = shlex.split(line.replace('${DIST_INIT_HOST:-$dist_head}', "HOST"))
                flags = {}
                for i, w in enumerate(words):
                    if w.startswith("--"):
                        nxt = words[i + 1] if i + 1 < len(words) else ""
                        flags[w] = "" if nxt.startswith("--") or nxt == "&" else nxt
                out.append((node, flags))
    return out


def _binds(flags: dict) -> set[int]:
    """The ports SGLang binds for one process (one node of a server), by SGLang's rules (module doc)."""
    port = int(flags["--port"])
    ports = {port}  # HTTP server on node rank 0, the stand-in health check on the others
    if flags.get("--node-rank", "0") != "0":
        return ports
    dp_attention = "--attn-dp-size" in flags or "--enable-dp-attention" in flags
    if "--dist-init-addr" in flags:
        base = int(flags["--dist-init-addr"].rsplit(":", 1)[1])
        handshake = base + 13
        ports.add(base)  # torch.distributed's store
    else:
        base, handshake = port + 233, port + 13  # ZMQ_TCP_PORT_DELTA: one node, no --dist-init-addr
        if dp_attention:
            ports.add(base)
    if dp_attention:  # port_base = base + 1, then port_base + 0..5; the worker-port handshake
        ports |= set(range(base + 1, base + 7)) | {handshake}
    if "--disaggregation-bootstrap-port" in flags:
        ports.add(int(flags["--disaggregation-bootstrap-port"]))
    return ports


def _assert_disjoint(files: dict[str, str]) -> dict[str, list[set[int]]]:
    per_node: dict[str, list[set[int]]] = {}
    for node, flags in _servers(files):
        per_node.setdefault(node, []).append(_binds(flags))
    for node, sets in per_node.items():
        for i, a in enumerate(sets):
            for b in sets[i + 1:]:
                assert not a & b, (node, sorted(a & b))
    return per_node


@pytest.mark.parametrize("version", ["0.5.21", "0.5.23"])
def test_two_attention_dp_servers_on_one_node(plans, version):
    plan = plans["mix"]
    node = plan.replica_groups[0].replicas[0].ranks[0].node
    two = _reshape(plan, [[(node, x) for x in range(4)], [(node, x) for x in range(4, 8)]],
                   tp=4, ep=4, attention_dp=2)
    files = emit(two, "sglang", runtime_version=version)
    per_node = _assert_disjoint(files)
    assert len(per_node[node]) == 2
    # and four on the node (tp=2 each): every one's sockets apart from the others'
    four = _reshape(plan, [[(node, 2 * i), (node, 2 * i + 1)] for i in range(4)], tp=2, ep=2, attention_dp=2)
    assert len(_assert_disjoint(emit(four, "sglang", runtime_version=version))[node]) == 4
    # the old layout (--port 30000 and 30001) put both DP-attention socket ranges on 30234..30239
    ports = sorted(int(f["--port"]) for _, f in _servers(files))
    assert ports[0] == 30000 and ports[1] > 30001


def test_health_check_port_of_a_second_node(plans):
    # replica 0: stage 0 on dgx0, stage 1 on dgx1; replica 1 the other way round. Each server's
    # --port is also bound on its node-rank-1 node, where the other replica's HTTP server runs.
    plan = plans["llama405b"]
    a, b = sorted({k.node for k in plan.replica_groups[0].replicas[0].ranks})
    crossed = _reshape(plan, [[(a, x) for x in range(4)] + [(b, x) for x in range(4)],
                              [(b, x) for x in range(4, 8)] + [(a, x) for x in range(4, 8)]], tp=4)
    files = emit(crossed, "sglang")
    per_node = _assert_disjoint(files)
    assert all(len(v) == 2 for v in per_node.values())
    # the old layout gave both heads --port 30000 (one server per head node), which each one's node-rank-1
    # process then bound again on the other's head node
    assert sorted({f["--port"] for _, f in _servers(files)}) == ["30000", "30001"]


def test_pools_and_router_ports(plans):
    # a prefill and a decode server with DP attention on one node: bootstrap and router ports kept apart
    plan = plans["mix"]
    node = plan.replica_groups[0].replicas[0].ranks[0].node
    two = _reshape(plan, [[(node, x) for x in range(4)]], tp=4, ep=4, attention_dp=2)
    g = two.replica_groups[0]
    g2 = g.model_copy(update={"id": "g1", "role": "decode", "replicas": [
        Replica(index=0, ranks=[k.model_copy(update={"gpu_index": k.gpu_index + 4}) for k in g.replicas[0].ranks])]})
    pools = two.model_copy(update={"replica_groups": [g.model_copy(update={"role": "prefill"}), g2]})
    files = emit(pools, "sglang")
    per_node = _assert_disjoint(files)
    router = files["sglang-router.sh"]
    taken = set().union(*per_node[node])
    for flag in ("--port", "--prometheus-port"):
        assert int(re.search(rf"{flag} (\d+)", router).group(1)) not in taken


# -- 4. TensorRT-LLM --------------------------------------------------------------------------------------

def test_trtllm_fp8_yaml_keeps_the_planned_fraction(plans):
    files = emit(_with(plans["llama70b"], kv_dtype="fp8"), "trtllm")
    script = files["trtllm-g0.sh"]
    flag = re.search(r"--kv_cache_free_gpu_memory_fraction (\S+)", script).group(1)
    assert yaml.safe_load(files["trtllm-g0-extra.yaml"]) == {
        "kv_cache_config": {"dtype": "fp8", "free_gpu_memory_fraction": float(flag)}}
    assert float(flag) != 0.9  # not the KvCacheConfig default the YAML would otherwise restore


def _uneven(plan: Plan) -> Plan:
    split = plan.replica_groups[0].strategy.layer_split
    return _with(plan, layer_split=[split[0] - 3, split[1] + 3])


def test_trtllm_uneven_split_by_release(plans):
    plan = _uneven(plans["llama405b"])
    split = plan.replica_groups[0].strategy.layer_split
    for v in ("1.0", "1.1"):
        e = _refusal(plan, "trtllm", runtime_version=v)
        assert e.field == "replica_groups.g0.strategy.layer_split" and "--runtime-version 1.2.0" in str(e)
    files = emit(plan, "trtllm", runtime_version="1.2")
    assert yaml.safe_load(files["trtllm-g0-extra.yaml"]) == {"pp_partition": list(split)}
    assert "--extra_llm_api_options" in files["trtllm-g0.sh"]
    # the runtime's own split needs no pin, at any release
    assert "trtllm-g0-extra.yaml" not in emit(plans["llama405b"], "trtllm", runtime_version="1.2")


def test_trtllm_yaml_path_is_beside_the_script(plans, tmp_path):
    files = emit(_with(plans["llama70b"], kv_dtype="fp8"), "trtllm")
    out = tmp_path / "launch"
    out.mkdir()
    for name, body in files.items():
        (out / name).write_text(body, encoding="utf-8")
    stubs = tmp_path / "bin"
    stubs.mkdir()
    log = tmp_path / "seen"
    # a stand-in trtllm-serve that records whether the options file it was given can be read
    (stubs / "trtllm-serve").write_text(
        '#!/usr/bin/env bash\nwhile [ $# -gt 0 ]; do\n  if [ "$1" = --extra_llm_api_options ]; then\n'
        f'    if [ -r "$2" ]; then echo ok >> {shlex.quote(str(log))}; else echo missing >> '
        f'{shlex.quote(str(log))}; fi\n  fi\n  shift\ndone\n', encoding="utf-8")
    (stubs / "trtllm-serve").chmod(0o755)
    node = plans["llama70b"].replica_groups[0].replicas[0].ranks[0].node
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PATH": f"{stubs}{os.pathsep}{os.environ['PATH']}"}
    r = subprocess.run(["bash", str(out / "trtllm-g0.sh"), node], cwd=elsewhere, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    seen = log.read_text().split()
    assert seen and set(seen) == {"ok"}
    if shutil.which("shellcheck"):
        sc = subprocess.run(["shellcheck", "--severity=style", str(out / "trtllm-g0.sh")],
                            capture_output=True, text=True)
        assert sc.returncode == 0, sc.stdout


# -- search --emit --runtime-version ------------------------------------------------------------------

def test_search_emit_runtime_version(tmp_path):
    out = tmp_path / "launch"
    base = ["search", "--topology", "dgx-h100x1", "--model", "llama-3.1-8b", "--time-limit-s", "5", "-q",
            "--emit", "vllm", "--emit-dir", out]
    code, _, err = _run(base + ["--runtime-version", "0.11"])
    assert code == 0, err
    assert "# vLLM 0.11.0 launch" in (out / "vllm-g0.sh").read_text(encoding="utf-8")
    # refused before the search, in one line, writing nothing; the same checks as `emit`
    for version, says in (("0.10", "0.11.0 to 0.33.0"), ("x", "not a release number")):
        code, o, err = _run(base[:-1] + [tmp_path / "no", "--runtime-version", version])
        assert code == 2 and o == "" and len(err.strip().splitlines()) == 1 and says in err
        assert not (tmp_path / "no").exists()
    code, _, err = _run(["search", "--topology", "dgx-h100x1", "--model", "llama-3.1-8b", "--runtime-version", "0.11"])
    assert code == 2 and "add --emit" in err
    code, _, err = _run(base[:-3] + ["ray", "--emit-dir", tmp_path / "r", "--runtime-version", "0.11"])
    assert code == 2 and "takes no runtime version" in err
