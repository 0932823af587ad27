"""Why a plan does or does not split prefill and decode into separate pools.

With disaggregation ``auto`` the solver prices prefill-only and decode-only replicas beside
unified ones and chooses whatever serves the request best; this module re-solves without
the option the plan took (unified replicas only, or prefill/decode pools only) and states
the difference in the objective's units, with the mechanism behind it: how much the
prompt chunks slow a unified replica's decode steps (what a decode pool avoids) against
what a prefill pool costs (its GPUs, and the KV-cache transfer in every TTFT).
"""
from __future__ import annotations

import time

from costmodels.serving import evaluate_replica
from planner.plan import schema as S
from planner.price.candidate import Candidate, Request
from planner.price.cluster import ClusterView
from planner.solve.cpsat import THROUGHPUT_SCALE, Solution, SolverParams, throughput_units
from topologies.errors import SolveTimeout

UNITS = {"throughput": "output tokens/s", "throughput-per-gpu": "output tokens/s per GPU", "latency": "ms TPOT",
         "min-gpus": "GPUs", "min-cost": "per hour"}  # min-cost values print as $X
ALTERNATIVE_TIME_S = 2.0  # at most this long for the comparison solve


def _fmt(value: float, objective: str) -> str:
    if objective == "latency":
        return f"{value:.2f}"
    # the plan's totals keep 0.1 token/s and print whole ones: round the same two ways, so the
    # verdict and the total line never differ by one in the last digit
    return f"${value:,.2f}" if objective == "min-cost" else f"{round(value, 1):,.0f}"


def primary(sol: Solution, cands: dict[int, Candidate], objective: str) -> float:
    """A solution's figure on its objective's own terms: output tokens/s per GPU
    (throughput-per-gpu), the worst TPOT in ms (latency), else the solver's objective value."""
    if objective == "throughput-per-gpu":
        gpus = sum(n * cands[i].gpus for i, n in sol.replicas.items())
        return throughput_units(sol, cands) / THROUGHPUT_SCALE / max(gpus, 1)
    if objective == "latency":
        return max(cands[i].metrics.tpot_s * 1e3 for i in sol.replicas if cands[i].role != "prefill")
    return sol.objective_value


def _top(sol: Solution, cands: dict[int, Candidate], role: str) -> Candidate | None:
    """The candidate of ``role`` with the most GPUs in the solution."""
    picked = [(n * cands[i].gpus, -i, cands[i]) for i, n in sol.replicas.items() if cands[i].role == role]
    return max(picked, key=lambda t: (t[0], t[1]))[2] if picked else None


def _interference(model, view: ClusterView, c: Candidate, req: Request) -> tuple[float, float]:
    """(TPOT of a unified candidate, TPOT of the same shape and batch with decode-only steps)."""
    gpus = [view.gpu_of_type[g] for g in c.stage_gpus] if c.hetero else view.gpu_of_type[c.gpu]
    d = evaluate_replica(model, gpus, c.strategy, isl=req.isl, osl=req.osl, batch=c.batch, links=c.links,
                         role="decode")
    return c.metrics.tpot_s, d.tpot_s


def verdict(model, view: ClusterView, req: Request, sol: Solution, cands: list[Candidate], classes,
            params: SolverParams, deadline: float, solve_objective, ours: float | None = None
            ) -> S.Disaggregation | None:
    """The decision and its reason, or None when pools were not considered (turned off or asked
    for alone); when the runtime ruled them out, a unified decision saying so. ``ours`` is the
    plan's own figure on the objective's terms where the plan states one (its totals), else the
    solution's (:func:`primary`)."""
    if req.pools_note is not None:
        return S.Disaggregation(decision="unified", reason=req.pools_note, alternative="none",
                                alternative_objective_value=None)
    if req.disaggregation != "auto" or not any(c.role != "unified" for c in cands):
        return None
    by_index = {c.index: c for c in cands}
    roles = {by_index[i].role for i in sol.replicas}
    uses_pools = bool(roles & {"prefill", "decode"})
    decision = ("mixed" if "unified" in roles else "disaggregated") if uses_pools else "unified"
    alt_cands = [c for c in cands if (c.role == "unified") == uses_pools]
    alternative = "unified-only" if uses_pools else "pools-only"
    only = 'unified replicas only' if uses_pools else 'prefill/decode pools only'
    alt, versus = None, f"no plan with {only} meets the request"  # what a proven absence says
    if not alt_cands:
        versus = f"no shape of {only} meets the request"
    elif deadline - time.perf_counter() <= 0.05:
        versus = f"plans with {only} not weighed: no time was left within --time-limit-s"
    else:
        # a comparison, not the answer: a short solve is enough (its value is then a bound-free
        # incumbent, which can only understate the alternative)
        budget_s = min(deadline - time.perf_counter(), ALTERNATIVE_TIME_S)
        try:
            alt, _ = solve_objective(alt_cands, classes, req, params, deadline=time.perf_counter() + budget_s)
        except SolveTimeout:  # the plan found stands; only the comparison is left open
            versus = f"plans with {only} not settled within the comparison's {budget_s:.2g} s"
    unit = UNITS[req.objective]
    ours = primary(sol, by_index, req.objective) if ours is None else ours
    alt_value = primary(alt, by_index, req.objective) if alt is not None else None
    if alt is not None:
        versus = f"{_fmt(alt_value, req.objective)} {unit} with {only}"
    parts = [f"{_fmt(ours, req.objective)} {unit} against {versus}"]
    slo = f"TPOT <= {req.tpot_s * 1e3:g} ms" if req.tpot_s is not None else "no TPOT limit"
    if uses_pools:
        dec, pre = _top(sol, by_index, "decode"), _top(sol, by_index, "prefill")
        uni = _top(alt, by_index, "unified") if alt is not None else None
        if dec is not None:
            parts.append(f"decode replicas ({dec.label()}) run batch {dec.batch} at TPOT "
                         f"{dec.metrics.tpot_s * 1e3:.1f} ms, their steps free of prompt chunks")
        if uni is not None:
            t_u, t_d = _interference(model, view, uni, req)
            parts.append(f"the best unified shape ({uni.label()}) meets {slo} only at batch {uni.batch} "
                         f"(TPOT {t_u * 1e3:.1f} ms, {1 - t_d / t_u:.0%} of it on {req.isl}-token prompts)")
        if pre is not None:
            parts.append(f"each prompt's KV cache takes {pre.kv_transfer_s * 1e3:.1f} ms to reach the decode pool")
    else:
        uni = _top(sol, by_index, "unified")
        pre = _top(alt, by_index, "prefill") if alt is not None else None
        if uni is not None:
            t_u, t_d = _interference(model, view, uni, req)
            meet = f"and still meet {slo}" if req.tpot_s is not None else "with no TPOT limit to meet"
            parts.append(f"the chosen replicas spend {1 - t_d / t_u:.0%} of each step on {req.isl}-token prompts "
                         f"(TPOT {t_u * 1e3:.1f} ms, {t_d * 1e3:.1f} ms without them) {meet}")
        xfer = f" and moving each prompt's KV cache ({pre.kv_transfer_s * 1e3:.1f} ms)" if pre is not None else ""
        parts.append(f"dedicating GPUs to prompts{xfer} serves less")
    return S.Disaggregation(decision=decision, reason="; ".join(parts), alternative=alternative,
                            alternative_objective_value=None if alt is None else round(alt_value, 2))
