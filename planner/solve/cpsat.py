"""The CP-SAT master model: how many replicas of which priced shape, in which domain classes.

Instance, variables, constraint modules and objective are kept apart, in this one file (a
little over 400 lines): the model reads top to bottom, as the CP-SAT primer lays one out, and
each constraint is a small function of its own. CP-SAT has no floats: throughputs are scaled once, to integer centi-tokens per second
(``THROUGHPUT_SCALE``), request rates to micro-requests per second (``QPS_SCALE``).

Capacity per class is a sum of unit sizes. That is exact for a class of one domain (its
GPUs are interchangeable within a domain) and for a class of many domains when the unit
sizes divide one another and the domain (divisible bin packing, e.g. 1/2/4/8 in an 8-GPU
node). Small classes are split into one class per domain; if placement of a large class
still fails, the search (``planner.api``) re-solves with every class split.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any

from planner.price.candidate import Candidate, Request
from planner.price.cluster import DomainClass
from planner.solve.ortools_loader import cp_model  # ortools.sat.python.cp_model, without pandas
from planner.solve.progress import SearchControl, run_interruptibly

THROUGHPUT_SCALE = 100  # centi-tokens/s
QPS_SCALE = 1_000_000  # micro-requests/s
PRICE_SCALE = 10_000  # 1e-4 $ per GPU-hour (coarser only when a fleet's total would pass COST_BOUND)
# CP-SAT works in int64 and refuses (MODEL_INVALID) a model whose objective or constraint
# could overflow: the cost of the whole fleet fits in COST_BOUND units, and max-throughput's
# weighted objective (throughput x (GPUs + 1) - GPUs) drops its tie-break where it would pass
# OBJECTIVE_BOUND, far from int64 and from 2**53.
COST_BOUND = 2**36
OBJECTIVE_BOUND = 2**50
# Classes of at most this many domains get one variable set per domain (exact packing, any
# unit size); larger classes are aggregated and admit only unit sizes that tile a domain.
# Splitting more classes gains little (0.3 % of throughput on the 1,008-GPU three-type fleet
# of benchmarks/solve_scaling.py) and costs CP-SAT its proof (16: no proof in 10 s; 4: 0.5 s).
SPLIT_CLASSES_UP_TO = 4


@dataclass(frozen=True)
class Instance:
    candidates: list[Candidate]
    classes: list[DomainClass]
    request: Request


@dataclass
class Solution:
    status: str  # OPTIMAL, FEASIBLE, INFEASIBLE, UNKNOWN, MODEL_INVALID
    replicas: dict[int, int] = field(default_factory=dict)  # candidate index -> replicas
    units: dict[tuple[int, int], int] = field(default_factory=dict)  # (candidate, class) -> units
    objective_value: float = 0.0
    best_bound: float = 0.0
    wall_time_s: float = 0.0
    served_by_pools: int = 0  # disaggregated output tokens/s (x THROUGHPUT_SCALE) the prefill+decode pools carry

    @property
    def gap(self) -> float:
        if self.status == "OPTIMAL":
            return 0.0
        denom = max(abs(self.objective_value), 1e-9)
        return abs(self.best_bound - self.objective_value) / denom


def split_classes(classes: list[DomainClass], *, up_to: int) -> list[DomainClass]:
    """One class per domain for every class of at most ``up_to`` domains (exact capacity)."""
    out: list[DomainClass] = []
    for c in classes:
        parts = [(d,) for d in c.domains] if 1 < c.count <= up_to else [c.domains]
        for doms in parts:
            out.append(replace(c, index=len(out), domains=doms))
    return out


def tiles(unit_gpus: int, free: int) -> bool:
    """Unit sizes a class of many domains admits: powers of two dividing ``free``, and ``free``.

    They divide one another and the domain, so a sum-of-sizes capacity is exact
    (divisible bin packing). Other sizes are used only in classes of one domain.

    >>> [u for u in range(1, 9) if tiles(u, 8)], [u for u in range(1, 7) if tiles(u, 6)]
    ([1, 2, 4, 8], [1, 2, 6])
    """
    return free % unit_gpus == 0 and (unit_gpus & (unit_gpus - 1) == 0 or unit_gpus == free)


class Vars:
    """Decision variables and the questions constraint modules ask of them."""

    def __init__(self, m: cp_model.CpModel, inst: Instance):
        self.inst = inst
        self.cand = {c.index: c for c in inst.candidates}
        self.replicas: dict[int, cp_model.IntVar] = {}
        self.units: dict[tuple[int, int], cp_model.IntVar] = {}
        self._by_cand: dict[int, list[cp_model.IntVar]] = {}
        self._by_class: dict[int, list[tuple[Candidate, cp_model.IntVar]]] = {}
        for c in inst.candidates:
            types = set(c.units_by_gpu())
            cap_gpus = sum(k.free * k.count for k in inst.classes if k.gpu in types)
            self.replicas[c.index] = m.new_int_var(0, cap_gpus // c.gpus, f"replicas_{c.index}")
            for k in self.classes_for(c):
                if c.unit_gpus > k.free or (k.count > 1 and not tiles(c.unit_gpus, k.free)):
                    continue
                u = m.new_int_var(0, k.count * (k.free // c.unit_gpus), f"units_{c.index}_{k.index}")
                self.units[(c.index, k.index)] = u
                self._by_cand.setdefault(c.index, []).append(u)
                self._by_class.setdefault(k.index, []).append((c, u))
        # Disaggregated serving: the output tokens/s the prefill and decode pools carry together,
        # at most what either pool sustains (each prompt needs a prefill, each token a decode step).
        # The same in micro-requests/s (served_qps), for the request-rate constraint: two views of
        # one quantity, each bounded by both pools, so neither needs the other's huge units.
        self.served = self.served_qps = None
        self.served_bound = 0
        pools = [c for c in inst.candidates if c.role != "unified"]
        if pools:
            total_gpus = sum(k.free * k.count for k in inst.classes)
            osl = inst.request.osl
            decode = [c for c in pools if c.role == "decode"]
            self.served_bound = _per_gpu_bound(decode, lambda c: _pool_tput(c, osl), total_gpus)
            self.served = m.new_int_var(0, self.served_bound, "served_by_pools")
            self.served_qps = m.new_int_var(0, _per_gpu_bound(decode, _qps, total_gpus), "served_qps_by_pools")
            for role in ("prefill", "decode"):
                mine = [c for c in pools if c.role == role]
                m.add(self.served <= sum(self.replicas[c.index] * _pool_tput(c, osl) for c in mine))
                m.add(self.served_qps <= sum(self.replicas[c.index] * _qps(c) for c in mine))

    def classes_for(self, c: Candidate) -> list[DomainClass]:
        return [k for k in self.inst.classes if k.signature in c.classes]

    def greedy_hint(self, m: cp_model.CpModel) -> None:
        """A complete hint: the candidate with the best throughput per GPU, replicated as often as it fits."""
        if not self.inst.candidates:
            return
        plain = [c for c in self.inst.candidates if not c.hetero and c.role == "unified"]
        if self.served is not None:
            m.add_hint(self.served, 0)
            m.add_hint(self.served_qps, 0)
        if not plain:
            return
        best = max(plain, key=lambda c: (_tput(c) / c.gpus, -c.index))
        room = [(k, v) for (ci, ki), v in self.units.items() if ci == best.index
                for k in [self.inst.classes[ki]]]
        total_units = sum(k.count * (k.free // best.unit_gpus) for k, _ in room)
        n = total_units // best.units_per_replica
        if self.inst.request.max_gpus is not None:
            n = min(n, self.inst.request.max_gpus // best.gpus)
        left = n * best.units_per_replica
        for (ci, ki), v in self.units.items():
            take = 0
            if ci == best.index:
                k = self.inst.classes[ki]
                take = min(left, k.count * (k.free // best.unit_gpus))
                left -= take
            m.add_hint(v, take)
        for i, v in self.replicas.items():
            m.add_hint(v, n if i == best.index else 0)

    def units_of(self, c: Candidate):
        return self._by_cand.get(c.index, [])

    def units_in(self, k: DomainClass):
        return self._by_class.get(k.index, [])

    def gpus_used(self):
        return sum(v * self.cand[i].gpus for i, v in self.replicas.items())

    def throughput(self):
        unified = sum(v * _tput(self.cand[i]) for i, v in self.replicas.items() if self.cand[i].role == "unified")
        return unified + self.served if self.served is not None else unified

    def at_least_ratio(self, m: cp_model.CpModel, ratio: tuple[int, int, int]) -> None:
        """Throughput per GPU of at least ``ratio`` = (throughput units T, GPUs G, margin e):
        ``throughput x G >= GPUs x T + e``; e = 1 asks for a strictly better ratio than T / G."""
        tokens, gpus, margin = ratio
        m.add(self.throughput() * gpus >= self.gpus_used() * tokens + margin)

    def throughput_bound(self) -> int:
        """An upper bound of :meth:`throughput`: the best tokens/s per GPU on every free GPU."""
        total_gpus = sum(k.free * k.count for k in self.inst.classes)
        unified = [c for c in self.inst.candidates if c.role == "unified"]
        return _per_gpu_bound(unified, _tput, total_gpus) + self.served_bound

    def price_unit(self) -> float:
        """Dollars per integer unit of :meth:`cost`: 1e-4 $, or coarser so the whole fleet's price
        per hour stays within COST_BOUND units."""
        req = self.inst.request
        fleet = sum(k.free * k.count * (req.price_of(k.node_type) or 0.0) for k in self.inst.classes)
        return max(1 / PRICE_SCALE, fleet / COST_BOUND)

    def cost(self, unit: float):
        """Price per hour of the GPUs the units occupy, in ``unit`` dollars (each class has one node type)."""
        req = self.inst.request
        return sum(u * self.cand[ci].unit_gpus * _price(req.price_of(self.inst.classes[ki].node_type), unit)
                   for (ci, ki), u in self.units.items())

    def usable_qps(self):
        return sum(v * _qps(self.cand[i]) for i, v in self.replicas.items() if self.cand[i].role == "unified")


def _per_gpu_bound(cands: list[Candidate], value, total_gpus: int) -> int:
    """Most of ``value`` (a per-replica integer) any mix of ``cands`` reaches on ``total_gpus``."""
    return max((math.ceil(value(c) / c.gpus) for c in cands), default=0) * total_gpus


def _pool_tput(c: Candidate, osl: int) -> int:
    """What one prefill or decode replica sustains, as output tokens/s of the requests it serves."""
    return int(math.floor(c.usable_requests_per_s * osl * THROUGHPUT_SCALE))


def _tput(c: Candidate) -> int:
    """What one unified replica counts for: output tokens/s at its planned (usable) utilisation,
    the same rule as a pool's (:func:`_pool_tput`), so the two kinds compare on one figure."""
    return int(math.floor(c.usable_requests_per_s * c.metrics.output_tokens_per_s / max(c.metrics.requests_per_s,
                                                                                         1e-300) * THROUGHPUT_SCALE))


