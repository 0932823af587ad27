"""Each objective as CP-SAT solves it, and the words for a request no plan meets.

``throughput`` is one solve; ``min-gpus`` and ``min-cost`` two (the primary, then the most
throughput at it: ``planner.solve.cpsat.solve``); ``throughput-per-gpu`` finds
its ratio by bisection over feasibility solves; ``latency`` bisects over the candidates sorted
by TPOT. Every solve of one search shares one deadline.
"""
from __future__ import annotations

import math
import time
from fractions import Fraction

from costmodels import calibration as cal
from costmodels.memory import weight_bytes
from costmodels.model_spec import ModelSpec
from costmodels.units import GIB, dtype_bytes, round_up
from planner.price.candidate import Candidate, Pricing, Request
from planner.price.cluster import ClusterView
from planner.solve.cpsat import (
    Instance,
    Solution,
    SolverParams,
    ratio_bound,
    solve,
    throughput_units,
)
from planner.solve.progress import SearchControl
from topologies.errors import SolveTimeout


class _Stopped(Exception):
    """Ctrl-C stopped a solve before it found anything."""


def solve_objective(cands: list[Candidate], classes, req: Request, params: SolverParams,
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
    (:func:`planner.solve.cpsat.ratio_bound`), each test a feasibility solve (``throughput x G >=
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
        # requests/s per GPU: a unified replica's alone; a request in pools needs a prefill and a decode
        # replica, so the best pair's GPU-seconds per request add up (a prefill shape alone serves none)
        per_gpu = {role: [c.usable_requests_per_s / c.gpus for c in pricing.candidates
                          if c.role == role and c.usable_requests_per_s > 0] for role in ("unified", "prefill", "decode")}
        best = max(per_gpu["unified"], default=0.0) if req.disaggregation != "only" else 0.0
        if per_gpu["prefill"] and per_gpu["decode"] and req.disaggregation != "off":
            best = max(best, 1 / (1 / max(per_gpu["prefill"]) + 1 / max(per_gpu["decode"])))
        free = sum(k.free * k.count for k in view.classes)
        cap = min(free, req.max_gpus or free)
        return (f"--qps {req.qps:g} is more than this cluster serves within the SLOs: at most about "
                f"{round_up(best * cap, 2):.2f} requests/s on {cap} GPUs; lower --qps, relax the SLOs or add GPUs")
    if req.max_gpus is not None:
        need = min(c.gpus for c in pricing.candidates) if pricing.candidates else 0
        return f"--max-gpus {req.max_gpus} is fewer than the smallest replica that meets the request ({need} GPUs)"
    if pricing.rejected:
        why = max(pricing.rejected.items(), key=lambda kv: kv[1])[0]
        return f"no replica shape meets the request; most shapes fail on: {why}"
    return "no replica shape meets the request"
