"""SGLang launch scripts: ``python -m sglang.launch_server`` per replica (one line per node).

Flags checked against SGLang 0.5 (``ServerArgs``, flag = ``--`` + field name with ``-``):
  sgl-project/sglang python/sglang/srt/server_args.py (stored snapshot, post-0.5.6 dev tree;
  file id 54487914766 in the search index): --model-path, --host, --port, --tp-size, --pp-size,
  --ep-size, --mem-fraction-static, --max-running-requests, --context-length,
  --chunked-prefill-size, --kv-cache-dtype (auto|fp8_e5m2|fp8_e4m3|bf16|bfloat16|fp4_e2m1),
  --quantization (QUANTIZATION_CHOICES has fp8), --nnodes, --node-rank, --dist-init-addr.
  --ep-size (aliases --expert-parallel-size, --ep) per docs.sglang.io cookbook "Server Arguments".
  SGLANG_PP_LAYER_PARTITION: environment override read by sglang/srt/distributed/utils.py
  get_pp_indices (seen in public launch scripts; not read in SGLang's own source here).
Replicas whose experts span nodes (attention DP over several nodes) add ``--moe-a2a-backend deepep
--deepep-mode auto`` (DeepEP's all-to-alls, which the plan priced; SGLang's own launch configs for
DeepSeek use these flags): SGLang's default exchange gathers every attention group's tokens to
every rank. DeepEP must be installed.
Disaggregated plans (prefill and decode groups): --disaggregation-mode prefill|decode and
--disaggregation-transfer-backend (mooncake|nixl) per docs.sglang.io "PD Disaggregation", with
a distinct --disaggregation-bootstrap-port per prefill server; ``sglang-router.sh`` starts the
router (sgl-router: ``python -m sglang_router.launch_router --pd-disaggregation --prefill URL
BOOTSTRAP_PORT --decode URL``) that sends each request to one prefill and one decode server.
Attention data parallelism (``strategy.attention_dp`` = D > 1, MoE): ``--tp-size`` stays the plan's
tp (the GPUs of the server) and ``--dp-size D --enable-dp-attention`` splits attention into D groups
of tp/D GPUs (ServerArgs fields dp_size, alias --data-parallel-size, and enable_dp_attention in the
snapshot above), with ``--ep-size`` the plan's ep. Each plan replica is still its own server: D is
not a count of replicas. With DP attention SGLang divides two budgets by D
(ServerArgs._handle_data_parallelism: chunked_prefill_size // dp_size; the per-rank limit in
managers/tp_worker.py TpModelWorker, model_executor/model_runner.py in later trees:
max_running_requests // (dp_size if enable_dp_attention else 1)), so ``--max-running-requests`` is
the plan's batch_size over all groups and ``--chunked-prefill-size`` is D x the plan's per-scheduler
max_num_batched_tokens. A prefill server also gets ``--max-prefill-tokens`` = the plan's
max_num_batched_tokens, the step its pool was priced at: SGLang's PrefillAdder
(managers/schedule_policy.py) stops adding prompts to a prefill batch when either rem_input_tokens
(from --max-prefill-tokens, default 16384, per scheduler: managers/tp_worker.py reads
server_args.max_prefill_tokens undivided) or rem_chunk_tokens (from --chunked-prefill-size) runs
out, so a step holds what both allow; with both written out it holds the priced step whatever
SGLang's defaults become. Multi-node replicas use the same --nnodes/--node-rank/--dist-init-addr
launch as above; GPUs in rank order make attention group k the plan's tp ranks k*tp/D .. (k+1)*tp/D - 1.
From SGLang 0.5.22 the width is its own flag, ``--attn-dp-size D`` (ServerArgs field attn_dp_size,
sglang/srt/arg_groups/fields/parallel.py), and ``--dp-size D --enable-dp-attention`` is a deprecated
spelling that resolution turns into it (arg_groups/parallel_hook.py handle_deprecated_dp_attention);
the budgets are divided by attn_dp_size the same way. The release written for (``--runtime-version``,
default 0.5.23) picks the spelling.
Ports (``allocate_ports``): every server of the plan gets ports that no other server of the plan binds
on the same node, counting every port SGLang binds, per sglang/srt/server_args.py PortArgs.init_new
and managers/data_parallel_controller.py (the same rules in 0.5.15 to 0.5.23):
  * ``--port`` on every node of the server: the HTTP server on node rank 0, a stand-in health-check
    server on node rank >= 1 (entrypoints/engine.py, launch_dummy_health_check_server);
  * with DP attention, TCP sockets from a base port: on one node without --dist-init-addr the base is
    --port + 233 (ZMQ_TCP_PORT_DELTA), else the --dist-init-addr port; the server binds the base and
    the 6 ports above it (port_base = base + 1, then port_base + 0..5), and the worker-port handshake
    at 13 (DP_ATTENTION_HANDSHAKE_PORT_DELTA) above --port (one node) or above the --dist-init-addr
    port, all on node rank 0;
  * the --dist-init-addr port itself on node rank 0 (torch.distributed's store), multi-node servers;
  * --disaggregation-bootstrap-port on a prefill server's node rank 0;
  * the PD router's --port and --prometheus-port (sglang-router 0.3.2 router_args.py), on every node,
    as the router may run anywhere.
  Not reserved: the NCCL port, which SGLang picks free at start-up (get_free_port_below_ephemeral).
Not checked here: which models SGLang runs with DP attention (the flag's help names DeepSeek-V2 and
Qwen 2/3 MoE; other MoE models, e.g. Mixtral, may be refused by SGLang at start-up).
"""
from __future__ import annotations

