"""Where a replica's GPUs sit: its *span*, and the links its collectives and pipeline sends cross.

A candidate is one replica shape on one GPU type: (tp, pp, ep, batch) and a *span*:

``intra``
    the whole replica (tp x pp GPUs) inside one domain; pipeline sends use the domain's
    links. Its placement unit is the replica.
``inter``
    each pipeline stage (tp GPUs) in a domain, stages in different domains; sends cross
    the scale-out network. Its placement unit is the stage.
``cross``
    (only with ``allow_cross_domain_tp``) each stage spans ``tp / domain size`` whole
    domains, tensor parallelism over the network.
``hetero``
    a pipeline across two GPU types: the first stages on one type, the rest on the
    other, each stage (tp GPUs) in a domain of its type, the layer split balanced for the
    two speeds. Its placement unit is the stage.
``wide``
    wide expert parallelism (MoE models, one stage): ``tp`` GPUs over ``tp / g`` domains of
    ``g`` free GPUs each, attention data-parallel in groups inside each domain, the experts
    spread over all ``tp`` GPUs (``ep = tp``) and reached by all-to-alls over the network
    (DeepSeek's and SGLang's large-scale EP, TensorRT-LLM's wide EP). Its placement unit is
    the ``g`` GPUs of one domain.
"""
from __future__ import annotations

from itertools import pairwise

from costmodels.strategy import Links
from planner.price.candidate import Request
from planner.price.cluster import ClusterView, DomainClass
from topologies.graph import LOCAL, Link, Topology


def chunks(gpus: list[str], size: int) -> list[list[str]]:
    return [gpus[i:i + size] for i in range(0, len(gpus) - size + 1, size)]


def wide_span(view: ClusterView, classes: list[DomainClass], tp: int, attention_tp: int):
    """Where a one-stage replica of ``tp`` GPUs spread over domains can go, or None: the
    domain classes whose free GPUs ``g`` (a multiple of ``attention_tp``) tile ``tp`` in at
    least two domains, as (g, classes, links), for the most common ``g`` that works."""
    topo = view.topology
    options = []
    for g in sorted({c.free for c in classes}):
        cls = [c for c in classes if c.free == g]
        domains = sum(c.count for c in cls)
        if tp % g or tp // g < 2 or g % attention_tp or tp // g > domains:
            continue
        ep_local = max((topo.slowest_link(view.free_gpus(c.domains[0])) for c in cls), key=slowness)
        ep_link = inter_domain_link_fn(topo, view, cls)(g)
        lt = max((topo.slowest_link(view.free_gpus(c.domains[0])[:attention_tp]) for c in cls), key=slowness)
        options.append((domains, g, cls, Links(tp=lt, pp=LOCAL, ep=ep_link, ep_local=ep_local, ep_local_ranks=g)))
    if not options:
        return None
    _, g, cls, links = max(options, key=lambda o: (o[0], o[1]))
    return g, cls, links


#: Runtimes that start one process per node with the same number of GPUs on every node of a
#: replica (SGLang: ``--nnodes`` processes of tp x pp / nnodes GPUs each).
EQUAL_RANKS_PER_NODE_RUNTIMES = ("sglang",)


