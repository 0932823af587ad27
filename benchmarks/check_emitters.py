"""Feed every emitted launch command to the runtime's own parser and config validation (issue 16).

For each plan of ``PLANS`` (dense, pipelines across nodes, uneven splits, mixed GPU types, MoE with
expert parallelism, attention data parallelism, wide EP, prefill/decode pools) and each target and
release of ``CASES``, this emits the launch files, runs every shell script (and every Kubernetes
container's ``sh -c`` script) with each node's name under a recording ``PATH`` (stand-ins named
``vllm``, ``python``, ``python3``, ``ray``, ``vllm-router`` that write down their argv and environment
and exit 0, so the shell itself expands every variable and quote), and hands each recorded runtime
command to that runtime's own code in its own virtual environment (benchmarks/emitcheck_worker.py):

  * vLLM 0.11.0 and 0.33.0 (``vllm serve``): ``make_arg_parser`` -> ``parse_args`` ->
    ``AsyncEngineArgs.from_cli_args`` -> ``create_engine_config``, with the model given as a
    config-only folder (the catalog's HF ``config.json`` plus a tokenizer_config.json), and
    ``get_pp_indices`` for the layers each pipeline stage gets;
  * SGLang 0.5.23 (``python -m sglang.launch_server``): ``prepare_server_args`` (its parser) and
    ``ServerArgs.resolve_once`` (its resolution and validation pipeline, as the launcher runs it), with
    ``get_pp_indices`` for the layers per stage; sglang-router 0.3.2 (``launch_router``): its
    ``parse_router_args``, and its backends must be the servers' parsed head nodes and ports; vllm-router
    0.1.17 (``vllm-router``): its ``parse_router_args``, ``_validate_router_args`` and ``Router.from_args``
    (the Rust router's configuration, not started), its workers the vLLM API servers' nodes and ports;
  * Ray 2.60.0 (``ray start``): the click command's own parsing (``make_context``);
  * Kubernetes: every document of every k8s-*.yaml against kubernetes-validate's schemas, the
    LeaderWorkerSet against a schema of its CRD (see emitcheck_worker.LWS_SCHEMA) whose pod templates
    are validated as core/v1 PodTemplateSpec;
  * every shell script (files and the pods' ``sh -c`` scripts) through shellcheck, which must report
    nothing at any level (``--severity=style``).

There is no GPU here. What is stubbed, in the worker process only (benchmarks/emitcheck_worker.py):
  * NVML (``pynvml`` and vLLM's vendored ``vllm.third_party.pynvml``): device count, name, compute
    capability and memory of the plan's GPU for that command (``CAPABILITY`` below; memory = the plan's
    ``memory_per_gpu_bytes.capacity``);
  * torch.cuda's ``is_available``, ``device_count``, ``_device_count_nvml``, ``get_device_capability``,
    ``get_device_properties``, ``get_device_name``, ``mem_get_info`` with the same figures;
  * ``libcuda.so.1``: a stand-in built here with gcc (``stand_in_libcuda``) whose every driver function
    the venv's extensions link against returns CUDA_ERROR_NO_DEVICE, so that vLLM's ``vllm._C`` loads
    (on ``LD_LIBRARY_PATH`` of the worker and of the subprocess vLLM inspects model classes in);
  * ``psutil.virtual_memory().total``: 2 TiB, a DGX H100's system memory (vLLM 0.11 refuses a CPU swap
    space above 70 % of it, and this machine's RAM is not the serving node's).
Nothing else of a runtime is changed. Model folders hold config files only (the catalog's HF
config.json with its ``architectures`` and dtype, and a tokenizer_config.json), so nothing is
downloaded. SGLang 0.5.22+ resolve their arguments in ``ServerArgs.resolve_once`` (not in
``__post_init__``): the worker runs it, as the launcher does, and reads the resolved values.

Semantic check: after parsing, what the runtime's config holds is compared with the plan (not with
the emitted command): tensor, pipeline and data-parallel (attention-DP) sizes, expert parallel on/off
and size, max_num_seqs / max_running_requests, max_num_batched_tokens / chunked prefill size,
gpu_memory_utilization / mem_fraction_static (within 0.01 below the plan's budget), KV cache dtype,
the all2all backend the plan priced (DeepEP where experts span nodes), the layers each pipeline stage
holds, the GPUs each process sees, and ports: no two recorded processes may bind one port on one node.
For SGLang that is every port its own code derives (the HTTP or, on node rank >= 1, health-check port,
the dist-init port, and under attention DP the ZMQ ports ``PortArgs.init_new`` reserves and the
worker-port handshake port; see emitcheck_worker._sglang_ports), for the others the ports their flags
set. Each difference is one mismatch.

Install the runtimes (large: torch and CUDA libraries; not part of the default test run), once:

    python benchmarks/check_emitters.py --install

which makes one virtual environment per release under the work dir (``--work``, default
/tmp/plan-search-emitcheck): ``python -m venv WORK/venv-<name>`` then
``WORK/venv-<name>/bin/pip install <requirement>`` for each entry of ``RUNTIMES``. Then:

    python benchmarks/check_emitters.py [--work DIR] [--only PLAN ...]

Not judged, and said so in the table's note: documents kubernetes-validate has no schema for (the
Gateway API HTTPRoute of k8s-route.yaml).

It prints the table plan x target x version (commands checked, ok, rejected, mismatches) and exits 1 on
any rejection, mismatch, shellcheck finding or runtime that is not installed (reported in the table
as "not installed", never skipped).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from planner import api  # noqa: E402
from planner.emit import HF_MODELS, emit  # noqa: E402
from planner.plan.schema import Plan  # noqa: E402
from topologies.errors import InputError  # noqa: E402

WORKER = Path(__file__).resolve().parent / "emitcheck_worker.py"
DEFAULT_WORK = Path("/tmp/plan-search-emitcheck")

#: Virtual environment name -> pip requirements installed into it (``--install``).
RUNTIMES = {
    "vllm-0.11.0": ["vllm==0.11.0"],
    # vLLM 0.33 no longer depends on Ray; its Ray executor (multi-node replicas) needs it, as its image ships it
    "vllm-0.33.0": ["vllm==0.33.0", "ray==2.60.0"],
    "sglang-0.5.23": ["sglang==0.5.23"],
    "sglang-router-0.3.2": ["sglang-router==0.3.2"],
    "vllm-router-0.1.17": ["vllm-router==0.1.17"],
    "ray-2.60.0": ["ray==2.60.0"],
    "kubernetes-validate": ["kubernetes-validate==1.37.0"],
}

#: (target, runtime version given to emit, virtual environment of its serving runtime).
CASES = [("vllm", "0.11.0", "vllm-0.11.0"), ("vllm", "0.33.0", "vllm-0.33.0"), ("sglang", "0.5.23", "sglang-0.5.23"),
         ("k8s", "0.11.0", "vllm-0.11.0"), ("k8s", "0.33.0", "vllm-0.33.0"), ("ray", None, "ray-2.60.0")]

#: Programs of the launch files and the environment that judges them (None: not a runtime command).
def program_env(argv: list[str], serving: str) -> str | None:
    if argv[:2] == ["vllm", "serve"]:
        return serving
    if argv[:2] == ["ray", "start"]:
        return "ray-2.60.0"
    if argv[:3] in (["python", "-m", "sglang.launch_server"], ["python3", "-m", "sglang.launch_server"]):
        return serving
    if argv[:3] in (["python", "-m", "sglang_router.launch_router"], ["python3", "-m", "sglang_router.launch_router"]):
        return "sglang-router-0.3.2"
    if argv[:1] == ["vllm-router"]:
        return "vllm-router-0.1.17"
    return None


# -- the plans ----------------------------------------------------------------------------------------

def _searched(**kw) -> Plan:
    plan = api.search(**{"disaggregation": "off", **kw}, time_limit_s=10.0, workers=1, seed=0)
    return Plan.model_validate(json.loads(plan.to_json()))


def _uneven_three_nodes() -> Plan:
    """Llama-3.1-405B, one replica tp=4 pp=4 over three nodes (8, 4, 4 GPUs), layers 32/32/31/31
    (the fixture of tests/test_emit_ray_order.py)."""
    from test_emit_ray_order import _three_nodes
    return _three_nodes(_searched(topology="dgx-h100x2-rdma200", model="llama-3.1-405b"))


def _uneven_split() -> Plan:
    """Llama-3.1-405B tp=8 pp=2 over two nodes with an uneven split, 70 + 56 layers."""
    from test_emit_ray_order import _three_nodes
    return _three_nodes(_searched(topology="dgx-h100x2-rdma200", model="llama-3.1-405b"), split=[70, 56],
                        gpus=(8, 8), tp=8)


#: name -> api.search arguments (disaggregation off unless given), or a function building the plan.
PLANS: dict[str, object] = {
    # dense, one node and pipelines across nodes (tests/test_emit.py PLANS)
    "llama70b-h100x2": dict(topology="dgx-h100x2", model="llama-3.1-70b", tpot_ms=50),
    "llama405b-h100x2-pp": dict(topology="dgx-h100x2-rdma200", model="llama-3.1-405b"),
    "llama8b-h100x1": dict(topology="dgx-h100x1", model="llama-3.1-8b", tpot_ms=20),
    "qwen2.5-72b-h200x1-kvfp8": dict(topology="hgx-h200x1", model="qwen2.5-72b", kv_dtype="fp8", tpot_ms=40),
    "llama70b-h100x1-fp8": dict(topology="dgx-h100x1", model="llama-3.1-70b", weight_dtype="fp8", tpot_ms=30),
    "mistral7b-l40sx4": dict(topology="pcie-l40sx4", model="mistral-7b", tpot_ms=30),
    "llama70b-a100x4": dict(topology="hgx-a100x4", model="llama-3.1-70b", tpot_ms=80),
    "gemma2-27b-l4x4": dict(topology="pcie-l4x4", model="gemma-2-27b"),
    # uneven splits
    "llama405b-uneven-3-nodes": _uneven_three_nodes,
    "llama405b-uneven-70-56": _uneven_split,
    # mixed GPU types
    "llama405b-mixed": dict(topology="mixed-h100x2-a100x2", model="llama-3.1-405b"),
    "llama70b-mixed": dict(topology="mixed-h100x2-a100x2", model="llama-3.1-70b", tpot_ms=60),
    # MoE with expert parallelism, attention DP, wide EP (tests/test_emit_attention_dp.py PLANS)
    "ds-v3-x4-wide-ep": dict(topology="dgx-h100x4", model="deepseek-v3", isl=2048, osl=512),
    "ds-v3-x4-adp2": dict(topology="dgx-h100x4", model="deepseek-v3", isl=2048, osl=512, attention_dp=2),
    "ds-v3-x4-adp1": dict(topology="dgx-h100x4", model="deepseek-v3", isl=2048, osl=512, attention_dp=1),
    "mixtral8x7b-adp8": dict(topology="dgx-h100x1", model="mixtral-8x7b", tpot_ms=50, attention_dp=8),
    "qwen3-235b-adp2": dict(topology="dgx-h100x1", model="qwen3-235b-a22b", attention_dp=2),
    # four attention-DP servers on one node (issue 16 item 3: their derived ports must not overlap)
    "mixtral8x7b-adp2-x4-sglang": dict(topology="dgx-h100x1", model="mixtral-8x7b", tpot_ms=50, attention_dp=2,
                                       runtime="sglang"),
    "qwen3-30b-ep": dict(topology="dgx-h100x1", model="qwen3-30b-a3b", tpot_ms=30),
    "ds-v3-x4-sglang": dict(topology="dgx-h100x4", model="deepseek-v3", isl=2048, osl=512, runtime="sglang"),
    "mixtral8x22b-h200x2": dict(topology="hgx-h200x2", model="mixtral-8x22b", tpot_ms=60),
    # prefill/decode pools (SGLang)
    "llama70b-pools": dict(topology="dgx-h100x2", model="llama-3.1-70b", isl=8192, osl=256, tpot_ms=40,
                           runtime="sglang", disaggregation="auto"),
    "qwen3-235b-pools": dict(topology="dgx-h100x4", model="qwen3-235b-a22b", isl=4096, osl=512, tpot_ms=50,
                             runtime="sglang", disaggregation="only"),
    # a TensorRT-LLM plan emitted for vLLM (issue 16 item 1)
    "llama405b-a100-trtllm": dict(topology="hgx-a100x4", model="llama-3.1-405b", runtime="trtllm"),
}


def build_plan(name: str) -> Plan:
    spec = PLANS[name]
    return spec() if callable(spec) else _searched(**spec)


# -- running the launch files under recording stand-ins ------------------------------------------------

#: Stand-in programs: each appends {"argv", "env", "node"} as one JSON line to $EMITCHECK_LOG and exits 0.
STAND_INS = ("vllm", "python", "python3", "ray", "vllm-router")
_SHIM = """#!{python}
import json, os, sys
keep = ("CUDA_", "VLLM_", "SGLANG_", "NCCL_", "RAY_", "LWS_", "POD_IP", "HF_")
env = {{k: v for k, v in os.environ.items() if k.startswith(keep)}}
with open(os.environ["EMITCHECK_LOG"], "a", encoding="utf-8") as f:
    f.write(json.dumps({{"argv": [os.path.basename(sys.argv[0])] + sys.argv[1:], "env": env,
                        "node": os.environ.get("EMITCHECK_NODE", "")}}) + "\\n")