from dataclasses import dataclass

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
    uneven,
)
from planner.emit.router import (
    ENVOY_FILE,
    NGINX_FILE,
    Endpoint,
    add_file,
    check_host,
    equal_shares,
    front_files,
    pools_share,
    replica_endpoints,
    safe_host,
    worker_router_script,
)
from planner.emit.shell import continued, sh_assign, sh_comment, sh_var
from planner.emit.versions import DEFAULT, SGLANG_ATTN_DP_SIZE_SINCE, Version, text
from planner.plan.schema import Plan, ReplicaGroup
from topologies.errors import InputError

DEFAULT_VERSION: Version = DEFAULT["sglang"]
SOURCE = "sgl-project/sglang python/sglang/srt/server_args.py"
BASE_PORT = 30000
DIST_PORT = 50000
BOOTSTRAP_PORT = 8998
TRANSFER_BACKEND = "nixl"
ROUTER_PORT = 8000
ROUTER_METRICS_PORT = 29000  # --prometheus-port, written so the router's second port is known
# sglang/srt/server_args.py (0.5.15 .. 0.5.23): the DP-attention socket base on one node without
# --dist-init-addr, the ports bound above that base, and the worker-port handshake's offset from it.
ZMQ_TCP_PORT_DELTA = 233
DERIVED_PORTS = 6
HANDSHAKE_PORT_DELTA = 13


@dataclass(frozen=True)
class ServerPorts:
    """The ports the emitter sets for one SGLang server (one plan replica)."""
    http: int                     # --port
    dist: int | None = None       # the port of --dist-init-addr (multi-node servers)
    bootstrap: int | None = None  # --disaggregation-bootstrap-port (prefill servers)


def bound_ports(p: ServerPorts, nodes: list[str], dp_attention: bool) -> dict[str, list[int]]:
    """Every TCP port one server binds, per node (its nodes in node-rank order; see the module docstring)."""
    out = {n: [p.http] for n in nodes}
    head = out[nodes[0]]
    if len(nodes) == 1:  # no --dist-init-addr: both derived from --port
        base, handshake = p.http + ZMQ_TCP_PORT_DELTA, p.http + HANDSHAKE_PORT_DELTA
    elif p.dist is not None:  # --dist-init-addr: the base, and the handshake beside it
        base, handshake = p.dist, p.dist + HANDSHAKE_PORT_DELTA
    else:  # a multi-node server whose --dist-init-addr port is not chosen yet (allocate_ports)
        return out
    if len(nodes) > 1 or dp_attention:
        head.append(base)
    if dp_attention:
        head.extend(range(base + 1, base + 1 + DERIVED_PORTS))
        head.append(handshake)
    if p.bootstrap is not None:
        head.append(p.bootstrap)
    return out


