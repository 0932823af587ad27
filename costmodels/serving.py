"""One replica serving a workload: memory, largest batch, TTFT, TPOT, throughput, queueing.

A replica is ``tp x pp`` GPUs of one type running one copy of the model. It serves with
in-flight (continuous) batching and chunked prefill, as vLLM and TensorRT-LLM do:

* ``batch`` sequences are in flight. In steady state each iteration every sequence
  emits one token, and new requests' prompts (``batch x isl / osl`` tokens per
  iteration, amortised) are prefilled in chunks in the same steps. TPOT therefore
  includes the prefill work that shares the steps.
* Under pipeline parallelism the batch is split into ``min(pp, batch)`` micro-batches
  that keep the stages busy (vLLM's virtual engines); a token takes ``pp`` stage steps.
* The largest batch is set by the KV-cache budget for full-length sequences
  (``isl + osl`` tokens each), as TensorRT-LLM's guaranteed-no-evict scheduler reserves.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from costmodels import calibration as cal
from costmodels.comm import send_s
from costmodels.compute import ACT_BYTES, StageShape, StepTime, stage_step_time, steps_for_tokens
from costmodels.hardware import GPU
from costmodels.memory import (
    MemoryBreakdown,
    activation_bytes,
    balanced_layer_split,
    kv_budget_bytes,
    kv_bytes_per_sequence_per_gpu,
    max_sequences,
    overhead_bytes,
    stage_weight_bytes,
)
from costmodels.model_spec import ModelSpec
from costmodels.strategy import GPUs, Links, Strategy, stage_gpus, stages

if TYPE_CHECKING:  # a prefill replica's metrics carry its step; prefill.py builds on this module
    from costmodels.prefill import PrefillStep

#: The quantile the planner's tail SLOs (``--tpot-p99-ms``, ``--ttft-p99-ms``) are priced at.
TAIL_QUANTILE = 0.99


def choose_layer_split(model: ModelSpec, gpu: GPUs, s: Strategy, *, isl: int, osl: int,
                       micro_batch: int = 16) -> tuple[int, ...]:
    """Layers per pipeline stage so that the slowest stage is as fast as possible and every
    stage holds at least one full-length sequence.

    Each stage's time is modelled as ``layers x (its GPU's time per layer) + (LM head time
    on the last stage)``, at a representative decode micro-batch of ``micro_batch``
    sequences with their share of chunked prefill. The least bottleneck time ``T`` with
    ``sum_i min(cap_i, floor((T - extra_i) / t_i)) >= layers`` is found by bisection (the
    split is exact for that linear model); layers beyond the total are then taken from the
    slowest stages. ``cap_i`` is the most layers stage ``i``'s GPU holds with room for one
    sequence of ``isl + osl`` tokens. On one GPU type this gives the last stage fewer layers
    when its LM head costs as much as a layer; across types the faster GPU gets more layers.
    Falls back to the balanced split when no split fits.

    Where the layers differ (an MoE model's dense layers, ``ModelSpec.mlp_kinds``), ``t_i`` is
    the model's average layer, and ``cap_i`` holds for the layers the stage can get: the first
    ``n`` for the first stage, the last ``n`` for the last, the heaviest ``n`` in a row for a
    middle one (:func:`_heaviest_window`).
    """
    pp = s.pp
    if pp == 1:
        return (model.layers,)
    gpus = stage_gpus(gpu, pp)
    context = isl + osl
    prefill = micro_batch * isl / max(osl, 1)
    steps = steps_for_tokens(micro_batch + prefill, s.max_num_batched_tokens)
    L = model.layers

    times: dict[tuple[GPU, int, bool, bool], float] = {}  # stages of one GPU type share their figures

    def stage_s(g: GPU, count: int, *, first: bool, last: bool) -> float:
        if (g, count, first, last) not in times:
            st = StageShape(layer_start=0, layer_count=count, first=first, last=last)
            times[g, count, first, last] = stage_time(
                model, g, s, st, Links(), prefill_tokens=prefill, prefill_context=isl / 2, decode_tokens=micro_batch,
                decode_context=isl + osl / 2, steps=steps).total_s
        return times[g, count, first, last]

    caps: dict[tuple[GPU, bool, bool], int] = {}

    def fits(g: GPU, n: int, first: bool, last: bool) -> bool:
        start = 0 if first else L - n if last else _heaviest_window(model, s, n)
        st = StageShape(layer_start=start, layer_count=n, first=first, last=last)
        _, budget, per_seq = _stage_memory(model, g, s, st, batch=1, context=context)
        return budget >= per_seq

    def most_layers(g: GPU, first: bool, last: bool) -> int:
        """The most layers a stage of ``g`` at this position holds with room for one sequence."""
        if (g, first, last) not in caps:
            lo, hi = 0, L  # the largest n with fits(n); fits is monotone (more layers, less room)
            while lo < hi:
                mid = (lo + hi + 1) // 2
                lo, hi = (mid, hi) if fits(g, mid, first, last) else (lo, mid - 1)
            caps[g, first, last] = lo
        return caps[g, first, last]

    per_layer, extra, cap = [], [], []
    for i, g in enumerate(gpus):
        first, last = i == 0, i == pp - 1
        body = stage_s(g, L, first=False, last=False)
        per_layer.append(max(body - stage_s(g, 0, first=False, last=False), 1e-12) / L)
        extra.append(stage_s(g, L, first=first, last=last) - body)
        cap.append(most_layers(g, first, last))
    if sum(cap) < L or min(cap) < 1:
        return balanced_layer_split(L, pp)

    def take(t: float) -> list[int]:
        return [max(0, min(c, math.floor((t - e) / w))) for c, e, w in zip(cap, extra, per_layer, strict=True)]

    lo_t, hi_t = 0.0, max(e + c * w for c, e, w in zip(cap, extra, per_layer, strict=True))
    for _ in range(100):
        mid_t = (lo_t + hi_t) / 2
        counts = take(mid_t)
        bounds = (lo_t, mid_t) if sum(counts) >= L and min(counts) >= 1 else (mid_t, hi_t)
        if bounds == (lo_t, hi_t):  # the interval stopped shrinking: every further round repeats this one
            break
        lo_t, hi_t = bounds
    split = take(hi_t)
    if sum(split) < L or min(split) < 1:
        return balanced_layer_split(L, pp)
    while sum(split) > L:  # drop layers from the slowest stage that can spare one (last first)
        i = max((j for j in range(pp) if split[j] > 1),
                key=lambda j: (split[j] * per_layer[j] + extra[j], j))
        split[i] -= 1
    return tuple(split)


def _heaviest_window(model: ModelSpec, s: Strategy, n: int) -> int:
    """The first layer of the ``n`` consecutive layers whose weights take the most memory on a GPU
    of a middle stage of ``s`` (the earliest such start; 0 when every layer weighs the same)."""
    if n <= 0 or model.moe_layers in (0, model.layers):
        return 0

    def weight(start: int) -> float:
        return stage_weight_bytes(model, tp=s.tp, layer_start=start, layer_count=n, first=False, last=False,
                                  weight_dtype=s.weight_dtype, attention_tp=s.attention_tp)
    return max(range(model.layers - n + 1), key=lambda start: (weight(start), -start))


def _stage_memory(model: ModelSpec, gpu: GPU, s: Strategy, st: StageShape, *, batch: int,
                  context: int) -> tuple[MemoryBreakdown, float, float]:
    """(memory at ``batch``, KV budget, KV bytes per sequence) of one GPU of stage ``st``."""
    p = s.profile
    at = s.attention_tp
    w = stage_weight_bytes(model, tp=s.tp, layer_start=st.layer_start, layer_count=st.layer_count,
                           first=st.first, last=st.last, weight_dtype=s.weight_dtype, attention_tp=at)
    group_batch = math.ceil(max(batch, 1) / s.attention_dp)  # sequences of the fullest attention group
    act = activation_bytes(model, tp=at, step_tokens=min(s.max_num_batched_tokens, group_batch * max(context, 1)),
                           batch=group_batch)
    over = overhead_bytes(gpus_in_replica=s.gpus)
    budget, reserve = kv_budget_bytes(capacity=gpu.memory_bytes, weights=w, activations=act, overhead=over,
                                      utilization=p.memory_fraction, rule=p.kv_rule)
    per_seq = kv_bytes_per_sequence_per_gpu(model, tp=at, layers=st.layer_count, kv_dtype=s.kv_dtype,
                                            context=context, sliding_window=p.sliding_window_kv)
    held = math.ceil(batch / s.attention_dp) if batch > 0 else 0  # each GPU holds its group's sequences
    mem = MemoryBreakdown(weights=w, kv_cache=held * per_seq, activations=act, overhead=over, reserve=reserve,
                          capacity=gpu.memory_bytes)
    return mem, budget, per_seq


def replica_memory(model: ModelSpec, gpu: GPUs, s: Strategy, *, batch: int, context: int) -> list[MemoryBreakdown]:
    """Memory of one GPU of each stage with ``batch`` sequences of ``context`` tokens."""
    return [_stage_memory(model, g, s, st, batch=batch, context=context)[0]
            for g, st in zip(stage_gpus(gpu, s.pp), stages(model, s), strict=True)]


def max_batch_size(model: ModelSpec, gpu: GPUs, s: Strategy, *, context: int, cap: int | None = None) -> int:
    """Largest number of concurrent ``context``-token sequences every stage can hold.

    Capped by the runtime's default scheduler limit (per pipeline stage, and per attention
    group: each runs its own scheduler) unless ``cap``. Under attention DP the sequences are
    spread over the groups, each GPU holding its group's.
    """
    return _max_batch_size(model, tuple(stage_gpus(gpu, s.pp)), s, context, cap)


@lru_cache(maxsize=4096)
def _max_batch_size(model: ModelSpec, gpus: tuple[GPU, ...], s: Strategy, context: int, cap: int | None) -> int:
    """:func:`max_batch_size` with one GPU per stage, memoised.

    A search prices each shape at a dozen batches, and every pricing asks for the shape's
    largest batch twice (:func:`effective_strategy` and :func:`evaluate_replica`), each time a
    bisection over :func:`_stage_memory` (three quarters of an 8-GPU search's pricing time
    before this cache). The answer depends only on the arguments and on the memory constants
    (:mod:`costmodels.calibration`'s runtime profiles and overheads, which nothing changes at
    run time; ``benchmarks/calibrate.py`` fits step-time constants only), so it is computed
    once per shape.
    """
    dp = s.attention_dp
    best = cap if cap is not None else s.profile.max_batch * dp

    def room(n: int, g: GPU, st: StageShape) -> int:
        _, budget, per_seq = _stage_memory(model, g, s, st, batch=n, context=context)
        return dp * max_sequences(kv_budget=budget, kv_bytes_per_sequence=per_seq)

    for g, st in zip(gpus, stages(model, s), strict=True):
        # Activations (logits, the step's tokens) grow with the batch, so the KV room shrinks
        # as n grows and "n fits" holds up to some n and not past it. The room at the cap is
        # a lower bound of the answer, the room at that bound an upper one: bisect between.
        lo = min(best, room(best, g, st))
        hi = min(best, room(lo, g, st))
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if mid <= room(mid, g, st):
                lo = mid
            else:
                hi = mid - 1
        best = lo
    return max(best, 0)


@dataclass(frozen=True)
class ReplicaMetrics:
    """Predicted behaviour of one replica at ``batch`` concurrent sequences."""

    batch: int
    max_batch: int
    fits: bool
    memory: MemoryBreakdown  # the most loaded GPU
    ttft_s: float  # a request arriving to a running batch, no queueing
    tpot_s: float  # time per output token under the full batch, prefill interference included
    output_tokens_per_s: float
    requests_per_s: float
    step: StepTime = field(repr=False, default=StepTime(0, 0, 0, 0))
    pp_send_s: float = 0.0
    prefill_step: PrefillStep | None = field(repr=False, default=None)  # a prefill replica's TTFT by load
    wait_s: float = 0.0  # in ttft_s: the mean wait for the step running when a prompt arrives
    wait_p99_s: float = 0.0  # that wait's p99 (TTFT p99 = ttft_s - wait_s + wait_p99_s, before queueing)

    @property
    def ttft_p99_extra_s(self) -> float:
        """What the p99 TTFT adds to the mean: the running step's wait at its p99 for its mean."""
        return self.wait_p99_s - self.wait_s


