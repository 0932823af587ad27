"""The library's search: ``search`` runs the four steps (price, choose, place, verify) for one
request, after ``make_request`` has checked it. ``evaluate`` (one given strategy) is in
:mod:`planner.evaluation`, ``explain`` in :mod:`planner.breakdown`, the k best plans and the
frontier in :mod:`planner.frontier`; the CLI only calls these.

>>> from planner import search
>>> plan = search(topology="dgx-h100x1", model="llama-3.1-8b", isl=512, osl=128)
>>> plan.solver.status
'OPTIMAL'
"""
from __future__ import annotations

import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from costmodels import calibration as cal
from costmodels.hardware import (
    GPU,
    custom_gpus,
    get_gpu as _get_gpu,  # resolve_prices shadows get_gpu with the topology's own types
)
from costmodels.hf_config import UNKNOWN_DTYPE
from costmodels.model_spec import ModelSpec
from costmodels.models import get_model
from costmodels.units import DTYPES
from planner.place.placement import PlacementError, place
from planner.plan import build, schema as S
from planner.price.candidate import Candidate, Request
from planner.price.cluster import ClusterView, cluster_view
from planner.price.shapes import price_candidates
from planner.solve.cpsat import (
    SPLIT_CLASSES_UP_TO,
    SolverParams,
    mix,
    split_classes,
)
from planner.solve.objectives import explain_infeasible, solve_objective
from planner.solve.progress import SearchControl
from topologies.errors import InfeasibleError, InputError, SolveTimeout
from topologies.graph import Topology
from topologies.load import load_topology
from topologies.schema import MAX_PRICE_PER_GPU_HOUR

OBJECTIVES = ("throughput", "throughput-per-gpu", "min-gpus", "min-cost", "latency")
#: Runtimes whose launch files run prefill/decode pools (the SGLang emitter writes them; the vLLM,
#: TensorRT-LLM and Kubernetes emitters launch unified replicas only), so the only runtimes the
#: search offers pools for: a plan is always one its runtime's emitter can launch.
POOL_RUNTIMES = ("sglang",)


def topology_of(t: str | Path | Topology) -> Topology:
    if isinstance(t, Topology):
        return t
    spec, sha = load_topology(t)
    return Topology(spec, sha, source=str(t))


def model_of(m: str | Path | ModelSpec) -> ModelSpec:
    """The model spec (``get_model`` names a ``config.json`` after its folder, the current one included)."""
    return m if isinstance(m, ModelSpec) else get_model(m)


def _dtype(value: str | None, default: str, flag: str) -> str:
    if value is None or value == "auto":
        if default.startswith(UNKNOWN_DTYPE):
            raise InputError(f"auto takes the checkpoint's weight format, and its quantization_config is one this "
                             f"planner does not read ({default}); give the format with --weight-dtype", source=flag)
        return default
    v = value.lower()
    if v not in DTYPES:
        raise InputError(f"unknown dtype {value!r}; choose one of {', '.join(DTYPES)}", source=flag)
    return v


def check_positive(value, flag: str, *, allow_none: bool = True, integer: bool = False):
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
    check_positive(isl, "--isl", allow_none=False, integer=True)
    check_positive(osl, "--osl", allow_none=False, integer=True)
    if qps is not None and (not math.isfinite(qps) or qps < 0):
        raise InputError(f"must be a non-negative number, got {qps!r}", source="--qps")
    check_positive(ttft_ms, "--ttft-ms")
    check_positive(tpot_ms, "--tpot-ms")
    check_positive(tpot_p99_ms, "--tpot-p99-ms")
    check_positive(ttft_p99_ms, "--ttft-p99-ms")
    for v, f in ((max_gpus, "--max-gpus"), (tp, "--tp"), (pp, "--pp"), (ep, "--ep"), (batch, "--batch"),
                 (attention_dp, "--attention-dp")):
        check_positive(v, f, integer=True)
    if objective not in OBJECTIVES:
        raise InputError(f"unknown objective {objective!r}; choose one of {', '.join(OBJECTIVES)}",
                         source="--objective")
    if objective in ("min-gpus", "min-cost") and not qps:
        raise InputError(f"{objective} needs a target request rate: add --qps", source="--objective")
    if disaggregation not in ("auto", "off", "only"):
        raise InputError(f"unknown value {disaggregation!r}; choose auto, off or only", source="--disaggregation")
    if runtime not in cal.RUNTIMES:
        raise InputError(f"unknown runtime {runtime!r}; choose one of {', '.join(cal.RUNTIMES)}", source="--runtime")
    disaggregation, pools_note = _pools(disaggregation, runtime)
    if check_context and model.max_context and isl + osl > model.max_context:
        raise InputError(f"isl + osl = {isl + osl} tokens exceeds {model.name}'s context of "
                         f"{model.max_context}", source="--isl")
    _check_moe_flags(model, ep=ep, attention_dp=attention_dp, expert_imbalance=expert_imbalance)
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


def _pools(disaggregation: str, runtime: str) -> tuple[str, str | None]:
    """The ``disaggregation`` the search runs with, and why pools were left out where the user left
    them to the search: only runtimes whose launch files run pools (``POOL_RUNTIMES``) plan them."""
    pools_note = None
    if disaggregation != "off" and runtime not in POOL_RUNTIMES:
        if disaggregation == "only":
            raise InputError(f"prefill/decode pools are planned for runtimes whose launch files run them "
                             f"({', '.join(POOL_RUNTIMES)}), not {runtime}; add --runtime sglang or drop "
                             f"--disaggregation only", source="--disaggregation")
        disaggregation = "off"
        pools_note = (f"not considered: {runtime}'s launch files (plan-search emit) run unified replicas only; "
                      f"--runtime sglang weighs pools too")
    return disaggregation, pools_note