def ratio_bound(cands: list[Candidate], osl: int) -> Fraction:
    """An upper bound of any plan's :meth:`Vars.throughput` per GPU. A plan's ratio is at most
    the larger of its unified part's and its pools' (a mediant); the best unified replica bounds
    the first, and the pools serve at most what their GPUs would at the best prefill and the
    best decode GPUs per unit of throughput, ``1 / (min gp / Tp + min gd / Td)``, the second."""
    best = max((Fraction(_tput(c), c.gpus) for c in cands if c.role == "unified"), default=Fraction(0))
    pre = [Fraction(c.gpus, max(_pool_tput(c, osl), 1)) for c in cands if c.role == "prefill"]
    dec = [Fraction(c.gpus, max(_pool_tput(c, osl), 1)) for c in cands if c.role == "decode"]
    if pre and dec:
        best = max(best, 1 / (min(pre) + min(dec)))
    return best


def throughput_units(sol: Solution, cands: dict[int, Candidate]) -> int:
    """A solution's throughput in the solver's integer units (as :meth:`Vars.throughput`)."""
    return sum(n * _tput(cands[i]) for i, n in sol.replicas.items() if cands[i].role == "unified") \
        + sol.served_by_pools


def shape_key(c: Candidate) -> tuple:
    """What makes two candidates the same replica shape to a user: GPU type, tp, pp, ep, attention DP, role."""
    return (c.gpu, c.strategy.tp, c.strategy.pp, c.strategy.ep, c.strategy.attention_dp, c.role)