"""


@dataclass
class Launch:
    """One runtime command as the shell ran it: its file, node, words and environment."""
    file: str
    node: str
    argv: list[str]
    env: dict[str, str]
    group: str | None = None
    replica: int | None = None


def make_shims(work: Path) -> Path:
    shim = work / "shims"
    shim.mkdir(parents=True, exist_ok=True)
    body = _SHIM.format(python=sys.executable)
    for name in STAND_INS:
        p = shim / name
        p.write_text(body, encoding="utf-8")
        p.chmod(0o755)
    return shim


def _run_recorded(cmd: list[str], env_extra: dict[str, str], shim: Path, node: str, cwd: Path) -> list[dict]:
    """Run ``cmd`` with the stand-ins first on PATH; the records they wrote (an error if the script fails)."""
    with tempfile.NamedTemporaryFile("r", suffix=".jsonl", dir=cwd, delete=False) as log:
        path = Path(log.name)
    env = {"PATH": f"{shim}:/usr/bin:/bin", "HOME": str(cwd), "EMITCHECK_LOG": str(path), "EMITCHECK_NODE": node,
           **env_extra}
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=60)
    records = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]
    path.unlink()
    if proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd[:3])} on {node} exited {proc.returncode}: {proc.stderr.strip()[:300]}")
    return records


def _script_nodes(text: str) -> list[str]:
    """The node names a script takes: the list its usage line prints (planner.emit.shell.node_case writes it as
    one quoted word of names separated by spaces, the same names as its ``case`` patterns)."""
    m = re.search(r"""one of: %s \(got: %s\)\\n' "\$0" (.+) "\$NODE" >&2""", text)
    return shlex.split(m[1])[0].split() if m else []


