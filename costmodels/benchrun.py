"""A serving benchmark as it is run: a finite set of requests through an in-flight batching server.

Published online-serving figures come from a benchmark that sends a fixed number of
requests (TensorRT-LLM's perf overview: 500) at a request rate, Poisson arrivals or all at
once ("INF"), and reports averages over that run: requests/s as requests over the wall time
from the first arrival to the last completion, mean TTFT, mean inter-token latency. The
steady-state model of :mod:`costmodels.serving` is the limit of many requests; near or above
the server's capacity a finite run never reaches it: the queue grows only for as long as
requests arrive, the last requests drain at a shrinking batch, and all-at-once runs hold as
many requests in flight as the KV cache admits. This module runs that benchmark step by step
on the same step-time model, so those rows have a prediction rather than "no steady state".

The scheduler is the one the runtimes share (vLLM's and TensorRT-LLM's in-flight batching):

* first come, first served; a request is admitted while the batch is below the largest
  batch whose full-length KV cache fits (TensorRT-LLM's guaranteed-no-evict reservation,
  ``serving.max_batch_size``);
* each step carries one decode token per admitted request past its prompt, then prompt
  tokens of admitted requests, oldest first, up to the step's token budget
  (``max_num_batched_tokens``; chunked prefill);
* a request's first token comes at the end of the step that finishes its prompt; each later
  step gives it one more token.

The step time is :func:`costmodels.compute.stage_step_time` for the step's decode and prompt
tokens, as everywhere else in the planner. Arrivals are Poisson from a fixed seed, so the
same inputs give the same figures.
"""
from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass

from costmodels import calibration as cal
from costmodels.comm import send_s
from costmodels.compute import ACT_BYTES
from costmodels.model_spec import ModelSpec
from costmodels.serving import effective_strategy, max_batch_size, stage_time
from costmodels.strategy import GPUs, Links, Strategy, stage_gpus, stages

#: Prompt tokens and attended context are rounded to these grains to reuse step times; a
#: step's time changes by well under 1 % within a grain at the sizes that matter.
_PROMPT_GRAIN_TOKENS = 32
_CONTEXT_GRAIN_TOKENS = 128

#: Seed of the Poisson arrivals: fixed, so a benchmark row always gets the same prediction.
ARRIVAL_SEED = 20241029


@dataclass(frozen=True)
class BenchmarkRun:
    """Averages over one finite benchmark run, as serving benchmarks report them."""

    requests: int
    rate_per_s: float  # math.inf: every request sent at time 0
    duration_s: float  # first arrival to last completion
    requests_per_s: float  # requests / duration
    output_tokens_per_s: float
    ttft_mean_s: float
    ttft_p99_s: float
    itl_mean_s: float  # every inter-token gap of every request, averaged
    itl_p50_s: float
    itl_p99_s: float
    tpot_mean_s: float  # per request (end-to-end - TTFT) / (output tokens - 1), averaged
    e2e_mean_s: float
    max_in_flight: int  # the largest batch the run reached


def arrival_times_s(n: int, rate_per_s: float, seed: int = ARRIVAL_SEED) -> list[float]:
    """``n`` Poisson arrival times at ``rate_per_s`` (all at 0 for an infinite rate)."""
    if math.isinf(rate_per_s):
        return [0.0] * n
    rng = random.Random(seed)
    t, out = 0.0, []
    for _ in range(n):
        out.append(t)
        t += rng.expovariate(rate_per_s)
    return out