def mix(sol: Solution, cands: dict[int, Candidate]) -> dict[tuple, int]:
    """A solution's replicas per shape."""
    out: dict[tuple, int] = {}
    for i, n in sol.replicas.items():
        out[shape_key(cands[i])] = out.get(shape_key(cands[i]), 0) + n
    return out


def _price(p: float | None, unit: float) -> int:
    if p is None:
        raise ValueError("min-cost needs a price for every node type it may use")
    return int(round(p / unit))


def _qps(c: Candidate) -> int:
    return int(math.floor(c.usable_requests_per_s * QPS_SCALE))


# -- constraint modules ------------------------------------------------------------------------

def units_make_replicas(m: cp_model.CpModel, v: Vars) -> None:
    # \sum_k units_{c,k} = units_per_replica_c * replicas_c
    # (a pipeline across GPU types: per type g, \sum_{k of type g} units_{c,k} = stages on g * replicas_c)
    for c in v.inst.candidates:
        if not c.hetero:
            m.add(sum(v.units_of(c)) == c.units_per_replica * v.replicas[c.index])
            continue
        for gpu, n in sorted(c.units_by_gpu().items()):
            m.add(sum(u for (ci, ki), u in v.units.items() if ci == c.index and v.inst.classes[ki].gpu == gpu)
                  == n * v.replicas[c.index])


