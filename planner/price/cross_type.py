"""Pipelines across two GPU types (span ``hetero``): the first stages on one type, the rest on
the other, each stage (tp GPUs) in a domain of its type, the layer split balanced for the two
speeds (:func:`costmodels.serving.choose_layer_split`).
"""
from __future__ import annotations

from dataclasses import replace

from costmodels.model_spec import ModelSpec
from costmodels.serving import choose_layer_split
from costmodels.strategy import Links, Strategy, validate_strategy
from planner.price.candidate import Pricing, Request
from planner.price.cluster import ClusterView, DomainClass
from planner.price.layouts import UNEVEN_SPLIT_RUNTIMES, moe_layouts, tp_options
from planner.price.spans import chunks, inter_domain_link_fn, slowness

#: Pipelines across GPU types: at most this many stages (two types, each at least one stage).
MAX_CROSS_TYPE_PP = 4


#: On fleets of more domains, pipelines across types are priced only when some GPU type cannot
#: serve the model alone. There they would only use the odd GPUs left between same-type
#: replicas (a fraction of a percent), and the coupling between types costs CP-SAT its proof on
#: the 4,080-GPU fleet of benchmarks/solve_scaling.py.
CROSS_TYPE_MAX_DOMAINS = 64


def price_cross_type_pipelines(model: ModelSpec, view: ClusterView, req: Request,
                                by_type: dict[str, list[DomainClass]], pr: Pricing) -> int:
    """Replicas whose pipeline stages sit on two GPU types: the first stages on one type, the
    rest on the other, tp GPUs per stage inside one domain, the layer split balanced for
    the two speeds (:func:`choose_layer_split`). Only for runtimes that can pin an uneven
    split; each stage is a placement unit of ``tp`` GPUs (span ``hetero``)."""
    if len(by_type) < 2 or req.runtime not in UNEVEN_SPLIT_RUNTIMES or req.pp == 1:
        return 0
    served_alone = {c.gpu for c in pr.candidates}
    if sum(c.count for c in view.classes) > CROSS_TYPE_MAX_DOMAINS and all(t in served_alone for t in by_type):
        return 0  # a large fleet whose every type serves the model alone: not worth CP-SAT's time
    topo = view.topology
    priced = 0
    names = sorted(by_type)
    for a_name in names:
        for b_name in names:
            if a_name == b_name:
                continue
            a_cls, b_cls = by_type[a_name], by_type[b_name]
            limit = min(max(c.free for c in a_cls), max(c.free for c in b_cls))
            for tp in tp_options(model, limit):
                if req.tp is not None and tp != req.tp:
                    continue
                a_ok = [c for c in a_cls if tp <= c.free]
                b_ok = [c for c in b_cls if tp <= c.free]
                a_units = sum(c.count * (c.free // tp) for c in a_ok)
                b_units = sum(c.count * (c.free // tp) for c in b_ok)
                for pp in range(2, min(MAX_CROSS_TYPE_PP, model.layers) + 1):
                    if req.pp is not None and pp != req.pp:
                        continue
                    for n_a in range(1, pp):
                        n_b = pp - n_a
                        if n_a > a_units or n_b > b_units:
                            continue
                        names_by_stage = (a_name,) * n_a + (b_name,) * n_b
                        gpus = [view.gpu_of_type[g] for g in names_by_stage]
                        lt = max((topo.slowest_link(chunks(view.free_gpus(c.domains[0]), tp)[0])
                                  for c in a_ok + b_ok), key=slowness)
                        lp = topo.stage_link(view.free_gpus(a_ok[0].domains[0])[:tp],
                                             view.free_gpus(b_ok[0].domains[0])[:tp])
                        if n_a > 1 or n_b > 1:  # same-type neighbours cross domains too
                            lp = max(lp, inter_domain_link_fn(topo, view, a_ok)(tp),
                                     inter_domain_link_fn(topo, view, b_ok)(tp), key=slowness)
                        links = Links(tp=lt, pp=lp, ep=lt)
                        for ep, adp in moe_layouts(model, tp, pp, req):
                            s = Strategy(tp=tp, pp=pp, ep=ep, weight_dtype=req.weight_dtype, kv_dtype=req.kv_dtype,
                                         max_num_batched_tokens=req.max_num_batched_tokens, runtime=req.runtime,
                                         attention_dp=adp, expert_imbalance=req.expert_imbalance)
                            if validate_strategy(model, s):
                                continue
                            s = replace(s, layer_split=choose_layer_split(model, gpus, s, isl=req.isl,
                                                                          osl=req.osl))
                            priced += pr.add_replica(model, gpus, s, req, links, gpu=a_name, span="hetero",
                                                     unit_gpus=tp, units_per_replica=pp, units_per_stage=1,
                                                     classes=tuple(c.signature for c in a_ok + b_ok),
                                                     stage_gpus=names_by_stage)
    return priced
