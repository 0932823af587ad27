"""``check_plan``: re-verify any plan from scratch, trusting none of its numbers.

It reloads nothing from the planner's search: it takes the plan's placement, asks the
topology graph for the GPUs and links, recomputes memory and latency with the cost
model, and lists every way the plan breaks the rules:

* every rank on a GPU that exists, is available, is of the group's GPU type, used once;
* ranks numbered ``stage * tp + tp_rank``, ``tp x pp`` of them per replica, the layer
  split covering the model;
* every TP group (each attention group, under attention DP) inside one scale-up domain
  (unless the plan allows otherwise), and the strategy one the runtime accepts;
* memory of every GPU within its capacity at the plan's batch and context;
* TTFT and TPOT within the SLOs, mean and p99, and the reported figures matching the recomputation;
* the planned capacity covering the requested rate;
* prefill/decode pools: both present, the KV transfer recomputed on the slowest path
  between them, TTFT checked on prefill groups and TPOT on decode groups.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from costmodels.hardware import custom_gpus, get_gpu
from costmodels.models import ModelSpec, get_model
from costmodels.serving import (Strategy, evaluate_prefill, evaluate_replica, kv_transfer_s, replica_memory,
                                tail_latency, validate_strategy)
from planner.candidates import group_ttft, planned_utilization
from planner.placement import measure_links, slowest_stage_link, worst_links
from planner.schema import Plan
from topologies.graph import Topology, gpu_id
from topologies.load import load_topology

#: Reported and recomputed metrics may differ by rounding only.
REL_TOL = 1e-3


@dataclass
class CheckReport:
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def __bool__(self) -> bool:
        return self.ok


def check_plan(plan: Plan | dict, *, topology: str | Path | Topology | None = None,
               model: str | Path | ModelSpec | None = None) -> CheckReport:
    """Verify ``plan`` against ``topology`` (default: the built-in named in the plan)."""
    plan = plan if isinstance(plan, Plan) else Plan.model_validate(plan)
    rep = CheckReport()
    bad = rep.problems.append
    if isinstance(topology, Topology):
        topo = topology
    else:
        spec, sha = load_topology(topology or plan.inputs.topology.name)
        topo = Topology(spec, sha, source=str(topology or plan.inputs.topology.name))
        if topology is None and sha != plan.inputs.topology.sha256:
            bad(f"topology {topo.name!r}: content hash differs from the plan's; pass the topology the plan used")
    spec_m = model if isinstance(model, ModelSpec) else get_model(model or plan.inputs.model.name)
    isl, osl = plan.inputs.workload.isl, plan.inputs.workload.osl
    slo = plan.inputs.slo
    used: dict[str, str] = {}
    capacity_rps = 0.0
    recomputed = []
    pending = []
    firsts: dict[str, list[list[str]]] = {}
    own = custom_gpus(topo.spec.gpu_types, source=topo.source)  # the topology's user-defined GPU types
    for g in plan.replica_groups:
        st = g.strategy
        gpu = get_gpu(g.gpu, custom=own)
        if g.stage_gpus is not None and (len(g.stage_gpus) != st.pp or g.stage_gpus[0] != g.gpu):
            bad(f"{g.id}: stage_gpus {g.stage_gpus} must name one GPU type per stage (pp={st.pp}), "
                f"the first being gpu={g.gpu}")
            continue
        gpus = [get_gpu(x, custom=own) for x in g.stage_gpus] if g.stage_gpus else [gpu] * st.pp
        if sum(st.layer_split) != spec_m.layers or len(st.layer_split) != st.pp or min(st.layer_split) < 1:
            bad(f"{g.id}: layer split {st.layer_split} does not cover {spec_m.layers} layers in {st.pp} stages")
            continue
        if len(g.replicas) != st.dp:
            bad(f"{g.id}: dp={st.dp} but {len(g.replicas)} replicas placed")
        strategy = Strategy(tp=st.tp, pp=st.pp, ep=st.ep, weight_dtype=st.weight_dtype, kv_dtype=st.kv_dtype,
                            layer_split=tuple(st.layer_split), max_num_batched_tokens=st.max_num_batched_tokens,
                            runtime=plan.inputs.runtime, attention_dp=st.attention_dp,
                            expert_imbalance=plan.inputs.expert_imbalance)
        why = validate_strategy(spec_m, strategy)
        if why:
            bad(f"{g.id}: {why}")
            continue
        group_links = []
        for r in g.replicas:
            where = f"{g.id} replica {r.index}"
            if len(r.ranks) != st.tp * st.pp:
                bad(f"{where}: {len(r.ranks)} ranks, expected tp x pp = {st.tp * st.pp}")
                continue
            stages: list[list[str]] = [[""] * st.tp for _ in range(st.pp)]
            for k in r.ranks:
                gid = gpu_id(k.node, k.gpu_index)
                if gid not in topo.graph or topo.graph.nodes[gid].get("kind") != "gpu":
                    bad(f"{where} rank {k.rank}: no GPU {k.gpu_index} on node {k.node!r}")
                    continue
                a = topo.graph.nodes[gid]
                if not a["available"]:
                    bad(f"{where} rank {k.rank}: GPU {gid} is marked unavailable")
                want = gpus[k.stage].name if k.stage < st.pp else gpu.name
                if get_gpu(a["gpu"], custom=own).name != want:
                    bad(f"{where} rank {k.rank}: GPU {gid} is a {a['gpu']}, stage {k.stage} is {want}")
                if gid in used:
                    bad(f"{where} rank {k.rank}: GPU {gid} already used by {used[gid]}")
                used[gid] = f"{where} rank {k.rank}"
                if k.rank != k.stage * st.tp + k.tp_rank or k.stage >= st.pp or k.tp_rank >= st.tp:
                    bad(f"{where} rank {k.rank}: inconsistent with stage {k.stage}, tp_rank {k.tp_rank}")
                    continue
                stages[k.stage][k.tp_rank] = gid
            if any("" in s for s in stages):
                bad(f"{where}: some (stage, tp_rank) positions are missing")
                continue
            firsts.setdefault(g.id, []).append(stages[0])
            at = strategy.attention_tp
            for s_i, s in enumerate(stages):
                for a_i in range(0, len(s), at):
                    doms = {topo.domain_of(x) for x in s[a_i:a_i + at]}
                    if len(doms) > 1 and not plan.inputs.allow_cross_domain_tp:
                        what = "TP group" if at == st.tp else f"attention group {a_i // at}"
                        bad(f"{where} stage {s_i}: {what} spans domains {sorted(doms)}")
            group_links.append(measure_links(topo, stages, strategy))
        if not group_links:
            continue
        pending.append((g, gpus, strategy, worst_links(group_links)))
    # Disaggregated pools: a prefill replica's KV cache goes to some decode replica; price
    # the slowest such path (first stage to first stage), as the plan must.
    decode_firsts = [f for g in plan.replica_groups if g.role == "decode" for f in firsts.get(g.id, [])]
    cap = {"unified": 0.0, "prefill": 0.0, "decode": 0.0}
    weight: dict[str, float] = {}
    kind_weight = dict(cap)
    for g, gpus, strategy, links in pending:
        st = g.strategy
        xfer = 0.0
        if g.role == "prefill":
            if not decode_firsts:
                bad(f"{g.id}: a prefill group but no decode group to send the KV cache to")
                continue
            kv = slowest_stage_link(topo, firsts[g.id], decode_firsts)
            xfer = kv_transfer_s(spec_m, strategy, isl=isl, link=kv)
            pm = evaluate_prefill(spec_m, gpus, strategy, isl=isl, links=links)
            mems = replica_memory(spec_m, gpus, strategy, batch=pm.in_flight, context=isl)
            m = pm.as_replica(xfer)
            got = g.metrics_per_replica.kv_transfer_ms
            if got is None or not math.isclose(got, xfer * 1e3, rel_tol=REL_TOL, abs_tol=0.0051):
                bad(f"{g.id}: reported kv_transfer_ms {got} but recomputed {xfer * 1e3:.3f}")
        else:
            mems = replica_memory(spec_m, gpus, strategy, batch=st.batch_size, context=isl + osl)
            m = evaluate_replica(spec_m, gpus, strategy, isl=isl, osl=osl, batch=st.batch_size, links=links,
                                 role=g.role)
            if not m.fits:
                bad(f"{g.id}: batch {st.batch_size} does not fit (max {m.max_batch})")
        for i, mem in enumerate(mems):
            if not mem.fits:
                bad(f"{g.id} stage {i}: memory {mem.total / 2**30:.2f} GiB exceeds {gpus[i].name}'s "
                    f"{mem.capacity / 2**30:.2f} GiB")
        tail = tail_latency(spec_m, gpus, strategy, m, isl=isl, osl=osl, links=links, role=g.role)
        recomputed.append((g, m, xfer, tail))
        cap[g.role] += m.requests_per_s * st.dp
        weight[g.id] = m.requests_per_s * st.dp * planned_utilization(
            m, tail, g.role, ttft_s=slo.ttft_ms / 1e3 if slo.ttft_ms else None,
            ttft_p99_s=slo.ttft_p99_ms / 1e3 if slo.ttft_p99_ms else None)
        kind_weight[g.role] += weight[g.id]
    if (cap["prefill"] > 0) != (cap["decode"] > 0):
        bad("a disaggregated plan needs both prefill and decode groups")
    pools = min(cap["prefill"], cap["decode"])
    capacity_rps = cap["unified"] + pools
    util = plan.inputs.workload.qps / capacity_rps if plan.inputs.workload.qps and capacity_rps else None
    shares = []
    qps = plan.inputs.workload.qps
    for g, m, xfer, tail in recomputed:
        # each kind's traffic split by capacity at each group's planned utilisation (planner.api.build_plan)
        group_rps = m.requests_per_s * g.strategy.dp
        kind_rps = cap["unified"] if g.role == "unified" else pools
        within = weight[g.id] / kind_weight[g.role] if kind_weight[g.role] else 0.0
        share = kind_rps / capacity_rps * within if capacity_rps else 0.0
        g_util = qps * share / group_rps if qps and group_rps else None
        shares.append((g, share))
        ttft, tail = group_ttft(m, tail, g_util, weight[g.id] / group_rps if group_rps else 0.0)
        if g.role != "prefill" and slo.tpot_ms is not None and m.tpot_s * 1e3 > slo.tpot_ms * (1 + 1e-9):
            bad(f"{g.id}: TPOT {m.tpot_s * 1e3:.2f} ms exceeds the SLO of {slo.tpot_ms} ms")
        if g.role != "decode" and slo.ttft_ms is not None and ttft * 1e3 > slo.ttft_ms * (1 + 1e-9):
            bad(f"{g.id}: TTFT {ttft * 1e3:.2f} ms exceeds the SLO of {slo.ttft_ms} ms")
        if g.role == "prefill" and g.metrics_per_replica.ttft_ms != float(round(ttft * 1e3, 3)):
            # the plan prints this very figure (planner.api rounds it to 3 places): it must match exactly
            bad(f"{g.id}: reported ttft_ms {g.metrics_per_replica.ttft_ms} but recomputed {ttft * 1e3:.3f}")
        _check_tails(g, ttft, tail, slo, bad)
        for name, got, want in (("tpot_ms", g.metrics_per_replica.tpot_ms, m.tpot_s * 1e3),
                                ("output_tokens_per_s", g.metrics_per_replica.output_tokens_per_s,
                                 m.output_tokens_per_s),
                                ("memory total", g.memory_per_gpu_bytes.total, m.memory.total)):
            if not math.isclose(got, want, rel_tol=REL_TOL, abs_tol=0.051):  # plans round to 0.1
                bad(f"{g.id}: reported {name} {got} but recomputed {want:.3f}")
    for g, share in shares:
        if g.traffic_share is not None and not math.isclose(g.traffic_share, share, rel_tol=1e-3, abs_tol=1e-5):
            bad(f"{g.id}: traffic_share {g.traffic_share} but its capacity is {share:.6f} of the plan's")
    if util is not None and util > 1:
        bad(f"planned capacity {capacity_rps:.3f} requests/s is below the requested {plan.inputs.workload.qps}")
    if plan.inputs.max_gpus is not None and len(used) > plan.inputs.max_gpus:
        bad(f"{len(used)} GPUs used, more than max_gpus={plan.inputs.max_gpus}")
    if plan.totals.cost_per_hour is not None:
        prices = plan.inputs.price_per_gpu_hour or {}
        node_type = {n.name: n.type for n in topo.spec.all_nodes()}
        types = [node_type[k.node] for g in plan.replica_groups for r in g.replicas for k in r.ranks
                 if k.node in node_type]
        missing = sorted({t for t in types if t not in prices})
        if missing:
            bad(f"totals.cost_per_hour is given but node types {missing} have no price in inputs.price_per_gpu_hour")
        elif not math.isclose(plan.totals.cost_per_hour, sum(prices[t] for t in types), rel_tol=1e-6, abs_tol=1e-4):
            bad(f"totals.cost_per_hour is {plan.totals.cost_per_hour} but the used GPUs cost "
                f"{sum(prices[t] for t in types):.4f} per hour")
    if len(used) != plan.totals.gpus_used:
        bad(f"totals.gpus_used is {plan.totals.gpus_used} but {len(used)} GPUs are placed")
    return rep


def _check_tails(g, ttft_s: float, tail, slo, bad) -> None:
    """p99 TPOT (not for prefill groups) and p99 TTFT (not for decode groups) within their SLOs,
    and the reported p99 figures, where the plan has them (plans before schema 1.3.0 have
    none), matching the recomputation."""
    figures = (("tpot_p99_ms", "TPOT p99", tail.tpot_p99_s, slo.tpot_p99_ms, g.role != "prefill"),
               ("ttft_p99_ms", "TTFT p99", tail.ttft_p99_s(ttft_s), slo.ttft_p99_ms, g.role != "decode"))
    for key, what, value_s, limit_ms, applies in figures:
        if not applies:
            continue
        if limit_ms is not None and value_s * 1e3 > limit_ms * (1 + 1e-9):
            bad(f"{g.id}: {what} {value_s * 1e3:.2f} ms exceeds the SLO of {limit_ms} ms")
        got = getattr(g.metrics_per_replica, key)
        if got is not None and not math.isclose(got, value_s * 1e3, rel_tol=REL_TOL, abs_tol=0.0051):
            bad(f"{g.id}: reported {key} {got} but recomputed {value_s * 1e3:.3f}")
