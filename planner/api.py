"""The library API: ``search``, ``evaluate``, ``explain``. The CLI only calls these.

>>> from planner import search
>>> plan = search(topology="dgx-h100x1", model="llama-3.1-8b", isl=512, osl=128)
>>> plan.solver.status
'OPTIMAL'
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

from costmodels import calibration as cal
from costmodels.batch import group_ttft, planned_utilization
from costmodels.hardware import (
    GPU,
    custom_gpus,
    get_gpu,
    get_gpu as _get_gpu,  # resolve_prices shadows get_gpu with the topology's own types
)
from costmodels.load import ClosedLoopMetrics, LoadedMetrics, serve_at_concurrency, serve_at_rate, tail_latency
from costmodels.memory import weight_bytes
from costmodels.models import ModelSpec, get_model
from costmodels.prefill import evaluate_prefill, kv_transfer_s
from costmodels.serving import ReplicaMetrics, effective_strategy, evaluate_replica
from costmodels.strategy import Links, Strategy, stages, validate_strategy
from costmodels.units import DTYPES, GIB, dtype_bytes
from planner import schema as S
from planner.cpsat import (
    SPLIT_CLASSES_UP_TO,
    Instance,
    Solution,
    SolverParams,
    ratio_bound,
    solve,
    split_classes,
    throughput_units,
)
from planner.placement import PlacedReplica, PlacementError, place, replica_links, slowest_stage_link, worst_links
from planner.price.candidate import Candidate, Pricing, Request
from planner.price.cluster import ClusterView, cluster_view
from planner.price.shapes import price_candidates
from planner.price.spans import inter_domain_link_fn, replica_spans, wide_span
from planner.progress import SearchControl
from topologies.errors import InfeasibleError, InputError, SolveTimeout
from topologies.graph import Topology
from topologies.load import load_topology

if TYPE_CHECKING:  # Evaluation.run's type; the simulator itself is imported where evaluate runs it
    from costmodels.benchrun import BenchmarkRun

VERSION = "0.1.0"
OBJECTIVES = ("throughput", "throughput-per-gpu", "min-gpus", "min-cost", "latency")
#: Runtimes whose launch files run prefill/decode pools (the SGLang emitter writes them; the vLLM,
#: TensorRT-LLM and Kubernetes emitters launch unified replicas only), so the only runtimes the
#: search offers pools for: a plan is always one its runtime's emitter can launch.
POOL_RUNTIMES = ("sglang",)


def _topology(t: str | Path | Topology) -> Topology:
    if isinstance(t, Topology):
        return t
    spec, sha = load_topology(t)
    return Topology(spec, sha, source=str(t))


def _model(m: str | Path | ModelSpec) -> ModelSpec:
    """The model spec (``get_model`` names a ``config.json`` after its folder, the current one included)."""
    return m if isinstance(m, ModelSpec) else get_model(m)


def _dtype(value: str | None, default: str, flag: str) -> str:
    if value is None or value == "auto":
        return default
    v = value.lower()
    if v not in DTYPES:
        raise InputError(f"unknown dtype {value!r}; choose one of {', '.join(DTYPES)}", source=flag)
    return v


def _positive(value, flag: str, *, allow_none: bool = True, integer: bool = False):
    if value is None and allow_none:
        return None
    if value is None or isinstance(value, bool) or (integer and int(value) != value) or not value > 0 \
            or (isinstance(value, float) and not math.isfinite(value)):
        kind = "a positive integer" if integer else "a positive number"
        raise InputError(f"must be {kind}, got {value!r}", source=flag)
    return value


def make_request(model: ModelSpec, *, isl: int, osl: int, qps: float | None = None,
                 ttft_ms: float | None = None, tpot_ms: float | None = None, objective: str = "throughput",
                 weight_dtype: str | None = None, kv_dtype: str | None = None, max_gpus: int | None = None,
                 allow_cross_domain_tp: bool = False, tp: int | None = None, pp: int | None = None,
                 ep: int | None = None, batch: int | None = None, runtime: str = "vllm",
                 check_context: bool = True, disaggregation: str = "auto", attention_dp: int | None = None,
                 expert_imbalance: float | None = None, tpot_p99_ms: float | None = None,
                 ttft_p99_ms: float | None = None) -> Request:
    """Validate user-level arguments into a :class:`Request` (raises :class:`InputError`)."""
    _positive(isl, "--isl", allow_none=False, integer=True)
    _positive(osl, "--osl", allow_none=False, integer=True)
    if qps is not None and (not math.isfinite(qps) or qps < 0):
        raise InputError(f"must be a non-negative number, got {qps!r}", source="--qps")
    _positive(ttft_ms, "--ttft-ms")
    _positive(tpot_ms, "--tpot-ms")
    _positive(tpot_p99_ms, "--tpot-p99-ms")
    _positive(ttft_p99_ms, "--ttft-p99-ms")
    for v, f in ((max_gpus, "--max-gpus"), (tp, "--tp"), (pp, "--pp"), (ep, "--ep"), (batch, "--batch"),
                 (attention_dp, "--attention-dp")):
        _positive(v, f, integer=True)
    if objective not in OBJECTIVES:
        raise InputError(f"unknown objective {objective!r}; choose one of {', '.join(OBJECTIVES)}",
                         source="--objective")
    if objective in ("min-gpus", "min-cost") and not qps:
        raise InputError(f"{objective} needs a target request rate: add --qps", source="--objective")
    if disaggregation not in ("auto", "off", "only"):
        raise InputError(f"unknown value {disaggregation!r}; choose auto, off or only", source="--disaggregation")
    if runtime not in cal.RUNTIMES:
        raise InputError(f"unknown runtime {runtime!r}; choose one of {', '.join(cal.RUNTIMES)}", source="--runtime")
    pools_note = None
    if disaggregation != "off" and runtime not in POOL_RUNTIMES:
        if disaggregation == "only":
            raise InputError(f"prefill/decode pools are planned for runtimes whose launch files run them "
                             f"({', '.join(POOL_RUNTIMES)}), not {runtime}; add --runtime sglang or drop "
                             f"--disaggregation only", source="--disaggregation")
        disaggregation = "off"
        pools_note = (f"not considered: {runtime}'s launch files (plan-search emit) run unified replicas only; "
                      f"--runtime sglang weighs pools too")
    if check_context and model.max_context and isl + osl > model.max_context:
        raise InputError(f"isl + osl = {isl + osl} tokens exceeds {model.name}'s context of "
                         f"{model.max_context}", source="--isl")
    if ep is not None and ep > 1:
        if not model.is_moe:
            raise InputError(f"{model.name} has no experts; drop --ep", source="--ep")
        if model.experts % ep:
            raise InputError(f"--ep {ep} does not divide the {model.experts} experts of {model.name}",
                             source="--ep")
    if attention_dp is not None and attention_dp > 1 and not model.is_moe:
        raise InputError(f"{model.name} has no experts: attention data parallelism is for MoE models "
                         f"(for a dense model it is just more replicas); drop --attention-dp", source="--attention-dp")
    if expert_imbalance is not None:
        if isinstance(expert_imbalance, bool) or not isinstance(expert_imbalance, (int, float)) \
                or not math.isfinite(expert_imbalance) or expert_imbalance < 1:
            raise InputError(f"must be a number >= 1 (the busiest expert-parallel rank's routed tokens over the "
                             f"mean; 1 = perfectly balanced), got {expert_imbalance!r}", source="--expert-imbalance")
        if not model.is_moe:
            raise InputError(f"{model.name} has no experts; drop --expert-imbalance", source="--expert-imbalance")
    wd = _dtype(weight_dtype, model.native_dtype, "--weight-dtype")
    kd = _dtype(kv_dtype, "bf16", "--kv-dtype")
    return Request(isl=isl, osl=osl, qps=qps, ttft_s=ttft_ms / 1e3 if ttft_ms else None,
                   tpot_s=tpot_ms / 1e3 if tpot_ms else None, objective=objective, weight_dtype=wd,
                   kv_dtype=kd, max_gpus=max_gpus, allow_cross_domain_tp=allow_cross_domain_tp,
                   tp=tp, pp=pp, ep=ep, batch=batch, runtime=runtime, disaggregation=disaggregation,
                   attention_dp=attention_dp,
                   expert_imbalance=float(expert_imbalance) if expert_imbalance is not None else None,
                   tpot_p99_s=tpot_p99_ms / 1e3 if tpot_p99_ms else None,
                   ttft_p99_s=ttft_p99_ms / 1e3 if ttft_p99_ms else None, pools_note=pools_note)


# -- search --------------------------------------------------------------------------------------

def search(*, topology: str | Path | Topology, model: str | Path | ModelSpec, isl: int = 1024,
           osl: int = 256, qps: float | None = None, ttft_ms: float | None = None,
           tpot_ms: float | None = None, objective: str = "throughput", weight_dtype: str | None = None,
           kv_dtype: str | None = None, max_gpus: int | None = None, allow_cross_domain_tp: bool = False,
           time_limit_s: float = 10.0, workers: int = 1, seed: int = 0, include_timings: bool = False,
           log: bool = False, runtime: str = "vllm", control: SearchControl | None = None,
           price_per_gpu_hour: dict[str, float] | None = None, disaggregation: str = "auto",
           ep: int | None = None, attention_dp: int | None = None,
           expert_imbalance: float | None = None, tpot_p99_ms: float | None = None,
           ttft_p99_ms: float | None = None) -> S.Plan:
    """Find the best plan. Raises :class:`InputError` (bad input) or :class:`InfeasibleError`.

    ``control`` (optional) receives progress lines and makes the search interruptible: a
    Ctrl-C while the solver runs returns the best plan found so far (status FEASIBLE, with
    its gap) and sets ``control.interrupted``; before any plan exists it raises
    ``KeyboardInterrupt``.

    ``price_per_gpu_hour`` maps GPU type to its price per GPU-hour (over the topology's own
    ``price_per_gpu_hour`` of the node types with that GPU); objective ``min-cost`` needs a
    price for every GPU type the plan could use.

    MoE models: ``ep`` and ``attention_dp`` pin those degrees (None: searched);
    ``expert_imbalance`` is the busiest expert-parallel rank's routed tokens over the mean
    (None: uniform random routing, :func:`costmodels.compute.expert_load_factor`).

    ``tpot_p99_ms`` and ``ttft_p99_ms`` are p99 SLOs beside the mean ones: every replica's
    batch keeps its p99 TPOT and p99 TTFT (queueing included when ``qps`` is given) within
    them, as :func:`costmodels.load.tail_latency` prices them.
    """
    t_start = time.perf_counter()
    topo, spec, req, params, view, pricing = prepare(
        topology=topology, model=model, isl=isl, osl=osl, qps=qps, ttft_ms=ttft_ms, tpot_ms=tpot_ms,
        objective=objective, weight_dtype=weight_dtype, kv_dtype=kv_dtype, max_gpus=max_gpus,
        allow_cross_domain_tp=allow_cross_domain_tp, time_limit_s=time_limit_s, workers=workers, seed=seed,
        log=log, runtime=runtime, control=control, price_per_gpu_hour=price_per_gpu_hour,
        disaggregation=disaggregation, ep=ep, attention_dp=attention_dp, expert_imbalance=expert_imbalance,
        tpot_p99_ms=tpot_p99_ms, ttft_p99_ms=ttft_p99_ms)
    deadline = time.perf_counter() + params.time_limit_s
    try:
        sol, inst, placed = _solve_and_place(view, pricing.candidates, req, params, control)
    except KeyboardInterrupt as e:
        if control is not None and control.solved:  # Ctrl-C while placing GPUs: say so, not "before any plan"
            raise KeyboardInterrupt("interrupted while assigning GPUs to the plan the solver found; "
                                    "no plan written") from None
        raise e
    if sol is None:
        raise InfeasibleError(explain_infeasible(spec, view, req, pricing))
    why = None
    if not (control is not None and control.interrupted):
        from planner.disagg import verdict
        try:
            why = verdict(spec, view, req, sol, pricing.candidates, inst.classes, params, deadline,
                          _solve_objective)
        except KeyboardInterrupt:  # the comparison solve only explains the plan: keep the plan
            if control is None:
                raise
            control.interrupted = True
    wall = time.perf_counter() - t_start
    plan = build_plan(spec, topo, view, req, sol, inst, placed, pricing, params,
                      wall_time_s=wall if include_timings else None)
    return plan.model_copy(update={"disaggregation": why}) if why is not None else plan


def prepare(*, topology, model, isl, osl, qps, ttft_ms, tpot_ms, objective, weight_dtype, kv_dtype, max_gpus,
            allow_cross_domain_tp, time_limit_s, workers, seed, log, runtime, control, price_per_gpu_hour,
            disaggregation="auto", ep=None, attention_dp=None, expert_imbalance=None, tpot_p99_ms=None,
            ttft_p99_ms=None):
    """Everything ``search`` does before the solver: validate, load, price the candidates, and
    refuse requests no candidate can meet. Returns (topology, model, request, solver params,
    cluster view, pricing)."""
    topo = _topology(topology)
    spec = _model(model)
    req = make_request(spec, isl=isl, osl=osl, qps=qps, ttft_ms=ttft_ms, tpot_ms=tpot_ms, objective=objective,
                       weight_dtype=weight_dtype, kv_dtype=kv_dtype, max_gpus=max_gpus,
                       allow_cross_domain_tp=allow_cross_domain_tp, runtime=runtime, disaggregation=disaggregation,
                       ep=ep, attention_dp=attention_dp, expert_imbalance=expert_imbalance,
                       tpot_p99_ms=tpot_p99_ms, ttft_p99_ms=ttft_p99_ms)
    _positive(time_limit_s, "--time-limit-s")
    _positive(workers, "--workers", integer=True)
    if workers > 1024:
        raise InputError(f"{workers} is more workers than CP-SAT can use; give at most 1024", source="--workers")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**31:
        raise InputError(f"must be an integer from 0 to {2**31 - 1}, got {seed!r}", source="--seed")
    params = SolverParams(time_limit_s=time_limit_s, workers=workers, seed=seed, log=log)
    view = cluster_view(topo)
    req = replace(req, prices=resolve_prices(topo, view, price_per_gpu_hour, required=req.objective == "min-cost"))
    free = sum(k.free * k.count for k in view.classes)
    if req.max_gpus is not None and req.max_gpus > free:
        req = replace(req, max_gpus=None)  # a cap above what the cluster has does not bind
    t_price = time.perf_counter()
    pricing = price_candidates(spec, view, req)
    if control is not None:
        control.say(f"priced {pricing.priced:,} shapes on {free:,} free GPUs in {time.perf_counter() - t_price:.1f} s: "
                    f"{len(pricing.candidates):,} candidates meet the request")
    if not pricing.candidates:
        raise InfeasibleError(explain_infeasible(spec, view, req, pricing))
    if req.qps and req.qps > max(c.usable_requests_per_s / c.gpus for c in pricing.candidates) * free:
        raise InfeasibleError(explain_infeasible(spec, view, req, pricing))
    return topo, spec, req, params, view, pricing


def resolve_prices(topo: Topology, view: ClusterView, flags: dict[str, float] | None, *,
                   required: bool) -> tuple[tuple[str, float], ...]:
    """(node type, price per GPU-hour) for every node type with free GPUs whose price is known:
    ``--price GPU=USD`` over the topology's ``price_per_gpu_hour``."""
    by_gpu: dict[str, float] = {}
    own = custom_gpus(topo.spec.gpu_types, source=topo.source)

    def get_gpu(name: str, **kw) -> GPU:  # the topology's own GPU types, then the catalog
        return _get_gpu(name, custom=own, **kw)

    for name, price in sorted((flags or {}).items()):
        if isinstance(price, bool) or not isinstance(price, (int, float)) or not math.isfinite(price) or price < 0:
            raise InputError(f"price of {name} must be a non-negative number of dollars, got {price!r}",
                             source="--price")
        gpu = get_gpu(name, source="--price").name
        if gpu not in {get_gpu(nt.gpu).name for nt in topo.spec.node_types.values()}:
            have = ", ".join(sorted({get_gpu(nt.gpu).name for nt in topo.spec.node_types.values()}))
            raise InputError(f"{gpu} is not in topology {topo.name!r} (it has {have}); drop its price",
                             source="--price")
        by_gpu[gpu] = float(price)
    out = []
    for nt in sorted({k.node_type for k in view.classes}):
        node_type = topo.spec.node_types[nt]
        price = by_gpu.get(get_gpu(node_type.gpu).name, node_type.price_per_gpu_hour)
        if price is None:
            if required:
                raise InputError(f"min-cost needs a price for every GPU type: node type {nt!r} ({node_type.gpu}) "
                                 f"has none; add --price {get_gpu(node_type.gpu).name}=USD_PER_HOUR or "
                                 f"price_per_gpu_hour to the node type", source="--price")
            continue
        out.append((nt, price))
    return tuple(out)


