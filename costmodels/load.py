"""A replica under load: at a request rate (queueing), at a fixed concurrency (closed loop), as
a static batch, and the percentiles of its TPOT and TTFT.

:mod:`costmodels.serving` prices one replica at one batch; this module answers what a
benchmark of it reports: mean and p99 TTFT with the queueing wait, ITL from the mix of steps
that carry a prompt chunk and steps that do not, end-to-end latency of a static batch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from costmodels import calibration as cal
from costmodels.comm import send_s
from costmodels.compute import ACT_BYTES
from costmodels.model_spec import ModelSpec
from costmodels.serving import (
    TAIL_QUANTILE,
    ReplicaMetrics,
    effective_strategy,
    evaluate_replica,
    prefill_stage_s,
    replica_memory,
    stage_time,
)
from costmodels.strategy import GPUs, Links, Strategy, stage_gpus, stages


def ttft_under_load_s(*, ttft_s: float, utilization: float) -> float:
    """TTFT with queueing as plans before schema 1.6.0 priced it, and as their check still does: an
    M/D/1 wait in front of the prompt, ``rho / (2 (1 - rho))`` services of a whole TTFT. Newer plans
    and ``evaluate --qps`` use :class:`OpenLoop`.

    >>> round(ttft_under_load_s(ttft_s=0.1, utilization=0.5), 6)
    0.15
    """
    if utilization >= 1:
        return math.inf
    if utilization <= 0:
        return ttft_s
    return ttft_s * (1 + utilization / (2 * (1 - utilization)))


def max_utilization(*, ttft_s: float, ttft_slo_s: float | None) -> float:
    """Highest utilisation at which the queued TTFT stays within ``ttft_slo_s``.

    Inverts :func:`ttft_under_load_s` (plans before schema 1.6.0); capped at ``MAX_PLANNED_UTILIZATION``.

    >>> round(max_utilization(ttft_s=0.1, ttft_slo_s=0.15), 3)
    0.5
    """
    cap = cal.MAX_PLANNED_UTILIZATION
    if ttft_slo_s is None:
        return cap
    if ttft_s > ttft_slo_s:
        return 0.0
    x = ttft_slo_s / ttft_s - 1
    return min(cap, 2 * x / (1 + 2 * x))


@dataclass(frozen=True)
class LoadedMetrics:
    """One replica serving ``rate_per_s`` requests/s (open loop, Poisson-like arrivals)."""

    rate_per_s: float
    batch: int  # sequences in flight on average (Little's law), to the nearest whole one
    utilization: float  # rate / capacity at the largest batch
    ttft_s: float  # queueing and the HTTP front end's share included, as a benchmark client sees it
    tpot_s: float
    requests_per_s: float  # served: min(rate, capacity)
    output_tokens_per_s: float


def md1_wait_s(rho: float, service_s: float) -> float:
    """Mean wait in an M/D/1 queue (Poisson arrivals, fixed service), ``rho service / (2 (1 - rho))``
    (Pollaczek-Khinchine with no service variance); infinite at or past saturation.

    >>> md1_wait_s(0.5, 0.2)
    0.1
    """
    if rho <= 0 or service_s <= 0:
        return 0.0
    return math.inf if rho >= 1 else rho * service_s / (2 * (1 - rho))


def mdc_wait_s(servers: int, offered: float, service_s: float) -> float:
    """Mean wait for one of ``servers`` slots held ``service_s`` each, at ``offered`` = arrival rate x
    ``service_s`` (M/D/c): Erlang C's M/M/c wait halved, the Allen-Cunneen approximation for Poisson
    arrivals (squared coefficient of variation 1) and fixed service (0), a factor (1 + 0) / 2.

    Far from saturation, ``(c - a)**2 > 100 c``, every slot is busy with probability below 2e-22 and the
    wait is 0; nearer, Erlang B is summed from the top, ``1 / sum_j prod_{i<j} (c - i) / a``, stopping
    once a term no longer counts (a few times sqrt(c) terms).

    >>> round(mdc_wait_s(1, 0.5, 1.0), 6)  # one slot: M/D/1, 0.5 / (2 x 0.5)
    0.5
    >>> mdc_wait_s(256, 100.0, 20.0) < 1e-30  # far from saturation nothing waits
    True
    """
    c = servers
    if offered <= 0 or service_s <= 0:
        return 0.0
    if c < 1 or offered >= c:
        return math.inf
    if (c - offered) ** 2 > 100 * c:  # P(all slots busy) <= exp(-(c - a)**2 / 2c) < 2e-22 (Chernoff, Poisson)
        return 0.0
    total, term = 1.0, 1.0
    for j in range(1, c + 1):
        term *= (c - j + 1) / offered
        total += term
        if term < 1e-17 * total:
            break
    erlang_b = 1.0 / total
    erlang_c = c * erlang_b / (c - offered * (1 - erlang_b))
    return 0.5 * erlang_c * service_s / (c - offered)


#: Bisection rounds for a unified replica's utilisation cap: 2**-30 of the rate, below any printed digit.
_RATE_ROUNDS = 30


@lru_cache(maxsize=4096)
def queue_batches(slots: int) -> tuple[int, ...]:
    """The batches an :class:`OpenLoop` prices its replica at, and interpolates between: every batch up
    to 8, then steps of 2**(1/4) (19 %), and the slots. TTFT, latency and TPOT are smooth in the batch
    (affine in the decode tokens of a step), so linear pieces a fifth apart cost far less than a pricing
    per whole batch, which made searches with a binding --ttft-ms 2-3x slower, and one grid serves the
    queues of every batch limit of a shape.

    >>> queue_batches(20)
    (1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 13, 16, 19, 20)
    """
    out, x = [b for b in range(1, min(slots, 8) + 1)], 8.0
    while True:
        x *= 2 ** 0.25
        b = round(x)
        if b >= slots:
            break
        if b > out[-1]:
            out.append(b)
    if slots > out[-1]:
        out.append(slots)
    return tuple(out)


class OpenLoop:
    """One unified replica at ``capacity.batch`` slots (``max_num_seqs``) under Poisson arrivals:
    its mean TTFT as the rate grows, the same figure for ``evaluate --qps``, a plan's groups
    and the TTFT limits of a search.

    At rate r the replica holds on average the number of sequences Little's law gives
    (:meth:`in_flight`: ``n = r x latency(n)``, the latency interpolated between whole batches, so
    the figures move smoothly with the rate), and a prompt waits for three things beyond its own
    prompt steps (``evaluate_replica``'s TTFT at that batch, which holds the wait for the running
    step):

    * the prompts ahead of it: the prefill is an M/D/1 queue per attention-DP group, each prompt
      holding it for :func:`prompt_work_s`, ``rho = r x work / groups`` (:func:`md1_wait_s`);
    * a free slot, once the batch is full: M/D/c over the slots, each held for the request's
      end-to-end latency at that batch (:func:`mdc_wait_s`), nothing until near capacity;
    * nothing else: continuous batching admits a prompt at the next step, so the M/D/1 factor
      over the whole TTFT (each replica one server whose service is a prompt's TTFT) that plans
      used before schema 1.6.0 does not describe it. Against the step-by-step benchmark
      (:func:`costmodels.benchrun.simulate_benchmark`, 72 set-ups at 30-95 % of capacity,
      ``python benchmarks/ttft_wait.py --load``) that factor was 255 % off on average, the same
      factor at the operating point (``evaluate --qps`` before) 131 %, this 13.6 %, low where long
      prompts fill most of the steps near capacity (16,384-token prompts at 95 %: 991 ms against 2,647).

    Neither hold exceeds what the replica's capacity allows per request: a prompt holds its group at
    most ``groups / capacity`` and a slot at most ``slots / capacity`` (where the step cycle turns
    requests over faster than Little's law at the full batch says, as with long prompts under
    attention DP, an end-to-end latency as the slot's hold had put the slots past saturation below
    capacity, an infinite TTFT).
    """

    def __init__(self, model: ModelSpec, gpu: GPUs, s: Strategy, *, isl: int, osl: int, capacity: ReplicaMetrics,
                 links: Links = Links(), priced: dict[int, ReplicaMetrics] | None = None) -> None:
        """``priced``: the replica already priced at other batches (same model, GPU, strategy, links and
        lengths), shared by the queues of one shape's batches, and added to."""
        self.model, self.gpu, self.s, self.isl, self.osl, self.links = model, gpu, s, isl, osl, links
        self.capacity = capacity
        self.slots = capacity.batch
        self._at = priced if priced is not None else {}
        self._at[capacity.batch] = capacity
        self._work: tuple[float, int] | None = None
        self._points: tuple[int, ...] | None = None

    def metrics(self, b: int) -> ReplicaMetrics:
        if b not in self._at:
            self._at[b] = evaluate_replica(self.model, self.gpu, self.s, isl=self.isl, osl=self.osl, batch=b,
                                           links=self.links)
        return self._at[b]

    def _latency_s(self, b: int) -> float:
        m = self.metrics(b)
        return m.ttft_s + max(self.osl - 1, 0) * m.tpot_s

    def rate_of(self, b: int) -> float:
        """The highest rate at which ``b`` sequences in flight suffice (Little's law: ``b`` over a
        request's latency at batch ``b``)."""
        return (b + 1e-9) / self._latency_s(b)

    def points(self) -> tuple[int, ...]:
        """The priced batches (:func:`queue_batches`) each sustaining more than every smaller one, and the
        slots: with short answers a second sequence can sustain less than one (its prompt lands in the
        first's TTFT: Llama-3.1-8B, 2,048 tokens in and 1 out, 20.6 requests/s at batch 1, 15.2 at 2), and a
        bisection over the batches took such a dip for the operating point, TTFT doubling for a 1e-4
        change of the rate. The in-flight batch is interpolated across the batches left out."""
        if self._points is None:
            kept: list[int] = []
            best = 0.0
            for b in queue_batches(self.slots):
                r = self.rate_of(b)
                if r > best or b == self.slots:
                    kept.append(b)
                    best = max(best, r)
            self._points = tuple(kept)
        return self._points

    def _segment(self, rate_per_s: float) -> int:
        """The index in :meth:`points` of the least batch that sustains ``rate_per_s`` (bisection over
        ``rate_of``, which grows along them); the last one (the slots) past it."""
        pts = self.points()
        lo, hi = 0, len(pts) - 1
        while lo < hi:
            mid = (lo + hi) // 2
            if rate_per_s <= self.rate_of(pts[mid]):
                hi = mid
            else:
                lo = mid + 1
        return lo

    def batch_at(self, rate_per_s: float) -> int:
        """The priced batch (:meth:`points`) the replica reaches at ``rate_per_s``: the least that
        sustains it, at most the slots."""
        return self.points()[self._segment(rate_per_s)]

    def in_flight(self, rate_per_s: float) -> tuple[float, float, float, float]:
        """(sequences in flight on average, TTFT there without the queues, end-to-end latency, TPOT) at
        ``rate_per_s``: ``n = rate x latency(n)`` with TTFT, latency and TPOT linear between the priced
        batches around ``n`` (:func:`queue_batches`; below one sequence, a lone request's: the replica
        is idle the rest of the time). The whole batch alone made TTFT jump at each step of the batch
        (from 1 to 2 sequences it adds the wait for the running step), so a cap on a step's edge broke
        its limit a rate rounded up by 1e-4 later."""
        pts = self.points()
        i = self._segment(rate_per_s)
        b, a = pts[i], (pts[i - 1] if i else 0)
        lo, hi = self.metrics(max(a, 1)), self.metrics(b)
        lo_lat, hi_lat = self._latency_s(max(a, 1)), self._latency_s(b)
        room = (b - a) - rate_per_s * (hi_lat - lo_lat)
        f = (rate_per_s * lo_lat - a) / room if room > 0 else 1.0
        f = min(max(f, 0.0), 1.0)
        return (a + f * (b - a), lo.ttft_s + f * (hi.ttft_s - lo.ttft_s), lo_lat + f * (hi_lat - lo_lat),
                lo.tpot_s + f * (hi.tpot_s - lo.tpot_s))

    def _prompt_work(self) -> tuple[float, int]:
        if self._work is None:
            run = effective_strategy(self.model, self.gpu, self.s, isl=self.isl, osl=self.osl)
            self._work = (prompt_work_s(self.model, self.gpu, run, isl=self.isl, links=self.links), run.attention_dp)
        return self._work

    def _waits_s(self, rate_per_s: float, latency_s: float) -> float:
        """The prompt queue's and the slot queue's mean waits at ``rate_per_s`` (see the class)."""
        rps = self.capacity.requests_per_s
        work, groups = self._prompt_work()
        work = min(work, groups / rps)
        hold = min(latency_s, self.slots / rps)
        return md1_wait_s(rate_per_s * work / groups, work) + mdc_wait_s(self.slots, rate_per_s * hold, hold)

    def ttft_s(self, rate_per_s: float) -> float:
        """Mean TTFT at ``rate_per_s``, the engine's (no HTTP front end); infinite at or past capacity."""
        if self.slots < 1 or rate_per_s >= self.capacity.requests_per_s:
            return math.inf
        if rate_per_s <= 0:
            return self.metrics(1).ttft_s
        _, ttft, latency, _ = self.in_flight(rate_per_s)
        return ttft + self._waits_s(rate_per_s, latency)

    def ttft_bound_s(self, rate_per_s: float) -> float:
        """An upper bound on :meth:`ttft_s` from the replica at its full batch alone (TTFT and latency
        grow with the batch, ``tests/test_latency_properties.py``): a search skips the fixed point
        with it wherever a limit is far off."""
        if self.slots < 1 or rate_per_s >= self.capacity.requests_per_s:
            return math.inf
        return self.capacity.ttft_s + self._waits_s(rate_per_s, self._latency_s(self.slots))

    def utilization_cap(self, limit_s: float) -> float:
        """The highest utilisation, at most ``MAX_PLANNED_UTILIZATION``, at which :meth:`ttft_s`
        stays within ``limit_s``; 0 when a lone prompt breaks it. The priced batch where the limit
        is crossed is found first (bisection over :func:`queue_batches`: a few replica pricings), then
        the rate within that batch's range (no more pricing), so the TTFT a plan prints at this
        utilisation is within the limit."""
        top = cal.MAX_PLANNED_UTILIZATION
        rps = self.capacity.requests_per_s
        if rps <= 0 or self.slots < 1:
            return 0.0
        top_rate = top * rps
        if self.ttft_bound_s(top_rate) <= limit_s or self.ttft_s(top_rate) <= limit_s:
            return top
        if self.ttft_s(0.0) > limit_s:
            return 0.0
        pts = self.points()
        lo_i, hi_i = 0, self._segment(top_rate)  # the first priced batch whose range ends past the limit
        while lo_i < hi_i:
            mid_i = (lo_i + hi_i) // 2
            if self.ttft_s(min(self.rate_of(pts[mid_i]), top_rate)) > limit_s:
                hi_i = mid_i
            else:
                lo_i = mid_i + 1
        lo = self.rate_of(pts[lo_i - 1]) if lo_i else 0.0
        hi = min(self.rate_of(pts[lo_i]), top_rate)
        if not self.ttft_s(lo) <= limit_s:  # TTFT not monotone in the batch here: search the whole range
            lo, hi = 0.0, top_rate
        for _ in range(_RATE_ROUNDS):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if self.ttft_s(mid) <= limit_s else (lo, mid)
        u = lo / rps
        while u > 0 and not self.ttft_s(u * rps) <= limit_s:  # the division rounded past an edge
            u = math.nextafter(u, 0.0)
        return u


def serve_at_rate(model: ModelSpec, gpu: GPUs, s: Strategy, *, isl: int, osl: int, rate_per_s: float,
                  links: Links = Links(), capacity: ReplicaMetrics | None = None) -> LoadedMetrics:
    """Predict a replica at a request rate (:class:`OpenLoop`): the in-flight batch the rate
    sustains, its TPOT, and TTFT with the prompt queue, the wait for a slot and the HTTP front
    end (``ONLINE_REQUEST_OVERHEAD_S``). ``capacity``: the replica at its batch limit
    (``max_num_seqs``; default the largest batch that fits). At or above capacity the queue has
    no steady state: TTFT is infinite and the replica serves its capacity.
    """
    cap = capacity or evaluate_replica(model, gpu, s, isl=isl, osl=osl, links=links)
    if cap.max_batch < 1 or cap.batch < 1 or cap.requests_per_s <= 0:
        return LoadedMetrics(rate_per_s, 0, math.inf, math.inf, math.inf, 0.0, 0.0)
    util = rate_per_s / cap.requests_per_s
    if util >= 1:
        return LoadedMetrics(rate_per_s, cap.batch, util, math.inf, cap.tpot_s, cap.requests_per_s,
                             cap.output_tokens_per_s)
    loop = OpenLoop(model, gpu, s, isl=isl, osl=osl, capacity=cap, links=links)
    n, _, _, tpot = loop.in_flight(rate_per_s)
    return LoadedMetrics(rate_per_s=rate_per_s, batch=max(1, round(n)), utilization=util,
                         ttft_s=loop.ttft_s(rate_per_s) + cal.ONLINE_REQUEST_OVERHEAD_S,
                         tpot_s=tpot,
                         requests_per_s=rate_per_s, output_tokens_per_s=rate_per_s * osl)


@dataclass(frozen=True)
class ClosedLoopMetrics:
    """One replica under a closed loop: ``concurrency`` clients, each sending its next request
    when the last one finished (benchmark_serving's ``--max-concurrency``, genai-perf's
    ``--concurrency``)."""

    concurrency: int
    batch: int  # sequences the replica runs at once: the concurrency, or the largest batch that fits
    ttft_s: float  # the wait for a free slot when the clients outnumber the slots, included
    tpot_s: float  # (end-to-end - TTFT) / (output tokens - 1), as benchmarks define it
    e2e_s: float  # TTFT + (osl - 1) x TPOT
    requests_per_s: float
    output_tokens_per_s: float
    ttft_p99_s: float  # the wait for the running step at its p99 instead of its mean
    itl_p50_s: float  # from the mix of steps (``step_mix``)
    itl_p99_s: float


@dataclass(frozen=True)
class StepMix:
    """The two kinds of steps a request sees while it decodes at batch b under chunked prefill:
    decode-only steps, and steps that also carry a prompt chunk of another request."""

    decode_s: float
    with_chunk_s: float
    chunk_share: float  # share of the request's decode steps that carry a prompt chunk

    def percentile_s(self, q: float) -> float:
        """The q-th quantile (0-1) of the inter-token latency: a chunk step once more than 1 - q
        of the steps carry one."""
        return self.with_chunk_s if self.chunk_share > 1 - q else self.decode_s


def step_mix(model: ModelSpec, gpu: GPUs, s: Strategy, *, isl: int, osl: int, batch: int,
             links: Links = Links()) -> StepMix:
    """The step times behind ITL percentiles at batch ``batch``: the other ``batch - 1`` requests
    each bring ``isl`` prompt tokens per ``osl`` steps, in chunks of ``min(isl, budget)``; a step
    carries one such chunk with probability ``(batch - 1) isl / osl / chunk`` (at most 1)."""
    s = effective_strategy(model, gpu, s, isl=isl, osl=osl)  # the token budget evaluate_replica priced
    gpus = stage_gpus(gpu, s.pp)
    sts = stages(model, s)
    micro = min(s.pp, batch)
    per_micro = batch / micro
    chunk = min(isl, s.max_num_batched_tokens)

    def stage_s(prefill: float) -> float:
        return s.pp * max(stage_time(model, g, s, st, links, prefill_tokens=prefill, prefill_context=isl / 2,
                                      decode_tokens=per_micro, decode_context=isl + osl / 2).total_s
                          for g, st in zip(gpus, sts, strict=True))

    share = min(1.0, (batch - 1) / micro * isl / max(osl, 1) / chunk)
    return StepMix(decode_s=stage_s(0.0), with_chunk_s=stage_s(chunk * s.attention_dp), chunk_share=share)


def serve_at_concurrency(model: ModelSpec, gpu: GPUs, s: Strategy, *, isl: int, osl: int, concurrency: int,
                         links: Links = Links()) -> ClosedLoopMetrics:
    """Predict a replica at a fixed concurrency, from 1 upward.

    The replica runs ``b = min(concurrency, largest batch that fits)`` requests at once. Each
    request's TTFT is its prompt in the step it joins (``evaluate_replica``'s TTFT at batch b)
    plus its wait behind the other clients' prompts (:func:`prompt_queue_s`), its TPOT the steady
    step at batch b with the other requests' prompts mixed in, so one request alone pays its
    prompt once before decoding and never in TPOT. A request finishes after TTFT + (osl - 1)
    TPOT, so the replica completes b / e2e requests per second (Little's law); clients beyond the
    b slots wait their turn, ``(concurrency - b) / throughput`` on average, which shows up in TTFT
    as it does in a closed-loop benchmark.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    full = evaluate_replica(model, gpu, s, isl=isl, osl=osl, links=links)
    b = min(concurrency, max(full.max_batch, 0))
    if b < 1:
        inf = math.inf
        return ClosedLoopMetrics(concurrency, 0, inf, inf, inf, 0.0, 0.0, inf, inf, inf)
    m = evaluate_replica(model, gpu, s, isl=isl, osl=osl, batch=b, links=links)
    unqueued_s = m.ttft_s + max(osl - 1, 0) * m.tpot_s
    run = effective_strategy(model, gpu, s, isl=isl, osl=osl)  # the token budget evaluate_replica priced
    queue = prompt_queue_s(prompt_work_s(model, gpu, run, isl=isl, links=links), clients=b, unqueued_s=unqueued_s,
                           servers=run.attention_dp)
    if full.requests_per_s > 0:  # never faster than the engine's steady state at its largest batch (the
        # prompt work above gives prompts the whole token budget, which the decodes share: up to 2 % over)
        queue = max(queue, b / full.requests_per_s - unqueued_s)
    rate = b / (unqueued_s + queue)
    wait = (concurrency - b) / rate
    ttft = m.ttft_s + queue + wait
    mix = step_mix(model, gpu, s, isl=isl, osl=osl, batch=b, links=links)
    return ClosedLoopMetrics(concurrency=concurrency, batch=b, ttft_s=ttft, tpot_s=m.tpot_s,
                             e2e_s=ttft + max(osl - 1, 0) * m.tpot_s, requests_per_s=rate,
                             output_tokens_per_s=rate * osl, ttft_p99_s=ttft + m.ttft_p99_extra_s,
                             itl_p50_s=mix.percentile_s(0.5), itl_p99_s=mix.percentile_s(0.99))


def prompt_work_s(model: ModelSpec, gpu: GPUs, s: Strategy, *, isl: int, links: Links = Links()) -> float:
    """The time one prompt's prefill holds its server, an attention-DP group of the slowest stage
    (the stages overlap on successive prompts): its ``isl`` tokens at the cost per token of a step
    full of prompt tokens (``max_num_batched_tokens`` per group), decodes left out (they run
    anyway). Short prompts share a step, so a short one costs its share of a full step, not a
    weight read of its own; a long one runs in budget-sized chunks at that same cost per token."""
    budget = s.max_num_batched_tokens
    full = max(prefill_stage_s(model, s, links, stage_gpus(gpu, s.pp), stages(model, s),
                               tokens=budget * s.attention_dp, context=isl / 2))
    return full * isl / budget


#: Bisection rounds for the closed loop's prompt queue: 2**-60 of its bracket, below any printed digit.
_QUEUE_ROUNDS = 60


def prompt_queue_s(work_s: float, *, clients: int, unqueued_s: float, servers: int = 1) -> float:
    """A prompt's mean wait behind the other clients' prompts in a closed loop, beyond the one
    running step every prompt waits for (:func:`costmodels.serving.evaluate_replica`'s TTFT).

    The prompts queue for the prefill (``work_s`` each, :func:`prompt_work_s`), one queue per
    attention-DP group (``servers``, the prompts spread evenly). The other ``clients - 1`` send
    theirs at ``lambda = (clients - 1) / e2e`` together, so ``rho = lambda x work_s / servers`` of
    the time a group's prefill is busy. Queued as M/D/1, a prompt waits ``rho work_s / (2 (1 - rho))``
    (:func:`md1_wait_s`, as under an open loop, :class:`OpenLoop`): the rest of the prompt in service is
    waited for on top of the running step, which a prompt spanning several chunks outlasts (the
    residual was once taken as inside the running step, ``rho**2 work_s / (2 (1 - rho))``: NIM's
    closed loops, where TTFT runs low, 42.7 % TTFT MAPE against 41.5 % now; under an open loop, 19.2 %
    against 13.5 % from the step-by-step benchmark, ``benchmarks/ttft_wait.py --load``). The wait
    lengthens e2e, which lowers lambda: the wait
    is the fixed point, found by bisection (the wait minus its M/D/1 value rises with it, and at
    ``clients x work_s``, every other prompt ahead, it is positive). One client never waits.

    >>> prompt_queue_s(0.4, clients=1, unqueued_s=10.0)
    0.0
    >>> round(prompt_queue_s(0.4, clients=50, unqueued_s=33.0), 3)  # rho about 0.59
    0.286
    """
    if clients <= 1 or work_s <= 0:
        return 0.0

    def excess(w: float) -> float:
        rho = (clients - 1) * work_s / servers / (unqueued_s + w)
        return w - md1_wait_s(rho, work_s)

    lo, hi = 0.0, clients * work_s
    for _ in range(_QUEUE_ROUNDS):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if excess(mid) < 0 else (lo, mid)
    return hi


@dataclass(frozen=True)
class StaticBatchMetrics:
    """A static batch: ``batch`` requests prefilled together in one pass, then decoded together
    (TensorRT-LLM's gptSessionBenchmark, LMDeploy's profile_generation, NeMo's inference
    benchmark): no in-flight batching, no chunking."""

    batch: int
    fits: bool
    ttft_s: float  # the whole batch's prompts in one pass
    tpot_s: float  # one decode step of the batch (every step alike: p50 = p99 = mean)
    e2e_s: float  # TTFT + (osl - 1) x TPOT
    output_tokens_per_s: float
    requests_per_s: float


def static_batch(model: ModelSpec, gpu: GPUs, s: Strategy, *, isl: int, osl: int, batch: int,
                 links: Links = Links()) -> StaticBatchMetrics:
    """Predict a static batch: one prefill pass of ``batch x isl`` tokens through the pipeline,
    then ``osl - 1`` decode steps at the batch, attending on average to ``isl + osl / 2`` tokens."""
    gpus = stage_gpus(gpu, s.pp)
    sts = stages(model, s)
    mems = replica_memory(model, gpu, s, batch=batch, context=isl + osl)
    fits = all(m.fits for m in mems)
    prompt = batch * isl
    pre = prefill_stage_s(model, s, links, gpus, sts, tokens=prompt, context=isl / 2)
    pre_send = send_s(message_bytes=prompt * model.hidden * ACT_BYTES / s.tp, link=links.pp) if s.pp > 1 else 0.0
    ttft = sum(pre) + (s.pp - 1) * pre_send + cal.PREFILL_REQUEST_OVERHEAD_S
    micro = min(s.pp, batch)
    dec = [stage_time(model, g, s, st, links, prefill_tokens=0, prefill_context=0, decode_tokens=batch / micro,
                       decode_context=isl + osl / 2).total_s for g, st in zip(gpus, sts, strict=True)]
    dec_send = send_s(message_bytes=batch / micro * model.hidden * ACT_BYTES / s.tp, link=links.pp) if s.pp > 1 else 0.0
    tpot = s.pp * (max(dec) + dec_send)
    e2e = ttft + max(osl - 1, 0) * tpot
    return StaticBatchMetrics(batch=batch, fits=fits, ttft_s=ttft, tpot_s=tpot, e2e_s=e2e,
                              output_tokens_per_s=batch * osl / e2e, requests_per_s=batch / e2e)



@dataclass(frozen=True)
class TailLatency:
    """p99 TPOT and the unloaded p99 TTFT of one replica at its batch, and the extra wait the
    p99 TTFT carries over the mean (add it to the mean TTFT, queued or not)."""

    tpot_p99_s: float  # 0 for a prefill-only replica
    ttft_extra_s: float  # p99 TTFT - mean TTFT, before queueing

    def ttft_p99_s(self, ttft_mean_s: float) -> float:
        return ttft_mean_s + self.ttft_extra_s


def tail_latency(model: ModelSpec, gpu: GPUs, s: Strategy, m: ReplicaMetrics, *, isl: int, osl: int,
                 links: Links = Links(), role: str = "unified", utilization: float = 0.0) -> TailLatency:
    """p99 TPOT and TTFT of a replica whose mean figures are ``m`` (from :func:`evaluate_replica`
    at ``m.batch``, or a prefill replica's metrics).

    TPOT p99 is the larger of the mean TPOT and the 0.99 quantile of the step mix
    (:func:`step_mix`): benchmarks' TPOT percentiles are over requests' own averages, never
    below the mean, and their ITL p99 is the step a prompt chunk lands on once chunk steps
    are more than 1 % of the steps. A decode-only replica's steps carry no chunks.

    TTFT p99: the wait for the step running when a prompt arrives at its p99 in place of its
    mean (``m.wait_p99_s`` and ``m.wait_s``, :meth:`costmodels.serving._SteadySteps.wait_s`: a
    prompt arriving just after a chunk-carrying step began waits nearly all of it once such
    steps fill more than 1 % of the time; at batch 1 nothing runs, so nothing is waited for). A prefill
    replica's mean counts half of the step its load sets, when one runs (``m.prefill_step``, at
    ``utilization``; :class:`costmodels.prefill.PrefillStep`), its p99 that wait's own quantile; its mean takes no
    M/D/1 factor (the step wait is its queue). For a unified replica under load the p99 is the queued
    mean (:class:`OpenLoop`) plus this extra; the tail of the queueing wait itself is not modelled, so
    the p99 is optimistic under heavy load.
    """
    if role == "prefill":
        step = m.prefill_step
        return TailLatency(tpot_p99_s=0.0, ttft_extra_s=step.ttft_p99_extra_s(utilization) if step is not None else 0.0)
    if role == "decode":
        return TailLatency(tpot_p99_s=m.tpot_s, ttft_extra_s=0.0)
    s = effective_strategy(model, gpu, s, isl=isl, osl=osl)  # the token budget evaluate_replica priced
    mix = step_mix(model, gpu, s, isl=isl, osl=osl, batch=m.batch, links=links)
    return TailLatency(tpot_p99_s=max(m.tpot_s, mix.percentile_s(TAIL_QUANTILE)),
                       ttft_extra_s=m.ttft_p99_extra_s)