def script_launches(files: dict[str, str], shim: Path, cwd: Path) -> list[Launch]:
    """Every command each ``.sh`` file starts, run once per node it names; DP_HEAD_IP_* (which a
    data-parallel head requires) set to the loopback address."""
    out = []
    for name, text in files.items():
        if not name.endswith(".sh"):
            continue
        path = cwd / name
        path.write_text(text, encoding="utf-8")
        needed = {v: "127.0.0.1" for v in re.findall(r"\b(DP_HEAD_IP_\w+)", text)}
        for node in _script_nodes(text) or [""]:
            for rec in _run_recorded(["bash", str(path), node], needed, shim, node, cwd):
                out.append(Launch(name, node, rec["argv"], rec["env"]))
    return out


def _pod_specs(doc: dict) -> list[tuple[dict, dict, list[str], dict[str, str]]]:
    """(pod template metadata, pod spec, plan nodes it may run on, LWS env) of a Deployment or LeaderWorkerSet."""
    kind, spec = doc.get("kind"), doc.get("spec", {})
    if kind == "Deployment":
        return [(spec["template"]["metadata"], spec["template"]["spec"], _affinity_nodes(spec["template"]["spec"]), {})]
    if kind != "LeaderWorkerSet":
        return []
    lwt = spec["leaderWorkerTemplate"]
    leader, worker = lwt["leaderTemplate"], lwt["workerTemplate"]
    lead_node = _affinity_nodes(leader["spec"])[0]
    base = {"LWS_LEADER_ADDRESS": lead_node, "LWS_GROUP_SIZE": str(lwt["size"])}
    out = [(leader["metadata"], leader["spec"], [lead_node], {**base, "LWS_WORKER_INDEX": "0"})]
    for i, node in enumerate(_affinity_nodes(worker["spec"]), start=1):
        out.append((worker["metadata"], worker["spec"], [node], {**base, "LWS_WORKER_INDEX": str(i)}))
    return out