def _solve_and_place(view: ClusterView, cands: list[Candidate], req: Request, params: SolverParams,
                     control: SearchControl | None = None, exclude: tuple[dict[tuple, int], ...] = ()):
    """Solve per the objective; on a packing failure of an aggregated class, re-solve exactly.

    All solves share one deadline: ``params.time_limit_s`` bounds the whole search.
    """
    deadline = time.perf_counter() + params.time_limit_s
    for up_to in (SPLIT_CLASSES_UP_TO, 10**9):
        classes = split_classes(view.classes, up_to=up_to)
        sol, inst = _solve_objective(cands, classes, req, params, deadline=deadline, control=control,
                                     exclude=exclude)
        if sol is None:
            return None, None, None
        try:
            return sol, inst, place(sol, inst, view)
        except PlacementError:
            continue
    raise AssertionError("exact class split cannot fail to place")  # pragma: no cover


class _Stopped(Exception):
    """Ctrl-C stopped a solve before it found anything."""


def _solve_objective(cands: list[Candidate], classes, req: Request, params: SolverParams,
                     deadline: float | None = None, control: SearchControl | None = None,
                     exclude: tuple[dict[tuple, int], ...] = ()):
    deadline = deadline if deadline is not None else time.perf_counter() + params.time_limit_s

    def run(subset: list[Candidate], objective: str | tuple = "max-throughput",
            min_ratio: tuple[int, int, int] | None = None) -> tuple[Solution, Instance]:
        if control is not None and control.interrupted:
            raise _Stopped
        inst = Instance(candidates=subset, classes=classes, request=req)
        sol = solve(inst, params, objective=objective, time_limit_s=deadline - time.perf_counter(),
                    control=control, exclude=exclude, min_ratio=min_ratio)
        if control is not None and control.interrupted:
            if sol.status != "FEASIBLE" and sol.status != "OPTIMAL":
                raise _Stopped
            sol.status = "FEASIBLE"  # the search as a whole was cut short
        if sol.status == "UNKNOWN":
            raise SolveTimeout(f"no plan found within --time-limit-s {params.time_limit_s:g} (the solver neither "
                               f"found a plan nor proved there is none); raise --time-limit-s")
        return sol, inst

    def ok(sol: Solution) -> bool:
        return sol.status in ("OPTIMAL", "FEASIBLE")

    try:
        if req.objective in ("min-gpus", "min-cost"):
            sol, inst = run(cands, req.objective)
            return (sol, inst) if ok(sol) else (None, None)
        if req.objective == "throughput":
            sol, inst = run(cands)
            return (sol, inst) if ok(sol) else (None, None)
        if req.objective == "throughput-per-gpu":
            return _most_per_gpu(cands, req.osl, run, ok)
    except _Stopped:
        raise KeyboardInterrupt from None
    return _lowest_tpot(cands, run, ok)


