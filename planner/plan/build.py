"""A solved, placed search as a :class:`~planner.plan.schema.Plan`: each replica group's
figures re-priced at the share of traffic the plan sends it, the total, the SLO verdict and the
inputs that make the plan reproducible.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from costmodels.batch import group_ttft, kind_shares, planned_utilization
from costmodels.load import OpenLoop, tail_latency
from costmodels.model_spec import ModelSpec
from costmodels.prefill import evaluate_prefill, kv_transfer_s
from costmodels.serving import effective_strategy, evaluate_replica
from costmodels.strategy import stages
from planner.place.placement import PlacedReplica, replica_links, slowest_stage_link, worst_links
from planner.plan import schema as S
from planner.price.candidate import Pricing, Request
from planner.price.cluster import ClusterView
from planner.price.spans import EQUAL_RANKS_PER_NODE_RUNTIMES
from planner.solve.cpsat import (
    Instance,
    Solution,
    SolverParams,
)
from topologies.graph import Topology

#: The generator version written into every plan (``pyproject.toml``'s project version).
VERSION = "0.1.0"


def link_out(link) -> S.LinkOut:
    bw = link.bandwidth_bytes_per_s
    return S.LinkOut(kind=link.kind, bandwidth_bytes_per_s=bw if math.isfinite(bw) else 0.0,
                     latency_s=link.latency_s)


def rounded(x: float, nd: int = 3) -> float:
    return float(round(x, nd))


def _model_ref(spec: ModelSpec) -> S.ModelRef:
    return S.ModelRef(name=spec.name, source=spec.source, params=spec.total_params(),
                      active_params=spec.active_params(), layers=spec.layers, attention=spec.attention_kind,
                      moe_experts=spec.experts, moe_experts_per_token=spec.experts_per_token)


def _topo_ref(topo: Topology) -> S.TopologyRef:
    return S.TopologyRef(name=topo.name, sha256=topo.content_sha256, gpus_total=len(topo.gpus()),
                         gpus_available=len(topo.gpus(available_only=True)))


def kv_link(topo: Topology, prefill: list[PlacedReplica], decode: list[PlacedReplica]):
    """The slowest path a prefill replica's KV cache takes to a decode replica of the plan
    (first stage to first stage, per GPU, every prefill GPU sending at once)."""
    return slowest_stage_link(topo, [list(p.stages[0]) for p in prefill], [list(d.stages[0]) for d in decode])


@dataclass
class _Priced:
    """Every group of a plan priced at the links it got: per group (by candidate index) its
    metrics, links, KV transfer, KV link and p99 figures, and its traffic weight; per kind of
    group (unified, prefill, decode) the requests/s it sustains, at full capacity and at the
    utilisation the plan is made for, and the sum of its groups' weights."""

    metrics: dict[int, tuple] = field(default_factory=dict)
    loops: dict[int, OpenLoop | None] = field(default_factory=dict)  # a unified group's queue
    weight: dict[int, float] = field(default_factory=dict)
    cap: dict[str, float] = field(default_factory=lambda: {"unified": 0.0, "prefill": 0.0, "decode": 0.0})
    planned: dict[str, float] = field(default_factory=lambda: {"unified": 0.0, "prefill": 0.0, "decode": 0.0})
    kind_weight: dict[str, float] = field(default_factory=lambda: {"unified": 0.0, "prefill": 0.0, "decode": 0.0})

    @property
    def pools_rps(self) -> float:
        """Requests/s the disaggregated pools carry together."""
        return min(self.cap["prefill"], self.cap["decode"])

    @property
    def total_capacity_rps(self) -> float:
        return self.cap["unified"] + self.pools_rps

    @property
    def planned_rps(self) -> float:
        return self.planned["unified"] + min(self.planned["prefill"], self.planned["decode"])