class _StepClock:
    """Step time for (decode tokens, prompt tokens, attended context), cached on a grid."""

    def __init__(self, model: ModelSpec, gpu: GPUs, s: Strategy, links: Links, isl: int) -> None:
        self.model, self.s, self.links, self.isl = model, s, links, isl
        self.gpus, self.sts = stage_gpus(gpu, s.pp), stages(model, s)
        self.cache: dict[tuple[int, int, int], float] = {}

    @staticmethod
    def context_grain(context: float) -> int:
        """The grid point a step's mean attended context is priced at."""
        return _CONTEXT_GRAIN_TOKENS * max(1, round(context / _CONTEXT_GRAIN_TOKENS))

    @staticmethod
    def steps_in_grain(context: float) -> int:
        """About how many steps, the context growing by one token a step, stay on this grid point:
        the tokens left below the next half grain (rounding there goes either way, so the caller
        checks the last step it takes against :meth:`context_grain`)."""
        edge = (round(context / _CONTEXT_GRAIN_TOKENS) + 0.5) * _CONTEXT_GRAIN_TOKENS
        return max(1, math.floor(edge - context))

    def __call__(self, decode: int, prompt: int, context: float) -> float:
        p = _PROMPT_GRAIN_TOKENS * math.ceil(prompt / _PROMPT_GRAIN_TOKENS) if prompt else 0
        c = self.context_grain(context)
        key = (decode, p, c)
        if key not in self.cache:
            self.cache[key] = self._time(decode, p, c)
        return self.cache[key]

    def _time(self, decode: int, prompt: int, context: int) -> float:
        s = self.s
        micro = max(1, min(s.pp, decode + (1 if prompt else 0)))
        slowest = max(stage_time(self.model, g, s, st, self.links, prefill_tokens=prompt / micro,
                                  prefill_context=self.isl / 2, decode_tokens=decode / micro,
                                  decode_context=context).total_s
                      for g, st in zip(self.gpus, self.sts, strict=True))
        send = send_s(message_bytes=(decode + prompt) / micro * self.model.hidden * ACT_BYTES / s.tp,
                      link=self.links.pp) if s.pp > 1 else 0.0
        # Under pipeline parallelism the micro-batches keep every stage busy: a step of the
        # whole batch takes pp stage-steps, as in serving.evaluate_replica.
        return s.pp * (slowest + send) if s.pp > 1 else slowest


@dataclass
class _Cohort:
    """``n`` requests in the same state: they arrived together and were scheduled alike, so they
    move through the run as one (an all-at-once run of thousands of requests is a handful of
    cohorts; Poisson arrivals make every request its own)."""

    n: int
    arrival_s: float
    prompt_left: int  # each request's
    first_s: float = math.nan
    last_s: float = math.nan  # when its last token came
    last_step: int = 0  # decoding: the engine step that gives its last token

    def split(self, n: int) -> _Cohort:
        """Take ``n`` of the requests off into a cohort of their own (same state)."""
        self.n -= n
        return _Cohort(n, self.arrival_s, self.prompt_left, self.first_s, self.last_s, self.last_step)


def _percentile(samples: list[tuple[float, int]], q: float) -> float:
    """The q-quantile of values given as (value, count) pairs."""
    total = sum(n for _, n in samples)
    if total == 0:
        return 0.0
    want, seen = q * total, 0
    for v, n in sorted(samples):
        seen += n
        if seen >= want:
            return v
    return sorted(samples)[-1][0]