def _affinity_nodes(pod: dict) -> list[str]:
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    return [v for t in terms for e in t["matchExpressions"] if e["key"] == "kubernetes.io/hostname"
            for v in e["values"]]


def container_scripts(files: dict[str, str]) -> list[tuple[str, dict, str, dict[str, str], str]]:
    """(file, pod metadata, node, environment, script) of every container of every k8s-*.yaml pod
    (a worker template once per worker node, with the LWS_* variables LWS injects)."""
    import yaml

    out = []
    for name, text in files.items():
        if not (name.startswith("k8s-") and name.endswith(".yaml")):
            continue
        for doc in yaml.safe_load_all(text):
            for meta, pod, nodes, lws in _pod_specs(doc or {}):
                for c in pod["containers"]:
                    argv = list(c.get("command", [])) + list(c.get("args", []))
                    script = argv[2] if argv[:2] == ["sh", "-c"] else shlex.join(argv)
                    env = {e["name"]: e["value"] for e in c.get("env", []) if "value" in e}
                    env.update({"POD_IP": "127.0.0.1", "HF_TOKEN": "", **lws})
                    out += [(name, meta, n, env, script) for n in nodes]
    return out


def k8s_launches(files: dict[str, str], shim: Path, cwd: Path) -> list[Launch]:
    """Every command the pods' ``sh -c`` scripts run (under ``sh``, as the container does)."""
    out = []
    for name, meta, node, env, script in container_scripts(files):
        labels = meta.get("labels", {})
        for rec in _run_recorded(["sh", "-c", script], env, shim, node, cwd):
            launch = Launch(name, node, rec["argv"], rec["env"], labels.get("plan-search/group"))
            launch.replica = int(labels["plan-search/replica"]) if "plan-search/replica" in labels else None
            out.append(launch)
    return out


def shellcheck(files: dict[str, str], cwd: Path) -> list[str]:
    """shellcheck's findings (any level) on every script: the ``.sh`` files and the pods' ``sh -c`` scripts."""
    scripts = [(n, t, "bash") for n, t in files.items() if n.endswith(".sh")]
    scripts += [(f"{n} ({node})", s, "sh") for n, _, node, _, s in container_scripts(files)]
    out = []
    for label, text, shell in dict.fromkeys(scripts):
        path = cwd / "sc.sh"
        path.write_text(text, encoding="utf-8")
        proc = subprocess.run(["shellcheck", "--severity=style", "--format=gcc", f"--shell={shell}", str(path)],
                              capture_output=True, text=True)
        out += [f"{label}: {line.split(':', 3)[-1].strip()}" for line in proc.stdout.splitlines()]
    return out


# -- what each runtime command should end up with, from the plan ---------------------------------------

#: Compute capability of each catalog GPU the plans use, for the stand-in NVML (NVIDIA's CUDA GPU
#: compute-capability table, developer.nvidia.com/cuda-gpus: A100 8.0, L4 / L40S / RTX 4090 8.9,
#: H100 / H200 9.0, B200 10.0).
CAPABILITY = {"A100": (8, 0), "L4": (8, 9), "L40S": (8, 9), "RTX-4090": (8, 9), "H100": (9, 0), "H200": (9, 0),
              "B200": (10, 0)}

#: ``architectures`` of each model type's HF config.json (the catalog keeps only what the cost model
#: reads): the value in the config.json of the repos in planner.emit.HF_MODELS.
ARCHITECTURES = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "mistral": "MistralForCausalLM",
                 "mixtral": "MixtralForCausalLM", "deepseek_v3": "DeepseekV3ForCausalLM",
                 "qwen3_moe": "Qwen3MoeForCausalLM", "qwen3": "Qwen3ForCausalLM", "gemma2": "Gemma2ForCausalLM"}


def gpu_stub(g) -> dict:
    """The stand-in GPU of a group: its catalog name, compute capability and the plan's memory capacity."""
    cap = next((v for k, v in CAPABILITY.items() if g.gpu.upper().startswith(k.upper())), None)
    if cap is None:
        raise SystemExit(f"no compute capability known for GPU {g.gpu!r}; add it to CAPABILITY")
    return {"name": f"NVIDIA {g.gpu}", "capability": list(cap), "memory_bytes": g.memory_per_gpu_bytes.capacity}


def model_dir(work: Path, name: str) -> Path:
    """A config-only model folder: the catalog's HF config.json with its architecture and dtype, and a
    tokenizer_config.json; no weights, nothing to download."""
    from importlib import resources

    d = work / "models" / name
    cfg = json.loads((resources.files("costmodels") / "data" / "models" / f"{name}.json").read_text(encoding="utf-8"))
    cfg.setdefault("architectures", [ARCHITECTURES[cfg["model_type"]]])
    cfg.setdefault("torch_dtype", "bfloat16")
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps(cfg, indent=1, sort_keys=True), encoding="utf-8")
    (d / "tokenizer_config.json").write_text(json.dumps({"model_max_length": cfg.get("max_position_embeddings")}),
                                             encoding="utf-8")
    return d