def class_capacity(m: cp_model.CpModel, v: Vars) -> None:
    # \sum_c units_{c,k} * unit_gpus_c <= free_k * count_k
    for k in v.inst.classes:
        used = v.units_in(k)
        if used:
            m.add(sum(u * c.unit_gpus for c, u in used) <= k.free * k.count)
        # whole-domain units (span 'cross') and others share domains: count domains too
        cross = [(c, u) for c, u in used if c.span == "cross"]
        if cross:
            m.add(sum(u for _, u in cross) <= k.count)


def gpu_budget(m: cp_model.CpModel, v: Vars) -> None:
    # \sum_c replicas_c * gpus_c <= max_gpus
    if v.inst.request.max_gpus is not None:
        m.add(v.gpus_used() <= v.inst.request.max_gpus)


def serves_qps(m: cp_model.CpModel, v: Vars) -> None:
    # \sum_c replicas_c * usable_qps_c >= qps
    q = v.inst.request.qps
    if q is not None and q > 0:
        need = int(math.ceil(q * QPS_SCALE))
        if v.served_qps is None:
            m.add(v.usable_qps() >= need)
        else:
            m.add(v.usable_qps() + v.served_qps >= need)


def at_least_one_replica(m: cp_model.CpModel, v: Vars) -> None:
    # \sum_c replicas_c >= 1, and the plan serves something: throughput >= 1 (a prefill pool
    # without a decode pool, or the reverse, serves nothing)
    m.add(sum(v.replicas.values()) >= 1)
    if v.served is not None:
        m.add(v.throughput() >= 1)


