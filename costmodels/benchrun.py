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

    def __call__(self, decode: int, prompt: int, context: float) -> float:
        p = _PROMPT_GRAIN_TOKENS * math.ceil(prompt / _PROMPT_GRAIN_TOKENS) if prompt else 0
        c = _CONTEXT_GRAIN_TOKENS * max(1, round(context / _CONTEXT_GRAIN_TOKENS))
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
class _Request:
    arrival_s: float
    prompt_left: int
    tokens: int = 0  # output tokens so far
    first_s: float = math.nan
    last_s: float = math.nan  # when its last token came


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
    waiting: deque[_Request] = deque()
    running: list[_Request] = []
    t, done = 0.0, []
    gaps: dict[float, int] = {}
    peak = 0
    while arrivals or waiting or running:
        while arrivals and arrivals[0] <= t:
            waiting.append(_Request(arrivals.popleft(), isl))
        while waiting and len(running) < cap:
            running.append(waiting.popleft())
        if not running:
            t = arrivals[0]
            continue
        peak = max(peak, len(running))
        decoding = [r for r in running if r.prompt_left == 0]
        room = max(budget - len(decoding), 0)
        chunks = []
        for r in running:
            if r.prompt_left and room:
                take = min(r.prompt_left, room)
                chunks.append((r, take))
                room -= take
        prompt = sum(n for _, n in chunks)
        context = (sum(isl + r.tokens for r in decoding) / len(decoding)) if decoding else isl
        dt = clock(len(decoding), prompt, context)
        t += dt
        if decoding:
            gaps[dt] = gaps.get(dt, 0) + len(decoding)
        for r in decoding:
            r.tokens += 1
        for r, n in chunks:
            r.prompt_left -= n
            if r.prompt_left == 0:
                r.tokens, r.first_s = 1, t
        finished = [r for r in running if r.tokens >= osl]
        for r in finished:
            r.last_s = t
            done.append(r)
        running = [r for r in running if r.tokens < osl]
    return _summarise(done, requests=requests, rate_per_s=rate_per_s, osl=osl, gaps=gaps, peak=peak,
                      overhead_s=cal.PREFILL_REQUEST_OVERHEAD_S + (cal.ONLINE_REQUEST_OVERHEAD_S if online else 0.0))


def _summarise(done: list[_Request], *, requests: int, rate_per_s: float, osl: int, gaps: dict[float, int],
               peak: int, overhead_s: float) -> BenchmarkRun:
    first = min(r.arrival_s for r in done)
    duration = max(r.last_s for r in done) - first
    ttfts = sorted(r.first_s - r.arrival_s + overhead_s for r in done)
    e2es = [r.last_s - r.arrival_s + overhead_s for r in done]
    tpots = [(r.last_s - r.first_s) / (osl - 1) for r in done] if osl > 1 else [0.0]
    samples = list(gaps.items())
    n_gaps = sum(n for _, n in samples)
    itl_mean = sum(v * n for v, n in samples) / n_gaps if n_gaps else 0.0
    return BenchmarkRun(
        requests=requests, rate_per_s=rate_per_s, duration_s=duration, requests_per_s=requests / duration,
        output_tokens_per_s=requests * osl / duration, ttft_mean_s=sum(ttfts) / len(ttfts),
        ttft_p99_s=ttfts[min(len(ttfts) - 1, math.ceil(0.99 * len(ttfts)) - 1)], itl_mean_s=itl_mean,
        itl_p50_s=_percentile(samples, 0.5), itl_p99_s=_percentile(samples, 0.99),
        tpot_mean_s=sum(tpots) / len(tpots), e2e_mean_s=sum(e2es) / len(e2es), max_in_flight=peak)
