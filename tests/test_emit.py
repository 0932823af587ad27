"""Emitters (planner.emit) and the ``plan-search emit`` command.

Golden files under tests/golden/emit/ pin the emitted text for two plans the test builds
with the planner itself (so only the emitted lines are pinned, not a plan file that could
drift): a single-node llama-3.1-70b plan and a two-node llama-3.1-405b plan.
Regenerate them after an intended change with ``PLAN_SEARCH_UPDATE_GOLDEN=1 pytest tests/test_emit.py``.

The flag-contract test keeps, per runtime, the flags an emitter may write (each one looked
up in that runtime's argument parser, file and version named beside the list) and fails
on any other ``--flag`` in the output.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from planner import api
from planner.cli import main
from planner.emit import HF_MODELS, emit
from planner.schema import Plan
from topologies.errors import InputError

GOLDEN = Path(__file__).parent / "golden" / "emit"
UPDATE = os.environ.get("PLAN_SEARCH_UPDATE_GOLDEN") == "1"

PLANS = {
    "llama70b-dgx-h100x2": dict(topology="dgx-h100x2", model="llama-3.1-70b", tpot_ms=50),
    "llama405b-dgx-h100x2-rdma200": dict(topology="dgx-h100x2-rdma200", model="llama-3.1-405b"),
}

# Flags each emitter may write. Source and version of each list:
ALLOWED = {
    # vLLM 0.11: vllm-project/vllm vllm/engine/arg_utils.py @ 99d7eb5d6a51 (EngineArgs.add_cli_args),
    # --port from vllm/entrypoints/openai/cli_args.py (FrontendArgs). ray start flags: Ray CLI as used by
    # vLLM's multi-node docs (examples/online_serving/multi-node-serving.sh).
    "vllm": {"--tensor-parallel-size", "--pipeline-parallel-size", "--max-num-seqs", "--max-model-len",
             "--max-num-batched-tokens", "--gpu-memory-utilization", "--kv-cache-dtype", "--quantization",
             "--enable-expert-parallel", "--distributed-executor-backend", "--port",
             "--head", "--address", "--num-gpus"},
    # SGLang 0.5: sgl-project/sglang python/sglang/srt/server_args.py (ServerArgs fields -> --field-name);
    # --ep-size also per docs.sglang.io "Server Arguments" cookbook page.
    "sglang": {"--model-path", "--tp-size", "--pp-size", "--ep-size", "--mem-fraction-static",
               "--max-running-requests", "--context-length", "--chunked-prefill-size", "--kv-cache-dtype",
               "--quantization", "--host", "--port", "--nnodes", "--node-rank", "--dist-init-addr"},
    # TensorRT-LLM 1.x: NVIDIA/TensorRT-LLM tensorrt_llm/commands/serve.py @ 00209af149e7 (click options of
    # `serve`); -H/-np/-x are mpirun's (Open MPI) for multi-node launches.
    "trtllm": {"--host", "--port", "--tp_size", "--pp_size", "--ep_size", "--gpus_per_node", "--max_batch_size",
               "--max_num_tokens", "--max_seq_len", "--kv_cache_free_gpu_memory_fraction",
               "--extra_llm_api_options"},
}
FLAG = re.compile(r"(?<![\w-])(--[A-Za-z][\w-]*)")


def _flags(text: str) -> set[str]:
    """Every --flag on a command line (comment lines, which name this tool's own options, excluded)."""
    return {f for line in text.splitlines() if not line.lstrip().startswith("#") for f in FLAG.findall(line)}


@pytest.fixture(scope="module")
def plans() -> dict[str, Plan]:
    out = {}
    for name, kw in PLANS.items():
        plan = api.search(**kw, time_limit_s=10.0, workers=1, seed=0)
        out[name] = Plan.model_validate(json.loads(plan.to_json()))
    return out


def _golden_cases():
    for name in PLANS:
        for target in ("vllm", "sglang", "trtllm"):
            yield name, target


def _render(files: dict[str, str]) -> str:
    return "".join(f"# === {n} ===\n{t}" for n, t in files.items())


def _emit_or_error(plan: Plan, target: str) -> str:
    try:
        return _render(emit(plan, target))
    except InputError as e:
        return f"# refused: {e}\n"


@pytest.mark.parametrize("name,target", list(_golden_cases()))
def test_golden(plans, name, target):
    text = _emit_or_error(plans[name], target)
    path = GOLDEN / f"{name}.{target}.txt"
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"missing golden file {path}; run with PLAN_SEARCH_UPDATE_GOLDEN=1"
    assert text == path.read_text(encoding="utf-8"), f"{path} differs; if intended, regenerate (see module doc)"


@pytest.mark.parametrize("name,target", list(_golden_cases()))
def test_flag_contract(plans, name, target):
    text = _emit_or_error(plans[name], target)
    used = _flags(text)
    assert used - ALLOWED[target] == set(), f"{target} emitter wrote unverified flags"


def test_flag_contract_sees_fp8_and_moe_paths(plans):
    """The optional flags (fp8 weights and KV, expert parallel) are also within the verified lists."""
    base = plans["llama70b-dgx-h100x2"]
    g = base.replica_groups[0]
    s = g.strategy.model_copy(update={"weight_dtype": "fp8", "kv_dtype": "fp8", "ep": g.strategy.tp})
    plan = base.model_copy(update={"replica_groups": [g.model_copy(update={"strategy": s})]})
    for target in ("vllm", "sglang"):
        text = _render(emit(plan, target))
        assert _flags(text) <= ALLOWED[target]
        assert "fp8" in text
    v = _render(emit(plan, "vllm"))
    assert "--quantization fp8" in v and "--kv-cache-dtype fp8" in v and "--enable-expert-parallel" in v
    sg = _render(emit(plan, "sglang"))
    assert f"--ep-size {g.strategy.tp}" in sg and "--kv-cache-dtype fp8_e4m3" in sg
    with pytest.raises(InputError, match="FP8"):
        emit(plan, "trtllm")  # no online FP8 quantization in trtllm-serve


def test_single_node_details(plans):
    plan = plans["llama70b-dgx-h100x2"]
    v = emit(plan, "vllm")
    assert list(v) == ["vllm-g0.sh"]
    text = v["vllm-g0.sh"]
    assert text.startswith("#!/usr/bin/env bash\n# vLLM 0.11 ")
    assert text.count("vllm serve meta-llama/Llama-3.1-70B-Instruct") == len(plan.replica_groups[0].replicas)
    for r in plan.replica_groups[0].replicas:  # CUDA_VISIBLE_DEVICES lists the plan's GPUs in rank order
        gpus = ",".join(str(k.gpu_index) for k in sorted(r.ranks, key=lambda k: k.rank))
        assert f"CUDA_VISIBLE_DEVICES={gpus} " in text
    m = plan.replica_groups[0].memory_per_gpu_bytes
    util = float(re.search(r"--gpu-memory-utilization (\S+)", text).group(1))
    assert util <= (m.capacity - m.reserve) / m.capacity < util + 0.01
    # distinct ports for replicas sharing a node
    for body in text.split(";;"):
        ports = re.findall(r"--port (\d+)", body)
        assert len(ports) == len(set(ports))


def test_multi_node_vllm_uses_ray(plans):
    plan = plans["llama405b-dgx-h100x2-rdma200"]
    text = emit(plan, "vllm")["vllm-g0.sh"]
    assert "ray start --head --port=6379" in text
    assert "ray start --address=${RAY_HEAD_ADDR:-node0}:6379" in text
    assert "--distributed-executor-backend ray" in text
    split = plan.replica_groups[0].strategy.layer_split
    partition = "VLLM_PP_LAYER_PARTITION=" + ",".join(map(str, split))
    assert (partition in text) == (len(set(split)) > 1)  # set exactly when the split is uneven


def test_multi_node_sglang_one_line_per_node(plans):
    text = emit(plans["llama405b-dgx-h100x2-rdma200"], "sglang")["sglang-g0.sh"]
    assert text.count("python -m sglang.launch_server") == 2
    assert "--node-rank 0" in text and "--node-rank 1" in text and "--nnodes 2" in text


def test_trtllm_multi_node_mpirun(plans):
    """An even-split replica over two nodes goes out as one mpirun launch from its first node."""
    base = plans["llama70b-dgx-h100x2"]
    g = base.replica_groups[0]
    r0 = g.replicas[0]
    n = len(r0.ranks)
    half = n // 2  # move the second half of the replica's ranks to the other node
    ranks = [k.model_copy(update={"node": "dgx1" if k.rank >= half else "dgx0",
                                  "gpu_index": k.rank % half}) for k in r0.ranks]
    g2 = g.model_copy(update={"replicas": [r0.model_copy(update={"ranks": ranks})]})
    plan = base.model_copy(update={"replica_groups": [g2]})
    text = emit(plan, "trtllm")["trtllm-g0.sh"]
    assert (f"mpirun -H dgx0:{half},dgx1:{half} -np {n} -x CUDA_VISIBLE_DEVICES trtllm-llmapi-launch "
            f"trtllm-serve") in text
    assert f"--gpus_per_node {half}" in text
    assert _flags(text) <= ALLOWED["trtllm"]


def test_unknown_model_needs_model_path(plans):
    plan = plans["llama70b-dgx-h100x2"]
    m = plan.inputs.model.model_copy(update={"name": "my-model"})
    odd = plan.model_copy(update={"inputs": plan.inputs.model_copy(update={"model": m})})
    with pytest.raises(InputError, match="--model-path"):
        emit(odd, "vllm")
    assert "vllm serve /ckpt/mine" in emit(odd, "vllm", model_path="/ckpt/mine")["vllm-g0.sh"]


def test_hf_table_covers_builtin_models():
    from costmodels.models import builtin_model_names

    assert set(builtin_model_names()) <= set(HF_MODELS)


def test_emit_is_deterministic(plans):
    plan = plans["llama405b-dgx-h100x2-rdma200"]
    assert emit(plan, "sglang") == emit(plan, "sglang")


# -- CLI -----------------------------------------------------------------------------------------

def _run(args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture()
def plan_file(plans, tmp_path) -> Path:
    p = tmp_path / "plan.json"
    p.write_text(plans["llama70b-dgx-h100x2"].to_json(), encoding="utf-8")
    return p


def test_cli_emit_stdout(plan_file, plans):
    code, out, err = _run(["emit", "--plan", plan_file, "--target", "vllm"])
    assert code == 0, err
    assert out == _render(emit(plans["llama70b-dgx-h100x2"], "vllm"))
    assert out.startswith("# === vllm-g0.sh ===\n#!/usr/bin/env bash\n")


def test_cli_emit_to_dir(plan_file, tmp_path):
    out_dir = tmp_path / "a" / "b"
    code, out, err = _run(["emit", "--plan", plan_file, "--target", "sglang", "-o", out_dir])
    assert code == 0, err
    assert sorted(p.name for p in out_dir.iterdir()) == ["sglang-g0.sh"]
    assert os.access(out_dir / "sglang-g0.sh", os.X_OK)
    assert out.strip() == str(out_dir / "sglang-g0.sh")


@pytest.mark.parametrize("content,needle", [
    (None, "does not exist"),
    ("{not json", "invalid JSON"),
    ('{"schema_version": "1.0.0"}', "not a valid placement plan"),
    ("[1, 2]", "not a placement plan"),
])
def test_cli_emit_bad_plan(tmp_path, content, needle):
    p = tmp_path / "plan.json"
    if content is not None:
        p.write_text(content, encoding="utf-8")
    out_dir = tmp_path / "out"
    code, out, err = _run(["emit", "--plan", p, "--target", "vllm", "-o", out_dir])
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and str(p) in err and needle in err
    assert not out_dir.exists()


def test_cli_emit_newer_schema_version(plan_file):
    d = json.loads(plan_file.read_text())
    d["schema_version"] = "2.0.0"
    plan_file.write_text(json.dumps(d))
    code, _, err = _run(["emit", "--plan", plan_file, "--target", "vllm"])
    assert code == 2 and "schema_version" in err and str(plan_file) in err


def test_cli_emit_inexpressible_plan_writes_nothing(plans, tmp_path):
    p = tmp_path / "plan405.json"
    p.write_text(plans["llama405b-dgx-h100x2-rdma200"].to_json(), encoding="utf-8")
    out_dir = tmp_path / "out"
    code, out, err = _run(["emit", "--plan", p, "--target", "trtllm", "-o", out_dir])
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and str(p) in err and "layer split" in err
    assert not out_dir.exists()