def _most_per_gpu(cands: list[Candidate], osl: int, run, ok):
    """Objective throughput-per-gpu: the plan of the most output tokens/s per GPU, then the most
    throughput among plans of that ratio. Unified replicas and prefill/decode pools are weighed
    alike: pools count what they serve together over the GPUs of both.

    The ratio is found by bisection between the most-throughput plan's ratio and an upper bound
    (:func:`planner.cpsat.ratio_bound`), each test a feasibility solve (``throughput x G >=
    GPUs x T``) that CP-SAT settles fast, where maximising ``throughput - ratio x GPUs`` needs
    seconds to prove. A plan found lifts the lower end to its own ratio; once the ends are within
    RATIO_TOLERANCE, a test for any strictly better plan proves the ratio optimal.
    (None, None) when no plan meets the request."""
    by_index = {c.index: c for c in cands}

    def ratio_of(sol: Solution) -> Fraction:
        return Fraction(throughput_units(sol, by_index), sum(n * by_index[i].gpus for i, n in sol.replicas.items()))

    sol, inst = run(cands)  # the most throughput: a first plan and ratio
    if not ok(sol):
        return None, None
    best, lo, hi = (sol, inst), ratio_of(sol), ratio_bound(cands, osl)
    proven, strict_next = False, True
    for _ in range(MAX_RATIO_STEPS):
        strict = strict_next and hi <= lo * (1 + RATIO_TOLERANCE)
        target = lo if strict else (lo + hi) / 2
        num = (target.numerator, target.denominator, 1) if strict else \
            (math.ceil(target * RATIO_DENOMINATOR), RATIO_DENOMINATOR, 0)
        try:
            step, step_inst = run(cands, "feasible", min_ratio=num)
        except SolveTimeout:  # out of time: the best ratio found so far, not proven
            break
        if ok(step):
            best, lo = (step, step_inst), max(lo, ratio_of(step))
            strict_next = not strict  # after a strict test found a plan, bisect again (no creeping)
        elif strict:
            proven = True
            break
        else:
            hi, strict_next = min(hi, target), True
    try:
        top, top_inst = run(cands, min_ratio=(lo.numerator, lo.denominator, 0))
    except SolveTimeout:
        top = None
    if top is not None and ok(top):
        best, proven = (top, top_inst), proven and top.status == "OPTIMAL"
    if not proven:
        best[0].status = "FEASIBLE"
    return best