def _even_split_possible(inter: list[DomainClass], tp: int, pp: int, runtime: str) -> bool:
    """Whether a replica of ``pp`` stages over several domains can put the same number of stages on
    each, as a runtime starting one process of equal size per node needs
    (:data:`EQUAL_RANKS_PER_NODE_RUNTIMES`): ``pp / d`` domains with room for ``d``
    stages each, for some divisor ``d < pp``. (Three stages on two nodes cannot be split so; SGLang's
    emitter refused such a plan the search had offered.) Other runtimes place stages freely."""
    if runtime not in EQUAL_RANKS_PER_NODE_RUNTIMES:
        return True
    return any(sum(c.count for c in inter if c.free >= d * tp) >= pp // d for d in range(1, pp) if pp % d == 0)


def _node_aligned(view: ClusterView, c: DomainClass, size: int, runtime: str) -> bool:
    """Whether a replica of ``size`` GPUs inside a domain of several nodes (a GB200 NVL72 rack of
    4-GPU trays) can hold the same number on each node, as a runtime starting one process of equal
    size per node needs: it fits one node, or takes whole nodes. (Where placement still splits one
    unevenly, the search sets that mix aside: planner.api._launchable.) A 6-GPU replica could run
    as 2 + 2 + 2, but placement fills trays in order, 4 + 2, which cannot start."""
    if runtime not in EQUAL_RANKS_PER_NODE_RUNTIMES:
        return True
    per_node = view.topology.spec.node_types[c.node_type].gpus_per_node
    return c.domain_size <= per_node or size <= per_node or size % per_node == 0


def replica_spans(view: ClusterView, classes: list[DomainClass], tp: int, pp: int, req: Request, inter_pp):
    """(span, unit GPUs, units per replica, units per stage, classes, links) for a shape."""
    topo = view.topology
    intra = [c for c in classes if tp * pp <= c.free and _node_aligned(view, c, tp * pp, req.runtime)]
    if intra:
        worst_tp, worst_pp = None, None
        for c in intra:
            free = view.free_gpus(c.domains[0])[: tp * pp]
            stages = chunks(free, tp)
            lt = max((topo.slowest_link(s) for s in stages), key=slowness)
            lp = LOCAL if pp == 1 else max((topo.stage_link(a, b) for a, b in pairwise(stages)),
                                           key=slowness)
            worst_tp = lt if worst_tp is None else max(worst_tp, lt, key=slowness)
            worst_pp = lp if worst_pp is None else max(worst_pp, lp, key=slowness)
        yield "intra", tp * pp, 1, 1, tuple(c.signature for c in intra), Links(tp=worst_tp, pp=worst_pp)
    inter = [c for c in classes if tp <= c.free]
    if pp > 1 and inter and sum(c.count * (c.free // tp) for c in inter) >= pp and (
            sum(c.count for c in inter) > 1) and _even_split_possible(inter, tp, pp, req.runtime):
        lt = max((topo.slowest_link(chunks(view.free_gpus(c.domains[0]), tp)[0]) for c in inter), key=slowness)
        yield "inter", tp, pp, 1, tuple(c.signature for c in inter), Links(tp=lt, pp=inter_pp(tp))
    if req.allow_cross_domain_tp:
        full = [c for c in classes if c.free == c.domain_size and tp > c.free and tp % c.free == 0]
        for c in full:
            k = tp // c.free
            if c.count < k * pp:
                continue
            doms = c.domains[: k * (2 if pp > 1 else 1)]
            group = [x for d in doms[:k] for x in view.free_gpus(d)]
            lt = topo.slowest_link(group)
            lp = LOCAL
            if pp > 1:
                nxt = [x for d in doms[k:2 * k] for x in view.free_gpus(d)]
                lp = topo.stage_link(group, nxt)
            yield "cross", c.free, k * pp, k, (c.signature,), Links(tp=lt, pp=lp)  # a unit is one whole domain


def slowness(link: Link) -> tuple[float, float]:
    """Sort key: larger is slower."""
    return (-link.bandwidth_bytes_per_s, link.latency_s)


def inter_domain_link_fn(topo: Topology, view: ClusterView, classes: list[DomainClass]):
    """Link a pipeline send takes between stages in two different domains, worst case.

    Stage k of a TP group sends to rank k of the next stage; all ``tp`` ranks send at
    once, sharing the NICs their GPUs sit behind. Priced on a same-rack pair and a
    cross-rack pair of domains where they exist.
    """
    cache: dict[int, Link] = {}
    doms = [(c, d) for c in classes for d in c.domains]

    def link(tp: int) -> Link:
        if tp in cache:
            return cache[tp]
        c0, d0 = doms[0]
        pairs = []
        r0 = view.rack_of(d0)
        same = next(((c, d) for c, d in doms[1:] if view.rack_of(d) == r0), None)
        other = next(((c, d) for c, d in doms[1:] if view.rack_of(d) != r0), None)
        for hit in (same, other):
            if hit is None:
                continue
            c1, d1 = hit
            a = view.free_gpus(d0)[:tp]
            b = view.free_gpus(d1)[:tp]
            if len(a) == tp and len(b) == tp:
                pairs.append(topo.stage_link(a, b))
        cache[tp] = max(pairs, key=slowness) if pairs else LOCAL
        return cache[tp]

    return link