def _fits(p: ServerPorts, nodes: list[str], dp_attention: bool, taken: dict[str, set[int]]) -> bool:
    """No port of ``p`` is bound twice on a node, by this server or by one already placed (``taken``)."""
    for n, ports in bound_ports(p, nodes, dp_attention).items():
        if len(set(ports)) < len(ports) or set(ports) & taken.get(n, set()) or max(ports) > 65535:
            return False
    return True


def allocate_ports(plan: Plan, rows: dict[str, list[ReplicaLayout]]) -> dict[tuple[str, int], ServerPorts]:
    """Per (group id, replica index), ports such that no two servers of the plan (nor the PD router,
    wherever it runs) bind the same port on one node: in plan order, the lowest free --port from
    BASE_PORT, then the lowest free --dist-init-addr port from DIST_PORT (multi-node servers), then the
    lowest free bootstrap port from BOOTSTRAP_PORT (prefill servers)."""
    nodes_all = {n for rs in rows.values() for row in rs for n in row.nodes}
    router = {ROUTER_PORT, ROUTER_METRICS_PORT} if any(g.role != "unified" for g in plan.replica_groups) else set()
    taken: dict[str, set[int]] = {n: set(router) for n in nodes_all}
    out: dict[tuple[str, int], ServerPorts] = {}
    for g in plan.replica_groups:
        dpa = g.strategy.attention_dp > 1
        for row in rows[g.id]:
            p = ServerPorts(BASE_PORT)
            while not _fits(p, row.nodes, dpa, taken):
                p = ServerPorts(p.http + 1)
            if row.multi_node:
                p = ServerPorts(p.http, DIST_PORT)
                while not _fits(p, row.nodes, dpa, taken):
                    p = ServerPorts(p.http, p.dist + 1)
            if g.role == "prefill":
                p = ServerPorts(p.http, p.dist, BOOTSTRAP_PORT)
                while not _fits(p, row.nodes, dpa, taken):
                    p = ServerPorts(p.http, p.dist, p.bootstrap + 1)
            for n, ports in bound_ports(p, row.nodes, dpa).items():
                taken[n].update(ports)
            out[(g.id, row.replica.index)] = p
    return out
PD_ROUTER_PORT = ROUTER_PORT
# PyPI sglang-router 0.3.2: sglang_router/router_args.py (--worker-urls, --policy, --pd-disaggregation, --prefill,
# --decode, --host, --port)
ROUTER_TITLE = "SGLang router (sglang-router 0.3.2)"


def _mem_fraction(g: ReplicaGroup) -> str:
    # SGLang's static pool is weights + KV cache; give it everything the plan leaves after
    # activations, runtime overhead and the reserve.
    m = g.memory_per_gpu_bytes
    return floor2(m.capacity - m.reserve - m.activations - m.overhead, m.capacity)