def _lowest_tpot(cands: list[Candidate], run, ok):
    """Objective latency: the lowest TPOT a feasible plan can reach (binary search over the
    unified and decode candidates sorted by TPOT; feasibility grows with the subset; prefill
    candidates, which decode nothing, are always offered), then the most throughput among
    candidates at least that fast."""
    key = lambda c: -math.inf if c.role == "prefill" else c.metrics.tpot_s  # noqa: E731
    ordered = sorted(cands, key=lambda c: (key(c), c.index))
    values = sorted({key(c) for c in ordered if c.role != "prefill"})
    lo, hi, best = 0, len(values) - 1, None
    while lo <= hi:
        mid = (lo + hi) // 2
        subset = [c for c in ordered if key(c) <= values[mid]]
        try:
            sol, inst = run(subset)
        except _Stopped:
            if best is None:
                raise KeyboardInterrupt from None
            best[0].status = "FEASIBLE"  # not proven best: the bisection was cut short
            break
        if ok(sol):
            best, hi = (sol, inst), mid - 1
        else:
            lo = mid + 1
    return best if best else (None, None)


#: throughput-per-gpu's bisection (``_most_per_gpu``): at most this many feasibility solves; the
#: ends close to this relative width before the proof; targets in 1/2**16 solver units per GPU.
MAX_RATIO_STEPS = 40
RATIO_TOLERANCE = Fraction(1, 1000)
RATIO_DENOMINATOR = 2**16


# -- plan assembly -------------------------------------------------------------------------------

def _link_out(link) -> S.LinkOut:
    bw = link.bandwidth_bytes_per_s
    return S.LinkOut(kind=link.kind, bandwidth_bytes_per_s=bw if math.isfinite(bw) else 0.0,
                     latency_s=link.latency_s)


def _r(x: float, nd: int = 3) -> float:
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