def _fraction(num: int, den: int) -> float:
    return num / den


def expected_vllm(g, multi_node: bool, checkpoint_dtype: str | None = None) -> dict:
    """What vLLM's config must hold for a replica of ``g`` (the plan's own terms, per data-parallel engine)."""
    s, m = g.strategy, g.memory_per_gpu_bytes
    d = s.attention_dp
    out = {"tp": s.tp // d, "pp": s.pp, "dp": d, "ep": s.ep > 1, "max_num_seqs": max(1, s.batch_size // d),
           "max_num_batched_tokens": s.max_num_batched_tokens, "max_model_len": s.max_model_len,
           "gpu_memory_utilization": _fraction(m.capacity - m.reserve, m.capacity),
           "kv_cache_dtype": "auto" if s.kv_dtype in ("bf16", "fp16") else s.kv_dtype, "pp_layers": s.layer_split}
    if d > 1 and multi_node:
        out["all2all_backend"] = "deepep"
    if s.weight_dtype == "fp8":
        out["quantization"] = "fp8"
    return out


def expected_sglang(g, multi_node: bool, checkpoint_dtype: str | None = None) -> dict:
    """What SGLang's resolved server arguments must hold for a replica of ``g``."""
    s, m = g.strategy, g.memory_per_gpu_bytes
    d = s.attention_dp
    out = {"tp": s.tp, "pp": s.pp, "dp": d, "ep": s.ep, "max_running_requests": max(s.batch_size, d),
           "chunked_prefill_size": s.max_num_batched_tokens, "max_model_len": s.max_model_len,
           "mem_fraction_static": _fraction(m.capacity - m.reserve - m.activations - m.overhead, m.capacity),
           "kv_cache_dtype": "auto" if s.kv_dtype in ("bf16", "fp16") else "fp8_e4m3", "pp_layers": s.layer_split,
           "disaggregation_mode": "null" if g.role == "unified" else g.role}
    if d > 1 and multi_node:
        out["all2all_backend"] = "deepep"
    if s.weight_dtype == "fp8" and checkpoint_dtype != "fp8":
        out["quantization"] = "fp8"  # on-load quantization; an FP8 checkpoint says so in its own config
    return out


_FRACTIONS = ("gpu_memory_utilization", "mem_fraction_static")


def mismatches(want: dict, got: dict) -> list[str]:
    """``key: runtime has X, plan Y`` per difference; a memory fraction may sit up to 0.01 below the plan's
    (the emitters round down to two decimals), an all2all backend must start with the planned kind."""
    out = []
    for key, w in want.items():
        v = got.get(key)
        if key in _FRACTIONS:
            ok = v is not None and w - 0.0100001 <= float(v) <= w + 1e-9
        elif key == "all2all_backend":
            ok = str(v).startswith(w)
        elif key == "kv_cache_dtype" and w == "fp8":
            ok = str(v).startswith("fp8")
        elif key == "pp_layers":
            ok = v is None or list(v) == list(w)
        else:
            ok = v == w
        if not ok:
            out.append(f"{key}: runtime has {v!r}, plan {w!r}")
    return out


# -- one plan x target x release -------------------------------------------------------------------------

K8S_VERSIONS = ["1.30", "1.31", "1.32", "1.33", "1.34", "1.35", "1.36", "1.37"]
KIND_OF_ENV = {"vllm": "vllm", "sglang": "sglang", "sglang-router": "sglang-router", "ray": "ray"}


@dataclass
class Job:
    """One command (or manifest document) for one runtime environment, and what the plan wants of it."""
    case: Case
    env: str
    kind: str
    payload: dict
    want: dict = field(default_factory=dict)
    launch: Launch | None = None
    result: dict | None = None


@dataclass
class Case:
    plan_name: str
    plan: Plan
    target: str
    version: str | None
    serving_env: str
    refused: str | None = None
    jobs: list[Job] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)   # mismatches found on the host side
    shellcheck: list[str] = field(default_factory=list)


def _kind(env: str) -> str:
    return "k8s" if env == "kubernetes-validate" else next(k for k in ("sglang-router", "vllm-router", "sglang", "vllm", "ray")
                                                           if env.startswith(k))


def _find_replica(plan: Plan, launch: Launch):
    """The (group, replica) a script's command runs: its file's group, the replica with ranks on the
    command's node on exactly the GPUs of CUDA_VISIBLE_DEVICES (rank order)."""
    gid = launch.group or re.sub(r"^(vllm|sglang)-|\.sh$", "", launch.file)
    g = next((x for x in plan.replica_groups if x.id == gid), None)
    if g is None:
        return None, None
    if launch.replica is not None:
        return g, next((r for r in g.replicas if r.index == launch.replica), None)
    gpus = launch.env.get("CUDA_VISIBLE_DEVICES")
    if gpus is None:  # `vllm serve` of a Ray replica, on its head node: the replica whose rank 0 is there
        heads = [r for r in g.replicas if min(r.ranks, key=lambda k: k.rank).node == launch.node]
        return g, heads[0] if len(heads) == 1 else None
    for r in g.replicas:
        mine = [k.gpu_index for k in sorted(r.ranks, key=lambda k: k.rank) if k.node == launch.node]
        if ",".join(map(str, mine)) == gpus:
            return g, r
    return g, None