def _launch(model: str, g: ReplicaGroup, quant: bool, ports: ServerPorts, multi_node: bool = False,
            version: Version = DEFAULT_VERSION) -> list[tuple]:
    """The server command of one replica: parts of words for :func:`planner.emit.shell.continued`."""
    s = g.strategy
    d, _ = attention_groups(g)
    cmd: list[tuple] = [("python", "-m", "sglang.launch_server"),
                        ("--model-path", model),
                        ("--tp-size", s.tp),
                        ("--pp-size", s.pp)]
    if d > 1:
        if version >= SGLANG_ATTN_DP_SIZE_SINCE:
            cmd.append(("--attn-dp-size", d))
        else:
            cmd += [("--dp-size", d), ("--enable-dp-attention",)]
    if s.ep > 1:
        cmd.append(("--ep-size", s.ep))
    if d > 1 and multi_node:
        # experts over several nodes: DeepEP's dispatch and combine, as the plan priced them
        # (the default exchange gathers every group's tokens to every rank, over the NICs)
        cmd += [("--moe-a2a-backend", "deepep"), ("--deepep-mode", "auto")]
    # with DP attention both budgets are totals that SGLang divides by dp_size (see the module docstring)
    cmd += [("--mem-fraction-static", _mem_fraction(g)),
            ("--max-running-requests", max(s.batch_size, d)),
            ("--context-length", s.max_model_len),
            ("--chunked-prefill-size", s.max_num_batched_tokens * d),
            ("--kv-cache-dtype", kv_cache_flag(g, fp8="fp8_e4m3", runtime="SGLang"))]
    if quant:
        cmd.append(("--quantization", "fp8"))
    if g.role == "prefill":
        # the step the pool was priced at: a prefill batch stops at the lower of the two budgets
        # (see the module docstring); max_prefill_tokens is per scheduler, never divided by D
        cmd.append(("--max-prefill-tokens", s.max_num_batched_tokens))
    if g.role != "unified":
        cmd += [("--disaggregation-mode", g.role), ("--disaggregation-transfer-backend", TRANSFER_BACKEND)]
        if ports.bootstrap is not None:
            cmd.append(("--disaggregation-bootstrap-port", ports.bootstrap))
    cmd += [("--host", "0.0.0.0"), ("--port", ports.http)]
    return cmd


def _group_script(plan: Plan, g: ReplicaGroup, rows: list[ReplicaLayout], model: str, quant: bool,
                  ports: dict[tuple[str, int], ServerPorts], version: Version) -> str:
    s = g.strategy
    pp_env = [sh_assign("SGLANG_PP_LAYER_PARTITION", csv(s.layer_split))] if uneven(s.layer_split) else []
    nodes = all_nodes(rows)
    bodies: dict[str, list[str]] = {n: [] for n in nodes}
    d, at = attention_groups(g)
    dp_note = f"; DP attention: {d} attention groups of {at} GPU(s)" if d > 1 else ""
    for row in rows:
        r = row.replica
        p = ports[(g.id, r.index)]
        cmd = _launch(model, g, quant, p, multi_node=row.multi_node, version=version)
        if not row.multi_node:
            gpus = csv(row.gpus[row.head])
            bodies[row.head].append("  " + sh_comment(f"replica {r.index}: GPUs {gpus}, port {p.http}{dp_note}"))
            line = [(sh_assign("CUDA_VISIBLE_DEVICES", gpus), *pp_env, *cmd[0]), *cmd[1:]]
            bodies[row.head].extend(continued(line, background=True))
            continue
        per_node = {len(v) for v in row.gpus.values()}
        if len(per_node) != 1:
            raise InputError("SGLang places the same number of ranks on every node of a replica; replica "
                             f"{r.index} has {', '.join(f'{n}: {len(row.gpus[n])}' for n in row.nodes)}",
                             field=f"replica_groups.{g.id}.replicas.{r.index}.ranks")
        check_host(row.head, f"replica_groups.{g.id}.replicas.{r.index}.ranks", "--dist-init-addr")
        addr = sh_var("DIST_INIT_HOST", "dist_head", f":{p.dist}")
        for rank, n in enumerate(row.nodes):
            gpus = csv(row.gpus[n])
            bodies[n].append("  " + sh_comment(f"replica {r.index}: node rank {rank} of {len(row.nodes)}, GPUs {gpus}"
                                               + (f", port {p.http}{dp_note}" if rank == 0 else
                                                  f"; health check on port {p.http}")))
            bodies[n].append("  " + sh_assign("dist_head", row.head))
            line = [(sh_assign("CUDA_VISIBLE_DEVICES", gpus), *pp_env, *cmd[0]), *cmd[1:],
                    ("--nnodes", len(row.nodes)), ("--node-rank", rank), ("--dist-init-addr", addr)]
            bodies[n].extend(continued(line, background=True))
    return group_script(plan, g, runtime="SGLang", version=text(version), target="sglang", source=SOURCE,
                        replicas=len(rows), nodes=nodes, bodies=bodies)


