"""Price every replica shape the cluster could run, before the solver chooses among them.

The cluster is reduced to *domain classes*: scale-up domains (an NVSwitch node, a
multi-node NVLink domain, a PCIe server) with the same GPU type, node type, free GPU
positions and rack are interchangeable, so the solver decides counts per class and
:mod:`planner.placement` picks the concrete GPUs afterwards.

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

Attention data parallelism (``attention_dp`` > 1) is priced for MoE models on one-stage
replicas (``pp = 1``, as these deployments run), with ``ep = tp``: the layout the runtimes'
DP-attention paths are built around (TensorRT-LLM's "DEP", SGLang's ``--enable-dp-attention``
with ``--ep-size`` = ``--tp-size``, vLLM's ``--data-parallel-size`` with
``--enable-expert-parallel``).

Pipeline layer splits are chosen per shape (:func:`costmodels.serving.choose_layer_split`)
for runtimes that can pin one; otherwise the runtime's balanced split is used.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import cached_property
from itertools import pairwise

from costmodels import calibration as cal
from costmodels.batch import PREFILL_TOKEN_BUDGETS, BatchChoice, PrefillChoice, choose_batch, choose_prefill_budget
from costmodels.hardware import GPU, topology_gpu
from costmodels.load import max_utilization
from costmodels.memory import balanced_layer_split, front_loaded_split
from costmodels.models import ModelSpec
from costmodels.serving import ReplicaMetrics, choose_layer_split
from costmodels.strategy import Links, Strategy, validate_strategy
from topologies.errors import InputError
from topologies.graph import LOCAL, Link, Topology

MAX_PP = 16


@dataclass(frozen=True)
class DomainClass:
    """Scale-up domains the solver treats as interchangeable.

    Domains whose GPUs are all-to-all (NVSwitch, multi-node NVLink) are alike when their
    GPU type, node type, size and number of free GPUs match: which GPUs are free does not
    change any link. On PCIe servers (with or without NVLink bridges) the free positions
    matter too, since they decide which pairs a TP group gets. Racks are not part of the
    class: links between domains are priced at the worst rack pair, and placement keeps
    pipeline neighbours in one rack where it can.
    """

    index: int
    gpu: str  # catalog name
    node_type: str
    domains: tuple[str, ...]
    free: int
    domain_size: int
    free_positions: tuple[int, ...] | None  # None where positions do not matter

    @property
    def count(self) -> int:
        return len(self.domains)

    @property
    def signature(self) -> tuple:
        return (self.gpu, self.node_type, self.domain_size, self.free, self.free_positions)


@dataclass
class ClusterView:
    topology: Topology
    classes: list[DomainClass]
    gpu_of_type: dict[str, GPU] = field(default_factory=dict)
    free_of: dict[str, list[str]] = field(default_factory=dict)  # domain -> its free GPUs, in order

    @cached_property
    def free_by_type(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for c in self.classes:
            out[c.gpu] = out.get(c.gpu, 0) + c.free * c.count
        return out

    def free_gpus(self, domain: str) -> list[str]:
        return list(self.free_of[domain])

    def rack_of(self, domain: str) -> str:
        return self.topology.gpu(self.topology.domains[domain][0])["rack"]


def _bridged_pairs_first(topo: Topology, free: list[str]) -> list[str]:
    """The order in which pricing and placement take a domain's free GPUs (the first tp of them).

    On servers whose GPUs are NVLink-bridged in pairs, the two GPUs of every wholly free pair
    come first, pair by pair, so a TP group of two gets a bridge even where the pairs are not
    neighbouring indices (bridges joining GPU0-GPU2 and GPU1-GPU3); then the other free GPUs.
    Elsewhere the order is the GPU index order.
    """
    if not free:
        return free
    node = topo.gpu(free[0])["node"]
    fabric = topo.spec.node_types[topo.node_type_of(node)].fabric
    if fabric.kind != "nvlink-pairs":
        return free
    by_index = {topo.gpu(x)["index"]: x for x in free if topo.gpu(x)["node"] == node}
    first = [by_index[i] for a, b in sorted(tuple(sorted(p)) for p in fabric.pairs)
             if a in by_index and b in by_index for i in (a, b)]
    taken = set(first)
    return first + [x for x in free if x not in taken]


def check_fabrics(topo: Topology) -> None:
    """Refuse hardware that cannot exist: a fabric joining more GPUs by NVLink than the GPU can.

    The GPU catalog's ``nvlink_domain_gpus`` is the most GPUs one NVLink domain of that part
    joins (1: no NVLink, as on an L40S; 2: NVLink bridges, H100 PCIe; 8: an HGX baseboard; 72:
    GB200 NVL72). An NVSwitch node, NVLink pairs or a multi-node NVLink domain beyond that is a
    mistake in the file, which would otherwise be priced at NVLink speed.
    """
    spec = topo.spec
    for name, nt in spec.node_types.items():
        kind = nt.fabric.kind
        if kind == "pcie":
            continue
        gpu = topology_gpu(spec, nt.gpu, source=topo.source, field=f"node_types.{name}.gpu")
        most = gpu.nvlink_domain_gpus
        where = f"node_types.{name}.fabric.kind"
        if most < 2 and (kind != "nvswitch" or nt.gpus_per_node > 1):
            raise InputError(f"{kind!r} is impossible: {gpu.name} has no NVLink to other GPUs (GPU catalog); use "
                             f"'pcie'", source=topo.source, field=where)
        if kind == "nvswitch" and nt.gpus_per_node > most:
            raise InputError(f"'nvswitch' with {nt.gpus_per_node} GPUs per node is impossible: NVLink joins at most "
                             f"{most} {gpu.name} (GPU catalog); use more nodes, or 'nvlink-pairs' or 'pcie'",
                             source=topo.source, field=where)
    types = {n.name: spec.node_types[n.type] for n in spec.all_nodes()} if spec.nvlink_domains else {}
    for j, d in enumerate(spec.nvlink_domains):
        first = types[d.nodes[0]]
        gpu = topology_gpu(spec, first.gpu, source=topo.source, field="nvlink_domains")
        total = sum(types[n].gpus_per_node for n in d.nodes)
        if total > gpu.nvlink_domain_gpus:
            raise InputError(f"domain {d.name!r} joins {total} GPUs by NVLink, but one NVLink domain of {gpu.name} "
                             f"holds at most {gpu.nvlink_domain_gpus} (GPU catalog)", source=topo.source,
                             field=f"nvlink_domains[{j}].nodes")


def cluster_view(topo: Topology) -> ClusterView:
    """Group the topology's scale-up domains into interchangeable classes."""
    check_fabrics(topo)
    g = topo.graph
    by_key: dict[tuple, list[str]] = {}
    free_of: dict[str, list[str]] = {}
    for dom, gpus in topo.domains.items():
        free = _bridged_pairs_first(topo, [x for x in gpus if g.nodes[x]["available"]])
        if not free:
            continue
        free_of[dom] = free
        first = g.nodes[gpus[0]]
        gpu_names = {g.nodes[x]["gpu"] for x in gpus}
        if len(gpu_names) > 1:
            raise InputError(f"NVLink domain {dom!r} mixes GPU types {sorted(gpu_names)}", source=topo.source,
                             field="nvlink_domains")
        node_type = topo.node_type_of(first["node"])
        kind = topo.spec.node_types[node_type].fabric.kind
        positions = None if kind in ("nvswitch", "nvlink-domain") else tuple(
            i for i, x in enumerate(gpus) if g.nodes[x]["available"])
        key = (first["gpu"], node_type, len(gpus), len(free), positions)
        by_key.setdefault(key, []).append(dom)
    classes, types = [], {}
    for i, (key, doms) in enumerate(sorted(by_key.items(), key=lambda kv: (kv[0][0], kv[0][1], -kv[0][3],
                                                                           kv[0][4] or ()))):
        gpu_name, node_type, size, free, positions = key
        gpu = types.setdefault(gpu_name, topology_gpu(topo.spec, gpu_name, source=topo.source,
                                                      field=f"node_types.{node_type}.gpu"))
        classes.append(DomainClass(index=i, gpu=gpu.name, node_type=node_type, domains=tuple(doms), free=free,
                                   domain_size=size, free_positions=positions))
    if not classes:
        raise InputError("every GPU is marked unavailable; free some in 'nodes'", source=topo.source, field="nodes")
    return ClusterView(topology=topo, classes=classes, gpu_of_type={c.gpu: types[c.gpu] for c in classes},
                       free_of=free_of)