def simulate_benchmark(model: ModelSpec, gpu: GPUs, s: Strategy, *, isl: int, osl: int, requests: int,
                       rate_per_s: float, links: Links = Links(), online: bool = True) -> BenchmarkRun:
    """Run ``requests`` requests of ``isl`` prompt and ``osl`` output tokens at ``rate_per_s``
    through one replica and report what a serving benchmark reports. Each TTFT carries the
    engine's per-request cost (``PREFILL_REQUEST_OVERHEAD_S``) and, ``online``, the HTTP
    server's (``ONLINE_REQUEST_OVERHEAD_S``), as ``load.serve_at_rate`` prices them."""
    if requests < 1 or isl < 1 or osl < 1:
        raise ValueError("requests, isl and osl must be at least 1")
    s = effective_strategy(model, gpu, s, isl=isl, osl=osl)
    cap = max_batch_size(model, gpu, s, context=isl + osl)
    if cap < 1:
        raise ValueError("not even one full-length request fits")
    budget = s.max_num_batched_tokens * s.attention_dp
    clock = _StepClock(model, gpu, s, links, isl)
    arrivals = deque(arrival_times_s(requests, rate_per_s))
    waiting: deque[_Cohort] = deque()
    # Admitted requests still in their prompt, in admission order (prompt tokens go to the oldest
    # first), and those decoding, in the order they will finish (all have the same output length).
    prompting: list[_Cohort] = []
    decoding: deque[_Cohort] = deque()
    n_decode = context_sum = 0  # decoding requests, and the sum of their attended contexts
    in_flight, step, t, done = 0, 0, 0.0, []
    gaps: dict[float, int] = {}
    peak = 0
    while arrivals or waiting or in_flight:
        while arrivals and arrivals[0] <= t:
            arrived = arrivals.popleft()
            if waiting and waiting[-1].arrival_s == arrived:
                waiting[-1].n += 1
            else:
                waiting.append(_Cohort(1, arrived, isl))
        while waiting and in_flight < cap:
            head = waiting[0]
            take = min(head.n, cap - in_flight)
            prompting.append(head.split(take) if take < head.n else waiting.popleft())
            in_flight += take
        if not in_flight:
            t = arrivals[0]
            continue
        peak = max(peak, in_flight)
        room = max(budget - n_decode, 0)
        chunks: list[tuple[_Cohort, int]] = []  # (cohort, prompt tokens each of its requests gets)
        if room:
            order: list[_Cohort] = []
            for c in prompting:
                if room and c.n * c.prompt_left <= room:
                    chunks.append((c, c.prompt_left))
                    room -= c.n * c.prompt_left
                elif room:  # the budget ends inside this cohort: whole prompts, one part, the rest none
                    whole, part = divmod(room, c.prompt_left)
                    if whole:
                        w = c.split(whole)
                        chunks.append((w, w.prompt_left))
                        order.append(w)
                    if part:
                        p = c.split(1)
                        chunks.append((p, part))
                        order.append(p)
                    room = 0
                order.append(c)
            prompting = order
        prompt = sum(c.n * take for c, take in chunks)
        context = context_sum / n_decode if n_decode else isl
        dt = clock(n_decode, prompt, context)
        # Steps of decoding alone repeat this one until a request finishes or the attended
        # context reaches the next grain of the step-time grid: take them together.
        same = 1
        if not prompting and not arrivals and n_decode:
            same = decoding[0].last_step - step
            grain = clock.context_grain(context)
            while same > 1 and clock.context_grain(context + same - 1) != grain:
                same = min(same - 1, clock.steps_in_grain(context))
        for _ in range(same):
            t += dt
        step += same
        if n_decode:
            gaps[dt] = gaps.get(dt, 0) + same * n_decode
            context_sum += same * n_decode  # each decoding request has one more token a step
            while decoding and decoding[0].last_step <= step:
                c = decoding.popleft()
                c.last_s = t
                done.append(c)
                in_flight -= c.n
                n_decode -= c.n
                context_sum -= c.n * (isl + osl)  # its context at its last token
        for c, take in chunks:
            c.prompt_left -= take
            if c.prompt_left == 0:
                c.first_s = t
                if osl <= 1:
                    c.last_s = t
                    done.append(c)
                    in_flight -= c.n
                else:  # one token now, one per step from the next on
                    c.last_step = step + osl - 1
                    decoding.append(c)
                    n_decode += c.n
                    context_sum += c.n * (isl + 1)
        if chunks:
            prompting = [c for c in prompting if c.prompt_left and c.n]
    return _summarise(done, requests=requests, rate_per_s=rate_per_s, osl=osl, gaps=gaps, peak=peak,
                      overhead_s=cal.PREFILL_REQUEST_OVERHEAD_S + (cal.ONLINE_REQUEST_OVERHEAD_S if online else 0.0))


def _summarise(done: list[_Cohort], *, requests: int, rate_per_s: float, osl: int, gaps: dict[float, int],
               peak: int, overhead_s: float) -> BenchmarkRun:
    first = min(c.arrival_s for c in done)
    duration = max(c.last_s for c in done) - first
    ttfts = sorted((c.first_s - c.arrival_s + overhead_s, c.n) for c in done)
    n_done = sum(c.n for c in done)
    e2e_sum = sum(c.n * (c.last_s - c.arrival_s + overhead_s) for c in done)
    tpot_sum = sum(c.n * (c.last_s - c.first_s) / (osl - 1) for c in done) if osl > 1 else 0.0
    samples = list(gaps.items())
    n_gaps = sum(n for _, n in samples)
    itl_mean = sum(v * n for v, n in samples) / n_gaps if n_gaps else 0.0
    return BenchmarkRun(
        requests=requests, rate_per_s=rate_per_s, duration_s=duration, requests_per_s=requests / duration,
        output_tokens_per_s=requests * osl / duration, ttft_mean_s=sum(v * n for v, n in ttfts) / n_done,
        ttft_p99_s=_nth(ttfts, min(n_done - 1, math.ceil(0.99 * n_done) - 1)), itl_mean_s=itl_mean,
        itl_p50_s=_percentile(samples, 0.5), itl_p99_s=_percentile(samples, 0.99),
        tpot_mean_s=tpot_sum / n_done, e2e_mean_s=e2e_sum / n_done, max_in_flight=peak)


def _nth(sorted_counts: list[tuple[float, int]], k: int) -> float:
    """The value at 0-based position ``k`` of the sorted list the (value, count) pairs stand for."""
    seen = 0
    for v, n in sorted_counts:
        seen += n
        if seen > k:
            return v
    return sorted_counts[-1][0]