def emit_sglang(plan: Plan, model_path: str | None = None, version: Version = DEFAULT_VERSION) -> dict[str, str]:
    model, ckpt = model_ref(plan, model_path)
    rows = layouts(plan, BASE_PORT)
    ports = allocate_ports(plan, rows)
    files = {}
    for g in plan.replica_groups:
        quant = needs_fp8_quantization(g, ckpt, "SGLang")
        files[f"sglang-{g.id}.sh"] = _group_script(plan, g, rows[g.id], model, quant, ports, version)
    _front_ends(plan, rows, ports, version, files)
    return dict(sorted(files.items()))


def _front_ends(plan: Plan, rows: dict[str, list[ReplicaLayout]], ports: dict[tuple[str, int], ServerPorts],
                version: Version, files: dict[str, str]) -> None:
    """What sits in front of the servers (planner/emit/router.py): the PD router of the pools; SGLang's
    router over unified replicas of equal share; nginx and Envoy over several endpoints, the PD router
    (on this load balancer's machine) one of them with the pools' share."""
    eps = replica_endpoints(plan, rows, lambda gid, i: ports[(gid, i)].http)
    if any(g.role != "unified" for g in plan.replica_groups):
        add_file(files, "sglang-router.sh", _router(plan, rows, ports, version))
        if eps:
            eps.append(Endpoint("127.0.0.1", PD_ROUTER_PORT, pools_share(plan),
                                "the PD router (sglang-router.sh), run beside this load balancer", "replica_groups"))
    elif len(eps) > 1 and equal_shares(eps):
        program = ("python", "-m", "sglang_router.launch_router")
        add_file(files, "sglang-router.sh", worker_router_script(plan, eps, program, ROUTER_TITLE, "sglang"))
    for name, text_ in front_files(plan, eps, "sglang").items():
        add_file(files, name, text_)


def _router(plan: Plan, rows: dict[str, list[ReplicaLayout]], ports: dict[tuple[str, int], ServerPorts],
            version: Version) -> str:
    """The PD router in front of the prefill and decode servers (run it anywhere that reaches them)."""
    cmd: list[tuple] = [("python", "-m", "sglang_router.launch_router"), ("--pd-disaggregation",)]
    for g in plan.replica_groups:
        for row in rows[g.id]:
            p = ports[(g.id, row.replica.index)]
            if g.role in ("prefill", "decode"):
                host = safe_host(Endpoint(host=row.head, port=p.http, share=0.0, note="",
                                          field=f"replica_groups.{g.id}.replicas.{row.replica.index}.ranks"))
                cmd.append((f"--{g.role}", f"http://{host}:{p.http}", *((p.bootstrap,) if g.role == "prefill" else ())))
    cmd += [("--host", "0.0.0.0"), ("--port", ROUTER_PORT), ("--prometheus-port", ROUTER_METRICS_PORT)]
    unified = [f"{g.id}" for g in plan.replica_groups if g.role == "unified"]
    lines = ["#!/usr/bin/env bash",
             sh_comment(f"SGLang {text(version)} PD router (sglang-router 0.3.2 flags) for the plan of "
                        f"{plan.inputs.model.name}: each request to one prefill and one decode server"),
             sh_comment(f"generated by {plan.generator} `plan-search emit --target sglang`"),
             "set -euo pipefail"]
    if unified:
        lines.append(sh_comment(f"unified groups ({', '.join(unified)}) serve on their own ports: {NGINX_FILE} or "
                                f"{ENVOY_FILE}, on this machine, balances across them and this router by the plan's "
                                "traffic_share"))
    return "\n".join(lines + continued(cmd, indent="")) + "\n"