#: where a replica's GPUs sit, in the words reports use (the spans of this module's docstring)
SPAN_WORDS = {
    "intra": "inside one scale-up domain",
    "inter": "one pipeline stage per scale-up domain",
    "cross": "tensor parallelism across scale-up domains",
    "hetero": "a pipeline across GPU types",
    "wide": "wide expert parallelism across scale-up domains",
}


@dataclass(frozen=True)
class Candidate:
    index: int
    gpu: str
    strategy: Strategy
    span: str  # intra | inter | cross
    batch: int
    metrics: ReplicaMetrics
    links: Links
    unit_gpus: int  # GPUs one placement unit takes
    units_per_replica: int
    units_per_stage: int  # span 'cross': whole domains per stage; otherwise 1
    classes: tuple[tuple, ...]  # signatures of the domain classes a unit may go to
    usable_requests_per_s: float  # capacity at the highest utilisation the TTFT SLO allows
    stage_gpus: tuple[str, ...] = ()  # span 'hetero': the GPU type of each stage (else all `gpu`)
    role: str = "unified"  # unified | prefill | decode (a disaggregated deployment's two pools)
    kv_transfer_s: float = 0.0  # prefill: sending one prompt's KV cache to the decode pool (in its TTFT)

    @property
    def gpus(self) -> int:
        return self.strategy.gpus

    @property
    def hetero(self) -> bool:
        return bool(self.stage_gpus)

    def units_by_gpu(self) -> dict[str, int]:
        """Units per replica on each GPU type (a pipeline across types needs some of each)."""
        if not self.stage_gpus:
            return {self.gpu: self.units_per_replica}
        out: dict[str, int] = {}
        for g in self.stage_gpus:
            out[g] = out.get(g, 0) + 1
        return out

    def label(self) -> str:
        """The shape in words, e.g. ``H100-SXM-80GB decode tp=4 pp=1 batch=355, inside one scale-up domain``."""
        s = self.strategy
        ep = (f" ep={s.ep}" if s.ep > 1 else "") + (f" attention_dp={s.attention_dp}" if s.attention_dp > 1 else "")
        gpu = "+".join(dict.fromkeys(self.stage_gpus)) if self.stage_gpus else self.gpu
        role = "" if self.role == "unified" else f" {self.role}"
        return f"{gpu}{role} tp={s.tp} pp={s.pp}{ep} batch={self.batch}, {SPAN_WORDS.get(self.span, self.span)}"