def build_plan(spec: ModelSpec, topo: Topology, view: ClusterView, req: Request, sol: Solution,
               inst: Instance, placed: list[PlacedReplica], pricing: Pricing, params: SolverParams,
               *, wall_time_s: float | None) -> S.Plan:
    by_cand: dict[int, list[PlacedReplica]] = {}
    for p in placed:
        by_cand.setdefault(p.candidate.index, []).append(p)
    decode_reps = [p for p in placed if p.candidate.role == "decode"]
    group_metrics = {}
    cap = {"unified": 0.0, "prefill": 0.0, "decode": 0.0}  # requests/s each kind of group sustains
    planned = dict(cap)  # the same at the utilisation the plan is made for (queueing headroom)
    weight: dict[int, float] = {}
    kind_weight = dict(cap)
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
        group_metrics[ci] = (m, worst, xfer, kv, tail)
        cap[c.role] += m.requests_per_s * len(reps)
        # traffic goes to each group in proportion to its capacity at its own planned utilisation
        weight[ci] = m.requests_per_s * len(reps) * planned_utilization(m, tail, c.role, ttft_s=req.ttft_s,
                                                                         ttft_p99_s=req.ttft_p99_s)
        kind_weight[c.role] += weight[ci]
        # what the solver counted: each group at its planned (usable) utilisation, one rule for both kinds
        planned[c.role] += m.requests_per_s * len(reps) * c.usable_requests_per_s / c.metrics.requests_per_s
    pools_rps = min(cap["prefill"], cap["decode"])  # requests/s the disaggregated pools carry together
    total_capacity_rps = cap["unified"] + pools_rps
    planned_rps = planned["unified"] + min(planned["prefill"], planned["decode"])
    groups = []
    for gi, ci in enumerate(sorted(by_cand)):
        reps = by_cand[ci]
        c = reps[0].candidate
        m, links, xfer, kv, tail = group_metrics[ci]
        # A request goes to a unified group, or to one prefill and one decode group; the kinds'
        # shares follow their capacities, and within a kind each group's share its capacity at
        # its own planned utilisation (so a group with a tighter TTFT headroom gets less).
        group_rps = m.requests_per_s * len(reps)
        kind_rps = cap["unified"] if c.role == "unified" else pools_rps
        within = weight[ci] / kind_weight[c.role] if kind_weight[c.role] else 0.0
        share = (kind_rps / total_capacity_rps) * within if total_capacity_rps else 0.0
        g_util = req.qps * share / group_rps if req.qps and group_rps else None
        ttft, tail = group_ttft(m, tail, g_util, weight[ci] / group_rps if group_rps else 0.0)
        gpus_c = [view.gpu_of_type[x] for x in c.stage_gpus] if c.hetero else view.gpu_of_type[c.gpu]
        replicas = []
        for ri, r in enumerate(reps):
            ranks = []
            for st, gpus in enumerate(r.stages):
                for tr, gid in enumerate(gpus):
                    a = topo.gpu(gid)
                    ranks.append(S.Rank(rank=st * c.strategy.tp + tr, stage=st, tp_rank=tr, node=a["node"],
                                        gpu_index=a["index"]))
            replicas.append(S.Replica(index=ri, ranks=ranks))
        split = [s.layer_count for s in stages(spec, c.strategy)]
        # the budget priced: a prefill pool's searched step (evaluate_prefill), else as the runtime runs it
        budget = (c.strategy.max_num_batched_tokens if c.role == "prefill" else
                  effective_strategy(spec, gpus_c, c.strategy, isl=req.isl, osl=req.osl).max_num_batched_tokens)
        group_links = {"tp": _link_out(links.tp), "pp": _link_out(links.pp)}
        if c.strategy.attention_dp > 1:
            group_links["ep"] = _link_out(links.ep)
            if links.ep_local is not None:
                group_links["ep_local"] = _link_out(links.ep_local)
        if kv is not None:
            group_links["kv"] = _link_out(kv)
        groups.append(S.ReplicaGroup(
            id=f"g{gi}", role=c.role, gpu=c.gpu, stage_gpus=list(c.stage_gpus) if c.hetero else None,
            strategy=S.StrategyOut(tp=c.strategy.tp, pp=c.strategy.pp, dp=len(reps), ep=c.strategy.ep,
                                   attention_dp=c.strategy.attention_dp,
                                   batch_size=c.batch, max_num_batched_tokens=budget,
                                   max_model_len=req.isl + req.osl, layer_split=split,
                                   weight_dtype=c.strategy.weight_dtype, kv_dtype=c.strategy.kv_dtype),
            metrics_per_replica=S.Metrics(ttft_ms=_r(ttft * 1e3), ttft_unloaded_ms=_r(m.ttft_s * 1e3),
                                          tpot_ms=_r(m.tpot_s * 1e3), output_tokens_per_s=_r(m.output_tokens_per_s, 1),
                                          requests_per_s=_r(m.requests_per_s, 4),
                                          utilization=_r(g_util, 4) if g_util is not None else None,
                                          kv_transfer_ms=_r(xfer * 1e3) if c.role == "prefill" else None,
                                          tpot_p99_ms=_r(tail.tpot_p99_s * 1e3) if c.role != "prefill" else None,
                                          ttft_p99_ms=_r(tail.ttft_p99_s(ttft) * 1e3) if c.role != "decode" else None),
            memory_per_gpu_bytes=S.MemoryOut(**m.memory.as_dict()),
            links=group_links,
            traffic_share=_r(share, 6),
            replicas=replicas))
    gpus_used = sum(g.strategy.tp * g.strategy.pp * g.strategy.dp for g in groups)
    tput = planned_rps * req.osl  # the figure the solver maximised, the verdict compares and the report prints
    prices = dict(req.prices)
    node_type = {n.name: n.type for n in topo.spec.all_nodes()}
    used_types = [node_type[k.node] for g in groups for r in g.replicas for k in r.ranks]
    cost = sum(prices[t] for t in used_types) if all(t in prices for t in used_types) else None
    totals = S.Totals(gpus_used=gpus_used, output_tokens_per_s=_r(tput, 1),
                      output_tokens_per_s_per_gpu=_r(tput / gpus_used, 1),
                      requests_per_s=_r(planned_rps, 4),
                      capacity_output_tokens_per_s=_r(total_capacity_rps * req.osl, 1),
                      ttft_ms=max(g.metrics_per_replica.ttft_ms for g in groups if g.role != "decode"),
                      tpot_ms=max(g.metrics_per_replica.tpot_ms for g in groups if g.role != "prefill"),
                      cost_per_hour=_r(cost, 4) if cost is not None else None)
    # The label names what objective_value measures. latency and throughput-per-gpu pick the best
    # shapes by bisection, then maximise throughput among them: their value is that throughput.
    objective_desc = {"throughput": "max output tokens/s",
                      "throughput-per-gpu": "max output tokens/s among the plans of most tokens/s per GPU",
                      "min-gpus": "min GPUs serving qps", "min-cost": "min $/hour serving qps",
                      "latency": "max output tokens/s among the shapes of lowest TPOT"}[req.objective]
    inputs = S.Inputs(model=_model_ref(spec), topology=_topo_ref(topo),
                      workload=S.Workload(isl=req.isl, osl=req.osl, qps=req.qps),
                      slo=S.Slo(ttft_ms=req.ttft_s * 1e3 if req.ttft_s else None,
                                tpot_ms=req.tpot_s * 1e3 if req.tpot_s else None,
                                tpot_p99_ms=req.tpot_p99_s * 1e3 if req.tpot_p99_s else None,
                                ttft_p99_ms=req.ttft_p99_s * 1e3 if req.ttft_p99_s else None),
                      objective=req.objective, weight_dtype=req.weight_dtype, kv_dtype=req.kv_dtype,
                      max_gpus=req.max_gpus, allow_cross_domain_tp=req.allow_cross_domain_tp, runtime=req.runtime,
                      price_per_gpu_hour=prices or None, expert_imbalance=req.expert_imbalance)
    solver = S.SolverOut(status=sol.status, objective=objective_desc, objective_value=_r(sol.objective_value, 2),
                         best_bound=_r(sol.best_bound, 2), gap=_r(sol.gap, 6), candidates_priced=pricing.priced,
                         seed=params.seed, workers=params.workers, time_limit_s=params.time_limit_s,
                         wall_time_s=_r(wall_time_s, 3) if wall_time_s is not None else None)
    return S.Plan(generator=f"plan-search {VERSION}", inputs=inputs, replica_groups=groups, totals=totals,
                  solver=solver)


