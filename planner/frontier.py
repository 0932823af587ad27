"""More than one plan: the k best (``--top-k``) and the latency/throughput frontier (``--pareto``).

**Top k.** The best plan, then the best plan whose mix of replica shapes differs from every
plan before it (a no-good cut per earlier plan on the replica-count vector, re-solved by
CP-SAT), k times. Each later plan says why it lost to the first, in the objective's terms.
Ranking needs one objective the solver optimises in one model, so top-k takes the
objectives ``throughput``, ``min-gpus`` and ``min-cost``.

**Frontier.** The epsilon-constraint method: the latency SLO on the chosen axis (TPOT or
TTFT) is tightened step by step, from the loosest plan found down to the fastest any
candidate reaches, and at each step the planner finds the plan with the most output
tokens/s per GPU and the plan with the most output tokens/s that meet it (both weighing
unified replicas and prefill/decode pools alike, as ``search`` does). With the max-throughput plan, the min-latency plan and the
plan of the user's own objective added, the plans dominated by another are dropped: a plan
is dominated when another is at least as good on tokens/s per GPU, total tokens/s and the
axis's latency, and strictly better on one. Each plan on the frontier is a full plan whose
``inputs.slo`` records the step's SLO.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass

from planner import api
from planner.plan import build, schema as S
from planner.solve import objectives
from planner.solve.cpsat import mix
from topologies.errors import InfeasibleError, InputError, SolveTimeout

TOP_K_OBJECTIVES = ("throughput", "min-gpus", "min-cost")
AXES = ("tpot", "ttft")


# -- top k ---------------------------------------------------------------------------------------

def top_k(k: int, **search_args) -> list[S.Plan]:
    """The ``k`` best plans with distinct replica-shape mixes, best first (fewer when the
    cluster admits fewer). Arguments as :func:`planner.api.search`."""
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 100:
        raise InputError(f"must be an integer from 1 to 100, got {k!r}", source="--top-k")
    objective = search_args.get("objective", "throughput")
    if objective not in TOP_K_OBJECTIVES:
        raise InputError(f"--top-k ranks plans of objectives {', '.join(TOP_K_OBJECTIVES)}, not {objective!r}; "
                         "use --pareto to compare latency against throughput", source="--top-k")
    include_timings = search_args.pop("include_timings", False)
    control = search_args.get("control")
    topo, spec, req, params, view, pricing = api.prepare(**_prepare_args(search_args))
    plans: list[S.Plan] = []
    seen: list[dict[tuple, int]] = []
    by_index = {c.index: c for c in pricing.candidates}
    for _ in range(k):
        sol, inst, placed = api._solve_and_place(view, pricing.candidates, req, params, control, exclude=tuple(seen))
        if sol is None:
            break
        seen.append(mix(sol, by_index))
        plans.append(build.build_plan(spec, topo, view, req, sol, inst, placed, pricing, params, wall_time_s=None))
        if control is not None and control.interrupted:
            break
    if not plans:
        raise InfeasibleError(objectives.explain_infeasible(spec, view, req, pricing))
    del include_timings
    return plans


def _prepare_args(args: dict) -> dict:
    names = ("topology", "model", "isl", "osl", "qps", "ttft_ms", "tpot_ms", "objective", "weight_dtype", "kv_dtype",
             "max_gpus", "allow_cross_domain_tp", "time_limit_s", "workers", "seed", "log", "runtime", "control",
             "price_per_gpu_hour", "disaggregation", "ep", "attention_dp", "expert_imbalance", "tpot_p99_ms",
             "ttft_p99_ms")
    defaults = dict(isl=1024, osl=256, qps=None, ttft_ms=None, tpot_ms=None, objective="throughput",
                    weight_dtype=None, kv_dtype=None, max_gpus=None, allow_cross_domain_tp=False, time_limit_s=10.0,
                    workers=1, seed=0, log=False, runtime="vllm", control=None, price_per_gpu_hour=None,
                    disaggregation="auto", ep=None, attention_dp=None, expert_imbalance=None, tpot_p99_ms=None,
                    ttft_p99_ms=None)
    unknown = set(args) - set(names)
    if unknown:
        raise TypeError(f"unexpected arguments {sorted(unknown)}")
    return {n: args.get(n, defaults.get(n)) for n in names}


def shapes(plan: S.Plan) -> str:
    """The plan's replica mix in a few words: ``H100-SXM-80GB tp=8 pp=1 x2 + H100-SXM-80GB prefill ...``."""
    counts: dict[str, int] = {}
    for g in plan.replica_groups:
        name = f"{g.gpu_label}{'' if g.role == 'unified' else ' ' + g.role} tp={g.strategy.tp} pp={g.strategy.pp}" \
            + (f" ep={g.strategy.ep}" if g.strategy.ep > 1 else "")
        counts[name] = counts.get(name, 0) + g.strategy.dp
    return " + ".join(f"{name} x{n}" for name, n in counts.items())