@dataclass(frozen=True)
class Request:
    """What the solver is asked (the library's normalised form of the CLI flags)."""

    isl: int
    osl: int
    qps: float | None = None
    ttft_s: float | None = None
    tpot_s: float | None = None
    objective: str = "throughput"
    tpot_p99_s: float | None = None  # p99 TPOT (costmodels.load.tail_latency)
    ttft_p99_s: float | None = None  # p99 TTFT, queueing included when qps is given
    weight_dtype: str = "bf16"
    kv_dtype: str = "bf16"
    max_gpus: int | None = None
    allow_cross_domain_tp: bool = False
    max_num_batched_tokens: int = cal.DEFAULT_MAX_NUM_BATCHED_TOKENS
    runtime: str = "vllm"
    tp: int | None = None  # pin a degree (None: search)
    pp: int | None = None
    ep: int | None = None
    attention_dp: int | None = None
    expert_imbalance: float | None = None  # Strategy.expert_imbalance (None: uniform random routing)
    batch: int | None = None
    prices: tuple[tuple[str, float], ...] = ()  # (node type, price per GPU-hour), for min-cost
    disaggregation: str = "auto"  # off | auto (the solver decides) | only (prefill and decode pools only)
    pools_note: str | None = None  # why pools were not considered though the user left them to the search

    def price_of(self, node_type: str) -> float | None:
        return dict(self.prices).get(node_type)