def _check_moe_flags(model: ModelSpec, *, ep: int | None, attention_dp: int | None,
                     expert_imbalance: float | None) -> None:
    """Refuse expert-parallel flags the model cannot take."""
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
    batch keeps its p99 TPOT and p99 TTFT (queueing at the planned load included) within
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
    plan = build.build_plan(spec, topo, view, req, sol, inst, placed, pricing, params, wall_time_s=None)
    why = None
    if not (control is not None and control.interrupted):
        from planner.solve.disagg import verdict
        try:  # the verdict states the plan's own figure (its totals), as the total line does
            why = verdict(spec, view, req, sol, pricing.candidates, inst.classes, params, deadline,
                          solve_objective, ours=build.objective_figure(plan, req.objective))
        except KeyboardInterrupt:  # the comparison solve only explains the plan: keep the plan
            if control is None:
                raise
            control.interrupted = True
    updates: dict[str, Any] = {"disaggregation": why} if why is not None else {}
    if include_timings:
        wall = time.perf_counter() - t_start
        updates["solver"] = plan.solver.model_copy(update={"wall_time_s": build.rounded(wall, 3)})
    return plan.model_copy(update=updates) if updates else plan


def prepare(*, topology, model, isl, osl, qps, ttft_ms, tpot_ms, objective, weight_dtype, kv_dtype, max_gpus,
            allow_cross_domain_tp, time_limit_s, workers, seed, log, runtime, control, price_per_gpu_hour,
            disaggregation="auto", ep=None, attention_dp=None, expert_imbalance=None, tpot_p99_ms=None,
            ttft_p99_ms=None):
    """Everything ``search`` does before the solver: validate, load, price the candidates, and
    refuse requests no candidate can meet. Returns (topology, model, request, solver params,
    cluster view, pricing)."""
    topo = topology_of(topology)
    spec = model_of(model)
    req = make_request(spec, isl=isl, osl=osl, qps=qps, ttft_ms=ttft_ms, tpot_ms=tpot_ms, objective=objective,
                       weight_dtype=weight_dtype, kv_dtype=kv_dtype, max_gpus=max_gpus,
                       allow_cross_domain_tp=allow_cross_domain_tp, runtime=runtime, disaggregation=disaggregation,
                       ep=ep, attention_dp=attention_dp, expert_imbalance=expert_imbalance,
                       tpot_p99_ms=tpot_p99_ms, ttft_p99_ms=ttft_p99_ms)
    check_positive(time_limit_s, "--time-limit-s")
    check_positive(workers, "--workers", integer=True)
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
        if (isinstance(price, bool) or not isinstance(price, (int, float)) or not math.isfinite(price)
                or not 0 <= price <= MAX_PRICE_PER_GPU_HOUR):
            raise InputError(f"price of {name} must be a number of dollars from 0 to {MAX_PRICE_PER_GPU_HOUR:,.0f} "
                             f"per GPU-hour, got {price!r}", source="--price")
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
    """Solve per the objective and place the plan; a mix of replica shapes the runtime cannot start
    as placed (:func:`_launchable`) is set aside and the next best solved for, at most
    :data:`MAX_UNLAUNCHABLE_MIXES` times.

    All solves share one deadline: ``params.time_limit_s`` bounds the whole search.
    """
    deadline = time.perf_counter() + params.time_limit_s
    excluded = list(exclude)
    by_index = {c.index: c for c in cands}
    sol, inst, placed = _solve_and_place_once(view, cands, req, params, control, tuple(excluded), deadline)
    for _ in range(MAX_UNLAUNCHABLE_MIXES):
        if sol is None or _launchable(view, req.runtime, placed) or (control is not None and control.interrupted):
            break
        excluded.append(mix(sol, by_index))  # the runtime cannot start it: the next best mix
        try:
            nxt = _solve_and_place_once(view, cands, req, params, control, tuple(excluded), deadline)
        except (SolveTimeout, KeyboardInterrupt) as e:  # out of time or interrupted: keep the plan found
            if isinstance(e, KeyboardInterrupt):
                if control is None:
                    raise
                control.interrupted = True
            break
        if nxt[0] is None:  # no other mix meets the request: keep the plan found
            break
        sol, inst, placed = nxt
    # a plan the runtime cannot start is kept only when no other was found (its warnings and its emitter say why)
    return sol, inst, placed


#: Replica-shape mixes a search sets aside because the runtime cannot start them as placed, before it
#: keeps the last one found (each costs a solve; the plan's warnings and its emitter say why). The time
#: limit, Ctrl-C and a request no other mix meets end the search the same way, keeping that plan.
MAX_UNLAUNCHABLE_MIXES = 20


def _launchable(view: ClusterView, runtime: str, placed) -> bool:
    """Whether ``runtime`` can start every replica as placed (:func:`planner.plan.build.launch_problem`)."""
    return build.launch_problem(view, runtime, placed) is None


def _solve_and_place_once(view: ClusterView, cands: list[Candidate], req: Request, params: SolverParams,
                          control: SearchControl | None, exclude: tuple[dict[tuple, int], ...], deadline: float):
    """One solve and its placement; on a packing failure of an aggregated class, re-solve exactly."""
    for up_to in (SPLIT_CLASSES_UP_TO, 10**9):
        classes = split_classes(view.classes, up_to=up_to)
        sol, inst = solve_objective(cands, classes, req, params, deadline=deadline, control=control,
                                     exclude=exclude)
        if sol is None:
            return None, None, None
        try:
            return sol, inst, place(sol, inst, view)
        except PlacementError:
            continue
    raise AssertionError("exact class split cannot fail to place")  # pragma: no cover