MODULES = (units_make_replicas, class_capacity, gpu_budget, serves_qps, at_least_one_replica)


# -- objectives --------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Lexicographic:
    """min-gpus and min-cost: a primary (GPUs, or cost in price units) to minimise, then the most
    throughput among the plans that reach it (:func:`solve` runs the two in turn)."""

    primary: Any
    per_unit: float  # the primary's units -> the caller's (GPUs, $/h)


def _objective(m: cp_model.CpModel, v: Vars, objective: str):
    """Set the objective; return (raw value -> caller's units, unit name, the lexicographic parts of
    min-gpus and min-cost or None). Those two are set to their primary alone: :func:`solve` proves it
    first (a small integer CP-SAT bounds fast), then maximises throughput with the primary held. One
    weighted objective (primary x W - throughput) left CP-SAT unable to bound the primary at all
    within the time limit (a min-gpus search once ended FEASIBLE at gap 100 % after 10 s, where the
    primary alone is proven in a fraction of a second)."""
    total_gpus = sum(k.free * k.count for k in v.inst.classes)
    if objective == "feasible":  # any plan meeting the constraints (a test of the bisection on tokens/s per GPU)
        return (lambda x: x), "", None
    if objective == "max-throughput":
        # maximise throughput * (G+1) - gpus: more throughput first, then fewer GPUs (a tie-break
        # dropped on a fleet so large that the product would near int64)
        tie = v.gpus_used() if v.throughput_bound() * (total_gpus + 1) <= 2 * OBJECTIVE_BOUND else 0
        m.maximize(v.throughput() * (total_gpus + 1) - tie)
        return (lambda x: (x + total_gpus) / (total_gpus + 1) / THROUGHPUT_SCALE), "tok/s", None
    if objective == "min-gpus":
        lex, unit = _Lexicographic(v.gpus_used(), 1.0), "GPUs"
    elif objective == "min-cost":
        per_unit = v.price_unit()
        lex, unit = _Lexicographic(v.cost(per_unit), per_unit), "$/h"
    else:
        raise ValueError(objective)
    m.minimize(lex.primary)
    return (lambda x: x * lex.per_unit), unit, lex


# -- solving -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class SolverParams:
    time_limit_s: float = 10.0
    workers: int = 1
    seed: int = 0
    log: bool = False