# -- infeasibility -------------------------------------------------------------------------------

def _weights_too_big(spec: ModelSpec, view: ClusterView, req: Request, wbytes: float, usable: float) -> str:
    """The weights alone outgrow every free GPU together: how many GPUs they need at least, in the
    cluster's own units (a node or NVLink domain of free GPUs can be added, a single GPU cannot),
    and the smaller weight formats that would fit."""
    free = sum(k.free * k.count for k in view.classes)
    need = math.ceil(wbytes / (usable / free))  # GPUs like these, the weights alone (no KV cache yet)
    unit = max(k.free for k in view.classes)  # free GPUs in the largest domain: what one more domain adds
    domains = math.ceil((need - free) / unit)
    smaller = [d for d in ("fp8", "int4") if dtype_bytes(d) < dtype_bytes(req.weight_dtype)
               and weight_bytes(params=spec.total_params(), dtype=d) <= usable]
    how = "pipeline stages or expert parallelism across them" if spec.is_moe else "pipeline stages across them"
    add = f"at least one more {unit}-GPU node or NVLink domain" if domains == 1 else \
        f"at least {domains} more {unit}-GPU nodes or NVLink domains"
    return (f"{spec.name} needs {wbytes / GIB:.1f} GiB of weights in {req.weight_dtype}; the cluster's {free} free "
            f"GPUs have {usable / GIB:.1f} GiB usable, so the weights alone need at least {need} such GPUs (more "
            f"for the KV cache): add {add} (the plan then uses {how})"
            + (f" or use --weight-dtype {'/'.join(smaller)}" if smaller else ""))


def explain_infeasible(spec: ModelSpec, view: ClusterView, req: Request, pricing: Pricing) -> str:
    """One line saying which constraint binds and by how much."""
    wbytes = weight_bytes(params=spec.total_params(), dtype=req.weight_dtype)
    usable = sum(view.gpu_of_type[k.gpu].memory_bytes * cal.RUNTIMES[req.runtime].memory_fraction * k.free * k.count
                 for k in view.classes)
    if not pricing.fits_anywhere:
        if wbytes > usable:
            return _weights_too_big(spec, view, req, wbytes, usable)
        pins = [f for f, v in (("--tp", req.tp), ("--pp", req.pp), ("--ep", req.ep),
                               ("--attention-dp", req.attention_dp)) if v is not None]
        tries = ([f"drop {'/'.join(pins)}"] if pins else []) + [
            f"--weight-dtype {d}" for d in ("fp8", "int4") if dtype_bytes(d) < dtype_bytes(req.weight_dtype)][:1] + [
            "--kv-dtype fp8" if dtype_bytes(req.kv_dtype) > 1 else "", "shorter --isl/--osl",
            "" if req.allow_cross_domain_tp else "--allow-cross-domain-tp"]
        return (f"{spec.name} ({wbytes / GIB:.1f} GiB of weights in {req.weight_dtype}) fits no replica shape "
                f"with room for one sequence of {req.isl + req.osl} tokens on this cluster's domains; "
                f"try {', '.join(t for t in tries if t)}")
    parts = []
    if req.tpot_s is not None and pricing.best_tpot_s > req.tpot_s and math.isfinite(pricing.best_tpot_s):
        parts.append(f"TPOT {req.tpot_s * 1e3:g} ms is unreachable: the fastest plan reaches "
                     f"{pricing.best_tpot_s * 1e3:.1f} ms ({pricing.best_tpot_label}); relax --tpot-ms to "
                     f"{math.ceil(pricing.best_tpot_s * 1e3 * 10) / 10:g}")
    if req.ttft_s is not None and pricing.best_ttft_s > req.ttft_s and math.isfinite(pricing.best_ttft_s):
        parts.append(f"TTFT {req.ttft_s * 1e3:g} ms is unreachable: the fastest prompt takes "
                     f"{pricing.best_ttft_s * 1e3:.1f} ms ({pricing.best_ttft_label}); relax --ttft-ms to "
                     f"{math.ceil(pricing.best_ttft_s * 1e3 * 10) / 10:g}")
    for what, slo, best, label, flag in (
            ("TPOT p99", req.tpot_p99_s, pricing.best_tpot_p99_s, pricing.best_tpot_p99_label, "--tpot-p99-ms"),
            ("TTFT p99", req.ttft_p99_s, pricing.best_ttft_p99_s, pricing.best_ttft_p99_label, "--ttft-p99-ms")):
        if slo is not None and best > slo and math.isfinite(best):
            parts.append(f"{what} {slo * 1e3:g} ms is unreachable: the fastest plan reaches {best * 1e3:.1f} ms "
                         f"({label}); relax {flag} to {math.ceil(best * 1e3 * 10) / 10:g}")
    if parts:
        return "; ".join(parts)
    if pricing.candidates and req.qps:
        best = max(c.usable_requests_per_s / c.gpus for c in pricing.candidates)
        free = sum(k.free * k.count for k in view.classes)
        cap = min(free, req.max_gpus or free)
        return (f"--qps {req.qps:g} is more than this cluster serves within the SLOs: at most about "
                f"{best * cap:.2f} requests/s on {cap} GPUs; lower --qps, relax the SLOs or add GPUs")
    if req.max_gpus is not None:
        need = min(c.gpus for c in pricing.candidates) if pricing.candidates else 0
        return f"--max-gpus {req.max_gpus} is fewer than the smallest replica that meets the request ({need} GPUs)"
    if pricing.rejected:
        why = max(pricing.rejected.items(), key=lambda kv: kv[1])[0]
        return f"no replica shape meets the request; most shapes fail on: {why}"
    return "no replica shape meets the request"