def stage_time(model: ModelSpec, gpu: GPU, s: Strategy, st: StageShape, links: Links, **kw: Any) -> StepTime:
    """One stage's step (:func:`costmodels.compute.stage_step_time`) with the degrees and links of ``s``."""
    return stage_step_time(model, gpu, stage=st, tp=s.tp, ep=s.ep, weight_dtype=s.weight_dtype,
                           kv_dtype=s.kv_dtype, tp_link=links.tp, ep_link=links.ep, attention_dp=s.attention_dp,
                           expert_imbalance=s.expert_imbalance, ep_local_link=links.ep_local,
                           ep_local_ranks=links.ep_local_ranks, runtime=s.runtime,
                           host_overlap=s.overlaps_host, **kw)


def prefill_stage_s(model: ModelSpec, s: Strategy, links: Links, gpus: list[GPU], sts: list[StageShape], *,
                    tokens: float, context: float) -> list[float]:
    """Each stage's step carrying ``tokens`` prompt tokens and no decodes, attending ``context``
    tokens on average (``gpus``/``sts``: the stages' GPUs and shapes, ``stage_gpus``/``stages``)."""
    return [stage_time(model, g, s, st, links, prefill_tokens=tokens, prefill_context=context, decode_tokens=0,
                       decode_context=0).total_s for g, st in zip(gpus, sts, strict=True)]


