"""The walk of :func:`check_plan`: load what the plan runs on, then visit its groups, replicas and
ranks, price each group laid out, share the traffic, and run each point's rules on the way."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from costmodels.batch import group_ttft, kind_shares, planned_utilization
from costmodels.hardware import custom_gpus, get_gpu
from costmodels.load import OpenLoop, tail_latency
from costmodels.model_spec import ModelSpec
from costmodels.models import get_model
from costmodels.prefill import evaluate_prefill, kv_transfer_s
from costmodels.serving import evaluate_replica, replica_memory
from planner.place.placement import measure_links, slowest_stage_link, worst_links
from planner.plan.check.audit import Audit, CheckReport, GroupCheck, Priced, RankCheck, ReplicaCheck, Served
from planner.plan.check.rules import RULES
from planner.plan.schema import Plan, loaded_ttft, open_loop_queue
from topologies.graph import Topology
from topologies.load import load_topology


def check_plan(plan: Plan | dict, *, topology: str | Path | Topology | None = None,
               model: str | Path | ModelSpec | None = None) -> CheckReport:
    """Verify ``plan`` against ``topology`` (default: the built-in named in the plan) by running
    :data:`RULES` over it: its groups, their replicas and ranks, then their recomputed figures."""
    a = _open(plan, topology, model)
    _apply(a, "plan", a)
    for g in a.plan.replica_groups:
        _lay_out(a, g)
    for grp in a.placed:
        _price(a, grp)
    _apply(a, "pools", a)
    _share(a)
    for s in a.served:
        _apply(a, "served", s)
    _apply(a, "totals", a)
    return a.report


def _apply(a: Audit, at: str, item: Any) -> bool:
    """Run the rules registered ``at`` this point on ``item``, in order, recording their problems;
    False when a rule that stops found one."""
    for rule in RULES:
        if rule.at != at:
            continue
        found = list(rule.verify(a, item))
        a.report.problems.extend(found)
        if found and rule.stops:
            return False
    return True


def _open(plan: Plan | dict, topology: str | Path | Topology | None, model: str | Path | ModelSpec | None) -> Audit:
    """The audit of ``plan``: the plan validated, its topology and model loaded (the plan's own by default)."""
    plan = plan if isinstance(plan, Plan) else Plan.model_validate(plan)
    loaded_sha = None
    if isinstance(topology, Topology):
        topo = topology
    else:
        spec, sha = load_topology(topology or plan.inputs.topology.name)
        topo = Topology(spec, sha, source=str(topology or plan.inputs.topology.name))
        loaded_sha = sha if topology is None else None
    spec_m = model if isinstance(model, ModelSpec) else get_model(model or plan.inputs.model.name)
    own = custom_gpus(topo.spec.gpu_types, source=topo.source)  # the topology's user-defined GPU types
    return Audit(plan=plan, topo=topo, model=spec_m, own=own, loaded_sha=loaded_sha)


def _lay_out(a: Audit, g: Any) -> None:
    """Check one group's declaration, then each replica rank by rank; measure the links of each replica
    laid out, and keep the group for pricing when any was."""
    grp = GroupCheck(group=g, gpu=get_gpu(g.gpu, custom=a.own), inputs=a.plan.inputs)
    if not _apply(a, "group", grp):
        return
    st = g.strategy
    grp.gpus = [get_gpu(x, custom=a.own) for x in g.stage_gpus] if g.stage_gpus else [grp.gpu] * st.pp
    if not _apply(a, "strategy", grp):
        return
    for r in g.replicas:
        rep = ReplicaCheck(grp=grp, replica=r, stages=[[""] * st.tp for _ in range(st.pp)])
        if not _apply(a, "replica", rep):
            continue
        for k in r.ranks:
            rk = RankCheck(rep=rep, rank=k)
            if _apply(a, "rank", rk):
                rep.stages[k.stage][k.tp_rank] = rk.gid
        if not _apply(a, "layout", rep):
            continue
        a.firsts.setdefault(g.id, []).append(rep.stages[0])
        grp.links.append(measure_links(a.topo, rep.stages, grp.strategy))
    if grp.links:
        a.placed.append(grp)


def _price(a: Audit, grp: GroupCheck) -> None:
    """Recompute a laid-out group's figures on its worst links (a prefill group's TTFT including the KV
    transfer on the slowest path to a decode replica), run the pricing rules, and add its capacity."""
    if not _apply(a, "placed", grp):
        return
    g, st, strategy, spec_m = grp.group, grp.group.strategy, grp.strategy, a.model
    isl, osl, slo = a.plan.inputs.workload.isl, a.plan.inputs.workload.osl, a.plan.inputs.slo
    links, xfer = worst_links(grp.links), 0.0
    if g.role == "prefill":
        kv = slowest_stage_link(a.topo, a.firsts[g.id], a.decode_firsts)
        xfer = kv_transfer_s(spec_m, strategy, isl=isl, link=kv)
        pm = evaluate_prefill(spec_m, grp.gpus, strategy, isl=isl, links=links)
        mems = replica_memory(spec_m, grp.gpus, strategy, batch=pm.in_flight, context=isl)
        m = pm.as_replica(xfer)
    else:
        mems = replica_memory(spec_m, grp.gpus, strategy, batch=st.batch_size, context=isl + osl)
        m = evaluate_replica(spec_m, grp.gpus, strategy, isl=isl, osl=osl, batch=st.batch_size, links=links,
                             role=g.role)
    _apply(a, "priced", Priced(grp=grp, m=m, mems=mems, xfer_s=xfer))
    tail = tail_latency(spec_m, grp.gpus, strategy, m, isl=isl, osl=osl, links=links, role=g.role)
    a.cap[g.role] += m.requests_per_s * st.dp
    loop = (OpenLoop(spec_m, grp.gpus, strategy, isl=isl, osl=osl, capacity=m, links=links)
            if g.role == "unified" and open_loop_queue(a.plan.schema_version) else None)
    weight = m.requests_per_s * st.dp * planned_utilization(
        m, tail, g.role, ttft_s=slo.ttft_ms / 1e3 if slo.ttft_ms else None,
        ttft_p99_s=slo.ttft_p99_ms / 1e3 if slo.ttft_p99_ms else None, loop=loop)
    a.served.append(Served(grp=grp, m=m, tail=tail, weight=weight, loop=loop))


def _share(a: Audit) -> None:
    """The plan's capacity and each group's share of the traffic: each kind's (unified, or prefill and
    decode pools) split by planned requests/s (by capacity before schema 1.6.0), within a kind by capacity at
    each group's planned utilisation, as planner.plan.build.build_plan does; and each group's TTFT and tail
    at that load."""
    pools = min(a.cap["prefill"], a.cap["decode"])
    a.capacity_rps = a.cap["unified"] + pools
    qps = a.plan.inputs.workload.qps
    a.util = qps / a.capacity_rps if qps and a.capacity_rps else None
    kind_weight = {"unified": 0.0, "prefill": 0.0, "decode": 0.0}
    for s in a.served:
        kind_weight[s.grp.group.role] += s.weight
    # looked up by group id, as planner.api names groups: two groups of one id (a hand-edited plan)
    # both take the last one's weight, as check_plan always did
    weight = {s.grp.group.id: s.weight for s in a.served}
    shares = kind_shares(a.cap, kind_weight, by_planned=open_loop_queue(a.plan.schema_version))
    for s in a.served:
        g = s.grp.group
        group_rps = s.m.requests_per_s * g.strategy.dp
        within = weight[g.id] / kind_weight[g.role] if kind_weight[g.role] else 0.0
        s.share = shares[g.role] * within if a.capacity_rps else 0.0
        g_util = qps * s.share / group_rps if qps and group_rps else None
        if g_util is None and g.role == "unified" and not loaded_ttft(a.plan.schema_version):
            s.ttft_s = s.m.ttft_s  # plans before 1.5.0 gave a unified group's TTFT unloaded without a rate
        else:
            s.ttft_s, s.tail = group_ttft(s.m, s.tail, g_util, weight[g.id] / group_rps if group_rps else 0.0,
                                          s.loop)
