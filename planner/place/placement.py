"""Put every rank of the chosen replicas on a concrete GPU.

A pipeline across GPU types takes its stages' units from its types' classes, in the
order of its stages. Per class, units go largest first into the first domain with room (first-fit
decreasing: optimal for divisible sizes), each unit taking the first free GPUs of
its domain in the order ``cluster_view`` gives them (index order; on PCIe servers with
NVLink bridges, bridged pairs first), so TP groups land on aligned blocks. Pipeline
stages of one replica are consecutive units in (rack, domain) order, so neighbouring
stages share a rack wherever the solution allows.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING

from costmodels.strategy import Links, Strategy
from planner.price.candidate import Candidate
from planner.price.cluster import ClusterView
from planner.price.spans import EQUAL_RANKS_PER_NODE_RUNTIMES, slowness
from topologies.graph import LOCAL, SPINE, Link, Topology, leaf_id

if TYPE_CHECKING:  # annotations only: `emit` checks a plan through this module without loading the solver
    from planner.solve.cpsat import Instance, Solution


class PlacementError(Exception):
    """The aggregated capacity admitted a solution that cannot be packed (caller re-solves exactly)."""


@dataclass(frozen=True)
class PlacedReplica:
    candidate: Candidate
    stages: tuple[tuple[str, ...], ...]  # GPU ids of each stage, tp of them


def place(sol: Solution, inst: Instance, view: ClusterView) -> list[PlacedReplica]:
    free: dict[str, list[str]] = {}
    for k in inst.classes:
        for d in k.domains:
            free[d] = view.free_gpus(d)
    order = {d: i for i, d in enumerate(view.topology.domains)}
    units: dict[int, list[tuple[tuple, tuple[str, ...], str]]] = {}
    cands = {c.index: c for c in inst.candidates}
    for k in inst.classes:
        items = sorted(((cands[ci], n) for (ci, ki), n in sol.units.items() if ki == k.index),
                       key=lambda cn: (-cn[0].unit_gpus, cn[0].index))
        doms = sorted(k.domains, key=order.__getitem__)
        for c, n in items:
            for _ in range(n):
                for d in doms:
                    room = len(free[d])
                    if room >= c.unit_gpus and (c.span != "cross" or room == k.domain_size):
                        gpus, free[d] = tuple(free[d][: c.unit_gpus]), free[d][c.unit_gpus:]
                        units.setdefault(c.index, []).append(((view.rack_of(d), order[d]), gpus, k.gpu))
                        break
                else:
                    raise PlacementError(f"class {k.index}: no domain has {c.unit_gpus} free GPUs")
    out: list[PlacedReplica] = []
    for ci in sorted(sol.replicas):
        c = cands[ci]
        us = [g for _, g, _ in sorted(units.get(ci, []))]
        tp, pp = c.strategy.tp, c.strategy.pp
        if c.span == "hetero":  # stages in the candidate's order of GPU types
            by_type: dict[str, list[tuple[str, ...]]] = {}
            for _, g, gpu in sorted(units.get(ci, [])):
                by_type.setdefault(gpu, []).append(g)
            for _ in range(sol.replicas[ci]):
                out.append(PlacedReplica(c, tuple(by_type[gpu].pop(0) for gpu in c.stage_gpus)))
        elif c.span == "intra":
            for u in us:
                out.append(PlacedReplica(c, tuple(u[s * tp:(s + 1) * tp] for s in range(pp))))
        elif c.span == "inter":
            groups = None
            if inst.request.runtime in EQUAL_RANKS_PER_NODE_RUNTIMES:
                groups = _equal_per_node(us, pp, lambda u: view.topology.gpu(u[0])["node"])
            if groups is None:
                groups = [us[r:r + pp] for r in range(0, len(us), pp)]
            for grp in groups:
                out.append(PlacedReplica(c, tuple(grp)))
        else:  # cross (k whole domains per stage) and wide (k domains' free GPUs per stage)
            k = c.units_per_stage
            for r in range(0, len(us), k * pp):
                block = us[r:r + k * pp]
                out.append(PlacedReplica(c, tuple(tuple(x for u in block[s * k:(s + 1) * k] for x in u)
                                                  for s in range(pp))))
    return out


def _equal_per_node(units: list[tuple[str, ...]], pp: int, node_of) -> list[list[tuple[str, ...]]] | None:
    """Group pipeline-stage units (each on one node, in placement order) into replicas of ``pp``
    stages whose nodes each hold the same number of stages, or None if this greedy cannot.

    Each replica takes its stages from as few nodes as it can: ``per`` stages from each of
    ``pp / per`` nodes, ``per`` the largest divisor of ``pp`` for which enough nodes have that
    many units left (the nodes with the most left first), so that later replicas still find
    units to pair."""
    by_node: dict[str, list[tuple[str, ...]]] = {}
    for u in units:
        by_node.setdefault(node_of(u), []).append(u)
    rank = {n: i for i, n in enumerate(by_node)}
    out = []
    for _ in range(len(units) // pp):
        left = sorted((n for n in by_node if by_node[n]), key=lambda n: (-len(by_node[n]), rank[n]))
        for per in sorted((d for d in range(1, pp + 1) if pp % d == 0), reverse=True):
            nodes = [n for n in left if len(by_node[n]) >= per][: pp // per]
            if len(nodes) == pp // per:
                out.append([by_node[n].pop(0) for n in sorted(nodes, key=rank.__getitem__) for _ in range(per)])
                break
        else:
            return None
    return out


def slowest_stage_link(topo: Topology, senders: list[list[str]], receivers: list[list[str]]) -> Link:
    """The slowest :meth:`Topology.stage_link` from any group of ``senders`` to any group of
    ``receivers`` (e.g. every prefill replica's first stage to every decode replica's), without
    pricing all ``len(senders) x len(receivers)`` pairs.

    A pair's link depends only on the two groups' *shapes* (per GPU its node type, index and
    its rack's uplink, which GPUs share a node, which share a rack) and on which racks and
    domains the two groups share: that decides NIC and uplink sharing and each GPU pair's
    widest path (:meth:`Topology._signature`; racks differ only by their uplinks). So pairs
    are priced once per such class, on a representative. Pairs on disjoint racks are found
    per pair of shapes; pairs that share a rack are enumerated rack by rack, and those that
    share a domain priced one by one.
    """
    if not senders or not receivers:
        return LOCAL
    g = topo.graph
    leaf_spine = SPINE in g

    def uplink(rack: str) -> float:
        return g.edges[leaf_id(rack), SPINE]["bandwidth_bytes_per_s"] if leaf_spine else 0.0

    def shape(grp: list[str]) -> tuple:
        nodes: dict[str, int] = {}
        racks: dict[str, int] = {}
        return tuple((topo.node_type_of(g.nodes[x]["node"]), g.nodes[x]["index"], uplink(g.nodes[x]["rack"]),
                      nodes.setdefault(g.nodes[x]["node"], len(nodes)), racks.setdefault(g.nodes[x]["rack"], len(racks)))
                     for x in grp)

    info = {}
    for grp in list(senders) + list(receivers):
        racks = list(dict.fromkeys(g.nodes[x]["rack"] for x in grp))
        info[id(grp)] = (shape(grp), frozenset(topo.domain_of(x) for x in grp), racks)

    worst: Link | None = None
    seen: set[tuple] = set()

    def see(a: list[str], b: list[str], key: tuple | None) -> None:
        nonlocal worst
        if key is not None:
            if key in seen:
                return
            seen.add(key)
        lk = topo.stage_link(a, b)
        worst = lk if worst is None else max(worst, lk, key=slowness)

    by_shape_a: dict[tuple, list[list[str]]] = {}
    by_shape_b: dict[tuple, list[list[str]]] = {}
    for a in senders:
        by_shape_a.setdefault(info[id(a)][0], []).append(a)
    for b in receivers:
        by_shape_b.setdefault(info[id(b)][0], []).append(b)
    for sa, ga in by_shape_a.items():
        for sb, gb in by_shape_b.items():
            # the first pair of these shapes on disjoint racks (found at once unless racks are few)
            pair = next(((a, b) for a in ga for b in gb if set(info[id(a)][2]).isdisjoint(info[id(b)][2])), None)
            if pair is not None:
                see(*pair, key=(sa, sb, frozenset()))
    by_rack: dict[str, list[list[str]]] = {}
    for b in receivers:
        for r in info[id(b)][2]:
            by_rack.setdefault(r, []).append(b)
    for a in senders:
        sa, da, ra = info[id(a)]
        met = {id(b): b for r in ra for b in by_rack.get(r, [])}
        for b in met.values():
            sb, db, rb = info[id(b)]
            if not da.isdisjoint(db):
                see(a, b, key=None)  # a shared domain: priced as is
                continue
            shared = frozenset((i, j) for i, x in enumerate(ra) for j, y in enumerate(rb) if x == y)
            see(a, b, key=(sa, sb, shared))
    return worst if worst is not None else LOCAL


def measure_links(topo: Topology, stages: list[list[str]], s: Strategy) -> Links:
    """The links a replica whose stages sit on ``stages`` (GPU ids, rank order) uses for strategy ``s``.

    The all-reduce group is an attention group: consecutive runs of ``s.attention_tp`` ranks
    (the whole stage without attention DP). Under attention DP the MoE all-to-all spans the
    whole stage; where the stage covers several domains, ``ep`` is the per-GPU share of the
    network between neighbouring domains (all GPUs sending at once) and ``ep_local`` the
    slowest link inside one.
    """
    at = s.attention_tp
    groups = [st[i:i + at] for st in stages for i in range(0, len(st), at)]
    tp = max((topo.slowest_link(g) for g in groups), key=slowness)
    pp = LOCAL
    if len(stages) > 1:
        pp = max((topo.stage_link(list(a), list(b)) for a, b in pairwise(stages)), key=slowness)
    if s.attention_dp == 1:
        return Links(tp=tp, pp=pp, ep=tp)
    ep, ep_local, local_ranks = None, None, 0
    for st in stages:
        by_dom: dict[str, list[str]] = {}
        for x in st:
            by_dom.setdefault(topo.domain_of(x), []).append(x)
        parts = list(by_dom.values())
        if len(parts) == 1:
            lk = topo.slowest_link(st)
            ep = lk if ep is None else max(ep, lk, key=slowness)
            continue
        local_ranks = max(local_ranks, max(len(p) for p in parts))
        for p in parts:
            lk = topo.slowest_link(p)
            ep_local = lk if ep_local is None else max(ep_local, lk, key=slowness)
        for a, b in zip(parts, parts[1:] + parts[:1], strict=True):  # neighbouring domains, as a ring
            n = min(len(a), len(b))
            lk = topo.stage_link(a[:n], b[:n])
            ep = lk if ep is None else max(ep, lk, key=slowness)
    return Links(tp=tp, pp=pp, ep=ep or tp, ep_local=ep_local, ep_local_ranks=local_ranks)


def replica_links(topo: Topology, rep: PlacedReplica) -> Links:
    """The links this placed replica's collectives actually use."""
    return measure_links(topo, [list(x) for x in rep.stages], rep.candidate.strategy)


def worst_links(links: Iterable[Links]) -> Links:
    """The slowest of each link over several replicas of one shape."""
    ls = list(links)
    local = [lk.ep_local for lk in ls if lk.ep_local is not None]
    return Links(tp=max((lk.tp for lk in ls), key=slowness), pp=max((lk.pp for lk in ls), key=slowness),
                 ep=max((lk.ep for lk in ls), key=slowness),
                 ep_local=max(local, key=slowness) if local else None,
                 ep_local_ranks=max(lk.ep_local_ranks for lk in ls))