def _serving_job(case: Case, launch: Launch, env: str, work: Path) -> Job:
    plan = case.plan
    g, r = _find_replica(plan, launch)
    job = Job(case, env, _kind(env), {"argv": launch.argv, "env": launch.env}, launch=launch)
    if g is None or r is None:
        case.problems.append(f"{launch.file} on {launch.node}: GPUs {launch.env.get('CUDA_VISIBLE_DEVICES')!r} "
                             "are no plan replica's")
        g = g or plan.replica_groups[0]
    nodes = {k.node for k in r.ranks} if r else {launch.node}
    count = sum(1 for k in r.ranks if k.node == launch.node) if r else 1
    job.payload.update(gpu={**gpu_stub(g), "count": max(count, 1)}, model_dir=str(model_dir(work, plan.inputs.model.name)),
                       layers=sum(g.strategy.layer_split))
    ckpt = HF_MODELS.get(plan.inputs.model.name, (None, None))[1]
    job.want = (expected_vllm if job.kind == "vllm" else expected_sglang)(g, len(nodes) > 1, ckpt)
    return job


def _ray_want(plan: Plan, node: str) -> dict:
    gpus = {(k.node, k.gpu_index) for g in plan.replica_groups for r in g.replicas for k in r.ranks}
    return {"num_gpus": sum(1 for n, _ in gpus if n == node)}


def collect(case: Case, files: dict[str, str], work: Path, shim: Path) -> None:
    """Record every command of ``files`` and make a job of each runtime command and manifest document."""
    import yaml

    tmp = Path(tempfile.mkdtemp(dir=work))
    launches = script_launches(files, shim, tmp) + k8s_launches(files, shim, tmp)
    case.shellcheck = shellcheck(files, tmp)
    shutil.rmtree(tmp)
    for launch in launches:
        env = program_env(launch.argv, case.serving_env)
        if env is None:
            continue
        kind = _kind(env)
        if kind in ("vllm", "sglang"):
            case.jobs.append(_serving_job(case, launch, env, work))
        else:
            want = _ray_want(case.plan, launch.node) if kind == "ray" and case.target == "ray" else {}
            case.jobs.append(Job(case, env, kind, {"argv": launch.argv, "env": launch.env}, want, launch))
    for name, text in files.items():
        if name.startswith("k8s-") and name.endswith(".yaml"):
            for doc in yaml.safe_load_all(text):
                if doc:
                    case.jobs.append(Job(case, "kubernetes-validate", "k8s", {"doc": doc, "versions": K8S_VERSIONS}))


def build_case(plan_name: str, plan: Plan, target: str, version: str | None, env: str, work: Path,
               shim: Path) -> Case:
    case = Case(plan_name, plan, target, version, env)
    try:
        files = emit(plan, target, runtime_version=version)
    except InputError as e:
        case.refused = str(e)
        return case
    collect(case, files, work, shim)
    return case


# -- the stand-in libcuda ----------------------------------------------------------------------------------

def _driver_symbols(venv: Path) -> list[str]:
    """The CUDA driver functions (``cu*``) the venv's compiled extensions link against."""
    names = {"cuInit", "cuDriverGetVersion", "cuDeviceGetCount", "cuDeviceGet", "cuGetProcAddress",
             "cuGetProcAddress_v2", "cuGetErrorString", "cuGetErrorName"}
    for so in venv.glob("lib/python3*/site-packages/**/*.so"):
        proc = subprocess.run(["nm", "-D", "--undefined-only", str(so)], capture_output=True, text=True)
        names.update(m[1] for m in re.finditer(r"\bU (cu[A-Z]\w*)", proc.stdout))
    return sorted(names)


def stand_in_libcuda(work: Path, venv: Path) -> Path:
    """A folder holding a ``libcuda.so.1`` whose every function the venv's extensions need returns
    CUDA_ERROR_NO_DEVICE (100): their modules load (vLLM's ``vllm._C`` needs the driver library to
    load at all), and anything that would touch a GPU fails instead of running."""
    d = work / f"libcuda-{venv.name}"
    lib = d / "libcuda.so.1"
    if lib.exists():
        return d
    d.mkdir(parents=True, exist_ok=True)
    src = d / "libcuda.c"
    src.write_text("".join(f"int {n}(void) {{ return 100; }}\n" for n in _driver_symbols(venv)), encoding="utf-8")
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(lib), str(src), "-Wl,-soname,libcuda.so.1"], check=True)
    (d / "libcuda.so").unlink(missing_ok=True)
    (d / "libcuda.so").symlink_to("libcuda.so.1")
    return d


# -- running the jobs in the runtimes' environments ----------------------------------------------------------

def venv_python(work: Path, env: str) -> Path:
    return work / f"venv-{env}" / "bin" / "python"


def installed(work: Path, env: str) -> bool:
    """The venv exists and imports its runtime (checked once per run by the caller)."""
    module = {"vllm": "vllm", "sglang": "sglang", "sglang-router": "sglang_router", "vllm-router": "vllm_router",
              "ray": "ray",
              "k8s": "kubernetes_validate"}[_kind(env)]
    py = venv_python(work, env)
    return py.exists() and subprocess.run([str(py), "-c", f"import importlib.util as u, sys; "
                                           f"sys.exit(u.find_spec({module!r}) is None)"]).returncode == 0