def _tp_options(model: ModelSpec, limit: int) -> list[int]:
    out = []
    for t in range(1, limit + 1):
        if validate_strategy(model, Strategy(tp=t)) is None:
            out.append(t)
    return out


def _moe_layouts(model: ModelSpec, tp: int, pp: int, req: Request) -> list[tuple[int, int]]:
    """(ep, attention_dp) pairs to price for a stage of ``tp`` GPUs: every EP degree dividing
    tp and the experts with attention on the whole stage, and, for one-stage replicas, ep = tp
    with attention data-parallel in groups of every size dividing tp."""
    if not model.is_moe:
        out = [(1, 1)]
    else:
        out = [(e, 1) for e in range(1, tp + 1) if tp % e == 0 and model.experts % e == 0]
        if pp == 1 and model.experts % tp == 0:
            out += [(tp, d) for d in range(2, tp + 1) if tp % d == 0]
    return [(e, d) for e, d in out if (req.ep is None or e == req.ep)
            and (req.attention_dp is None or d == req.attention_dp)]


def _chunks(gpus: list[str], size: int) -> list[list[str]]:
    return [gpus[i:i + size] for i in range(0, len(gpus) - size + 1, size)]


@dataclass
class Pricing:
    candidates: list[Candidate]
    priced: int
    rejected: dict[str, int]  # reason -> shapes rejected for it (for infeasibility messages)
    best_tpot_s: float = math.inf
    best_tpot_label: str = ""
    best_ttft_s: float = math.inf
    best_ttft_label: str = ""
    best_tpot_p99_s: float = math.inf
    best_tpot_p99_label: str = ""
    best_ttft_p99_s: float = math.inf
    best_ttft_p99_label: str = ""
    smallest_weights_label: str = ""
    fits_anywhere: bool = False


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
        tps = [t for t in _tp_options(model, tp_limit) if req.tp is None or t == req.tp]
        inter_pp = inter_domain_link_fn(topo, view, classes)
        for tp in tps:
            pps = [p for p in range(1, min(MAX_PP, model.layers) + 1) if tp * p <= total_free]
            if req.pp is not None:
                pps = [p for p in pps if p == req.pp]
            for pp in pps:
                for span, unit, units, per_stage, cls_ok, links in replica_spans(view, classes, tp, pp, req, inter_pp):
                    for ep, adp in _moe_layouts(model, tp, pp, req):
                        s = Strategy(tp=tp, pp=pp, ep=ep, weight_dtype=req.weight_dtype, kv_dtype=req.kv_dtype,
                                     max_num_batched_tokens=req.max_num_batched_tokens, runtime=req.runtime,
                                     attention_dp=adp, expert_imbalance=req.expert_imbalance)
                        why = validate_strategy(model, s)
                        if why:
                            rejected[why] = rejected.get(why, 0) + 1
                            continue
                        if (gpu_name, s) not in splits:
                            splits[gpu_name, s] = _with_split(model, gpu, s, req)
                        s = splits[gpu_name, s]
                        if disaggregate(req) and span == "intra":  # pool replicas sit in one domain
                            priced += _price_roles(model, gpu, gpu_name, s, span, unit, units, per_stage, cls_ok,
                                                   Links(tp=links.tp, pp=links.pp, ep=links.tp),
                                                   _kv_link(view, classes, tp, links), req, pr)
                        if req.disaggregation == "only":
                            continue
                        choice = _best_batch(model, gpu, s, req, Links(tp=links.tp, pp=links.pp, ep=links.tp), pr)
                        priced += choice.priced
                        cand = choice.best
                        if cand is None:
                            continue
                        out.append(Candidate(index=len(out), gpu=gpu_name, strategy=s, span=span, batch=cand.batch,
                                             metrics=cand, links=Links(tp=links.tp, pp=links.pp, ep=links.tp),
                                             unit_gpus=unit, units_per_replica=units,
                                             units_per_stage=per_stage, classes=cls_ok,
                                             usable_requests_per_s=choice.usable_requests_per_s))
    priced += _price_cross_type_pipelines(model, view, req, by_type, pr)
    priced += _price_wide_ep(model, view, req, by_type, pr)
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


