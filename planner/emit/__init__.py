"""Emitters: turn a placement plan into the launch files a serving runtime takes.

Each emitter is a pure function ``emit_<target>(plan, model_path=None) -> dict[str, str]``
mapping file name to file content (sorted by name, deterministic, no I/O). A plan the
runtime cannot express (an unknown checkpoint, a dtype it has no flag for, an expert or
layer layout it cannot pin) raises :class:`InputError` naming the field, never a file
with a silently different deployment.

Every command-line flag an emitter writes was looked up in the runtime's own argument
parser; the file and version are named at the top of each emitter module and in the
files it writes, and ``tests/test_emit.py`` keeps the list of allowed flags per runtime.
Besides the runtimes' launch scripts (vllm, sglang, trtllm), ``ray`` writes Ray placement
groups that reserve each replica's GPUs on its plan nodes, and ``k8s`` Kubernetes manifests
(Deployment / LeaderWorkerSet per replica) that run the vLLM commands on the plan's nodes.
The runtime targets also write, for a plan of several serving endpoints, a front end that splits
requests by ``traffic_share`` (nginx, Envoy, the runtime's own router: planner/emit/router.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from planner.emit.shell import node_case, safe_text, sh_comment
from topologies.errors import InputError

if TYPE_CHECKING:  # annotations; the functions that need the schema at run time import it, so that the
    # command line (which reads TARGETS) starts without building the pydantic models
    from planner.plan.schema import Plan, Replica, ReplicaGroup

TARGETS = ("vllm", "sglang", "trtllm", "ray", "k8s")

# Built-in model name -> (Hugging Face repo id, dtype the checkpoint ships in).
HF_MODELS: dict[str, tuple[str, str]] = {
    "deepseek-v3": ("deepseek-ai/DeepSeek-V3", "fp8"),
    "falcon-180b": ("tiiuae/falcon-180B-chat", "bf16"),
    "gpt-j-6b": ("EleutherAI/gpt-j-6b", "bf16"),
    "gpt-oss-120b": ("openai/gpt-oss-120b", "fp4"),
    "llama-2-13b": ("meta-llama/Llama-2-13b-chat-hf", "bf16"),
    "llama-2-70b": ("meta-llama/Llama-2-70b-chat-hf", "bf16"),
    "llama-2-7b": ("meta-llama/Llama-2-7b-chat-hf", "bf16"),
    "llama-3.1-405b": ("meta-llama/Llama-3.1-405B-Instruct", "bf16"),
    "llama-3.1-70b": ("meta-llama/Llama-3.1-70B-Instruct", "bf16"),
    "llama-3.1-8b": ("meta-llama/Llama-3.1-8B-Instruct", "bf16"),
    "mistral-7b": ("mistralai/Mistral-7B-v0.1", "bf16"),
    "mixtral-8x22b": ("mistralai/Mixtral-8x22B-Instruct-v0.1", "bf16"),
    "mixtral-8x7b": ("mistralai/Mixtral-8x7B-Instruct-v0.1", "bf16"),
    "qwen2.5-72b": ("Qwen/Qwen2.5-72B-Instruct", "bf16"),
    "qwen3-235b-a22b": ("Qwen/Qwen3-235B-A22B", "bf16"),
    "qwen3-30b-a3b": ("Qwen/Qwen3-30B-A3B", "bf16"),
    "qwen3-32b": ("Qwen/Qwen3-32B", "bf16"),
    # Catalog additions of issue 14 (the repo each config.json came from; instruction-tuned where both exist).
    "deepseek-r1-distill-qwen-1.5b": ("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", "bf16"),
    "deepseek-r1-distill-qwen-7b": ("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", "bf16"),
    "deepseek-r1-distill-qwen-14b": ("deepseek-ai/DeepSeek-R1-Distill-Qwen-14B", "bf16"),
    "deepseek-r1-distill-qwen-32b": ("deepseek-ai/DeepSeek-R1-Distill-Qwen-32B", "bf16"),
    "deepseek-v2": ("deepseek-ai/DeepSeek-V2-Chat", "bf16"),
    "deepseek-v2-lite": ("deepseek-ai/DeepSeek-V2-Lite-Chat", "bf16"),
    "gemma-2-2b": ("google/gemma-2-2b-it", "bf16"),
    "gemma-2-9b": ("google/gemma-2-9b-it", "bf16"),
    "gemma-2-27b": ("google/gemma-2-27b-it", "bf16"),
    "gemma-3-1b": ("google/gemma-3-1b-it", "bf16"),
    "gemma-3-4b": ("google/gemma-3-4b-it", "bf16"),
    "gemma-3-12b": ("google/gemma-3-12b-it", "bf16"),
    "gemma-3-27b": ("google/gemma-3-27b-it", "bf16"),
    "gpt-oss-20b": ("openai/gpt-oss-20b", "fp4"),
    "internlm-20b": ("internlm/internlm-20b", "bf16"),
    "llama-3-8b": ("meta-llama/Meta-Llama-3-8B-Instruct", "bf16"),
    "llama-3-70b": ("meta-llama/Meta-Llama-3-70B-Instruct", "bf16"),
    "llama-3.2-1b": ("meta-llama/Llama-3.2-1B-Instruct", "bf16"),
    "llama-3.2-3b": ("meta-llama/Llama-3.2-3B-Instruct", "bf16"),
    "llama-4-maverick-17b-128e": ("meta-llama/Llama-4-Maverick-17B-128E-Instruct", "bf16"),
    "llama-4-scout-17b-16e": ("meta-llama/Llama-4-Scout-17B-16E-Instruct", "bf16"),
    "mistral-large-123b": ("mistralai/Mistral-Large-Instruct-2407", "bf16"),
    "mistral-nemo-12b": ("mistralai/Mistral-Nemo-Instruct-2407", "bf16"),
    "mistral-small-24b": ("mistralai/Mistral-Small-24B-Instruct-2501", "bf16"),
    "phi-3-medium-4k": ("microsoft/Phi-3-medium-4k-instruct", "bf16"),
    "phi-3-mini-128k": ("microsoft/Phi-3-mini-128k-instruct", "bf16"),
    "phi-3-mini-4k": ("microsoft/Phi-3-mini-4k-instruct", "bf16"),
    "phi-4": ("microsoft/phi-4", "bf16"),
    "qwen2.5-7b": ("Qwen/Qwen2.5-7B-Instruct", "bf16"),
    "qwen2.5-14b": ("Qwen/Qwen2.5-14B-Instruct", "bf16"),
    "qwen2.5-32b": ("Qwen/Qwen2.5-32B-Instruct", "bf16"),
    "qwen3-0.6b": ("Qwen/Qwen3-0.6B", "bf16"),
    "qwen3-1.7b": ("Qwen/Qwen3-1.7B", "bf16"),
    "qwen3-4b": ("Qwen/Qwen3-4B", "bf16"),
    "qwen3-8b": ("Qwen/Qwen3-8B", "bf16"),
    "qwen3-14b": ("Qwen/Qwen3-14B", "bf16"),
    "qwq-32b": ("Qwen/QwQ-32B", "bf16"),
}

_HALF = ("bf16", "fp16")


def check_model_path(model_path: str) -> None:
    """Refuse a ``--model-path`` the runtimes would misread: they take the model as a positional word
    (`vllm serve MODEL`, `trtllm-serve MODEL`), so one starting with '-' would be parsed as an option of
    theirs (`--model-path=--trust-remote-code`); an empty one names no checkpoint (it was once taken
    as no flag, so the files served the Hugging Face repository without saying so)."""
    if not model_path.strip():
        raise InputError(f"{safe_text(repr(model_path))} names no checkpoint; give its directory or Hugging Face "
                         "repository, or leave the flag out to serve the model's own repository",
                         field="--model-path")
    if model_path.startswith("-"):
        raise InputError(f"{safe_text(repr(model_path))} starts with '-', so the runtime would read it as one of its "
                         "options; give a path such as ./" + safe_text(model_path), field="--model-path")


def hf_checkpoint(name: str, field: str | None = None) -> tuple[str, str]:
    """(the Hugging Face repository, its weights' dtype) of model ``name``, refused when none is known."""
    known = HF_MODELS.get(name)
    if known is None:
        raise InputError(f"no Hugging Face repository is known for model {name!r}; give the checkpoint "
                         "with --model-path", field=field)
    return known


def model_ref(plan: Plan, model_path: str | None) -> tuple[str, str | None]:
    """(what to pass the runtime as the model, the checkpoint's dtype if known)."""
    name = plan.inputs.model.name
    if model_path is not None:  # checked by emit() (check_model_path), for every target
        known = HF_MODELS.get(name)
        return model_path, known[1] if known else None
    return hf_checkpoint(name, field="inputs.model.name")


def needs_fp8_quantization(group: ReplicaGroup, checkpoint_dtype: str | None, target: str) -> bool:
    """True when the runtime must quantize weights to FP8 on load; refuse what no flag can express."""
    w = group.strategy.weight_dtype
    if w == checkpoint_dtype or (w in _HALF and checkpoint_dtype in (*_HALF, None)):
        return False
    if w == "fp8" and checkpoint_dtype != "fp8":
        return True
    raise InputError(f"weights in {w} from a {checkpoint_dtype or 'unknown-dtype'} checkpoint cannot be set by "
                     f"a {target} flag; give a {w} checkpoint with --model-path",
                     field=f"replica_groups.{group.id}.strategy.weight_dtype")


def floor2(num: int, den: int) -> str:
    """num/den rounded down to two decimals, as text (exact integer arithmetic)."""
    if den <= 0 or num <= 0:
        raise InputError("memory budget leaves nothing for the runtime", field="memory_per_gpu_bytes")
    pct = min(num * 100 // den, 100)
    return f"{pct // 100}.{pct % 100:02d}"


@dataclass(frozen=True)
class ReplicaLayout:
    replica: Replica
    nodes: list[str]                  # nodes in order of first appearance by rank (rank 0's node first)
    gpus: dict[str, list[int]]        # node -> GPU indices of its ranks, in rank order
    port: int                         # HTTP port of the replica (on its first node)

    @property
    def head(self) -> str:
        return self.nodes[0]

    @property
    def multi_node(self) -> bool:
        return len(self.nodes) > 1


def layouts(plan: Plan, base_port: int) -> dict[str, list[ReplicaLayout]]:
    """Per group, each replica's nodes, GPUs and a port distinct among replicas sharing a head node."""
    used: dict[str, int] = {}
    out: dict[str, list[ReplicaLayout]] = {}
    for g in plan.replica_groups:
        rows = []
        for r in g.replicas:
            nodes: list[str] = []
            gpus: dict[str, list[int]] = {}
            for k in sorted(r.ranks, key=lambda k: k.rank):
                if k.node not in gpus:
                    nodes.append(k.node)
                    gpus[k.node] = []
                gpus[k.node].append(k.gpu_index)
            if not nodes:
                raise InputError("replica has no ranks", field=f"replica_groups.{g.id}.replicas.{r.index}.ranks")
            n = used.get(nodes[0], 0)
            used[nodes[0]] = n + 1
            rows.append(ReplicaLayout(r, nodes, gpus, base_port + n))
        out[g.id] = rows
    return out


def all_nodes(rows: list[ReplicaLayout]) -> list[str]:
    seen: list[str] = []
    for row in rows:
        for n in row.nodes:
            if n not in seen:
                seen.append(n)
    return sorted(seen)


def check_node_names(g: ReplicaGroup, pattern, why: str) -> None:
    """Refuse a group whose plan node names the target cannot write: ``node name 'x' {why}``."""
    for r in g.replicas:
        for i, k in enumerate(r.ranks):
            if not pattern.fullmatch(k.node):
                raise InputError(f"node name {k.node!r} {why}",
                                 field=f"replica_groups.{g.id}.replicas.{r.index}.ranks.{i}.node")


def uneven(split: list[int]) -> bool:
    return len(set(split)) > 1


def csv(xs) -> str:
    return ",".join(str(x) for x in xs)


def script(lines: list[str]) -> str:
    return "\n".join(lines).rstrip("\n") + "\n"


def kv_cache_flag(g: ReplicaGroup, *, fp8: str, runtime: str) -> str:
    """The ``--kv-cache-dtype`` value for the plan's KV format: ``fp8`` spelled the runtime's way,
    16-bit as ``auto`` (the model's own dtype)."""
    kv = g.strategy.kv_dtype
    if kv == "fp8":
        return fp8
    if kv in ("bf16", "fp16"):
        return "auto"
    raise InputError(f"{runtime} has no --kv-cache-dtype for {kv}", field=f"replica_groups.{g.id}.strategy.kv_dtype")


def attention_groups(g: ReplicaGroup) -> tuple[int, int]:
    """(attention groups per pipeline stage, GPUs per attention group) of the group's replicas.

    ``strategy.attention_dp`` = 1 is ordinary tensor parallelism: one group of ``tp`` GPUs. Above 1,
    attention group ``k`` is tp ranks ``k*(tp/attention_dp)`` .. ``(k+1)*(tp/attention_dp) - 1`` of each
    stage. Refused here, for every target: a degree that does not divide ``tp``, and attention data
    parallelism together with pipeline parallelism (the planner makes neither).
    """
    s = g.strategy
    d = s.attention_dp
    if d == 1:
        return 1, s.tp
    if s.tp % d:
        raise InputError(f"attention_dp={d} does not divide the {s.tp} GPUs of a stage (tp)",
                         field=f"replica_groups.{g.id}.strategy.attention_dp")
    if s.pp != 1:
        raise InputError(f"attention data parallelism (attention_dp={d}) with pipeline parallelism (pp={s.pp}) "
                         "is not written by any emitter", field=f"replica_groups.{g.id}.strategy.pp")
    return d, s.tp // d


def shape_text(g: ReplicaGroup) -> str:
    """``tp=.. pp=.. ep=..`` for headers, with ``attention_dp=..`` when it is above 1."""
    s = g.strategy
    text = f"tp={s.tp} pp={s.pp} ep={s.ep}"
    return text + (f" attention_dp={s.attention_dp}" if s.attention_dp > 1 else "")


def group_script(plan: Plan, g: ReplicaGroup, *, runtime: str, version: str, target: str, source: str,
                 replicas: int, nodes: list[str], bodies: dict[str, list[str]]) -> str:
    """The whole script of one replica group: header, then a ``case`` over its nodes; each node
    that starts processes in the background waits for them."""
    for n in nodes:
        if any(line.rstrip().endswith("&") for line in bodies[n]):
            bodies[n].append("  wait")
    header = [
        "#!/usr/bin/env bash",
        sh_comment(f"{runtime} {version} launch for plan group {g.id} ({g.role}, {g.gpu_label}): "
                   f"{plan.inputs.model.name}, {shape_text(g)}, {replicas} replica(s)"),
        sh_comment(f"generated by {plan.generator} `plan-search emit --target {target}`; flags checked in {source}"),
        "# run on every node of the group with that node's name as the only argument",
        "set -euo pipefail",
        "export CUDA_DEVICE_ORDER=PCI_BUS_ID  # GPU indices below are nvidia-smi's (PCI bus order), not CUDA's default",
    ]
    return script(header + node_case(nodes, bodies))


#: Targets that write prefill/decode pools (disaggregated plans). Ray placement groups reserve
#: GPUs whatever runs on them.
POOL_TARGETS = ("sglang", "ray")


def runtime_rule_error(plan: Plan, g: ReplicaGroup, runtime: str, problem: str, field: str,
                       fix: str) -> InputError:
    """The one-line refusal of a value the target runtime's own validation rejects (``problem``).

    A plan priced for another runtime (``inputs.runtime``) is not re-priced here: its batch, token budget
    and memory came from that runtime's rules, so the fix is to plan again for this one. A plan priced
    for this runtime that still breaks the rule (edited by hand) gets ``fix``."""
    priced = plan.inputs.runtime
    if priced != runtime:
        fix = f"the plan was priced for {priced}; re-plan with --runtime {runtime}"
    return InputError(f"{problem}: {fix}", field=f"replica_groups.{g.id}.{field}")


def emit(plan: Plan, target: str, model_path: str | None = None,
         runtime_version: str | None = None) -> dict[str, str]:
    """The launch files of ``target`` for ``plan``, after the plan's structure is checked (see
    :func:`planner.emit.verify.check_structure`): a hand-edited plan that does not hold together
    is refused before any emitter reads it. ``runtime_version`` (``MAJOR.MINOR[.PATCH]``) picks the
    release of the target's runtime the files are written for (see :mod:`planner.emit.versions`);
    None writes for the newest checked one."""
    from planner.emit.verify import check_structure
    from planner.emit.versions import resolve

    check_structure(plan)
    if model_path is not None:
        check_model_path(model_path)  # every target, the Ray one (which names no checkpoint) included
    pools = [g for g in plan.replica_groups if g.role != "unified"]
    if pools and target in TARGETS and target not in POOL_TARGETS:
        raise InputError(f"the plan has prefill/decode pools and the {target} target does not write them; "
                         f"use --target sglang, or plan again with --disaggregation off",
                         field=f"replica_groups.{pools[0].id}.role")
    if target == "vllm":
        from planner.emit.vllm import emit_vllm as fn
    elif target == "sglang":
        from planner.emit.sglang import emit_sglang as fn
    elif target == "trtllm":
        from planner.emit.trtllm import emit_trtllm as fn
    elif target == "ray":
        from planner.emit.ray import emit_ray as fn
    elif target == "k8s":
        from planner.emit.k8s import emit_k8s as fn
    else:
        raise InputError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}", source="--target")
    version = resolve(target, runtime_version)
    if version is None:
        return fn(plan, model_path=model_path)
    return fn(plan, model_path=model_path, version=version)


def _newer_schema_version(v) -> str | None:
    """``v`` when it is a semantic version above the one this package reads, else None."""
    if not isinstance(v, str):
        return None
    from planner.plan.schema import SCHEMA_VERSION

    parts = v.split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        return None
    ours = tuple(int(p) for p in SCHEMA_VERSION.split("."))
    return v if tuple(int(p) for p in parts) > ours else None


def load_plan(path: str) -> Plan:
    """Read and validate a placement JSON file; every failure is an :class:`InputError` naming the file."""
    from pydantic import ValidationError

    from planner.plan.schema import SCHEMA_VERSION, Plan
    from topologies.load import read_structured_file

    data, _ = read_structured_file(path)
    if not isinstance(data, dict):
        raise InputError("not a placement plan (expected a JSON object)", source=path)
    newer = _newer_schema_version(data.get("schema_version"))
    if newer:
        raise InputError(f"plan schema_version {newer} is newer than this plan-search supports ({SCHEMA_VERSION}); "
                         "upgrade plan-search", source=path)
    try:
        return Plan.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err["loc"]) or None
        msg = "unknown key; remove it or check its spelling" if err["type"] == "extra_forbidden" else err["msg"]
        raise InputError(f"not a valid placement plan: {msg}", source=path, field=loc) from None