def _price_groups(spec: ModelSpec, topo: Topology, view: ClusterView, req: Request,
                  by_cand: dict[int, list[PlacedReplica]], decode_reps: list[PlacedReplica]) -> _Priced:
    """Re-price every group at the slowest links its placed replicas got."""
    out = _Priced()
    for ci, reps in by_cand.items():
        c = reps[0].candidate
        worst = worst_links(replica_links(topo, r) for r in reps)
        gpus = [view.gpu_of_type[g] for g in c.stage_gpus] if c.hetero else view.gpu_of_type[c.gpu]
        xfer, kv = 0.0, None
        if c.role == "prefill":
            kv = kv_link(topo, reps, decode_reps)
            xfer = kv_transfer_s(spec, c.strategy, isl=req.isl, link=kv)
            m = evaluate_prefill(spec, gpus, c.strategy, isl=req.isl, links=worst).as_replica(xfer)
        else:
            m = evaluate_replica(spec, gpus, c.strategy, isl=req.isl, osl=req.osl, batch=c.batch, links=worst,
                                 role=c.role)
        tail = tail_latency(spec, gpus, c.strategy, m, isl=req.isl, osl=req.osl, links=worst, role=c.role)
        out.metrics[ci] = (m, worst, xfer, kv, tail)
        loop = out.loops[ci] = (OpenLoop(spec, gpus, c.strategy, isl=req.isl, osl=req.osl, capacity=m, links=worst)
                                if c.role == "unified" else None)
        out.cap[c.role] += m.requests_per_s * len(reps)
        # traffic goes to each group in proportion to its capacity at its own planned utilisation
        out.weight[ci] = m.requests_per_s * len(reps) * planned_utilization(m, tail, c.role, ttft_s=req.ttft_s,
                                                                             ttft_p99_s=req.ttft_p99_s, loop=loop)
        out.kind_weight[c.role] += out.weight[ci]
        # what the solver counted: each group at its planned (usable) utilisation, one rule for both kinds
        out.planned[c.role] += m.requests_per_s * len(reps) * c.usable_requests_per_s / c.metrics.requests_per_s
    return out


def launch_problem(view: ClusterView, runtime: str, placed: list[PlacedReplica]) -> str | None:
    """Why ``runtime`` cannot start a replica as placed, or None: SGLang starts one process of equal size
    per node (``EQUAL_RANKS_PER_NODE_RUNTIMES``), so a replica's nodes must hold as many ranks each (a
    pipeline of 9 stages laid 8 + 1 over two nodes, or 6 GPUs over GB200 trays 4 + 2, cannot launch).
    The search sets such a mix aside and solves for the next best; a plan keeps one only when no other
    was found (out of time, interrupted, or none meets the request), and then says so."""
    if runtime not in EQUAL_RANKS_PER_NODE_RUNTIMES:
        return None
    for rep in placed:
        per_node = Counter(view.topology.gpu(g)["node"] for stage in rep.stages for g in stage)
        if len(set(per_node.values())) > 1:
            c = rep.candidate.strategy
            laid = " + ".join(str(n) for _, n in sorted(per_node.items()))
            return (f"{runtime} cannot start a tp={c.tp} pp={c.pp} replica laid {laid} ranks over "
                    f"{len(per_node)} nodes (one process of equal size per node); no plan it can start was found "
                    f"in the time and mixes the search had (--time-limit-s), and its emitter refuses this one")
    return None


def build_plan(spec: ModelSpec, topo: Topology, view: ClusterView, req: Request, sol: Solution,
               inst: Instance, placed: list[PlacedReplica], pricing: Pricing, params: SolverParams,
               *, wall_time_s: float | None) -> S.Plan:
    """The plan of a solved, placed search: its groups re-priced at their links and shares of the
    traffic, the totals (the throughput the solver maximised), the inputs and the solver's record."""
    by_cand: dict[int, list[PlacedReplica]] = {}
    for p in placed:
        by_cand.setdefault(p.candidate.index, []).append(p)
    priced = _price_groups(spec, topo, view, req, by_cand, [p for p in placed if p.candidate.role == "decode"])
    groups = [_group(spec, topo, view, req, f"g{gi}", by_cand[ci], priced, ci)
              for gi, ci in enumerate(sorted(by_cand))]
    prices = dict(req.prices)
    totals = _totals(topo, req, groups, priced, prices)
    value, bound, gap = sol.objective_value, sol.best_bound, sol.gap
    if req.objective in ("throughput", "throughput-per-gpu", "latency"):  # their value is output tokens/s
        # One figure per plan: the solver counts each replica in whole centi-tokens/s (and a feasibility
        # step cut short has no value at all), so the record states the plan's own total. The solver's
        # bound is on the candidates' figures, which placement re-prices at the links the replicas got:
        # it stands, or the plan's total where that is higher.
        value = totals.output_tokens_per_s
        bound = max(bound, value)
        gap = (bound - value) / max(abs(value), 1e-9)
    solver = S.SolverOut(status=sol.status, objective=OBJECTIVE_DESCRIPTIONS[req.objective],
                         objective_value=rounded(value, 2),
                         best_bound=rounded(bound, 2), gap=rounded(gap, 6), candidates_priced=pricing.priced,
                         seed=params.seed, workers=params.workers, time_limit_s=params.time_limit_s,
                         wall_time_s=rounded(wall_time_s, 3) if wall_time_s is not None else None)
    problem = launch_problem(view, req.runtime, placed)
    return S.Plan(generator=f"plan-search {VERSION}", inputs=_inputs(spec, topo, req, prices), replica_groups=groups,
                  totals=totals, solver=solver, warnings=[problem] if problem else [])