def why_worse(best: S.Plan, other: S.Plan) -> str:
    """Why ``other`` ranks below ``best`` under their (shared) objective, in its own terms."""
    b, o = best.totals, other.totals
    objective = best.inputs.objective
    parts = []
    if objective == "min-gpus" and o.gpus_used != b.gpus_used:
        parts.append(f"needs {o.gpus_used - b.gpus_used} more GPUs ({o.gpus_used} vs {b.gpus_used})")
    elif objective == "min-cost" and o.cost_per_hour is not None and b.cost_per_hour is not None \
            and not math.isclose(o.cost_per_hour, b.cost_per_hour):
        parts.append(f"costs ${o.cost_per_hour - b.cost_per_hour:,.2f} more per hour "
                     f"(${o.cost_per_hour:,.2f} vs ${b.cost_per_hour:,.2f})")
    elif b.output_tokens_per_s > 0 and not math.isclose(o.output_tokens_per_s, b.output_tokens_per_s):
        pct = (b.output_tokens_per_s - o.output_tokens_per_s) / b.output_tokens_per_s
        parts.append(f"{pct:.1%} fewer output tokens/s ({o.output_tokens_per_s:,.0f} vs {b.output_tokens_per_s:,.0f})")
    else:
        parts.append(f"ties on the objective but uses {o.gpus_used} GPUs against {b.gpus_used}")
    if o.output_tokens_per_s_per_gpu < b.output_tokens_per_s_per_gpu:
        parts.append(f"{o.output_tokens_per_s_per_gpu:,.0f} tok/s per GPU against {b.output_tokens_per_s_per_gpu:,.0f}")
    return "; ".join(parts)


# -- frontier ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Frontier:
    axis: str
    plans: list[S.Plan]  # non-dominated, fastest first on the axis
    chosen: int  # index in ``plans`` of the plan the user's own objective picks
    chosen_dominated: bool  # the user's plan is kept (and marked) though another dominates it
    steps_planned: int = 0  # SLO steps between the fastest and the loosest plan (0: no range to step)
    steps_tried: int = 0  # of those, the steps searched before the time limit ran out
    time_limit_reached: bool = False  # the shared time limit cut some search short or left it unstarted

    def latency_ms(self, plan: S.Plan) -> float:
        return plan.totals.tpot_ms if self.axis == "tpot" else plan.totals.ttft_ms

    def to_json(self) -> str:
        return json.dumps({"kind": "pareto-frontier", "axis": self.axis, "chosen": self.chosen,
                           "chosen_dominated": self.chosen_dominated, "slo_steps_planned": self.steps_planned,
                           "slo_steps_tried": self.steps_tried, "time_limit_reached": self.time_limit_reached,
                           "plans": [json.loads(p.to_json()) for p in self.plans]}, indent=2, sort_keys=True) + "\n"


def _key(plan: S.Plan) -> str:
    return json.dumps([g.model_dump(mode="json") for g in plan.replica_groups], sort_keys=True)


def dominates(a: S.Plan, b: S.Plan, axis: str) -> bool:
    la = a.totals.tpot_ms if axis == "tpot" else a.totals.ttft_ms
    lb = b.totals.tpot_ms if axis == "tpot" else b.totals.ttft_ms
    ge = (a.totals.output_tokens_per_s_per_gpu >= b.totals.output_tokens_per_s_per_gpu
          and a.totals.output_tokens_per_s >= b.totals.output_tokens_per_s and la <= lb)
    gt = (a.totals.output_tokens_per_s_per_gpu > b.totals.output_tokens_per_s_per_gpu
          or a.totals.output_tokens_per_s > b.totals.output_tokens_per_s or la < lb)
    return ge and gt


