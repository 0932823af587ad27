"""Price every replica shape the cluster could run, before the solver chooses among them.

Each (GPU type, tp, pp, ep, attention DP, span) is priced at the batch its objective prefers
(:func:`costmodels.batch.choose_batch`); shapes another beats on every count are dropped.

Attention data parallelism (``attention_dp`` > 1) is priced for MoE models on one-stage
replicas (``pp = 1``, as these deployments run), with ``ep = tp``: the layout the runtimes'
DP-attention paths are built around (TensorRT-LLM's "DEP", SGLang's ``--enable-dp-attention``
with ``--ep-size`` = ``--tp-size``, vLLM's ``--data-parallel-size`` with
``--enable-expert-parallel``).

Pipeline layer splits are chosen per shape (:func:`costmodels.serving.choose_layer_split`)
for runtimes that can pin one; otherwise the runtime's balanced split is used.
"""
from __future__ import annotations

from costmodels.model_spec import ModelSpec
from costmodels.strategy import Links, Strategy, validate_strategy
from planner.price.candidate import Candidate, Pricing, Request
from planner.price.cluster import ClusterView, DomainClass
from planner.price.cross_type import price_cross_type_pipelines
from planner.price.layouts import MAX_PP, moe_layouts, tp_options, with_layer_split
from planner.price.roles import disaggregate, pool_kv_link, price_roles
from planner.price.spans import inter_domain_link_fn, replica_spans
from planner.price.wide import price_wide_ep


def price_candidates(model: ModelSpec, view: ClusterView, req: Request) -> Pricing:
    """Every valid shape on every GPU type, each at the batch its objective prefers."""
    topo = view.topology
    out: list[Candidate] = []
    priced = 0
    rejected: dict[str, int] = {}
    pr = Pricing(candidates=out, priced=0, rejected=rejected)
    # A shape's layer split depends on the GPU and the strategy, not on the span or links it is
    # priced with: each (GPU type, strategy) is split once, not once per span.
    splits: dict[tuple[str, Strategy], Strategy] = {}
    by_type: dict[str, list[DomainClass]] = {}
    for c in view.classes:
        by_type.setdefault(c.gpu, []).append(c)
    for gpu_name, classes in sorted(by_type.items()):
        gpu = view.gpu_of_type[gpu_name]
        total_free = sum(c.free * c.count for c in classes)
        max_free = max(c.free for c in classes)
        tp_limit = total_free if req.allow_cross_domain_tp else max_free
        tps = [t for t in tp_options(model, tp_limit) if req.tp is None or t == req.tp]
        inter_pp = inter_domain_link_fn(topo, view, classes)
        for tp in tps:
            pps = [p for p in range(1, min(MAX_PP, model.layers) + 1) if tp * p <= total_free]
            if req.pp is not None:
                pps = [p for p in pps if p == req.pp]
            for pp in pps:
                for span, unit, units, per_stage, cls_ok, links in replica_spans(view, classes, tp, pp, req, inter_pp):
                    for ep, adp in moe_layouts(model, tp, pp, req):
                        s = Strategy(tp=tp, pp=pp, ep=ep, weight_dtype=req.weight_dtype, kv_dtype=req.kv_dtype,
                                     max_num_batched_tokens=req.max_num_batched_tokens, runtime=req.runtime,
                                     attention_dp=adp, expert_imbalance=req.expert_imbalance)
                        why = validate_strategy(model, s)
                        if why:
                            rejected[why] = rejected.get(why, 0) + 1
                            continue
                        if (gpu_name, s) not in splits:
                            splits[gpu_name, s] = with_layer_split(model, gpu, s, req)
                        s = splits[gpu_name, s]
                        if disaggregate(req) and span == "intra":  # pool replicas sit in one domain
                            priced += price_roles(model, gpu, gpu_name, s, span, unit, units, per_stage, cls_ok,
                                                   Links(tp=links.tp, pp=links.pp, ep=links.tp),
                                                   pool_kv_link(view, classes, tp, links), req, pr)
                        if req.disaggregation == "only":
                            continue
                        priced += pr.add_replica(model, gpu, s, req, Links(tp=links.tp, pp=links.pp, ep=links.tp),
                                                 gpu=gpu_name, span=span, unit_gpus=unit, units_per_replica=units,
                                                 units_per_stage=per_stage, classes=cls_ok)
    priced += price_cross_type_pipelines(model, view, req, by_type, pr)
    priced += price_wide_ep(model, view, req, by_type, pr)
    pr.priced = priced
    pr.candidates[:] = _without_dominated(pr.candidates, req)
    return pr


def _without_dominated(cands: list[Candidate], req: Request) -> list[Candidate]:
    """Drop candidates another one of the same role beats on every count that matters.

    Two candidates that take the same placement units in the same classes are
    interchangeable to the solver but for their figures. A prefill or decode replica's whole
    worth is the requests/s it sustains (its SLOs were met when it was priced), so only the
    largest can be in an optimal plan. A unified replica is worth its output tokens/s and
    its usable requests/s: one beaten on both is never needed by the objectives that count
    served traffic (throughput, min-gpus, min-cost) or served traffic per GPU (throughput-per-gpu,
    as the two take the same GPUs); the latency objective ranks unified and decode candidates on
    TPOT and keeps them all. For span ``intra`` the unit is the whole
    replica, so shapes of the same GPU count compete directly. Fewer symmetric choices keep
    CP-SAT's proof short.
    """
    prune_unified = req.objective != "latency"
    groups: dict[tuple, list[Candidate]] = {}
    for c in cands:
        if c.role != "prefill" and not prune_unified:  # latency: every TPOT counts, decode pools' too
            continue
        key = (c.role, c.gpu, c.stage_gpus, c.span, c.unit_gpus, c.units_per_replica, c.units_per_stage, c.classes)
        groups.setdefault(key, []).append(c)
    drop: set[int] = set()
    for members in groups.values():
        if members[0].role != "unified":
            best = max(members, key=lambda c: (c.usable_requests_per_s, -c.index))
            drop |= {id(c) for c in members if c is not best}
            continue
        for c in members:  # Pareto on (tokens/s, usable requests/s); ties keep the lower index
            if any((o.metrics.output_tokens_per_s >= c.metrics.output_tokens_per_s
                    and o.usable_requests_per_s >= c.usable_requests_per_s
                    and (o.metrics.output_tokens_per_s > c.metrics.output_tokens_per_s
                         or o.usable_requests_per_s > c.usable_requests_per_s or o.index < c.index))
                   for o in members if o is not c):
                drop.add(id(c))
    return [c for c in cands if id(c) not in drop]