def effective_strategy(model: ModelSpec, gpu: GPUs, s: Strategy, *, isl: int, osl: int) -> Strategy:
    """The strategy as the runtime will run it: for TensorRT-LLM with the default token budget,
    the budget trtllm-bench derives from the batch it expects (what the plan must record)."""
    if s.runtime == "trtllm" and s.max_num_batched_tokens == cal.DEFAULT_MAX_NUM_BATCHED_TOKENS:
        mb = max_batch_size(model, gpu, s, context=isl + osl)
        return replace(s, max_num_batched_tokens=cal.trtllm_bench_max_num_tokens(
            max_batch=max(mb, 1) // s.pp or 1, isl=isl, osl=osl))
    return s


def evaluate_replica(model: ModelSpec, gpu: GPUs, s: Strategy, *, isl: int, osl: int,
                     batch: int | None = None, links: Links = Links(), role: str = "unified") -> ReplicaMetrics:
    """Predict one replica. Without ``batch``, the largest batch that fits (max throughput).

    ``gpu`` is one GPU type, or one per pipeline stage for a pipeline across types.
    ``role="decode"``: a decode-only replica of a disaggregated deployment. Its steps carry
    no prompt chunks (the prefill pool computed the prompt and sent its KV cache), so TPOT is
    the pure decode step; its TTFT is 0 here (see :func:`costmodels.prefill.evaluate_prefill`).

    Steady state: each micro-batch step carries one decode token per sequence and its share of
    new prompts (``per_micro * isl / osl`` tokens), chunked to the step budget
    (:class:`_SteadySteps`). That is the cycle throughput is made of. TPOT as benchmarks define
    it, (end-to-end - TTFT) / (output tokens - 1), never sees a request's own prompt: its steps
    carry the other requests' prompts only, ``(b - 1) / micro * isl / osl`` tokens per step. At a
    batch of 1 that is a pure decode step, however long the prompt.
    """
    if role not in ("unified", "decode"):
        raise ValueError(f"role {role!r}: unified or decode (prefill: evaluate_prefill)")
    context = isl + osl
    s = effective_strategy(model, gpu, s, isl=isl, osl=osl)
    mb = max_batch_size(model, gpu, s, context=context)
    b = mb if batch is None else batch
    mems = replica_memory(model, gpu, s, batch=max(b, 0), context=context)
    worst = max(mems, key=lambda m: (m.total / m.capacity, m.total))
    fits = b >= 1 and all(m.fits for m in mems) and b <= max(mb, 0)
    if b < 1:
        return ReplicaMetrics(batch=0, max_batch=mb, fits=False, memory=worst, ttft_s=math.inf,
                              tpot_s=math.inf, output_tokens_per_s=0.0, requests_per_s=0.0)
    micro = min(s.pp, b)
    steady = _SteadySteps(model, stage_gpus(gpu, s.pp), stages(model, s), s, links, isl=isl, osl=osl,
                          per_micro=b / micro)
    unified = role == "unified"
    prefill_per_step = b / micro * isl / max(osl, 1) if unified else 0.0
    slowest, send, _ = steady.step(prefill_per_step)
    cycle_s = s.pp * (slowest.total_s + send)
    tokens_per_s = b / cycle_s
    others_prefill = (b - 1) / micro * isl / max(osl, 1) if unified else 0.0
    if others_prefill == prefill_per_step:
        tpot = cycle_s
    else:
        own_slowest, own_send, _ = steady.step(others_prefill)
        tpot = s.pp * (own_slowest.total_s + own_send)
    wait_s, wait_p99_s = steady.wait_s(prefill_per_step) if b > 1 and unified else (0.0, 0.0)
    ttft = 0.0 if role == "decode" else _ttft_s(
        steady, others=(b - 1) / micro, prefill_per_step=prefill_per_step,
        wait_s=wait_s)
    return ReplicaMetrics(batch=b, max_batch=mb, fits=fits, memory=worst, ttft_s=ttft, tpot_s=tpot,
                          output_tokens_per_s=tokens_per_s, requests_per_s=tokens_per_s / max(osl, 1),
                          step=slowest, pp_send_s=send, wait_s=wait_s, wait_p99_s=wait_p99_s)


class _SteadySteps:
    """The steady-state steps of one replica at ``per_micro`` sequences per micro-batch: each
    carries their decode tokens and a number of prompt tokens; priced once per prompt size."""

    def __init__(self, model: ModelSpec, gpus: list[GPU], sts: list[StageShape], s: Strategy, links: Links, *,
                 isl: int, osl: int, per_micro: float) -> None:
        self.model, self.gpus, self.sts, self.s, self.links = model, gpus, sts, s, links
        self.isl, self.osl, self.per_micro = isl, osl, per_micro
        # The schedulers pack a waiting prompt into the next step whole, up to the chunk (the token
        # budget), rather than a few tokens into every step: with fewer prompt tokens per step than
        # one chunk on average, a share of the steps carries a chunk and the rest only decodes. The
        # average step is that mix, which costs more than spreading the prompt thinly (a chunk step
        # is compute-bound; a thin share would hide under the weight reads of a decode step).
        self.chunk_tokens = min(isl, s.max_num_batched_tokens) * s.attention_dp
        self._evens: dict[float, tuple[StepTime, float, int]] = {}
        self._kinds: dict[float, list[tuple[float, StepTime, float, int]]] = {}

    def send_s(self, tokens: float, tp: int) -> float:
        """Pipeline send of ``tokens`` tokens: each rank sends its 1/``tp`` slice of the hidden
        states to the same rank of the next stage, which all-gathers them over its own TP links;
        ``links.pp`` is the per-GPU share of the stage-to-stage link."""
        return send_s(message_bytes=tokens * self.model.hidden * ACT_BYTES / tp,
                      link=self.links.pp) if self.s.pp > 1 else 0.0

    def stage_steps(self, **kw: Any) -> list[StepTime]:
        """Every stage's step with these prompt and decode tokens (``stage_step_time``'s arguments)."""
        return [stage_time(self.model, g, self.s, st, self.links, prefill_context=self.isl / 2,
                           decode_context=self.isl + self.osl / 2, **kw)
                for g, st in zip(self.gpus, self.sts, strict=True)]

    def even(self, prefill_tokens: float) -> tuple[StepTime, float, int]:
        """Every step carrying ``prefill_tokens`` prompt tokens besides the decodes: the slowest
        stage's step, the pipeline send and the engine steps the tokens need."""
        if prefill_tokens not in self._evens:
            s = self.s
            # The token budget is per scheduler: one per attention group under attention DP.
            n_steps = steps_for_tokens((self.per_micro + prefill_tokens) / s.attention_dp, s.max_num_batched_tokens)
            times = self.stage_steps(prefill_tokens=prefill_tokens, decode_tokens=self.per_micro, steps=n_steps)
            self._evens[prefill_tokens] = (max(times, key=lambda t: t.total_s),
                                           self.send_s(self.per_micro + prefill_tokens, s.tp), n_steps)
        return self._evens[prefill_tokens]

    def step(self, prefill_tokens: float) -> tuple[StepTime, float, int]:
        """The average step carrying ``prefill_tokens`` prompt tokens: below one chunk, the mix of
        chunk-carrying and decode-only steps."""
        kinds = self.kinds(prefill_tokens)
        if len(kinds) == 1:
            _, t, send, steps = kinds[0]
            return t, send, steps
        (share, c, c_send, c_steps), (_, d, d_send, _) = kinds
        return _mix(c, d, share), share * c_send + (1 - share) * d_send, c_steps

    def kinds(self, prefill_tokens: float) -> list[tuple[float, StepTime, float, int]]:
        """The kinds of step the average step carrying ``prefill_tokens`` prompt tokens is made of,
        each as (share of the scheduler's cycles, the cycle's slowest-stage time, its pipeline send,
        the engine steps it takes): one kind when every step is alike, else the chunk-carrying
        cycle and the decode-only one. Priced once per prompt size (``step`` and ``wait_s`` both ask)."""
        if prefill_tokens not in self._kinds:
            chunk_tokens = self.chunk_tokens
            share = prefill_tokens / chunk_tokens
            if not 0 < prefill_tokens < chunk_tokens:
                kinds = [(1.0, *self.even(prefill_tokens))]
            elif self.s.attention_dp > 1:
                p_any, c, c_send = self.lockstep(share)
                kinds = [(p_any, c, c_send, 1), (1 - p_any, *self.even(0.0))]
            else:
                kinds = [(share, *self.even(chunk_tokens)), (1 - share, *self.even(0.0))]
            self._kinds[prefill_tokens] = kinds
        return self._kinds[prefill_tokens]

    def wait_s(self, prefill_tokens: float) -> tuple[float, float]:
        """The mean and the p99 time from a prompt's arrival to the end of the engine step then
        running (each step with its share of the cycle's pipeline send). Arrivals fall into long steps more often than
        short ones, so with a mix of chunk-carrying and decode-only steps the mean is the mix's
        mean residual life E[S^2] / (2 E[S]), over engine steps, not half the mean step (renewal
        theory's length-biased sampling; Kleinrock, Queueing Systems vol. 1, eq. 5.11); steps all
        alike give half a step. The p99 is that residual's own quantile: P(wait > r) =
        sum f_k max(S_k - r, 0) / sum f_k S_k over the kinds' step lengths S_k and frequencies f_k."""
        priced = self.kinds(prefill_tokens)
        budget = self.s.max_num_batched_tokens * self.s.attention_dp
        if len(priced) == 1 and priced[0][3] > 1 and self.per_micro < budget:
            # prompts overflow the budget: they are always waiting, so every step is a full one (the
            # decodes and as many prompt tokens as fit), not the cycle's average step (which made a
            # longer prompt, needing one more step per cycle, wait less)
            t, send, _ = self.even(budget - self.per_micro)
            kinds = [(1.0, t.total_s + send)]
        else:
            kinds = [(share * n, (t.total_s + send) / n) for share, t, send, n in priced]
        kinds = [(f, length) for f, length in kinds if f > 0 and length > 0]
        busy = sum(f * length for f, length in kinds)
        mean = sum(f * length * length for f, length in kinds) / (2 * busy)
        return mean, residual_quantile(kinds, busy, TAIL_QUANTILE)

    def lockstep(self, share: float) -> tuple[float, StepTime, float]:
        """Under attention DP each group's scheduler packs its own prompt chunks, independently
        of the others, and the groups step in lockstep (the experts' collectives join them).
        A group carries a chunk in a share ``share`` of the steps, so a step waits for a chunk
        whenever any group has one, ``1 - (1 - share)^dp`` of the steps, and such a step holds
        ``dp x share / that`` chunks on average, all routed to the experts together: that share,
        the chunk-carrying step and its send.
        (TensorRT-LLM's ``attention_dp_config.enable_balance`` exists to line these steps up.)"""
        dp = self.s.attention_dp
        p_any = -math.expm1(dp * math.log1p(-share))  # 1 - (1 - share)^dp, exact for the tiniest shares too
        per_group = self.chunk_tokens / dp
        prompt = dp * share / p_any * per_group
        times = self.stage_steps(prefill_tokens=prompt, decode_tokens=self.per_micro,
                                   busiest_prefill_tokens=per_group)
        return p_any, max(times, key=lambda t: t.total_s), self.send_s(self.per_micro + prompt, self.s.tp)


def residual_quantile(kinds: list[tuple[float, float]], busy: float, q: float) -> float:
    """The ``q`` quantile of the residual life of steps of lengths ``length`` at frequencies ``f``
    (``kinds``; ``busy`` = sum f x length): the r with sum f max(length - r, 0) = (1 - q) busy,
    piecewise linear in r between the lengths."""
    want = (1 - q) * busy
    lengths = sorted({length for _, length in kinds}, reverse=True)
    for i in range(len(lengths)):
        low = lengths[i + 1] if i + 1 < len(lengths) else 0.0
        # between low and the next length up the tail is the sum over kinds longer than low of f (length - r)
        longer = [(f, length) for f, length in kinds if length > low]
        at_low = sum(f * (length - low) for f, length in longer)
        if at_low >= want:
            slope = sum(f for f, _ in longer)
            return low + (at_low - want) / slope
    return 0.0


def _mix(c: StepTime, d: StepTime, share: float) -> StepTime:
    """A share ``share`` of steps like ``c``, the rest like ``d``, term by term."""
    return StepTime(*(share * x + (1 - share) * y for x, y in zip(
        (c.linear_s, c.attention_s, c.comm_s, c.overhead_s), (d.linear_s, d.attention_s, d.comm_s, d.overhead_s),
        strict=True)))


def _ttft_s(steady: _SteadySteps, *, others: float, prefill_per_step: float, wait_s: float) -> float:
    """TTFT under in-flight batching at the planned batch. A new prompt first waits for the step
    running when it arrives (``wait_s``, :meth:`_SteadySteps.wait_s`), then runs in chunks; each
    of its steps is a steady-state step: the ``others`` running decodes plus the step's prompt
    tokens, its own chunk and the other prompts' chunks that share the budget with it (at least
    its own chunk, at most the budget). The chunks flow through the pipeline (fill once, then one
    stage-step per chunk). Under attention DP the groups step together, each prefilling."""
    s, isl = steady.s, steady.isl
    chunk = min(isl, s.max_num_batched_tokens)
    n_chunks = steps_for_tokens(isl, s.max_num_batched_tokens)
    # its step carries the prompt tokens the budget holds: where the prompts need several engine steps
    # per cycle, the step holding a new prompt's chunk is a full one, not the cycle's average (which
    # made a longer prompt's TTFT shorter once the cycle needed one more step)
    step_prompt = min(max(chunk, prefill_per_step / s.attention_dp), s.max_num_batched_tokens)
    chunk_times = [t.total_s for t in steady.stage_steps(prefill_tokens=step_prompt * s.attention_dp,
                                                           decode_tokens=others)]
    chunk_send = steady.send_s(step_prompt, s.attention_tp)
    return (wait_s + sum(chunk_times) + s.pp * chunk_send + (n_chunks - 1) * (max(chunk_times) + chunk_send)
            + cal.PREFILL_REQUEST_OVERHEAD_S)