def _without_ties(plans: list[S.Plan], axis: str, prefer: str) -> list[S.Plan]:
    """One plan per equal (tokens/s per GPU, tokens/s, latency on the axis): the user's own
    (``_key`` ``prefer``), else the one of lowest latency on the other axis (then the first
    found), so the table lists no row twice."""
    other = "ttft" if axis == "tpot" else "tpot"
    out: dict[tuple, S.Plan] = {}
    for p in plans:
        t = p.totals
        key = (t.output_tokens_per_s_per_gpu, t.output_tokens_per_s, getattr(t, f"{axis}_ms"))
        if key not in out or _key(out[key]) != prefer and (
                _key(p) == prefer or getattr(t, f"{other}_ms") < getattr(out[key].totals, f"{other}_ms")):
            out[key] = p
    return list(out.values())


#: the whole frontier's time limit when none is given (its ~20 searches of a small cluster take
#: 5-12 s on a 2-core machine; a search alone defaults to 10 s)
FRONTIER_TIME_LIMIT_S = 60.0

#: a search is started only with at least this much of the frontier's time left (CP-SAT needs
#: some time to find any plan; less would be a search that can only time out)
MIN_SEARCH_S = 0.05


class _Budget:
    """The frontier's searches share one deadline: ``time_limit_s`` from the frontier's start.
    Each search's solver gets the time still left. A search is not started with less time left
    than the quickest whole search so far took (pricing the shapes is not cut short by the
    solver's limit, so it would end past the deadline); the skipped ones are counted."""

    def __init__(self, search_args: dict, time_limit_s: float):
        self.search_args = search_args
        self.time_limit_s = time_limit_s
        self.deadline = time.perf_counter() + time_limit_s
        self.quickest_s: float | None = None  # the quickest whole search so far
        self.skipped = 0

    def run(self, **override) -> S.Plan:
        """One search (its errors raised), timed for :attr:`quickest_s`."""
        t0 = time.perf_counter()
        left = self.deadline - t0
        try:
            plan = api.search(**{**self.search_args, **override, "time_limit_s": max(left, MIN_SEARCH_S)})
            # the plan records the frontier's limit, not the time that happened to be left: the
            # same inputs give the same JSON
            return plan.model_copy(update={"solver": plan.solver.model_copy(
                update={"time_limit_s": self.time_limit_s})})
        finally:
            took = time.perf_counter() - t0
            self.quickest_s = took if self.quickest_s is None else min(self.quickest_s, took)

    def attempt(self, **override) -> S.Plan | None:
        """The plan for the search arguments with ``override``; None when none meets them, the
        search ran out of time, or too little time was left to start it."""
        if self.deadline - time.perf_counter() < max(MIN_SEARCH_S, self.quickest_s or 0.0):
            self.skipped += 1
            return None
        try:
            return self.run(**override)
        except SolveTimeout:
            self.skipped += 1
            return None
        except InfeasibleError:
            return None


def spread_order(n: int) -> list[int]:
    """0..n-1 with the ends first and then each gap halved (0, n-1, mid, quarters, ...): steps tried
    in this order span the whole latency range however early the time runs out."""
    if n <= 0:
        return []
    order, seen, gaps = [0], {0}, [(0, n - 1)]
    if n > 1:
        order.append(n - 1)
        seen.add(n - 1)
    while gaps:
        nxt = []
        for lo, hi in gaps:
            mid = (lo + hi) // 2
            if mid not in seen:
                order.append(mid)
                seen.add(mid)
            if mid - lo > 1:
                nxt.append((lo, mid))
            if hi - mid > 1:
                nxt.append((mid, hi))
        gaps = nxt
    return order