def disaggregate(req: Request) -> bool:
    """Whether prefill-only and decode-only replicas are priced: for every objective, unless
    turned off (every objective weighs unified replicas and pools alike)."""
    return req.disaggregation != "off"


def _kv_link(view: ClusterView, classes: list[DomainClass], tp: int, links: Links) -> Link:
    """The link a prefill replica's KV cache takes to the decode pool, worst case: across the
    network when the cluster has more than one domain (the pools may sit in different
    domains), else the domain's own links."""
    if sum(c.count for c in view.classes) > 1:
        return max(inter_domain_link_fn(view.topology, view, view.classes)(tp), links.tp, key=slowness)
    return max(links.tp, links.pp, key=slowness)


def _price_roles(model: ModelSpec, gpu: GPU, gpu_name: str, s: Strategy, span: str, unit: int, units: int,
                 per_stage: int, cls_ok: tuple, links: Links, kv_link: Link, req: Request, pr: Pricing) -> int:
    """Add this shape's prefill-only and decode-only candidates (disaggregated serving)."""
    out = pr.candidates
    common = dict(gpu=gpu_name, span=span, links=links, unit_gpus=unit, units_per_replica=units,
                  units_per_stage=per_stage, classes=cls_ok)
    n = len(PREFILL_TOKEN_BUDGETS)
    best = best_prefill(model, gpu, gpu_name, s, req, links, kv_link, pr)
    if best is not None:
        out.append(Candidate(index=len(out), batch=best.metrics.batch, metrics=best.metrics, role="prefill",
                             kv_transfer_s=best.kv_transfer_s, usable_requests_per_s=best.usable_requests_per_s,
                             strategy=best.strategy, **common))
    choice = _best_batch(model, gpu, s, replace(req, ttft_s=None, ttft_p99_s=None), links, pr, role="decode")
    n += choice.priced
    dm = choice.best
    if dm is not None:
        out.append(Candidate(index=len(out), batch=dm.batch, metrics=dm, role="decode", strategy=s,
                             usable_requests_per_s=dm.requests_per_s * max_utilization(ttft_s=0.0, ttft_slo_s=None),
                             **common))
    return n


def best_prefill(model: ModelSpec, gpu: GPU, gpu_name: str, s: Strategy, req: Request, links: Links,
                 kv_link: Link, pr: Pricing | None = None) -> PrefillChoice | None:
    """:func:`costmodels.batch.choose_prefill_budget` for this shape; each budget priced updates
    ``pr``'s fastest prompt (the infeasibility message and the TTFT frontier)."""
    best, seen = choose_prefill_budget(model, gpu, s, req, links, kv_link)
    if pr is not None:
        for budget, ttft_s, ttft_p99_s in seen:
            label = f"{gpu_name} prefill tp={s.tp} pp={s.pp} step {budget}"
            if ttft_s < pr.best_ttft_s:  # a pools plan's fastest prompt (--disaggregation only, the TTFT frontier)
                pr.best_ttft_s, pr.best_ttft_label = ttft_s, label
            if ttft_p99_s is not None and ttft_p99_s < pr.best_ttft_p99_s:
                pr.best_ttft_p99_s, pr.best_ttft_p99_label = ttft_p99_s, label
    return best


#: Pipelines across GPU types: at most this many stages (two types, each at least one stage).
MAX_CROSS_TYPE_PP = 4
#: On fleets of more domains, pipelines across types are priced only when some GPU type cannot
#: serve the model alone. There they would only use the odd GPUs left between same-type
#: replicas (a fraction of a percent), and the coupling between types costs CP-SAT its proof on
#: the 4,080-GPU fleet of benchmarks/solve_scaling.py.
CROSS_TYPE_MAX_DOMAINS = 64
#: Runtimes that take an uneven pipeline layer split, and how (the emitters write it). For
#: TensorRT-LLM the planner keeps the runtime's own balanced split.
UNEVEN_SPLIT_RUNTIMES = {"vllm": "VLLM_PP_LAYER_PARTITION", "sglang": "SGLANG_PP_LAYER_PARTITION"}


