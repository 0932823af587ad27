"""Judging what the runtimes ended up with against the plan: the figures each command should give
(TP, PP, DP, EP, batch, token budget, memory, KV dtype, layers per stage), ports bound twice on a
node, router back ends, and the table of plan x target x version.
"""
from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from planner.plan.schema import Plan

from emitcheck_launch import Launch

# -- a case: one plan x target x release, and its jobs ------------------------------------------------

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