# -- evaluate / explain --------------------------------------------------------------------------

@dataclass(frozen=True)
class Evaluation:
    gpu: GPU
    strategy: Strategy
    dp: int
    metrics: ReplicaMetrics
    links: Links
    span: str
    available_gpus: int
    reason: str | None  # why it does not fit/place, or None
    loaded: LoadedMetrics | None = None  # at the request rate, when one was given
    closed: ClosedLoopMetrics | None = None  # under a closed loop of clients, when a concurrency was given
    run: BenchmarkRun | None = None  # a finite benchmark of --requests requests at --qps, when asked

    @property
    def fits(self) -> bool:
        return self.reason is None and self.metrics.fits

    def as_dict(self) -> dict:
        m = self.metrics
        gpus = self.strategy.gpus * self.dp
        return {
            "fits": self.fits,
            "reason": self.reason if self.reason else (None if m.fits else "does not fit in GPU memory"),
            "gpu": self.gpu.name,
            "tp": self.strategy.tp, "pp": self.strategy.pp, "dp": self.dp, "ep": self.strategy.ep,
            "attention_dp": self.strategy.attention_dp,
            "span": self.span,
            "weight_dtype": self.strategy.weight_dtype, "kv_dtype": self.strategy.kv_dtype,
            "batch_size": m.batch,
            "max_batch_size": m.max_batch,
            "memory_per_gpu_bytes": m.memory.as_dict(),
            "ttft_ms": _r(m.ttft_s * 1e3) if math.isfinite(m.ttft_s) else None,
            "tpot_ms": _r(m.tpot_s * 1e3) if math.isfinite(m.tpot_s) else None,
            "output_tokens_per_s": _r(m.output_tokens_per_s * self.dp, 1),
            "output_tokens_per_s_per_gpu": _r(m.output_tokens_per_s * self.dp / gpus, 1),
            "requests_per_s": _r(m.requests_per_s * self.dp, 4),
            "links": {"tp": _link_out(self.links.tp).model_dump(), "pp": _link_out(self.links.pp).model_dump(),
                      **({"ep": _link_out(self.links.ep).model_dump()} if self.strategy.attention_dp > 1 else {})},
            "at_qps": None if self.loaded is None else {
                "qps": self.loaded.rate_per_s * self.dp if math.isfinite(self.loaded.rate_per_s) else None,
                "utilization": _r(self.loaded.utilization, 4) if math.isfinite(self.loaded.utilization) else None,
                "batch_in_flight": self.loaded.batch,
                "ttft_ms": _r(self.loaded.ttft_s * 1e3) if math.isfinite(self.loaded.ttft_s) else None,
                "tpot_ms": _r(self.loaded.tpot_s * 1e3) if math.isfinite(self.loaded.tpot_s) else None,
                "requests_per_s": _r(self.loaded.requests_per_s * self.dp, 4),
                "output_tokens_per_s": _r(self.loaded.output_tokens_per_s * self.dp, 1)},
            "at_concurrency": None if self.closed is None else self._closed_dict(),
            **({"benchmark_run": self._run_dict()} if self.run is not None else {}),
        }

    def _run_dict(self) -> dict:
        """A finite benchmark's averages: per request as one replica sees them, rates summed."""
        r = self.run
        return {"requests": r.requests * self.dp,
                "qps": r.rate_per_s * self.dp if math.isfinite(r.rate_per_s) else None,
                "duration_s": _r(r.duration_s, 3), "max_in_flight": r.max_in_flight,
                "ttft_ms": _r(r.ttft_mean_s * 1e3), "ttft_p99_ms": _r(r.ttft_p99_s * 1e3),
                "itl_ms": _r(r.itl_mean_s * 1e3), "itl_p50_ms": _r(r.itl_p50_s * 1e3),
                "itl_p99_ms": _r(r.itl_p99_s * 1e3), "tpot_ms": _r(r.tpot_mean_s * 1e3),
                "e2e_ms": _r(r.e2e_mean_s * 1e3), "requests_per_s": _r(r.requests_per_s * self.dp, 4),
                "output_tokens_per_s": _r(r.output_tokens_per_s * self.dp, 1)}

    def _closed_dict(self) -> dict:
        """The closed-loop figures: per request as one replica sees them, rates summed over the replicas."""
        c = self.closed

        def ms(x: float) -> float | None:
            return _r(x * 1e3) if math.isfinite(x) else None

        return {"concurrency": c.concurrency * self.dp, "batch_in_flight": c.batch,
                "ttft_ms": ms(c.ttft_s), "ttft_p99_ms": ms(c.ttft_p99_s), "tpot_ms": ms(c.tpot_s),
                "itl_p50_ms": ms(c.itl_p50_s), "itl_p99_ms": ms(c.itl_p99_s), "e2e_ms": ms(c.e2e_s),
                "requests_per_s": _r(c.requests_per_s * self.dp, 4),
                "output_tokens_per_s": _r(c.output_tokens_per_s * self.dp, 1)}