def frontier(*, axis: str = "tpot", points: int = 8, **search_args) -> Frontier:
    """The non-dominated plans between the fastest and the most efficient (module docstring).

    ``time_limit_s`` bounds the whole frontier: the user's own search, the extremes and every
    SLO step share one deadline (:class:`_Budget`). Steps the time does not reach are left out
    (tried ends first, then midpoints, :func:`spread_order`) and counted in the result."""
    if axis not in AXES:
        raise InputError(f"unknown axis {axis!r}; choose tpot or ttft", source="--pareto-axis")
    if isinstance(points, bool) or not isinstance(points, int) or not 2 <= points <= 50:
        raise InputError(f"must be an integer from 2 to 50, got {points!r}", source="--pareto-points")
    search_args.pop("include_timings", None)
    if search_args.get("time_limit_s") is None:
        search_args["time_limit_s"] = FRONTIER_TIME_LIMIT_S
    budget = _Budget(search_args, search_args["time_limit_s"])
    chosen = budget.run()  # the user's own question first, with the whole limit: its errors are theirs
    found = [chosen] + _extremes(budget, axis)
    lo_ms = _lowest_latency(budget, axis, found)
    hi_ms = max(_latency(p, axis) for p in found)
    at_step: dict[int, list[S.Plan]] = {}
    if lo_ms is not None and hi_ms > lo_ms:
        steps = _steps(lo_ms, hi_ms, points, search_args.get(f"{axis}_ms"))
        for i in spread_order(points):
            before = budget.skipped
            plans = [budget.attempt(objective=objective, **{f"{axis}_ms": steps[i]})
                     for objective in ("throughput-per-gpu", "throughput")]  # the best of both axes at this step
            if budget.skipped == before:
                at_step[i] = [p for p in plans if p is not None]
    elif not (lo_ms is None and budget.skipped):  # no range to step (not merely no time to find it)
        points = 0
    found += [p for i in sorted(at_step) for p in at_step[i]]  # step order, as found without a limit
    tried = len(at_step)
    return _assemble(found, chosen, axis, steps_planned=points, steps_tried=tried,
                     time_limit_reached=budget.skipped > 0)


def _latency(p: S.Plan, axis: str) -> float:
    return p.totals.tpot_ms if axis == "tpot" else p.totals.ttft_ms


def _extremes(budget: _Budget, axis: str) -> list[S.Plan]:
    """The max-throughput and max-per-GPU plans, and on the TPOT axis the fastest plan."""
    wanted = [{"objective": "throughput"}, {"objective": "throughput-per-gpu"}]
    if axis == "tpot":
        wanted.append({"objective": "latency"})
    return [p for p in (budget.attempt(**w) for w in wanted) if p is not None]


def _lowest_latency(budget: _Budget, axis: str, found: list[S.Plan]) -> float | None:
    """The fastest the axis gets: the latency objective's plan (TPOT), the fastest prompt (TTFT)."""
    if axis == "tpot":
        fastest = [p for p in found if p.inputs.objective == "latency"]
        return fastest[0].totals.tpot_ms if fastest else None
    args = {k: v for k, v in budget.search_args.items() if k != "objective"} | {"objective": "throughput"}
    _, _, _, _, _, pricing = api.prepare(**_prepare_args(args))
    return pricing.best_ttft_s * 1e3


def _steps(lo_ms: float, hi_ms: float, points: int, user_slo: float | None) -> list[float]:
    """``points`` SLO steps from ``lo_ms`` to ``hi_ms`` in geometric progression (rounded up to
    0.01 ms), none looser than the user's own limit."""
    ratio = (hi_ms / lo_ms) ** (1 / (points - 1))
    steps = [math.ceil(lo_ms * ratio ** i * 100) / 100 for i in range(points)]
    return [min(t, user_slo) for t in steps] if user_slo is not None else steps


def _assemble(found: list[S.Plan], chosen: S.Plan, axis: str, **counts) -> Frontier:
    """Drop repeats, ties and dominated plans; keep the user's plan (marked if dominated); sort."""
    unique: dict[str, S.Plan] = {}
    for p in found:
        unique.setdefault(_key(p), p)
    plans = _without_ties(list(unique.values()), axis, _key(chosen))
    keep = [p for p in plans if not any(dominates(q, p, axis) for q in plans if q is not p)]
    chosen_key = _key(chosen)
    dominated = not any(_key(p) == chosen_key for p in keep)
    if dominated:
        keep.append(unique[chosen_key])
    keep.sort(key=lambda p: (_latency(p, axis), -p.totals.output_tokens_per_s_per_gpu,
                             -p.totals.output_tokens_per_s, _key(p)))
    index = next(i for i, p in enumerate(keep) if _key(p) == chosen_key)
    return Frontier(axis=axis, plans=keep, chosen=index, chosen_dominated=dominated, **counts)