def run_batch(work: Path, env: str, jobs: list[Job]) -> None:
    """Run ``jobs`` (one environment, one GPU type) in one worker process; fill in each job's result."""
    payload = [{"id": i, **j.payload} for i, j in enumerate(jobs)]
    venv = work / f"venv-{env}"
    extra = {}
    if _kind(env) in ("vllm", "sglang"):
        extra["LD_LIBRARY_PATH"] = str(stand_in_libcuda(work, venv))
    proc = subprocess.run([str(venv_python(work, env)), str(WORKER), _kind(env)], input=json.dumps(payload),
                          capture_output=True, text=True, env={**os.environ, **extra}, cwd=work, timeout=3600)
    lines = proc.stdout.strip().splitlines()
    try:
        results = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        results = [{"id": i, "status": "rejected", "error": f"worker failed: {tail[0][:300]}"} for i in range(len(jobs))]
    for r in results:
        jobs[r["id"]].result = r


def run_all(work: Path, cases: list[Case]) -> dict[str, bool]:
    """Every job of every case, batched per (environment, GPU type); returns which environments are installed."""
    batches: dict[tuple[str, str], list[Job]] = {}
    for case in cases:
        for j in case.jobs:
            batches.setdefault((j.env, json.dumps(j.payload.get("gpu"), sort_keys=True)), []).append(j)
    ok = {env: installed(work, env) for env in {e for e, _ in batches}}
    for (env, _), jobs in sorted(batches.items(), key=lambda kv: kv[0]):
        if ok[env]:
            print(f"  {env}: {len(jobs)} commands ...", file=sys.stderr, flush=True)
            run_batch(work, env, jobs)
    return ok


# -- judging --------------------------------------------------------------------------------------------------

def _bound_ports(job: Job) -> list[tuple[str, int, str]]:
    """(node, port, what) of each TCP port a recorded process binds on its node: for SGLang every port its
    own code derives from the arguments (emitcheck_worker._sglang_ports), for the others the ports their
    flags set."""
    c, node = job.result["config"], job.launch.node
    if job.kind == "vllm":
        out = [] if c["port"] is None else [(node, c["port"], "port")]
        # the RPC port is a TCP socket only when engines run on other nodes (one node: IPC)
        if c["dp_rpc_port"] and not c["headless"] and c["dp_local"] < c["dp"]:
            out.append((node, c["dp_rpc_port"], "data-parallel RPC port"))
        return out
    if job.kind == "sglang":
        return [(node, int(port), what) for what, port in c["bound_ports"]]
    if job.kind == "ray" and job.result["config"]["head"]:
        return [(node, c["port"], "GCS port")]
    if job.kind in ("sglang-router", "vllm-router"):
        return [("(router)", c["port"], "port"), ("(router)", c["prometheus_port"], "prometheus port")]
    return []


def port_clashes(case: Case) -> list[str]:
    """Ports two processes of one launch bind on one node (not for k8s: each pod has its own IP); a port
    one process lists twice (SGLang's derived ranges may include its own --port) is not a clash."""
    if case.target == "k8s":
        return []
    seen: dict[tuple[str, int], tuple[Job, str]] = {}
    out = []
    for j in case.jobs:
        if not (j.result and j.result["status"] == "ok" and j.launch):
            continue
        for node, port, what in _bound_ports(j):
            own = j.result["config"].get("port")
            who = f"{j.launch.file} {shlex.join(j.launch.argv[:3])}{f' --port {own}' if own else ''} ({what})"
            first = seen.setdefault((node, port), (j, who))
            if first[0] is not j:
                out.append(f"port {port} on {node} bound by both {first[1]} and {who}")
    return out


def _router_servers(case: Case, router: Job) -> list[Job]:
    """The parsed serving processes a router fronts: SGLang's node-rank-0 servers for sglang-router,
    vLLM's API servers (not headless) for vllm-router."""
    ok = [j for j in case.jobs if j.result and j.result["status"] == "ok"]
    if router.kind == "vllm-router":
        return [j for j in ok if j.kind == "vllm" and j.result["config"]["port"] is not None]
    return [j for j in ok if j.kind == "sglang" and j.result["config"]["node_rank"] == 0]


def router_problems(case: Case) -> list[str]:
    """The router's parsed backends must be exactly the servers' parsed head nodes and ports (and, for a
    prefill server, its bootstrap port)."""
    if any(j.result is None for j in case.jobs):
        return []  # a runtime not installed: reported as such
    routers = [j for j in case.jobs if j.kind in ("sglang-router", "vllm-router") and j.result
               and j.result["status"] == "ok"]
    out = []
    for r in routers:
        c, servers = r.result["config"], _router_servers(case, r)
        url = {id(s): f"http://{s.launch.node}:{s.result['config']['port']}" for s in servers}
        if c["pd"]:
            mode = {id(s): s.result["config"].get("disaggregation_mode") for s in servers}
            want_p = sorted([url[id(s)], s.result["config"]["bootstrap_port"]] for s in servers
                            if mode[id(s)] == "prefill")
            want_d = sorted(url[id(s)] for s in servers if mode[id(s)] == "decode")
            got_p = sorted([u, int(b) if b is not None else None] for u, b in c["prefill"])
            if got_p != want_p or sorted(c["decode"]) != want_d:
                out.append(f"router backends {got_p} / {sorted(c['decode'])} are not the servers' {want_p} / {want_d}")
        elif sorted(c["workers"]) != sorted(url.values()):
            out.append(f"router workers {sorted(c['workers'])} are not the servers' {sorted(url.values())}")
    return out