def evaluate(*, topology: str | Path | Topology, model: str | Path | ModelSpec, tp: int, pp: int = 1, dp: int = 1,
             ep: int = 1, batch: int | None = None, isl: int = 1024, osl: int = 256, weight_dtype: str | None = None,
             kv_dtype: str | None = None, gpu: str | None = None, runtime: str = "vllm",
             max_num_batched_tokens: int = cal.DEFAULT_MAX_NUM_BATCHED_TOKENS,
             allow_cross_domain_tp: bool = False, qps: float | None = None, attention_dp: int = 1,
             expert_imbalance: float | None = None, concurrency: int | None = None,
             requests: int | None = None) -> Evaluation:
    """Score one given strategy on the topology's links. Without ``batch``: the largest that fits.

    With ``qps`` (spread evenly over the ``dp`` replicas) it also predicts the replicas at
    that load: the batch in flight, TPOT, and TTFT with queueing (``Evaluation.loaded``).
    With ``concurrency`` (closed-loop clients, spread evenly over the replicas) it predicts
    them as a closed-loop benchmark measures them (``Evaluation.closed``,
    :func:`costmodels.load.serve_at_concurrency`): TTFT mean and p99, TPOT, ITL p50 and
    p99, end-to-end latency and throughput. ``qps`` and ``concurrency`` exclude each other.
    With ``requests`` and ``qps`` (``math.inf``: all sent at once) it also runs that finite
    benchmark step by step (``Evaluation.run``, :func:`costmodels.benchrun.simulate_benchmark`),
    which is what a published online-serving table measured, queue build-up and drain included.
    """
    _check_concurrency(concurrency, qps=qps, batch=batch, dp=dp)
    _check_requests(requests, qps=qps, batch=batch, dp=dp)
    topo = _topology(topology)
    spec = _model(model)
    # Scoring a given strategy prices it even past the model's trained context, as runtimes
    # let a user do (search refuses such a request).
    req = make_request(spec, isl=isl, osl=osl, weight_dtype=weight_dtype, kv_dtype=kv_dtype, tp=tp, pp=pp, ep=ep,
                       batch=batch, runtime=runtime, check_context=False,
                       allow_cross_domain_tp=allow_cross_domain_tp, attention_dp=attention_dp,
                       expert_imbalance=expert_imbalance)
    _positive(dp, "--dp", allow_none=False, integer=True)
    s = Strategy(tp=tp, pp=pp, ep=ep, weight_dtype=req.weight_dtype, kv_dtype=req.kv_dtype,
                 max_num_batched_tokens=max_num_batched_tokens, runtime=req.runtime, attention_dp=attention_dp,
                 expert_imbalance=req.expert_imbalance)
    why = validate_strategy(spec, s)
    if why:
        raise InputError(why, source="--tp/--pp/--ep/--attention-dp")
    view = cluster_view(topo)
    types = sorted({k.gpu for k in view.classes}, key=lambda g: (-view.free_by_type.get(g, 0), g))
    gpu_name = get_gpu(gpu, source="--gpu", custom=view.gpu_of_type).name if gpu else types[0]
    if gpu_name not in view.free_by_type:
        raise InputError(f"topology {topo.name!r} has no free {gpu_name}", source="--gpu")
    classes = [k for k in view.classes if k.gpu == gpu_name]
    spans = list(replica_spans(view, classes, tp, pp, req, inter_domain_link_fn(topo, view, classes)))
    wide = wide_span(view, classes, tp, s.attention_tp) if not spans and attention_dp > 1 and pp == 1 else None
    reason = None
    if spans:
        span, *_, links = spans[0]
        if attention_dp > 1:
            links = replace(links, ep=links.tp)
    elif wide is not None:
        span, links = "wide", wide[2]
    else:
        span, links = "none", Links()
        reason = (f"tp={tp} does not fit in one NVLink domain of this topology; pass "
                  f"--allow-cross-domain-tp to price it over the network") if tp > max(k.free for k in classes) \
            else f"tp={tp} x pp={pp} needs more free {gpu_name} GPUs than the topology has"
    free = view.free_by_type[gpu_name]
    if reason is None and tp * pp * dp > free:
        reason = f"tp x pp x dp = {tp * pp * dp} GPUs but the topology has {free} free {gpu_name}"
    m = evaluate_replica(spec, view.gpu_of_type[gpu_name], s, isl=isl, osl=osl, batch=batch, links=links)
    loaded = None
    if qps is not None:
        if not math.isfinite(qps) and qps > 0:
            qps = math.inf
        elif qps < 0 or not qps == qps:
            raise InputError(f"must be a non-negative number, got {qps!r}", source="--qps")
        cap = m if batch is None else None
        loaded = serve_at_rate(spec, view.gpu_of_type[gpu_name], s, isl=isl, osl=osl, rate_per_s=qps / dp,
                               links=links, capacity=cap)
    closed = None
    if concurrency is not None:
        closed = serve_at_concurrency(spec, view.gpu_of_type[gpu_name], s, isl=isl, osl=osl,
                                      concurrency=concurrency // dp, links=links)
    run = None
    if requests is not None and m.max_batch >= 1:
        from costmodels.benchrun import simulate_benchmark

        run = simulate_benchmark(spec, view.gpu_of_type[gpu_name], s, isl=isl, osl=osl, requests=requests // dp,
                                 rate_per_s=qps / dp, links=links)
    return Evaluation(gpu=view.gpu_of_type[gpu_name], strategy=s, dp=dp, metrics=m, links=links, span=span,
                      available_gpus=free, reason=reason, loaded=loaded, closed=closed, run=run)


#: Largest --requests a finite benchmark is run with: the run is stepped one engine step at a
#: time, and a million requests keeps it within seconds at the batches that matter.
MAX_BENCHMARK_REQUESTS = 1_000_000


def _check_requests(requests, *, qps, batch, dp) -> None:
    """Refuse a finite benchmark ``evaluate`` cannot run: not a positive integer, no rate to
    send at, a pinned batch (the run sets its own), or not spread evenly over the replicas."""
    if requests is None:
        return
    _positive(requests, "--requests", integer=True)
    if requests > MAX_BENCHMARK_REQUESTS:
        raise InputError(f"{requests} requests is more than {MAX_BENCHMARK_REQUESTS:,}; give fewer",
                         source="--requests")
    if qps is None or qps <= 0:
        raise InputError("a benchmark run sends its requests at a rate: add --qps (inf: all at once)",
                         source="--requests")
    if batch is not None:
        raise InputError("the run admits requests as the KV cache allows; drop --batch", source="--requests")
    if isinstance(dp, int) and dp >= 1 and requests % dp:
        raise InputError(f"{requests} requests do not spread evenly over --dp {dp} replicas; give a multiple "
                         f"of {dp}", source="--requests")


def _check_concurrency(concurrency, *, qps, batch, dp) -> None:
    """Refuse a concurrency ``evaluate`` cannot price: not a positive integer, given with a rate
    (a closed loop sets its own rate), with a pinned batch (the clients in flight are the
    batch), or not spread evenly over the replicas."""
    if concurrency is None:
        return
    _positive(concurrency, "--concurrency", integer=True)
    if qps is not None:
        raise InputError("give --concurrency (a closed loop of clients) or --qps (an open-loop rate), not both",
                         source="--concurrency")
    if batch is not None:
        raise InputError("the clients in flight are the batch (up to the largest that fits); drop --batch",
                         source="--concurrency")
    if isinstance(dp, int) and dp >= 1 and concurrency % dp:
        raise InputError(f"{concurrency} clients do not spread evenly over --dp {dp} replicas; give a multiple of "
                         f"{dp}", source="--concurrency")
