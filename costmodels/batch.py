"""The batch a replica shape runs at: the best one within the latency limits, and the share of
its capacity a plan may use while its queued TTFT stays within them.

This is the cost model's answer to the planner's one question per shape: *what does this shape
serve, at its best batch, within these SLOs?* (:func:`choose_batch`, and
:func:`choose_prefill_budget` for a prefill-only replica). The planner keeps the books (which
shapes were rejected and why, the fastest step any shape reached, for its messages); everything
here is a pure function of the model, the GPU, the strategy and the targets.

TPOT and TTFT grow with the batch (``tests/test_latency_properties.py``), so the largest batch
meeting every limit is found by bisection and priced beside the powers of two up to the largest
batch that fits.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Protocol

from costmodels import calibration as cal
from costmodels.load import OpenLoop, TailLatency, max_utilization, tail_latency, ttft_under_load_s
from costmodels.model_spec import ModelSpec
from costmodels.prefill import PrefillStep, evaluate_prefill, kv_transfer_s
from costmodels.serving import ReplicaMetrics, evaluate_replica
from costmodels.strategy import GPUs, Links, Strategy
from topologies.graph import Link


class Targets(Protocol):
    """The workload and limits a batch is chosen for (the planner's request has these fields)."""

    @property
    def isl(self) -> int: ...
    @property
    def osl(self) -> int: ...
    @property
    def batch(self) -> int | None: ...  # a pinned batch (None: choose)
    @property
    def tpot_s(self) -> float | None: ...
    @property
    def ttft_s(self) -> float | None: ...
    @property
    def tpot_p99_s(self) -> float | None: ...
    @property
    def ttft_p99_s(self) -> float | None: ...
    @property
    def objective(self) -> str: ...  # 'latency' ranks by TPOT; every other objective by served traffic
    @property
    def qps(self) -> float | None: ...


@dataclass
class BatchChoice:
    """What :func:`choose_batch` found for one shape.

    ``priced`` counts the replica evaluations it made (the planner reports shapes priced);
    ``rejected`` gives, in the order met, why each batch was turned down ('memory', 'tpot',
    'ttft', 'tpot_p99', 'ttft_p99'); ``fastest`` the lowest figure any batch reached per metric
    ('tpot', 'ttft', 'tpot_p99', 'ttft_p99') as ``(seconds, batch)``, the first batch on ties."""

    best: ReplicaMetrics | None = None
    utilization: float = 0.0  # the best batch's utilisation cap under the TTFT limits
    priced: int = 1
    fits: bool = False  # one sequence fits in memory
    rejected: list[str] = field(default_factory=list)
    fastest: dict[str, tuple[float, int]] = field(default_factory=dict)

    @property
    def usable_requests_per_s(self) -> float:
        """Requests/s of the best batch at the highest utilisation its TTFT limits allow."""
        return self.best.requests_per_s * self.utilization if self.best is not None else 0.0

    def _note(self, metric: str, value_s: float, batch: int) -> None:
        if metric not in self.fastest or value_s < self.fastest[metric][0]:
            self.fastest[metric] = (value_s, batch)


def batch_grid(max_batch: int) -> list[int]:
    """The powers of two below ``max_batch``, then ``max_batch``."""
    grid, b = [], 1
    while b < max_batch:
        grid.append(b)
        b *= 2
    grid.append(max_batch)
    return grid


def choose_batch(model: ModelSpec, gpu: GPUs, s: Strategy, t: Targets, links: Links,
                 role: str = "unified") -> BatchChoice:
    """The batch this shape runs at for ``t``'s objective (``best`` None when none fits and meets
    the limits). A prefill-only replica's TPOT and a decode-only replica's TTFT are not its own
    to meet (:func:`failed_slo`)."""
    top = evaluate_replica(model, gpu, s, isl=t.isl, osl=t.osl, links=links, role=role)
    out = BatchChoice()
    if top.max_batch < 1:
        out.rejected.append("memory")
        return out
    out.fits = True
    if t.batch is not None:
        grid = [t.batch]
    else:
        grid = batch_grid(top.max_batch)
        limit = largest_batch_within_slos(model, gpu, s, t, links, top.max_batch, role)
        if limit and limit not in grid:
            grid = sorted(grid + [limit])
    priced: dict[int, ReplicaMetrics] = {}  # the queues of this shape's batches share their pricing
    for b in grid:
        if b > top.max_batch:
            out.rejected.append("memory")
            continue
        m = top if b == top.batch else evaluate_replica(model, gpu, s, isl=t.isl, osl=t.osl, batch=b, links=links,
                                                        role=role)
        out.priced += 1
        # the fastest decode step and prompt any batch reaches (a decode-pool replica's TPOT counts
        # as much as a unified one's)
        if role in ("unified", "decode"):
            out._note("tpot", m.tpot_s, b)
        if role in ("unified", "prefill"):
            out._note("ttft", m.ttft_s, b)
        tail = _tail(model, gpu, s, t, links, m, role)
        if tail is not None:
            if role in ("unified", "decode"):
                out._note("tpot_p99", tail.tpot_p99_s, b)
            if role == "unified":
                out._note("ttft_p99", tail.ttft_p99_s(m.ttft_s), b)
        why = failed_slo(m, tail, t, role)
        if why is not None:
            out.rejected.append(why)
            continue
        loop = open_loop(model, gpu, s, t, links, m, role, priced)
        util = utilization_cap(m, tail, t.ttft_s, t.ttft_p99_s, loop)
        if loop is not None and util <= 0:  # a prompt reaching an idle replica breaks a TTFT limit
            out.rejected.append("ttft" if t.ttft_s is not None and loop.ttft_s(0.0) > t.ttft_s else "ttft_p99")
            continue
        if out.best is None or _better(m, util, out.best, out.utilization, t):
            out.best, out.utilization = m, util
    return out


def _tail(model: ModelSpec, gpu: GPUs, s: Strategy, t: Targets, links: Links, m: ReplicaMetrics,
          role: str) -> TailLatency | None:
    """The p99 figures of ``m``, priced only when ``t`` sets a p99 limit."""
    if t.tpot_p99_s is None and t.ttft_p99_s is None:
        return None
    return tail_latency(model, gpu, s, m, isl=t.isl, osl=t.osl, links=links, role=role)


def failed_slo(m: ReplicaMetrics, tail: TailLatency | None, t: Targets, role: str) -> str | None:
    """The first limit ``m`` breaks unloaded ('tpot', 'ttft', 'tpot_p99', 'ttft_p99'), or None.
    A prefill replica's TPOT and a decode replica's TTFT are not its own to meet. A unified
    replica's TTFT limits are met through its queue (:class:`OpenLoop`, :func:`utilization_cap`):
    at the load a plan gives it the batch in flight is the one Little's law sets, not its largest,
    so its TTFT at the largest batch is no bound (checked there, a --ttft-ms set at a plan's own
    TTFT turned its batch down)."""
    checks = (("tpot", t.tpot_s, m.tpot_s, role != "prefill"),
              ("ttft", t.ttft_s, m.ttft_s, role == "prefill"),
              ("tpot_p99", t.tpot_p99_s, tail.tpot_p99_s if tail else None, role != "prefill"),
              ("ttft_p99", t.ttft_p99_s, tail.ttft_p99_s(m.ttft_s) if tail else None, role == "prefill"))
    for why, slo, value, applies in checks:
        if applies and slo is not None and value is not None and value > slo:
            return why
    return None


def open_loop(model: ModelSpec, gpu: GPUs, s: Strategy, t: Targets, links: Links, m: ReplicaMetrics,
              role: str, priced: dict[int, ReplicaMetrics]) -> OpenLoop | None:
    """The queue of a unified replica at ``m``'s batch when ``t`` limits its TTFT (None otherwise:
    nothing to cap, and a decode replica's TTFT is not its own)."""
    if role != "unified" or (t.ttft_s is None and t.ttft_p99_s is None):
        return None
    return OpenLoop(model, gpu, s, isl=t.isl, osl=t.osl, capacity=m, links=links, priced=priced)


def utilization_cap(m: ReplicaMetrics, tail: TailLatency | None, ttft_s: float | None,
                    ttft_p99_s: float | None, loop: OpenLoop | None = None) -> float:
    """The highest utilisation at which the queued mean TTFT and the queued p99 TTFT stay within
    ``ttft_s`` and ``ttft_p99_s``. The p99 is the queued mean plus its extra wait (the tail of the
    queue itself is not modelled). A unified replica queues as ``loop`` says (:class:`OpenLoop`); a
    prefill replica's TTFTs follow its load-dependent step (:func:`prefill_utilization_cap`);
    without either (plans before schema 1.6.0, and a decode replica) the M/D/1 factor over the
    whole TTFT (:func:`costmodels.load.max_utilization`)."""
    if m.prefill_step is not None:
        return prefill_utilization_cap(m.prefill_step, ttft_s, ttft_p99_s)
    limits = [x for x in (ttft_s, None if ttft_p99_s is None or tail is None else ttft_p99_s - tail.ttft_extra_s)
              if x is not None]
    def cap(limit_s: float) -> float:
        if loop is not None:
            return loop.utilization_cap(limit_s)
        return max_utilization(ttft_s=m.ttft_s, ttft_slo_s=limit_s)

    return min([cal.MAX_PLANNED_UTILIZATION, *(cap(x) for x in limits)])


#: Bisection rounds for a prefill group's utilisation cap: 2**-40 of the cap, far below what plans print.
_CAP_ROUNDS = 40


def prefill_utilization_cap(step: PrefillStep, ttft_s: float | None, ttft_p99_s: float | None) -> float:
    """The highest utilisation, at most ``MAX_PLANNED_UTILIZATION``, at which a prefill replica's
    mean and p99 TTFT (:class:`PrefillStep`, both rising with the load) stay within their limits;
    0 when the prompt alone breaks one. Bisection, so the same inputs give the same cap."""
    def ok(u: float) -> bool:
        return ((ttft_s is None or step.ttft_s(u) <= ttft_s)
                and (ttft_p99_s is None or step.ttft_p99_s(u) <= ttft_p99_s))

    hi = cal.MAX_PLANNED_UTILIZATION
    if ok(hi):
        return hi
    if not ok(0.0):
        return 0.0
    lo = 0.0
    for _ in range(_CAP_ROUNDS):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo


def planned_utilization(m: ReplicaMetrics, tail: TailLatency, role: str, *, ttft_s: float | None,
                        ttft_p99_s: float | None, loop: OpenLoop | None = None) -> float:
    """The utilisation a group is planned at, the share of its capacity a plan sends it: the highest
    at which its queued TTFTs stay within ``ttft_s``/``ttft_p99_s`` (:func:`utilization_cap`); a
    decode replica's TTFT is not its own, so the plain cap. Plans split each kind's traffic in
    proportion to capacity x this, so no group of a kind runs past its own limit."""
    if role == "decode":
        return max_utilization(ttft_s=0.0, ttft_slo_s=None)
    return utilization_cap(m, tail, ttft_s, ttft_p99_s, loop)


def kind_shares(capacity_rps: dict[str, float], planned_rps: dict[str, float], *,
                by_planned: bool = True) -> dict[str, float]:
    """The share of a plan's requests each kind of group takes ('unified', 'prefill', 'decode'; a
    request goes to one unified group, or to one prefill and one decode group): in proportion to each
    kind's planned requests/s (its groups' capacity at their planned utilisation; the pools the smaller
    of prefill's and decode's), so that at any rate up to the plan's planned total no group runs past
    the utilisation its TTFT limits allow. Split by capacity instead (``by_planned`` False, plans before
    schema 1.6.0), a unified group capped at 80 % beside pools at 90 % ran at 82 % under --qps and broke
    its --ttft-ms."""
    src = planned_rps if by_planned else capacity_rps
    unified, pools = src["unified"], min(src["prefill"], src["decode"])
    total = unified + pools
    if total <= 0:
        return {"unified": 0.0, "prefill": 0.0, "decode": 0.0}
    return {"unified": unified / total, "prefill": pools / total, "decode": pools / total}


def group_ttft(m: ReplicaMetrics, tail: TailLatency, utilization: float | None,
               planned: float, loop: OpenLoop | None = None) -> tuple[float, TailLatency]:
    """A plan group's mean TTFT and its p99 figures at ``utilization`` (its share of the plan's
    rate over its capacity), or without a rate at its ``planned`` utilisation, the load the plan's
    throughput counts and its TTFT limits are checked at (:func:`planned_utilization`): a prefill
    group's from its load-dependent step (:class:`PrefillStep`), a unified group's from its
    open-loop queue (``loop``, :class:`OpenLoop`: the figure ``evaluate --qps`` gives at that rate,
    less the HTTP front end's share), without one (plans before schema 1.6.0) the M/D/1 factor over
    its TTFT. One rule for both kinds, so a plan's TTFT is the one its throughput figure implies,
    and a --ttft-ms at that figure keeps the plan (it once showed the unloaded TTFT of a unified
    group while the limit was checked with the queueing of its 90 % load). The plan builder and
    the independent checker both report this."""
    u = utilization if utilization is not None else planned
    if m.prefill_step is not None:
        step = m.prefill_step
        return step.ttft_s(u), TailLatency(tpot_p99_s=0.0, ttft_extra_s=step.ttft_p99_extra_s(u))
    if loop is not None:
        return loop.ttft_s(u * m.requests_per_s), tail
    return ttft_under_load_s(ttft_s=m.ttft_s, utilization=u), tail


def largest_batch_within_slos(model: ModelSpec, gpu: GPUs, s: Strategy, t: Targets, links: Links, max_batch: int,
                              role: str = "unified") -> int:
    """The largest batch meeting every limit, mean and p99 (each grows with the batch), by bisection;
    the largest that fits when no limit applies to the role (a unified replica meets its TTFT limits
    through its queue, :func:`failed_slo`)."""
    tpot_limits = (t.tpot_s, t.tpot_p99_s) if role != "prefill" else ()
    ttft_limits = (t.ttft_s, t.ttft_p99_s) if role == "prefill" else ()
    if all(x is None for x in (*tpot_limits, *ttft_limits)):
        return max_batch

    def ok(b: int) -> bool:
        m = evaluate_replica(model, gpu, s, isl=t.isl, osl=t.osl, batch=b, links=links, role=role)
        return failed_slo(m, _tail(model, gpu, s, t, links, m, role), t, role) is None

    lo, hi = 0, max_batch  # ok(lo) holds (vacuously for 0); find the largest b with ok(b)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def _better(a: ReplicaMetrics, util_a: float, b: ReplicaMetrics, util_b: float, t: Targets) -> bool:
    """Whether batch ``a`` beats batch ``b`` (``util_*``: their utilisation caps under the TTFT limits)."""
    if t.objective == "latency":
        return (a.tpot_s, -a.output_tokens_per_s) < (b.tpot_s, -b.output_tokens_per_s)
    # the traffic each serves at the utilisation its TTFT limits allow, as plans count it (without a
    # rate too: a larger batch whose queue leaves it a smaller share once won on capacity alone); on a
    # tie (a TTFT limit caps both at the same rate, whatever their slots), the lower TPOT: the larger
    # batch's extra capacity cannot be used, and it had won a plan the frontier showed dominated
    ua = a.requests_per_s * util_a
    ub = b.requests_per_s * util_b
    if not math.isclose(ua, ub, rel_tol=_SAME_TRAFFIC):
        return ua > ub
    return (a.tpot_s, a.batch) < (b.tpot_s, b.batch)


#: Served traffic within this share of another's is the same (far below the 0.1 tokens/s plans print).
_SAME_TRAFFIC = 1e-6


#: The step token budgets (``max_num_batched_tokens``; SGLang's ``--chunked-prefill-size``) a
#: prefill pool is priced at (issue 13, item 4). The defaults vLLM and SGLang pick by GPU memory
#: lie in this range (vLLM EngineArgs: 2,048 or 8,192 for the API server; SGLang ServerArgs:
#: 2,048 to 8,192 below 160 GB, 16,384 above). A larger step runs the GEMMs closer to peak
#: (more prompts/s) but a prompt shorter than the step shares it with others (a longer TTFT).
PREFILL_TOKEN_BUDGETS = (2048, 4096, 8192)


@dataclass(frozen=True)
class PrefillChoice:
    """The prefill replica :func:`choose_prefill_budget` picked: its strategy (the token budget
    set), metrics as a replica, the KV transfer in its TTFT and its usable requests/s."""

    strategy: Strategy
    metrics: ReplicaMetrics
    kv_transfer_s: float
    usable_requests_per_s: float


def choose_prefill_budget(model: ModelSpec, gpu: GPUs, s: Strategy, t: Targets, links: Links,
                          kv_link: Link) -> tuple[PrefillChoice | None, list[tuple[int, float, float | None]]]:
    """The prefill replica of this shape at the token budget of :data:`PREFILL_TOKEN_BUDGETS` that
    serves the most requests/s within the TTFT limits (queueing headroom included; ties: the lower
    TTFT, then the smaller budget), or None when no budget fits and meets them; and, for every
    budget that fits, ``(budget, TTFT s, p99 TTFT s or None without a p99 limit)``."""
    xfer = kv_transfer_s(model, s, isl=t.isl, link=kv_link)
    best: PrefillChoice | None = None
    best_key: tuple[float, float, int] | None = None
    seen: list[tuple[int, float, float | None]] = []
    for budget in PREFILL_TOKEN_BUDGETS:
        sb = replace(s, max_num_batched_tokens=budget)
        pm = evaluate_prefill(model, gpu, sb, isl=t.isl, links=links)
        if not pm.fits:
            continue
        m = pm.as_replica(xfer)
        tail = tail_latency(model, gpu, sb, m, isl=t.isl, osl=t.osl, links=links, role="prefill")
        seen.append((budget, m.ttft_s, tail.ttft_p99_s(m.ttft_s) if t.ttft_p99_s is not None else None))
        if failed_slo(m, tail, t, "prefill") is not None:
            continue
        usable = pm.requests_per_s * utilization_cap(m, tail, t.ttft_s, t.ttft_p99_s)
        key = (-usable, m.ttft_s, budget)
        if best_key is None or key < best_key:
            best, best_key = PrefillChoice(sb, m, xfer, usable), key
    return best, seen
