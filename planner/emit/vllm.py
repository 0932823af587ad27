"""vLLM launch scripts: ``vllm serve`` per replica, Ray for replicas that span nodes.

Flags checked against vLLM 0.11 (the ``vllm serve`` parser):
  vllm-project/vllm vllm/engine/arg_utils.py @ 99d7eb5d6a51 (EngineArgs.add_cli_args; its
  deprecation notices target v0.12.0): --tensor-parallel-size, --pipeline-parallel-size,
  --max-num-seqs, --max-model-len, --max-num-batched-tokens, --gpu-memory-utilization,
  --kv-cache-dtype (CacheDType: auto|bfloat16|fp8|...), --quantization, --enable-expert-parallel,
  --distributed-executor-backend (ray|mp|...);
  vllm/entrypoints/openai/cli_args.py (FrontendArgs): --port;
  vllm/envs.py: VLLM_PP_LAYER_PARTITION (comma-separated layers per stage, read by get_pp_indices).
Each of these (and the data-parallel flags below) is also in the 0.33.0 wheel's arg_utils.py,
entrypoints and envs.py; the files are written for the release ``--runtime-version`` names, 0.11.0
to 0.33.0 (default 0.33.0), and differ only in the all-to-all backend (below).
Multi-node: the Ray cluster launch vLLM documents (docs "Parallelism and Scaling",
examples/online_serving/multi-node-serving.sh): ``ray start --head --port`` on the first node,
``ray start --address`` on the others, then ``vllm serve ... --distributed-executor-backend ray``
on the first node.
The command builders here (``serve_command``, ``pp_partition_env``, ``ray_wait_command``,
``dp_node_ranks``) are shared with the Kubernetes emitter (planner/emit/k8s.py), which runs the same
commands in pods of ``image(version)``, the vLLM OpenAI-server image of the release written for.

Attention data parallelism (``strategy.attention_dp`` = D > 1, MoE): vLLM runs D data-parallel
engines of ``--tensor-parallel-size`` tp/D each, in lockstep, with the expert layers spread over all
D x tp/D = tp GPUs by ``--enable-expert-parallel`` (docs "Data Parallel Deployment",
docs/serving/data_parallel_deployment.md: "expert layers form a tensor parallel group of size DP x TP",
expert parallelism with --enable-expert-parallel). Flags, same parser as above (arg_utils.py @
99d7eb5d6a51, ParallelConfig group): --data-parallel-size (-dp), --data-parallel-size-local (-dpl),
--data-parallel-start-rank (-dpr), --data-parallel-address (-dpa), --data-parallel-rpc-port (-dpp);
--headless from the serve parser (vllm/entrypoints/openai/cli_args.py make_arg_parser).
  * ``--max-num-seqs`` is per data-parallel engine (the same docs page: "--max-num-seqs applies per DP
    rank"), so it is batch_size // D; ``--max-num-batched-tokens`` is the plan's per-scheduler value.
  * One node: one ``vllm serve ... --data-parallel-size D``; vLLM gives local engine j the visible GPUs
    j*tp/D .. (j+1)*tp/D - 1 (vllm/v1/engine/utils.py get_device_indices), so CUDA_VISIBLE_DEVICES in
    rank order puts attention group j on the plan's GPUs.
  * Several nodes (no Ray): the multi-node launch of that docs page. The first node runs the API server
    and its engines (--data-parallel-size-local, --data-parallel-address, --data-parallel-rpc-port);
    every other node runs ``--headless`` with its own --data-parallel-start-rank. The head binds its
    RPC socket to --data-parallel-address, so on the head that must be the head's IP address (the
    script asks for it in DP_HEAD_IP_<node>; the docs' examples give an IP); the other nodes only
    connect and default to the head's name. Engines on the other nodes learn the head's torch
    process-group port in the start-up handshake (vllm/v1/engine/utils.py), so only the RPC port is set.
  * Several nodes also select DeepEP's kernels for the experts' exchange (``all2all_backend``): the plan
    priced it as DeepEP's all-to-alls; DeepEP must be installed. vLLM 0.11.0 reads the choice from
    VLLM_ALL2ALL_BACKEND only; from 0.11.1 the ``--all2all-backend`` flag sets it, and from 0.16.0 the
    variable is ignored (planner/emit/versions.py), so the written form follows ``--runtime-version``.
Cross-field rule (``check_scheduler``): vLLM's SchedulerConfig refuses max_num_batched_tokens <
max_num_seqs (vllm/config/scheduler.py, _verify_args in 0.11.0 and verify_max_model_len in 0.33.0);
its other check there, max_num_batched_tokens >= max_model_len, holds only without chunked prefill,
which the V1 engine turns on for generation models, so it is not a rule here.
  Refused: an attention group spread over two nodes (a data-parallel engine is on one node), DP ranks
  of a node that are not consecutive, and an expert-parallel degree other than tp (vLLM's expert group
  is all D x tp/D GPUs).
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from costmodels.calibration import overlaps_host
from planner.emit import (
    ReplicaLayout,
    all_nodes,
    attention_groups,
    csv,
    floor2,
    group_script,
    kv_cache_flag,
    layouts,
    model_ref,
    needs_fp8_quantization,
    runtime_rule_error,
    uneven,
)
from planner.emit.ray_order import node_order
from planner.emit.router import add_file, check_host, equal_shares, front_files, replica_endpoints, worker_router_script
from planner.emit.shell import Sh, continued, safe_text, sh_assign, sh_cmd, sh_comment, sh_var, sh_word
from planner.emit.versions import DEFAULT, VLLM_ALL2ALL_FLAG_SINCE, VLLM_RAY_ASYNC_SCHEDULING_SINCE, Version, text
from planner.plan.schema import Plan, ReplicaGroup
from topologies.errors import InputError

DEFAULT_VERSION: Version = DEFAULT["vllm"]
SOURCE = ("vllm-project/vllm vllm/engine/arg_utils.py @ 99d7eb5d6a51 (0.11), vllm/entrypoints/openai/cli_args.py; "
          "the same files of the 0.33.0 wheel")
BASE_PORT = 8000
RAY_PORT = 6379
# vllm-project/router, PyPI vllm-router 0.1.17: vllm_router/router_args.py (--worker-urls, --policy, --host, --port)
ROUTER_TITLE = "vLLM router (vllm-router 0.1.17)"
DP_RPC_PORT = 13345  # --data-parallel-rpc-port of a multi-node replica, + (its HTTP port - BASE_PORT)


def image(version: Version) -> str:
    """The vLLM OpenAI-server image of a release (Docker Hub ``vllm/vllm-openai:v<release>``)."""
    return f"vllm/vllm-openai:v{text(version)}"


def check_scheduler(plan: Plan, g: ReplicaGroup) -> None:
    """Refuse what vLLM's SchedulerConfig refuses: ``--max-num-batched-tokens`` below ``--max-num-seqs``
    (per data-parallel engine: batch_size // attention_dp), see the module docstring."""
    s = g.strategy
    d, _ = attention_groups(g)
    seqs = max(1, s.batch_size // d)
    if s.max_num_batched_tokens < seqs:
        raise runtime_rule_error(plan, g, "vllm", f"vLLM refuses --max-num-batched-tokens "
                                 f"{s.max_num_batched_tokens} below --max-num-seqs {seqs}",
                                 "strategy.max_num_batched_tokens",
                                 "raise max_num_batched_tokens to at least the batch or lower batch_size")


@dataclass(frozen=True)
class DataParallel:
    """The data-parallel part of one ``vllm serve`` of a replica with attention_dp > 1."""
    local: int | None = None        # --data-parallel-size-local (multi-node launches only)
    start: int | Sh | None = None   # --data-parallel-start-rank (the nodes after the first)
    address: Sh | None = None       # --data-parallel-address: a shell expansion (see sh_var)
    rpc_port: int | None = None     # --data-parallel-rpc-port
    headless: bool = False          # --headless: engines only, no API server (the nodes after the first)


def serve_command(model: str, g: ReplicaGroup, quant: bool, port: int, ray: bool,
                  dp: DataParallel | None = None, version: Version = DEFAULT_VERSION) -> list[tuple]:
    """``vllm serve`` for one replica of the group: the program, then one flag (with its value) per
    part, each part a tuple of words for :func:`planner.emit.shell.continued` (quoted there).

    With attention_dp > 1, ``dp`` holds the per-node data-parallel flags of a multi-node launch
    (None: the replica is on one node); a multi-node one also gets ``--all2all-backend`` from the
    release that has the flag (``version``; earlier ones take :func:`all2all_env`)."""
    s, m = g.strategy, g.memory_per_gpu_bytes
    d, at = attention_groups(g)
    if d > 1 and ray:
        raise ValueError("a data-parallel vLLM launch does not use the Ray executor")
    cmd: list[tuple] = [("vllm", "serve", model),
                        ("--tensor-parallel-size", at),
                        ("--pipeline-parallel-size", s.pp)]
    if d > 1:
        cmd.append(("--data-parallel-size", d))
    cmd += [("--max-num-seqs", max(1, s.batch_size // d)),
            ("--max-model-len", s.max_model_len),
            ("--max-num-batched-tokens", s.max_num_batched_tokens),
            ("--gpu-memory-utilization", floor2(m.capacity - m.reserve, m.capacity)),
            ("--kv-cache-dtype", kv_cache_flag(g, fp8="fp8", runtime="vLLM"))]
    if quant:
        cmd.append(("--quantization", "fp8"))
    if overlaps_host("vllm", pp=s.pp) and (not ray or version >= VLLM_RAY_ASYNC_SCHEDULING_SINCE):
        # the plan priced this replica's host work as hidden behind the GPU: asynchronous scheduling,
        # opt-in in the older releases written for, the default in later ones. Under the Ray executor (a
        # replica across nodes) only from VLLM_RAY_ASYNC_SCHEDULING_SINCE: the releases before refuse the
        # flag there, so a replica written for them runs without it.
        cmd.append(("--async-scheduling",))
    if d > 1 and s.ep != s.tp:
        raise InputError(f"with attention data parallelism vLLM spreads the experts over all {s.tp} GPUs of the "
                         f"replica (data-parallel {d} x tensor-parallel {at}, --enable-expert-parallel); the plan's "
                         f"ep={s.ep} cannot be set", field=f"replica_groups.{g.id}.strategy.ep")
    if s.ep > 1:
        if s.ep != s.tp:
            raise InputError(f"vLLM's expert-parallel size is the tensor-parallel size ({s.tp}); the plan's ep={s.ep} "
                             "cannot be set", field=f"replica_groups.{g.id}.strategy.ep")
        cmd.append(("--enable-expert-parallel",))
    if dp is not None:
        if dp.headless:
            cmd.append(("--headless",))
        cmd.append(("--data-parallel-size-local", dp.local))
        if dp.start is not None:
            cmd.append(("--data-parallel-start-rank", dp.start))
        cmd += [("--data-parallel-address", dp.address), ("--data-parallel-rpc-port", dp.rpc_port)]
        if version >= VLLM_ALL2ALL_FLAG_SINCE:
            cmd.append(("--all2all-backend", all2all_backend(g)))
    if ray:
        cmd.append(("--distributed-executor-backend", "ray"))
    if dp is None or not dp.headless:
        cmd.append(("--port", port))
    return cmd


def dp_node_ranks(g: ReplicaGroup, row: ReplicaLayout) -> list[tuple[str, int, int]]:
    """Per node of a replica with attention_dp > 1, in rank order: (node, its first DP rank, its DP ranks).

    DP rank k is attention group k (tp ranks k*at .. (k+1)*at - 1, at = tp / attention_dp); vLLM runs it
    as one engine on one node, and a node's engines are consecutive DP ranks from its start rank."""
    _, at = attention_groups(g)
    r = row.replica
    ranks = sorted(r.ranks, key=lambda k: k.rank)
    where = f"replica_groups.{g.id}.replicas.{r.index}.ranks"
    out: list[tuple[str, int, int]] = []
    for k in range(len(ranks) // at):
        nodes = list(dict.fromkeys(x.node for x in ranks[k * at:(k + 1) * at]))
        if len(nodes) > 1:
            raise InputError(f"vLLM runs each data-parallel engine (an attention group of {at} GPUs) on one node; "
                             f"attention group {k} of replica {r.index} spans {', '.join(nodes)}", field=where)
        node = nodes[0]
        if out and out[-1][0] == node:
            out[-1] = (node, out[-1][1], out[-1][2] + 1)
        elif any(n == node for n, _, _ in out):
            raise InputError(f"vLLM gives each node consecutive data-parallel ranks; replica {r.index} has attention "
                             f"groups on {node} before and after another node", field=where)
        else:
            out.append((node, k, 1))
    return out


def all2all_backend(g: ReplicaGroup) -> str:
    """The MoE exchange of a replica whose experts span nodes (attention DP over several nodes):
    DeepEP's kernels, which the plan priced, instead of vLLM's default all-gather/reduce-scatter
    (vllm/config/parallel.py All2AllBackend: allgather_reducescatter by default; DeepEP's
    low-latency kernels for decode-only replicas, its high-throughput ones otherwise)."""
    return "deepep_low_latency" if g.role == "decode" else "deepep_high_throughput"


def all2all_env(g: ReplicaGroup, multi_node: bool, version: Version = DEFAULT_VERSION) -> dict[str, str]:
    """``VLLM_ALL2ALL_BACKEND`` for releases before the ``--all2all-backend`` flag (see
    :func:`all2all_backend`); empty otherwise, as later releases warn about or ignore the variable."""
    if g.strategy.attention_dp > 1 and multi_node and version < VLLM_ALL2ALL_FLAG_SINCE:
        return {"VLLM_ALL2ALL_BACKEND": all2all_backend(g)}
    return {}


def head_ip_var(head: str, nodes: Iterable[str] = ()) -> str:
    """Shell variable that holds the IP address of a data-parallel head node: its name with '_' for
    what a shell name cannot hold, and a digest of the name only where another of the plan's ``nodes``
    would get the same variable (``h-0`` and ``h.0``), so that each head has its own.

    >>> head_ip_var("dgx0"), head_ip_var("gpu-node-1", ["gpu-node-1", "gpu-node-2"])
    ('DP_HEAD_IP_dgx0', 'DP_HEAD_IP_gpu_node_1')
    >>> head_ip_var("h-0", ["h-0", "h.0"]) != head_ip_var("h.0", ["h-0", "h.0"])
    True
    """
    def word(name: str) -> str:
        return re.sub(r"[^A-Za-z0-9_]", "_", name)

    w = word(head)
    if any(n != head and word(n) == w for n in nodes):
        w += "_" + hashlib.sha256(head.encode()).hexdigest()[:12]
    return "DP_HEAD_IP_" + w


def pp_partition_env(g: ReplicaGroup) -> dict[str, str]:
    """The environment that pins an uneven pipeline layer split (empty when the split is even)."""
    split = g.strategy.layer_split
    return {"VLLM_PP_LAYER_PARTITION": csv(split)} if uneven(split) else {}


def ray_wait_command(world: int) -> str:
    """Shell loop that waits until the Ray cluster reports ``world`` GPUs."""
    code = (f'import ray, sys; ray.init(address="auto"); '
            f'sys.exit(ray.cluster_resources().get("GPU", 0) < {int(world)})')
    return f"until {sh_cmd(['python3', '-c', code])}; do sleep 5; done"


def _env_words(env: dict[str, str]) -> list[Sh]:
    return [sh_assign(k, v) for k, v in env.items()]


def _group_script(plan: Plan, g: ReplicaGroup, rows: list[ReplicaLayout], model: str, quant: bool,
                  version: Version) -> str:
    pp_env = _env_words(pp_partition_env(g))
    nodes = all_nodes(rows)
    plan_nodes = sorted({k.node for grp in plan.replica_groups for rep in grp.replicas for k in rep.ranks})
    bodies: dict[str, list[str]] = {n: [] for n in nodes}
    d, at = attention_groups(g)
    for i, row in enumerate(rows):
        r = row.replica
        if d > 1 and row.multi_node:
            _dp_multi_node(g, row, model, quant, bodies, version, plan_nodes)
            continue
        if not row.multi_node:
            gpus = csv(row.gpus[row.head])
            dp_note = (f"; {d} data-parallel engines (attention groups) of {at} GPU(s), experts over all "
                       f"{g.strategy.tp}" if d > 1 else "")
            bodies[row.head].append("  " + sh_comment(f"replica {r.index}: GPUs {gpus}, port {row.port}{dp_note}"))
            cmd = serve_command(model, g, quant, row.port, ray=False, version=version)
            cmd[0] = (sh_assign("CUDA_VISIBLE_DEVICES", gpus), *pp_env, *cmd[0])
            bodies[row.head].extend(continued(cmd, background=True))
            continue
        _ray_replica(g, row, RAY_PORT + i, model, quant, pp_env, bodies, version)
    return group_script(plan, g, runtime="vLLM", version=text(version), target="vllm", source=SOURCE,
                        replicas=len(rows), nodes=nodes, bodies=bodies)


def _ray_replica(g: ReplicaGroup, row: ReplicaLayout, ray_port: int, model: str, quant: bool, pp_env: list[Sh],
                 bodies: dict[str, list[str]], version: Version) -> None:
    """A replica over several nodes: a Ray cluster of its own (head on its first node), then ``vllm serve``
    with the Ray executor on the head; from three nodes on, the node order vLLM will use is said and, where
    the plan's stages differ, checked first (:mod:`planner.emit.ray_order`)."""
    r, head = row.replica, row.head
    world = sum(len(v) for v in row.gpus.values())
    where = ", ".join(f"{n} GPUs {csv(row.gpus[n])}" for n in row.nodes)
    order = node_order(g, row, version)
    b = bodies[head]
    b.append("  " + sh_comment(f"replica {r.index}: {len(row.nodes)} nodes ({where}); Ray head here, "
                               f"port {row.port}"))
    b.extend("  " + sh_comment(line) for line in order.comments)
    if overlaps_host("vllm", pp=g.strategy.pp) and version < VLLM_RAY_ASYNC_SCHEDULING_SINCE:
        b.append("  " + sh_comment(f"vLLM {text(version)}'s Ray executor refuses --async-scheduling, so this replica "
                                   "runs without it: about 1 ms of host work per step that the plan's TPOT counted "
                                   "as hidden"))
    b.append("  " + sh_cmd([sh_assign("CUDA_VISIBLE_DEVICES", csv(row.gpus[head])), *pp_env, "ray", "start",
                            "--head", f"--port={ray_port}", f"--num-gpus={len(row.gpus[head])}",
                            *order.resources(head)]))
    b.append("  " + sh_comment(f"now run this script on {', '.join(row.nodes[1:])}; wait until the cluster has "
                               f"all {world} GPUs:"))
    b.append(f"  {ray_wait_command(world)}")
    b.extend("  " + line for line in order.check_lines())
    cmd = serve_command(model, g, quant, row.port, ray=True, version=version)
    cmd[0] = (*pp_env, *cmd[0])
    b.extend(continued(cmd, background=True))
    for n in row.nodes[1:]:
        bodies[n].append("  " + sh_comment(f"replica {r.index}: join the Ray cluster headed by {head}"))
        bodies[n].append("  " + sh_assign("ray_head", check_host(head, f"replica_groups.{g.id}.replicas.{r.index}.ranks",
                                                                 "ray start --address")))
        address = Sh("--address=" + sh_var("RAY_HEAD_ADDR", "ray_head", f":{ray_port}"))
        bodies[n].append("  " + sh_cmd([sh_assign("CUDA_VISIBLE_DEVICES", csv(row.gpus[n])), *pp_env, "ray",
                                        "start", address, f"--num-gpus={len(row.gpus[n])}", *order.resources(n)]))


def _dp_multi_node(g: ReplicaGroup, row: ReplicaLayout, model: str, quant: bool,
                   bodies: dict[str, list[str]], version: Version, plan_nodes: list[str]) -> None:
    """vLLM's multi-node data-parallel launch of one replica: API server and first engines on its first
    node, ``--headless`` engines on the others; no Ray."""
    d, at = attention_groups(g)
    r = row.replica
    per_node = dp_node_ranks(g, row)
    var = head_ip_var(row.head, plan_nodes)
    rpc = DP_RPC_PORT + (row.port - BASE_PORT)
    where = ", ".join(f"{n} GPUs {csv(row.gpus[n])}" for n in row.nodes)
    for node, start, local in per_node:
        head = node == row.head
        dp = DataParallel(local=local, start=None if head else start, rpc_port=rpc, headless=not head,
                          address=sh_var(var) if head else sh_var(var, "dp_head"))
        b = bodies[node]
        ranks = f"DP ranks {start}-{start + local - 1} of {d}" if local > 1 else f"DP rank {start} of {d}"
        if head:
            b.append("  " + sh_comment(f"replica {r.index}: {len(row.nodes)} nodes ({where}); data-parallel head "
                                       f"here ({ranks}, tensor-parallel {at} each), port {row.port}"))
            b.append("  " + sh_comment(f"vLLM binds its data-parallel RPC port {rpc} to ${var}, so that must be "
                                       f"{row.head}'s IP address (not a host name); start the other nodes too"))
            need = sh_word(safe_text(f"set {var} to the IP address of {row.head}"))
            b.append(f'  if [ -z "${{{var}:-}}" ]; then printf \'%s\\n\' {need} >&2; exit 2; fi')
        else:
            b.append("  " + sh_comment(f"replica {r.index}: {ranks} (tensor-parallel {at} each), engines only "
                                       f"(--headless), serving through the API server on {row.head} at ${var} "
                                       f"(default: the name {row.head})"))
            b.append("  " + sh_assign("dp_head", check_host(row.head, f"replica_groups.{g.id}.replicas.{r.index}.ranks",
                                                            "--data-parallel-address")))
        cmd = serve_command(model, g, quant, row.port, ray=False, dp=dp, version=version)
        env = _env_words(all2all_env(g, multi_node=True, version=version))
        cmd[0] = (sh_assign("CUDA_VISIBLE_DEVICES", csv(row.gpus[node])), *env, *cmd[0])
        b.extend(continued(cmd, background=True))


def emit_vllm(plan: Plan, model_path: str | None = None, version: Version = DEFAULT_VERSION) -> dict[str, str]:
    model, ckpt = model_ref(plan, model_path)
    rows = layouts(plan, BASE_PORT)
    files = {}
    for g in plan.replica_groups:
        check_scheduler(plan, g)
        quant = needs_fp8_quantization(g, ckpt, "vLLM")
        files[f"vllm-{g.id}.sh"] = _group_script(plan, g, rows[g.id], model, quant, version)
    _front_ends(plan, rows, files)
    return dict(sorted(files.items()))


def _front_ends(plan: Plan, rows: dict[str, list[ReplicaLayout]], files: dict[str, str]) -> None:
    """nginx and Envoy in front of several replicas, and vLLM's own router when the shares are equal
    (planner/emit/router.py)."""
    eps = replica_endpoints(plan, rows)
    for name, body in front_files(plan, eps, "vllm").items():
        add_file(files, name, body)
    if len(eps) > 1 and equal_shares(eps):
        add_file(files, "vllm-router.sh", worker_router_script(plan, eps, ("vllm-router",), ROUTER_TITLE, "vllm"))
