"""A prefill-only replica of a disaggregated deployment: its step and TTFT by load, its
prompts/s, and the KV cache it sends to the decode pool.

Under a rate the scheduler fills each step with the prompts waiting, up to the token budget,
so a prefill replica's TTFT rises with its load (:class:`PrefillStep`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

from costmodels import calibration as cal
from costmodels.comm import send_s
from costmodels.compute import ACT_BYTES, steps_for_tokens
from costmodels.memory import (
    MemoryBreakdown,
    kv_bytes_per_token_per_gpu,
)
from costmodels.model_spec import ModelSpec
from costmodels.serving import TAIL_QUANTILE, ReplicaMetrics, prefill_stage_s, replica_memory
from costmodels.strategy import GPUs, Links, Strategy, stage_gpus, stages
from topologies.graph import Link


@dataclass(frozen=True)
class PrefillStep:
    """A prefill replica's step as its load sets it, and a prompt's TTFT at that load.

    The scheduler runs a step with the prompt tokens waiting when it starts (up to the budget),
    so at a rate of ``lambda`` prompt tokens/s a step carries the tokens that arrived during the
    step before: ``n = lambda * T(n)``, capped at the budget ``B``, where ``T(n)`` is the
    stage-step (slowest stage and its send) for ``n`` prompt tokens. ``T`` is interpolated
    linearly between the priced points of ``tokens`` (an all but empty step of one token per
    attention group, its fixed cost: the weights read, the collectives; a prompt's own chunk
    alone; the full budget). Utilisation ``u`` is the rate over the capacity ``B / T(B)``; the token
    counts are per replica step (every attention-DP group's)."""

    tokens: tuple[float, ...]  # priced step sizes, ascending: one token a group, the own chunk, the budget
    stage_step_s: tuple[float, ...]  # T(n): the slowest stage plus its send, a step leaving every stage
    through_s: tuple[float, ...]  # the same step through every stage (the pipeline fill)
    own_tokens: float  # the prompt's first chunk (the whole prompt when it fits the budget)
    chunks: int  # the prompt's chunks; those after the first run in full-budget steps
    overhead_s: float  # fixed per-request cost (calibration.PREFILL_REQUEST_OVERHEAD_S)
    kv_transfer_s: float = 0.0  # sending the KV cache to the decode pool (set by the caller)

    def _at(self, ys: tuple[float, ...], n: float) -> float:
        xs = self.tokens
        if len(xs) == 1:
            return ys[0]
        for i in range(1, len(xs)):
            if n <= xs[i] or i == len(xs) - 1:
                f = (n - xs[i - 1]) / (xs[i] - xs[i - 1])
                return ys[i - 1] + f * (ys[i] - ys[i - 1])
        return ys[-1]

    def tokens_at(self, utilization: float) -> float:
        """Tokens per step at ``utilization``: the smallest root of ``n = lambda T(n)`` on the
        interpolated ``T`` (exact on each linear piece), the budget at or past capacity."""
        budget = self.tokens[-1]
        if utilization >= 1:
            return budget
        if utilization <= 0:
            return self.tokens[0]
        lam = utilization * budget / self.stage_step_s[-1]  # prompt tokens/s arriving
        for i in range(1, len(self.tokens)):
            n0, n1 = self.tokens[i - 1], self.tokens[i]
            slope = (self.stage_step_s[i] - self.stage_step_s[i - 1]) / (n1 - n0)
            base = self.stage_step_s[i - 1] - slope * n0
            if lam * slope < 1:
                n = lam * base / (1 - lam * slope)
                if n <= n1:
                    return max(n, n0)
        return budget  # the fixed point lies past the budget: full steps

    def wait_s(self, utilization: float) -> float:
        """The mean wait for the running step: half a step of ``tokens_at(u)``, when one runs (a
        share ``u`` of the time); at ``u = 0`` none, at capacity half a full step."""
        u = min(max(utilization, 0.0), 1.0)
        return 0.5 * u * self._running_step_s(u)

    def _running_step_s(self, u: float) -> float:
        """The step a prompt arriving at utilization ``u`` (in 0..1) finds running, when one runs."""
        return self._at(self.stage_step_s, self.tokens_at(u))

    def ttft_s(self, utilization: float) -> float:
        """Mean TTFT at ``utilization``: the wait, the prompt's first chunk in a step of
        ``max(tokens_at(u), own chunk)`` through every stage, further chunks in full-budget steps,
        the per-request overhead and the KV transfer. No M/D/1 factor: the step wait is the queue
        while a step holds every prompt that arrived during the last; once ``tokens_at(u)`` reaches
        the budget (near ``u = 1``) prompts left over wait further steps and a queue builds that
        this figure does not count, which the planner's utilisation cap keeps plans away from."""
        return self._ttft_after_s(utilization, self.wait_s(utilization))

    def _ttft_after_s(self, utilization: float, wait_s: float) -> float:
        """TTFT after a wait of ``wait_s`` for the running step (see :meth:`ttft_s`)."""
        n = max(self.tokens_at(utilization), self.own_tokens)
        return (wait_s + self._at(self.through_s, n)
                + (self.chunks - 1) * self.stage_step_s[-1] + self.overhead_s + self.kv_transfer_s)

    def wait_p99_s(self, utilization: float) -> float:
        """The p99 of that wait. No step runs a share ``1 - u`` of the time (no wait); when one
        runs, the prompt waits the rest of it, uniform over the step, so P(wait > r) = u (1 - r / T)
        and the 0.99 quantile is T (1 - 0.01 / u), never below the mean (the residual life of the
        steps with the idle time counted as no wait, as :meth:`costmodels.serving._SteadySteps.wait_s`
        does for unified replicas)."""
        u = min(max(utilization, 0.0), 1.0)
        step = self._running_step_s(u)
        quantile = 0.0 if u <= 1 - TAIL_QUANTILE else step * (1 - (1 - TAIL_QUANTILE) / u)
        # below about 1 % load the quantile (no wait) is under the mean (half the step, a share u of
        # the time); a p99 is reported as at least the mean, as the p99 TPOT is
        return max(quantile, 0.5 * u * step)

    def ttft_p99_extra_s(self, utilization: float) -> float:
        """What the p99 TTFT adds to the mean at ``utilization``: the p99 wait for the mean one."""
        return self.wait_p99_s(utilization) - self.wait_s(utilization)

    def ttft_p99_s(self, utilization: float) -> float:
        """p99 TTFT: the wait for the running step at its p99 in place of its mean."""
        return self._ttft_after_s(utilization, self.wait_p99_s(utilization))


@dataclass(frozen=True)
class PrefillMetrics:
    """A prefill-only replica of a disaggregated deployment (the KV transfer not included)."""

    fits: bool
    memory: MemoryBreakdown  # the most loaded GPU, with the KV of one full step of prompts
    ttft_s: float  # the prompt alone, nothing else running (``step.ttft_s(0)``)
    requests_per_s: float  # prompts per second with every step full
    in_flight: int  # prompts whose KV the replica holds at once (one step's worth)
    step: PrefillStep | None = None  # TTFT by load

    def as_replica(self, kv_transfer_s: float) -> ReplicaMetrics:
        """The replica metrics plans and the solver use: TTFT unloaded (the prompt alone) plus the
        KV transfer, and the step that prices TTFT under load."""
        step = replace(self.step, kv_transfer_s=kv_transfer_s) if self.step is not None else None
        return ReplicaMetrics(batch=self.in_flight, max_batch=self.in_flight, fits=self.fits, memory=self.memory,
                              ttft_s=self.ttft_s + kv_transfer_s, tpot_s=0.0, output_tokens_per_s=0.0,
                              requests_per_s=self.requests_per_s, prefill_step=step)


def evaluate_prefill(model: ModelSpec, gpu: GPUs, s: Strategy, *, isl: int, links: Links = Links()) -> PrefillMetrics:
    """Predict a prefill-only replica: every step packs ``max_num_batched_tokens`` prompt tokens
    (prompts chunked to that budget), so its capacity is that many tokens per pipeline step.
    It holds the KV of the prompts of about one step until they are sent to the decode pool.

    TTFT depends on the load (:class:`PrefillStep`): under a rate the scheduler fills each step
    with the prompts that arrived during the last one (a longer prompt is cut into budget-sized
    chunks), so a prompt waits for the running step and then shares one of that size; at
    capacity every step is full. ``ttft_s`` is the prompt alone (no load); the step is priced at
    three sizes (one token, the prompt's own chunk, the full budget) and interpolated between them.
    A larger budget thus raises capacity and, near capacity, a short prompt's TTFT."""
    gpus = stage_gpus(gpu, s.pp)
    sts = stages(model, s)
    budget = s.max_num_batched_tokens
    in_flight = max(1, math.ceil(budget / max(isl, 1))) * s.attention_dp  # under attention DP: per group
    mems = replica_memory(model, gpu, s, batch=in_flight, context=isl)
    worst = max(mems, key=lambda m: (m.total / m.capacity, m.total))
    fits = all(m.fits for m in mems)

    def step_s(tokens: float) -> tuple[list[float], float]:
        times = prefill_stage_s(model, s, links, gpus, sts, tokens=tokens, context=isl / 2)
        send = send_s(message_bytes=tokens * model.hidden * ACT_BYTES / s.tp, link=links.pp) if s.pp > 1 else 0.0
        return times, send

    dp = s.attention_dp
    own, full_tokens = min(isl, budget) * dp, budget * dp
    points = sorted({float(dp), float(own), float(full_tokens)})  # an all but empty step: its fixed cost
    priced = [step_s(n) for n in points]
    step = PrefillStep(tokens=tuple(points), stage_step_s=tuple(max(ts) + snd for ts, snd in priced),
                       through_s=tuple(sum(ts) + s.pp * snd for ts, snd in priced), own_tokens=float(own),
                       chunks=steps_for_tokens(isl, budget), overhead_s=cal.PREFILL_REQUEST_OVERHEAD_S)
    tokens_per_s = full_tokens / step.stage_step_s[-1]  # a full step leaves every stage each stage-step
    return PrefillMetrics(fits=fits, memory=worst, ttft_s=step.ttft_s(0.0), requests_per_s=tokens_per_s / max(isl, 1),
                          in_flight=in_flight, step=step)


def kv_transfer_s(model: ModelSpec, s: Strategy, *, isl: int, link: Link) -> float:
    """Time to move one prompt's KV cache from a prefill replica to a decode replica: every
    GPU of the prefill replica sends its share (its heads' KV of its stage's layers) at
    once, each at its share of ``link`` (the slowest path between the pools, per GPU)."""
    total = kv_bytes_per_token_per_gpu(model, tp=1, layers=model.layers, kv_dtype=s.kv_dtype) * isl
    # A prompt's KV sits on its attention group's GPUs of every stage; MLA's latent KV is whole
    # on every rank of the group.
    per_gpu = total / (s.attention_tp * s.pp) if not model.is_mla else total / s.pp
    return send_s(message_bytes=per_gpu, link=link)