def _with_split(model: ModelSpec, gpu, s: Strategy, req: Request) -> Strategy:
    """The strategy with its pipeline layer split chosen (runtimes that can pin one only)."""
    if s.pp == 1:
        return s
    if s.runtime not in UNEVEN_SPLIT_RUNTIMES:  # the runtime's own split (TensorRT-LLM: front-loaded)
        split = front_loaded_split(model.layers, s.pp)
        return replace(s, layer_split=split) if split != balanced_layer_split(model.layers, s.pp) else s
    split = choose_layer_split(model, gpu, s, isl=req.isl, osl=req.osl)
    return replace(s, layer_split=split) if split != balanced_layer_split(model.layers, s.pp) else s


def _price_cross_type_pipelines(model: ModelSpec, view: ClusterView, req: Request,
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
            for tp in _tp_options(model, limit):
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
                        lt = max((topo.slowest_link(_chunks(view.free_gpus(c.domains[0]), tp)[0])
                                  for c in a_ok + b_ok), key=slowness)
                        lp = topo.stage_link(view.free_gpus(a_ok[0].domains[0])[:tp],
                                             view.free_gpus(b_ok[0].domains[0])[:tp])
                        if n_a > 1 or n_b > 1:  # same-type neighbours cross domains too
                            lp = max(lp, inter_domain_link_fn(topo, view, a_ok)(tp),
                                     inter_domain_link_fn(topo, view, b_ok)(tp), key=slowness)
                        links = Links(tp=lt, pp=lp, ep=lt)
                        for ep, adp in _moe_layouts(model, tp, pp, req):
                            s = Strategy(tp=tp, pp=pp, ep=ep, weight_dtype=req.weight_dtype, kv_dtype=req.kv_dtype,
                                         max_num_batched_tokens=req.max_num_batched_tokens, runtime=req.runtime,
                                         attention_dp=adp, expert_imbalance=req.expert_imbalance)
                            if validate_strategy(model, s):
                                continue
                            s = replace(s, layer_split=choose_layer_split(model, gpus, s, isl=req.isl,
                                                                          osl=req.osl))
                            choice = _best_batch(model, gpus, s, req, links, pr)
                            priced += choice.priced
                            cand = choice.best
                            if cand is None:
                                continue
                            out = pr.candidates
                            out.append(Candidate(
                                index=len(out), gpu=a_name, strategy=s, span="hetero", batch=cand.batch,
                                metrics=cand, links=links, unit_gpus=tp, units_per_replica=pp, units_per_stage=1,
                                classes=tuple(c.signature for c in a_ok + b_ok),
                                usable_requests_per_s=choice.usable_requests_per_s,
                                stage_gpus=names_by_stage))
    return priced


#: Runtimes whose launches the emitters can point at DeepEP's all-to-alls, the exchange a wide
#: stage is priced with (vLLM: VLLM_ALL2ALL_BACKEND; SGLang: --moe-a2a-backend deepep).
#: TensorRT-LLM's wide-EP path has its own kernels and configuration, not written here.
WIDE_EP_RUNTIMES = ("vllm", "sglang")
#: Wide expert parallelism: stages of at most this many domains (DeepSeek's published decode
#: deployment spans 18 nodes, 144 GPUs; past that the all-to-all's per-peer messages are tiny).
MAX_WIDE_DOMAINS = 32


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


def _price_wide_ep(model: ModelSpec, view: ClusterView, req: Request, by_type: dict[str, list[DomainClass]],
                   pr: Pricing) -> int:
    """One-stage MoE replicas across ``k`` >= 2 domains (span ``wide``): each domain gives its
    ``g`` free GPUs, attention runs data-parallel in groups of ``g / m`` GPUs inside a domain,
    and the experts are spread over all ``k g`` GPUs (ep = tp), dispatched and combined by
    all-to-alls that leave each domain through its NICs."""
    if not model.is_moe or (req.pp is not None and req.pp != 1) or req.runtime not in WIDE_EP_RUNTIMES:
        return 0
    priced = 0
    for gpu_name, classes in sorted(by_type.items()):
        gpu = view.gpu_of_type[gpu_name]
        for g0 in sorted({c.free for c in classes}):
            same = [c for c in classes if c.free == g0]
            domains = sum(c.count for c in same)
            spans: dict[int, tuple] = {}  # attention TP -> wide_span (its links do not depend on k)
            for k in range(2, min(domains, MAX_WIDE_DOMAINS) + 1):
                tp = k * g0
                if model.experts % tp or (req.tp is not None and tp != req.tp) or (req.ep is not None and req.ep != tp):
                    continue
                for at in range(1, g0 + 1):
                    if g0 % at or (req.attention_dp is not None and tp // at != req.attention_dp):
                        continue
                    s = Strategy(tp=tp, pp=1, ep=tp, attention_dp=tp // at, weight_dtype=req.weight_dtype,
                                 kv_dtype=req.kv_dtype, max_num_batched_tokens=req.max_num_batched_tokens,
                                 runtime=req.runtime, expert_imbalance=req.expert_imbalance)
                    why = validate_strategy(model, s)
                    if why:
                        pr.rejected[why] = pr.rejected.get(why, 0) + 1
                        continue
                    if at not in spans:
                        spans[at] = wide_span(view, same, tp, at)
                    g, cls, links = spans[at]
                    cls_ok = tuple(c.signature for c in cls)
                    if disaggregate(req):
                        priced += _price_roles(model, gpu, gpu_name, s, "wide", g, k, k, cls_ok, links,
                                               max(links.ep, links.tp, key=slowness), req, pr)
                    if req.disaggregation == "only":
                        continue
                    choice = _best_batch(model, gpu, s, req, links, pr)
                    priced += choice.priced
                    cand = choice.best
                    if cand is None:
                        continue
                    out = pr.candidates
                    out.append(Candidate(index=len(out), gpu=gpu_name, strategy=s, span="wide", batch=cand.batch,
                                         metrics=cand, links=links, unit_gpus=g, units_per_replica=k,
                                         units_per_stage=k, classes=cls_ok,
                                         usable_requests_per_s=choice.usable_requests_per_s))
    return priced


def replica_spans(view: ClusterView, classes: list[DomainClass], tp: int, pp: int, req: Request, inter_pp):
    """(span, unit GPUs, units per replica, units per stage, classes, links) for a shape."""
    topo = view.topology
    intra = [c for c in classes if tp * pp <= c.free]
    if intra:
        worst_tp, worst_pp = None, None
        for c in intra:
            free = view.free_gpus(c.domains[0])[: tp * pp]
            stages = _chunks(free, tp)
            lt = max((topo.slowest_link(s) for s in stages), key=slowness)
            lp = LOCAL if pp == 1 else max((topo.stage_link(a, b) for a, b in pairwise(stages)),
                                           key=slowness)
            worst_tp = lt if worst_tp is None else max(worst_tp, lt, key=slowness)
            worst_pp = lp if worst_pp is None else max(worst_pp, lp, key=slowness)
        yield "intra", tp * pp, 1, 1, tuple(c.signature for c in intra), Links(tp=worst_tp, pp=worst_pp)
    inter = [c for c in classes if tp <= c.free]
    if pp > 1 and inter and sum(c.count * (c.free // tp) for c in inter) >= pp and (
            sum(c.count for c in inter) > 1):
        lt = max((topo.slowest_link(_chunks(view.free_gpus(c.domains[0]), tp)[0]) for c in inter), key=slowness)
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


def _best_batch(model: ModelSpec, gpu: GPU, s: Strategy, req: Request, links: Links, pr: Pricing,
                role: str = "unified") -> BatchChoice:
    """:func:`costmodels.batch.choose_batch` for this shape, its rejections and fastest figures
    entered in ``pr``'s books (the infeasibility messages and the frontier read them)."""
    choice = choose_batch(model, gpu, s, req, links, role)
    for why in choice.rejected:
        pr.rejected[why] = pr.rejected.get(why, 0) + 1
    pr.fits_anywhere = pr.fits_anywhere or choice.fits
    name = gpu.name if isinstance(gpu, GPU) else "+".join(dict.fromkeys(g.name for g in gpu))
    for metric, (value_s, b) in choice.fastest.items():
        if value_s < getattr(pr, f"best_{metric}_s"):
            setattr(pr, f"best_{metric}_s", value_s)
            setattr(pr, f"best_{metric}_label", f"{name} tp={s.tp} pp={s.pp} batch {b}")
    return choice