@dataclass
class Row:
    plan: str
    target: str
    version: str
    checked: int = 0
    ok: int = 0
    rejected: int = 0
    mismatches: int = 0
    shellcheck: int = 0
    note: str = ""
    unjudged: list[str] = field(default_factory=list)
    details: list[str] = field(default_factory=list)


def judge(case: Case, installed_envs: dict[str, bool]) -> Row:
    row = Row(case.plan_name, case.target, case.version or "2.60.0")
    if case.refused:
        row.note = f"refused by the emitter: {case.refused}"
        return row
    missing = sorted({j.env for j in case.jobs if not installed_envs.get(j.env)})
    if missing:
        row.note = "not installed: " + ", ".join(missing)
        row.rejected = sum(1 for j in case.jobs if j.env in missing)
    for j in case.jobs:
        if j.result is None:
            continue
        row.checked += 1
        if j.result["status"] != "ok":
            row.rejected += 1
            row.details.append(f"rejected {_label(j)}: {j.result['error'][:400]}")
            continue
        if "unjudged" in j.result["config"]:
            row.checked -= 1
            row.unjudged.append(j.result["config"]["unjudged"])
            continue
        bad = mismatches(j.want, j.result["config"])
        row.details += [f"mismatch {_label(j)}: {b}" for b in bad]
        row.mismatches += len(bad)
        row.ok += not bad
    extra = case.problems + port_clashes(case) + router_problems(case)
    row.mismatches += len(extra)
    row.details += [f"mismatch: {x}" for x in extra]
    row.shellcheck = len(case.shellcheck)
    row.details += [f"shellcheck {x}" for x in case.shellcheck]
    if row.unjudged:
        row.note = "; ".join(filter(None, [row.note, "not judged: " + ", ".join(sorted(set(row.unjudged)))]))
    return row


def _label(j: Job) -> str:
    if j.launch is None:
        return f"{j.payload['doc'].get('kind')} {j.payload['doc'].get('metadata', {}).get('name')}"
    return f"{j.launch.file} on {j.launch.node}: {shlex.join(j.launch.argv[:3])}"


def table(rows: list[Row]) -> str:
    head = ("plan", "target", "version", "commands", "ok", "rejected", "mismatches", "shellcheck", "note")
    body = [(r.plan, r.target, r.version, str(r.checked), str(r.ok), str(r.rejected), str(r.mismatches),
             str(r.shellcheck), r.note[:110]) for r in rows]
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(x, widths, strict=True)).rstrip() for x in [head, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(r: Row) -> str:
    if r.note.startswith("refused"):
        return "refused"
    bad = [f"{n} {w}" for n, w in ((r.rejected, "rejected"), (r.mismatches, "mismatch"), (r.shellcheck, "sc"))
           if n]
    return f"{r.ok}/{r.checked}" + (" " + ", ".join(bad) if bad else "")


def compact_table(rows: list[Row]) -> str:
    """One line per plan, one column per target and release: ``ok/checked`` (and what failed), or
    ``refused`` where the emitter refuses the plan in one line."""
    cols = list(dict.fromkeys(f"{r.target} {r.version}" for r in rows))
    by = {(r.plan, f"{r.target} {r.version}"): _cell(r) for r in rows}
    plans = list(dict.fromkeys(r.plan for r in rows))
    head = ["plan", *cols]
    body = [[p, *(by.get((p, c), "") for c in cols)] for p in plans]
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                     + ["| " + " | ".join(x) + " |" for x in body])


# -- command line ---------------------------------------------------------------------------------------------

def install(work: Path, names: list[str]) -> int:
    """``python -m venv`` and ``pip install`` each runtime of ``RUNTIMES`` (an existing venv is kept)."""
    failed = 0
    for name in names:
        venv = work / f"venv-{name}"
        if not venv.exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        proc = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *RUNTIMES[name]])
        print(f"{name}: {'installed' if proc.returncode == 0 else 'FAILED to install'}")
        failed += proc.returncode != 0
    return 1 if failed else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=DEFAULT_WORK, help="folder of the venvs (default %(default)s)")
    ap.add_argument("--install", nargs="*", metavar="NAME", help=f"install runtimes (default all: {', '.join(RUNTIMES)})")
    ap.add_argument("--only", nargs="*", metavar="PLAN", help="check only these plans")
    ap.add_argument("--target", nargs="*", choices=sorted({t for t, _, _ in CASES}), help="check only these targets")
    ap.add_argument("--compact", action="store_true", help="one line per plan (a Markdown table)")
    ap.add_argument("--details", action="store_true", help="print each rejection, mismatch and finding")
    args = ap.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    if args.install is not None:
        return install(args.work, args.install or list(RUNTIMES))
    shim = make_shims(args.work)
    cases = []
    for name in args.only or list(PLANS):
        print(f"plan {name} ...", file=sys.stderr, flush=True)
        plan = build_plan(name)
        for target, version, env in CASES:
            if args.target and target not in args.target:
                continue
            cases.append(build_case(name, plan, target, version, env, args.work, shim))
    installed_envs = run_all(args.work, cases)
    rows = [judge(c, installed_envs) for c in cases]
    print(compact_table(rows) if args.compact else table(rows))
    bad = [r for r in rows if r.rejected or r.mismatches or r.shellcheck]
    total = sum(r.checked for r in rows)
    print(f"\n{len(rows)} plan x target x version cases, {total} commands and documents checked; "
          f"{len(bad)} case(s) with a rejection, mismatch or shellcheck finding")
    if args.details or bad:
        for r in rows:
            for d in r.details:
                print(f"{r.plan} {r.target} {r.version}: {d}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