def solve(inst: Instance, params: SolverParams, *, objective: str, time_limit_s: float | None = None,
          control: SearchControl | None = None, exclude: tuple[dict[tuple, int], ...] = (),
          min_ratio: tuple[int, int, int] | None = None) -> Solution:
    """Build and solve one CP-SAT model.

    ``objective``: ``max-throughput`` (ties: fewer GPUs, through one weighted integer objective),
    ``min-gpus`` or ``min-cost`` (ties: more throughput; two solves, the primary proven first, then
    the tie-break with the primary held: OPTIMAL only when both are proven), or ``feasible`` (any plan). ``min_ratio`` = (T, G, e) keeps throughput x G at
    least GPUs x T + e (throughput in the solver's units; :meth:`Vars.at_least_ratio`). With
    ``control``, improving solutions are reported and Ctrl-C stops the solve with its
    incumbent. ``exclude`` lists replica-count vectors (candidate index -> replicas) the
    solution must differ from (the next of the top k).
    """
    m = cp_model.CpModel()
    v = Vars(m, inst)
    for module in MODULES:
        module(m, v)
    for prev in exclude:
        # a different mix of replica shapes: some shape's replica count differs from `prev`
        by_shape: dict[tuple, list] = {}
        for i, x in v.replicas.items():
            by_shape.setdefault(shape_key(v.cand[i]), []).append(x)
        if any(n > 0 and key not in by_shape for key, n in prev.items()):
            continue  # `prev` uses a shape this model cannot: every solution differs
        differs = []
        for j, (key, xs) in enumerate(sorted(by_shape.items())):
            b = m.new_bool_var(f"differs_{j}")
            m.add(sum(xs) != prev.get(key, 0)).only_enforce_if(b)
            differs.append(b)
        m.add_bool_or(differs)
    if min_ratio is not None:
        v.at_least_ratio(m, min_ratio)
    scale, unit, lex = _objective(m, v, objective)
    v.greedy_hint(m)
    limit_s = max(0.01, params.time_limit_s if time_limit_s is None else time_limit_s)
    t0 = time.perf_counter()
    solver = _solver(params, limit_s)
    status = _valid(run_interruptibly(solver, m, control, scale=scale, unit=unit), m, objective)
    found = status in (cp_model.OPTIMAL, cp_model.FEASIBLE)
    value = solver.objective_value if found else 0.0
    bound = solver.best_objective_bound if found else 0.0
    if lex is not None and status == cp_model.OPTIMAL:
        # min-gpus / min-cost: the primary is proven; now the most throughput among the plans that
        # reach it, from the plan found (hinted whole). Where that is cut short, the plan found stands.
        status = cp_model.FEASIBLE
        second = _tie_break(m, v, lex, solver, params, limit_s - (time.perf_counter() - t0), control, objective)
        if second is not None:
            solver, status = second
    wall = time.perf_counter() - t0
    sol = Solution(status=solver.status_name(status), wall_time_s=wall)
    if found:
        sol.replicas = {i: solver.value(x) for i, x in v.replicas.items() if solver.value(x) > 0}
        sol.units = {key: solver.value(x) for key, x in v.units.items() if solver.value(x) > 0}
        sol.served_by_pools = solver.value(v.served) if v.served is not None else 0
        sol.objective_value = scale(value)
        sol.best_bound = scale(bound)
    return sol


def _tie_break(m: cp_model.CpModel, v: Vars, lex: _Lexicographic, first: cp_model.CpSolver, params: SolverParams,
               left_s: float, control: SearchControl | None, objective: str) -> tuple[cp_model.CpSolver, int] | None:
    """The second solve of min-gpus / min-cost: the primary held at the proven optimum of ``first``,
    the most throughput; (its solver, status) if it found a plan, else None (no time, or Ctrl-C)."""
    if left_s <= 0.01 or (control is not None and control.interrupted):
        return None
    try:
        m.add(lex.primary == first.value(lex.primary))
        m.clear_hints()
        for i, x in enumerate(first.response_proto.solution):
            m.proto.solution_hint.vars.append(i)
            m.proto.solution_hint.values.append(x)
        m.maximize(v.throughput())
        second = _solver(params, left_s)
    except KeyboardInterrupt:  # between the two solves: keep the plan found
        if control is None:
            raise
        control.interrupted = True
        return None
    status = _valid(run_interruptibly(second, m, control, scale=lambda x: x / THROUGHPUT_SCALE,
                                      unit="tok/s at that minimum"), m, objective)
    return (second, status) if status in (cp_model.OPTIMAL, cp_model.FEASIBLE) else None


def _valid(status: int, m: cp_model.CpModel, objective: str) -> int:
    if status == cp_model.MODEL_INVALID:  # a bug in this module, never an answer about the request
        raise AssertionError(f"CP-SAT refused the {objective} model as invalid: {m.validate()[:300]}")
    return status


def _solver(params: SolverParams, limit_s: float) -> cp_model.CpSolver:
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = limit_s
    solver.parameters.num_workers = params.workers
    solver.parameters.random_seed = params.seed
    if params.log:  # the solver's log goes to stderr, so stdout stays the result alone
        solver.parameters.log_search_progress = True
        solver.parameters.log_to_stdout = False
        solver.log_callback = lambda line: print(line, file=sys.stderr)
    return solver