def objective_figure(plan: S.Plan, objective: str) -> float | None:
    """The plan's own figure on its objective's terms, where its totals state it: output tokens/s
    (throughput), per GPU (throughput-per-gpu) or the worst TPOT in ms (latency); None for the others
    (the solution's own)."""
    if objective == "throughput":
        return plan.totals.output_tokens_per_s
    if objective == "throughput-per-gpu":
        return plan.totals.output_tokens_per_s_per_gpu
    if objective == "latency":
        return plan.totals.tpot_ms
    return None


def _group(spec: ModelSpec, topo: Topology, view: ClusterView, req: Request, gid: str, reps: list[PlacedReplica],
           priced: _Priced, ci: int) -> S.ReplicaGroup:
    """One replica group: its strategy as launched, its figures at its share of the traffic, its
    links and every rank's GPU."""
    c = reps[0].candidate
    m, links, xfer, kv, tail = priced.metrics[ci]
    # A request goes to a unified group, or to one prefill and one decode group; the kinds' shares
    # follow their planned requests/s (kind_shares), and within a kind each group's share its
    # capacity at its own planned utilisation (so a group with a tighter TTFT headroom gets less).
    group_rps = m.requests_per_s * len(reps)
    within = priced.weight[ci] / priced.kind_weight[c.role] if priced.kind_weight[c.role] else 0.0
    share = kind_shares(priced.cap, priced.kind_weight)[c.role] * within
    g_util = req.qps * share / group_rps if req.qps and group_rps else None
    loop = priced.loops[ci]  # a unified group's queue (its unloaded TTFT: a prompt reaching an idle replica)
    ttft, tail = group_ttft(m, tail, g_util, priced.weight[ci] / group_rps if group_rps else 0.0, loop)
    gpus_c = [view.gpu_of_type[x] for x in c.stage_gpus] if c.hetero else view.gpu_of_type[c.gpu]
    replicas = [S.Replica(index=ri, ranks=[S.Rank(rank=st * c.strategy.tp + tr, stage=st, tp_rank=tr,
                                                  node=topo.gpu(gid_)["node"], gpu_index=topo.gpu(gid_)["index"])
                                           for st, gpus in enumerate(r.stages) for tr, gid_ in enumerate(gpus)])
                for ri, r in enumerate(reps)]
    split = [s.layer_count for s in stages(spec, c.strategy)]
    # the budget priced: a prefill pool's searched step (evaluate_prefill), else as the runtime runs it
    budget = (c.strategy.max_num_batched_tokens if c.role == "prefill" else
              effective_strategy(spec, gpus_c, c.strategy, isl=req.isl, osl=req.osl).max_num_batched_tokens)
    group_links = {"tp": link_out(links.tp), "pp": link_out(links.pp)}
    if c.strategy.attention_dp > 1:
        group_links["ep"] = link_out(links.ep)
        if links.ep_local is not None:
            group_links["ep_local"] = link_out(links.ep_local)
    if kv is not None:
        group_links["kv"] = link_out(kv)
    return S.ReplicaGroup(
        id=gid, role=c.role, gpu=c.gpu, stage_gpus=list(c.stage_gpus) if c.hetero else None,
        strategy=S.StrategyOut(tp=c.strategy.tp, pp=c.strategy.pp, dp=len(reps), ep=c.strategy.ep,
                               attention_dp=c.strategy.attention_dp,
                               batch_size=c.batch, max_num_batched_tokens=budget,
                               max_model_len=req.isl + req.osl, layer_split=split,
                               weight_dtype=c.strategy.weight_dtype, kv_dtype=c.strategy.kv_dtype),
        metrics_per_replica=S.Metrics(ttft_ms=S.latency_ms(ttft),
                                      ttft_unloaded_ms=S.latency_ms(loop.ttft_s(0.0) if loop else m.ttft_s),
                                      tpot_ms=S.latency_ms(m.tpot_s), output_tokens_per_s=rounded(m.output_tokens_per_s, 1),
                                      requests_per_s=rounded(m.requests_per_s, 4),
                                      utilization=rounded(g_util, 4) if g_util is not None else None,
                                      kv_transfer_ms=rounded(xfer * 1e3) if c.role == "prefill" else None,
                                      tpot_p99_ms=S.latency_ms(tail.tpot_p99_s) if c.role != "prefill" else None,
                                      ttft_p99_ms=S.latency_ms(tail.ttft_p99_s(ttft)) if c.role != "decode" else None),
        memory_per_gpu_bytes=S.MemoryOut(**m.memory.as_dict()),
        links=group_links,
        traffic_share=rounded(share, 6),
        replicas=replicas)


