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
max_num_batched_tokens. Multi-node replicas use the same --nnodes/--node-rank/--dist-init-addr
launch as above; GPUs in rank order make attention group k the plan's tp ranks k*tp/D .. (k+1)*tp/D - 1.
Not checked here: which models SGLang runs with DP attention (the flag's help names DeepSeek-V2 and
Qwen 2/3 MoE; other MoE models, e.g. Mixtral, may be refused by SGLang at start-up).
"""
from __future__ import annotations

from planner.emit import (ReplicaLayout, all_nodes, attention_groups, continued, csv, floor2, group_script,
                          kv_cache_flag, layouts, model_ref, needs_fp8_quantization, sh_assign, sh_comment, sh_var,
                          uneven)
from planner.emit.router import (ENVOY_FILE, NGINX_FILE, Endpoint, add_file, equal_shares, front_files, pools_share,
                                 replica_endpoints, worker_router_script)
from planner.schema import Plan, ReplicaGroup
from topologies.errors import InputError

SGLANG_VERSION = "0.5"
SOURCE = "sgl-project/sglang python/sglang/srt/server_args.py"
BASE_PORT = 30000
DIST_PORT = 50000
BOOTSTRAP_PORT = 8998
TRANSFER_BACKEND = "nixl"
PD_ROUTER_PORT = 8000
# PyPI sglang-router 0.3.2: sglang_router/router_args.py (--worker-urls, --policy, --pd-disaggregation, --prefill,
# --decode, --host, --port)
ROUTER_TITLE = "SGLang router (sglang-router 0.3.2)"


def _mem_fraction(g: ReplicaGroup) -> str:
    # SGLang's static pool is weights + KV cache; give it everything the plan leaves after
    # activations, runtime overhead and the reserve.
    m = g.memory_per_gpu_bytes
    return floor2(m.capacity - m.reserve - m.activations - m.overhead, m.capacity)


def _launch(model: str, g: ReplicaGroup, quant: bool, port: int, bootstrap: int | None = None,
            multi_node: bool = False) -> list[tuple]:
    """The server command of one replica: parts of words for :func:`planner.emit.continued`."""
    s = g.strategy
    d, _ = attention_groups(g)
    cmd: list[tuple] = [("python", "-m", "sglang.launch_server"),
                        ("--model-path", model),
                        ("--tp-size", s.tp),
                        ("--pp-size", s.pp)]
    if d > 1:
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
    if g.role != "unified":
        cmd += [("--disaggregation-mode", g.role), ("--disaggregation-transfer-backend", TRANSFER_BACKEND)]
        if bootstrap is not None:
            cmd.append(("--disaggregation-bootstrap-port", bootstrap))
    cmd += [("--host", "0.0.0.0"), ("--port", port)]
    return cmd


def _bootstrap_port(row: ReplicaLayout) -> int:
    return BOOTSTRAP_PORT + (row.port - BASE_PORT)  # distinct wherever the HTTP ports are


def _group_script(plan: Plan, g: ReplicaGroup, rows: list[ReplicaLayout], model: str, quant: bool) -> str:
    s = g.strategy
    pp_env = [sh_assign("SGLANG_PP_LAYER_PARTITION", csv(s.layer_split))] if uneven(s.layer_split) else []
    nodes = all_nodes(rows)
    bodies: dict[str, list[str]] = {n: [] for n in nodes}
    d, at = attention_groups(g)
    dp_note = f"; DP attention: {d} attention groups of {at} GPU(s)" if d > 1 else ""
    for i, row in enumerate(rows):
        r = row.replica
        cmd = _launch(model, g, quant, row.port, _bootstrap_port(row) if g.role == "prefill" else None,
                      multi_node=row.multi_node)
        if not row.multi_node:
            gpus = csv(row.gpus[row.head])
            bodies[row.head].append("  " + sh_comment(f"replica {r.index}: GPUs {gpus}, port {row.port}{dp_note}"))
            line = [(sh_assign("CUDA_VISIBLE_DEVICES", gpus), *pp_env, *cmd[0]), *cmd[1:]]
            bodies[row.head].extend(continued(line, background=True))
            continue
        per_node = {len(v) for v in row.gpus.values()}
        if len(per_node) != 1:
            raise InputError("SGLang places the same number of ranks on every node of a replica; replica "
                             f"{r.index} has {', '.join(f'{n}: {len(row.gpus[n])}' for n in row.nodes)}",
                             field=f"replica_groups.{g.id}.replicas.{r.index}.ranks")
        addr = sh_var("DIST_INIT_HOST", "dist_head", f":{DIST_PORT + i}")
        for rank, n in enumerate(row.nodes):
            gpus = csv(row.gpus[n])
            bodies[n].append("  " + sh_comment(f"replica {r.index}: node rank {rank} of {len(row.nodes)}, GPUs {gpus}"
                                               + (f", port {row.port}{dp_note}" if rank == 0 else "")))
            bodies[n].append("  " + sh_assign("dist_head", row.head))
            line = [(sh_assign("CUDA_VISIBLE_DEVICES", gpus), *pp_env, *cmd[0]), *cmd[1:],
                    ("--nnodes", len(row.nodes)), ("--node-rank", rank), ("--dist-init-addr", addr)]
            bodies[n].extend(continued(line, background=True))
    return group_script(plan, g, runtime="SGLang", version=SGLANG_VERSION, target="sglang", source=SOURCE,
                        replicas=len(rows), nodes=nodes, bodies=bodies)


def emit_sglang(plan: Plan, model_path: str | None = None) -> dict[str, str]:
    model, ckpt = model_ref(plan, model_path)
    rows = layouts(plan, BASE_PORT)
    files = {}
    for g in plan.replica_groups:
        quant = needs_fp8_quantization(g, ckpt, "SGLang")
        files[f"sglang-{g.id}.sh"] = _group_script(plan, g, rows[g.id], model, quant)
    _front_ends(plan, rows, files)
    return dict(sorted(files.items()))


def _front_ends(plan: Plan, rows: dict[str, list[ReplicaLayout]], files: dict[str, str]) -> None:
    """What sits in front of the servers (planner/emit/router.py): the PD router of the pools; SGLang's
    router over unified replicas of equal share; nginx and Envoy over several endpoints, the PD router
    (on this load balancer's machine) one of them with the pools' share."""
    eps = replica_endpoints(plan, rows)
    if any(g.role != "unified" for g in plan.replica_groups):
        add_file(files, "sglang-router.sh", _router(plan, rows))
        if eps:
            eps.append(Endpoint("127.0.0.1", PD_ROUTER_PORT, pools_share(plan),
                                "the PD router (sglang-router.sh), run beside this load balancer", "replica_groups"))
    elif len(eps) > 1 and equal_shares(eps):
        program = ("python", "-m", "sglang_router.launch_router")
        add_file(files, "sglang-router.sh", worker_router_script(plan, eps, program, ROUTER_TITLE, "sglang"))
    for name, text in front_files(plan, eps, "sglang").items():
        add_file(files, name, text)


def _router(plan: Plan, rows: dict[str, list[ReplicaLayout]]) -> str:
    """The PD router in front of the prefill and decode servers (run it anywhere that reaches them)."""
    cmd: list[tuple] = [("python", "-m", "sglang_router.launch_router"), ("--pd-disaggregation",)]
    for g in plan.replica_groups:
        for row in rows[g.id]:
            if g.role == "prefill":
                cmd.append(("--prefill", f"http://{row.head}:{row.port}", _bootstrap_port(row)))
            elif g.role == "decode":
                cmd.append(("--decode", f"http://{row.head}:{row.port}"))
    cmd += [("--host", "0.0.0.0"), ("--port", PD_ROUTER_PORT)]
    unified = [f"{g.id}" for g in plan.replica_groups if g.role == "unified"]
    lines = ["#!/usr/bin/env bash",
             sh_comment(f"SGLang {SGLANG_VERSION} PD router for the plan of {plan.inputs.model.name}: each request "
                        "to one prefill and one decode server"),
             sh_comment(f"generated by {plan.generator} `plan-search emit --target sglang`"),
             "set -euo pipefail"]
    if unified:
        lines.append(sh_comment(f"unified groups ({', '.join(unified)}) serve on their own ports: {NGINX_FILE} or "
                                f"{ENVOY_FILE}, on this machine, balances across them and this router by the plan's "
                                "traffic_share"))
    return "\n".join(lines + continued(cmd, indent="")) + "\n"