def _totals(topo: Topology, req: Request, groups: list[S.ReplicaGroup], priced: _Priced,
            prices: dict[str, float]) -> S.Totals:
    gpus_used = sum(g.strategy.tp * g.strategy.pp * g.strategy.dp for g in groups)
    tput = priced.planned_rps * req.osl  # the figure the solver maximised, the verdict compares and the report prints
    node_type = {n.name: n.type for n in topo.spec.all_nodes()}
    used_types = [node_type[k.node] for g in groups for r in g.replicas for k in r.ranks]
    cost = sum(prices[t] for t in used_types) if all(t in prices for t in used_types) else None
    return S.Totals(gpus_used=gpus_used, output_tokens_per_s=rounded(tput, 1),
                    output_tokens_per_s_per_gpu=rounded(tput / gpus_used, 1),
                    requests_per_s=rounded(priced.planned_rps, 4),
                    capacity_output_tokens_per_s=rounded(priced.total_capacity_rps * req.osl, 1),
                    ttft_ms=max(g.metrics_per_replica.ttft_ms for g in groups if g.role != "decode"),
                    tpot_ms=max(g.metrics_per_replica.tpot_ms for g in groups if g.role != "prefill"),
                    cost_per_hour=rounded(cost, 4) if cost is not None else None)


#: What each objective's ``objective_value`` measures. latency and throughput-per-gpu pick the best
#: shapes by bisection, then maximise throughput among them: their value is that throughput.
OBJECTIVE_DESCRIPTIONS = {"throughput": "max output tokens/s",
                          "throughput-per-gpu": "max output tokens/s among the plans of most tokens/s per GPU",
                          "min-gpus": "min GPUs serving qps", "min-cost": "min $/hour serving qps",
                          "latency": "max output tokens/s among the shapes of lowest TPOT"}


def _inputs(spec: ModelSpec, topo: Topology, req: Request, prices: dict[str, float]) -> S.Inputs:
    """The request as the plan records it, enough to re-run the search."""
    return S.Inputs(model=_model_ref(spec), topology=_topo_ref(topo),
                    workload=S.Workload(isl=req.isl, osl=req.osl, qps=req.qps),
                    slo=S.Slo(ttft_ms=req.ttft_s * 1e3 if req.ttft_s else None,
                              tpot_ms=req.tpot_s * 1e3 if req.tpot_s else None,
                              tpot_p99_ms=req.tpot_p99_s * 1e3 if req.tpot_p99_s else None,
                              ttft_p99_ms=req.ttft_p99_s * 1e3 if req.ttft_p99_s else None),
                    objective=req.objective, weight_dtype=req.weight_dtype, kv_dtype=req.kv_dtype,
                    max_gpus=req.max_gpus, allow_cross_domain_tp=req.allow_cross_domain_tp, runtime=req.runtime,
                    price_per_gpu_hour=prices or None, expert_imbalance=req.expert_imbalance)
