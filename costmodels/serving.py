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
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

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
    kv_bytes_per_token_per_gpu,
    max_sequences,
    overhead_bytes,
    stage_weight_bytes,
)
from costmodels.models import ModelSpec
from topologies.graph import LOCAL, Link


@dataclass(frozen=True)
class Strategy:
    """How one replica is split. ``layer_split`` empty means balanced."""

    tp: int = 1
    pp: int = 1
    ep: int = 1
    weight_dtype: str = "bf16"
    kv_dtype: str = "bf16"
    layer_split: tuple[int, ...] = ()
    max_num_batched_tokens: int = cal.DEFAULT_MAX_NUM_BATCHED_TOKENS
    runtime: str = "vllm"  # a key of calibration.RUNTIMES: how KV memory and batch caps are set
    # Attention data parallelism (MoE models): each stage's tp GPUs form attention_dp attention
    # groups of tp / attention_dp GPUs, each serving its own sequences; experts span the stage.
    attention_dp: int = 1
    # The busiest EP rank's routed tokens over the mean; None: uniform random routing
    # (costmodels.compute.expert_load_factor).
    expert_imbalance: float | None = None

    @property
    def gpus(self) -> int:
        return self.tp * self.pp

    @property
    def attention_tp(self) -> int:
        """GPUs of one attention group (the tensor parallelism of attention and dense layers)."""
        return self.tp // self.attention_dp if self.attention_dp >= 1 and self.tp % self.attention_dp == 0 else self.tp

    @property
    def profile(self) -> cal.RuntimeProfile:
        return cal.RUNTIMES[self.runtime]


@dataclass(frozen=True)
class Links:
    """The links a replica's collectives use, as the topology graph reports them.

    ``tp``: the all-reduce group (an attention group under attention DP); ``pp``: a pipeline
    send. ``ep``: the MoE all-to-all of a stage under attention DP; when the stage spans
    several scale-up domains of ``ep_local_ranks`` GPUs each, ``ep`` is the per-GPU share of
    the network between them and ``ep_local`` the link inside one.
    """

    tp: Link = LOCAL
    pp: Link = LOCAL
    ep: Link = LOCAL
    ep_local: Link | None = None
    ep_local_ranks: int = 0


def validate_strategy(model: ModelSpec, s: Strategy) -> str | None:
    """Why a runtime would reject this strategy for this model, or ``None`` if valid."""
    if s.tp < 1 or s.pp < 1 or s.ep < 1:
        return "tp, pp and ep must be at least 1"
    if s.runtime not in cal.RUNTIMES:
        return f"unknown runtime {s.runtime!r}; choose one of {', '.join(cal.RUNTIMES)}"
    if s.attention_dp < 1 or s.tp % s.attention_dp:
        return f"attention_dp={s.attention_dp} must divide tp={s.tp}"
    at = s.attention_tp
    what = f"tp={at}" if s.attention_dp == 1 else f"attention tp={at} (tp={s.tp} / attention_dp={s.attention_dp})"
    if model.heads % at:
        return f"{what} does not divide the {model.heads} attention heads"
    if not model.is_mla and model.kv_heads % at and at % model.kv_heads:
        return f"{what} and the {model.kv_heads} KV heads do not divide one another"
    if s.attention_dp > 1:
        if not model.is_moe:
            return (f"attention_dp={s.attention_dp} but {model.name} has no experts: for a dense model "
                    f"attention data parallelism is just more replicas")
        if s.runtime == "trtllm" and s.attention_dp != s.tp:
            # enable_attention_dp gives every rank its own attention (attention tp 1)
            return f"TensorRT-LLM's attention DP runs attention on every rank alone: attention_dp must be tp={s.tp}"
    if s.expert_imbalance is not None and not s.expert_imbalance >= 1:
        return f"expert_imbalance={s.expert_imbalance} must be at least 1 (the busiest EP rank over the mean)"
    if s.pp > model.layers:
        return f"pp={s.pp} is more than the {model.layers} layers"
    if s.layer_split and (len(s.layer_split) != s.pp or sum(s.layer_split) != model.layers
                          or min(s.layer_split) < 1):
        return f"layer split {list(s.layer_split)} must give pp={s.pp} stages >= 1 layer summing to {model.layers}"
    if s.ep > 1:
        if not model.is_moe:
            return f"ep={s.ep} but {model.name} has no experts"
        if model.experts % s.ep:
            return f"ep={s.ep} does not divide the {model.experts} experts"
        if s.tp % s.ep:
            return f"ep={s.ep} must divide tp={s.tp} (moe_tp x moe_ep = tp)"
        if s.runtime == "vllm" and s.ep != s.tp:
            # vLLM has no EP size: --enable-expert-parallel makes the experts' EP group the whole
            # TP (x DP) group (vllm/config/parallel.py enable_expert_parallel)
            return f"vLLM's expert parallelism spans the whole TP group: ep must be 1 or tp={s.tp}, not {s.ep}"
        if s.runtime == "sglang" and s.attention_dp > 1 and s.ep != s.tp:
            # SGLang's DP attention runs the MoE layers over the whole tp group (moe_ep x moe_tp = tp)
            # with DeepEP all-to-alls only when ep covers it
            return f"SGLang's DP attention with expert parallelism needs ep = tp={s.tp}, not {s.ep}"
    return None


#: One GPU type for the whole replica, or one per pipeline stage (a pipeline across types).
GPUs = GPU | Sequence[GPU]


def stage_gpus(gpu: GPUs, pp: int) -> list[GPU]:
    """The GPU of each pipeline stage."""
    if isinstance(gpu, GPU):
        return [gpu] * pp
    out = list(gpu)
    if len(out) != pp:
        raise ValueError(f"{len(out)} stage GPUs for pp={pp}")
    return out


def stages(model: ModelSpec, s: Strategy) -> list[StageShape]:
    split = s.layer_split or balanced_layer_split(model.layers, s.pp)
    out, start = [], 0
    for i, n in enumerate(split):
        out.append(StageShape(layer_start=start, layer_count=n, first=i == 0, last=i == len(split) - 1))
        start += n
    return out


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

    def stage_s(g: GPU, count: int, *, first: bool, last: bool) -> float:
        st = StageShape(layer_start=0, layer_count=count, first=first, last=last)
        return _stage_time(model, g, s, st, Links(), prefill_tokens=prefill, prefill_context=isl / 2,
                           decode_tokens=micro_batch, decode_context=isl + osl / 2, steps=steps).total_s

    per_layer, extra, cap = [], [], []
    for i, g in enumerate(gpus):
        first, last = i == 0, i == pp - 1
        body = stage_s(g, L, first=False, last=False)
        per_layer.append(max(body - stage_s(g, 0, first=False, last=False), 1e-12) / L)
        extra.append(stage_s(g, L, first=first, last=last) - body)

        def fits(n: int, g: GPU = g, first: bool = first, last: bool = last) -> bool:
            start = 0 if first else L - n if last else _heaviest_window(model, s, n)
            st = StageShape(layer_start=start, layer_count=n, first=first, last=last)
            _, budget, per_seq = _stage_memory(model, g, s, st, batch=1, context=context)
            return budget >= per_seq
        lo, hi = 0, L  # the largest n with fits(n); fits is monotone (more layers, less room)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
        cap.append(lo)
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


def _stage_time(model: ModelSpec, gpu: GPU, s: Strategy, st: StageShape, links: Links, **kw: Any) -> StepTime:
    return stage_step_time(model, gpu, stage=st, tp=s.tp, ep=s.ep, weight_dtype=s.weight_dtype,
                           kv_dtype=s.kv_dtype, tp_link=links.tp, ep_link=links.ep, attention_dp=s.attention_dp,
                           expert_imbalance=s.expert_imbalance, ep_local_link=links.ep_local,
                           ep_local_ranks=links.ep_local_ranks, runtime=s.runtime, **kw)


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
    the pure decode step; its TTFT is 0 here (see :func:`evaluate_prefill`).
    """
    if role not in ("unified", "decode"):
        raise ValueError(f"role {role!r}: unified or decode (prefill: evaluate_prefill)")
    gpus = stage_gpus(gpu, s.pp)
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
    sts = stages(model, s)
    micro = min(s.pp, b)
    per_micro = b / micro
    # Steady state: each micro-batch step carries one decode token per sequence and its
    # share of new prompts (per_micro * isl / osl tokens), chunked to the step budget. That is
    # the cycle throughput is made of. TPOT as benchmarks define it, (end-to-end - TTFT) /
    # (output tokens - 1), never sees a request's own prompt: its steps carry the other
    # requests' prompts only, (b - 1) / micro * isl / osl tokens per step. At a batch of 1 that
    # is a pure decode step, however long the prompt.
    evens: dict[float, tuple[StepTime, float, int]] = {}

    def even(prefill_tokens: float) -> tuple[StepTime, float, int]:
        """Every step carrying ``prefill_tokens`` prompt tokens besides the decodes."""
        if prefill_tokens not in evens:
            evens[prefill_tokens] = _even(prefill_tokens)
        return evens[prefill_tokens]

    def _even(prefill_tokens: float) -> tuple[StepTime, float, int]:
        # The token budget is per scheduler: one per attention group under attention DP.
        n_steps = steps_for_tokens((per_micro + prefill_tokens) / s.attention_dp, s.max_num_batched_tokens)
        # Pipeline send: each TP rank sends its 1/tp slice of the hidden states to the same
        # rank of the next stage, which all-gathers them over its own TP links; ``links.pp``
        # is the per-GPU share of the stage-to-stage link.
        pp_send = send_s(message_bytes=(per_micro + prefill_tokens) * model.hidden * ACT_BYTES / s.tp,
                         link=links.pp) if s.pp > 1 else 0.0
        times = [_stage_time(model, g, s, st, links, prefill_tokens=prefill_tokens, prefill_context=isl / 2,
                             decode_tokens=per_micro, decode_context=isl + osl / 2, steps=n_steps)
                 for g, st in zip(gpus, sts, strict=True)]
        return max(times, key=lambda t: t.total_s), pp_send, n_steps

    # The schedulers pack a waiting prompt into the next step whole, up to the chunk (the token
    # budget), rather than a few tokens into every step: with fewer prompt tokens per step than
    # one chunk on average, a share of the steps carries a chunk and the rest only decodes. The
    # average step is that mix, which costs more than spreading the prompt thinly (a chunk step
    # is compute-bound; a thin share would hide under the weight reads of a decode step).
    chunk_tokens = min(isl, s.max_num_batched_tokens) * s.attention_dp

    def step(prefill_tokens: float) -> tuple[StepTime, float, int]:
        if not 0 < prefill_tokens < chunk_tokens:
            return even(prefill_tokens)
        share = prefill_tokens / chunk_tokens
        if s.attention_dp > 1:
            return lockstep(share)
        (c, c_send, c_steps), (d, d_send, _) = even(chunk_tokens), even(0.0)
        mixed = StepTime(*(share * x + (1 - share) * y for x, y in zip(
            (c.linear_s, c.attention_s, c.comm_s, c.overhead_s), (d.linear_s, d.attention_s, d.comm_s, d.overhead_s),
            strict=True)))
        return mixed, share * c_send + (1 - share) * d_send, c_steps

    def lockstep(share: float) -> tuple[StepTime, float, int]:
        """Under attention DP each group's scheduler packs its own prompt chunks, independently
        of the others, and the groups step in lockstep (the experts' collectives join them).
        A group carries a chunk in a share ``share`` of the steps, so a step waits for a chunk
        whenever any group has one, ``1 - (1 - share)^dp`` of the steps, and such a step holds
        ``dp x share / that`` chunks on average, all routed to the experts together.
        (TensorRT-LLM's ``attention_dp_config.enable_balance`` exists to line these steps up.)"""
        dp = s.attention_dp
        p_any = 1 - (1 - share) ** dp
        per_group = chunk_tokens / dp
        prompt = dp * share / p_any * per_group
        times = [_stage_time(model, g, s, st, links, prefill_tokens=prompt, prefill_context=isl / 2,
                             decode_tokens=per_micro, decode_context=isl + osl / 2, busiest_prefill_tokens=per_group)
                 for g, st in zip(gpus, sts, strict=True)]
        c = max(times, key=lambda t: t.total_s)
        c_send = send_s(message_bytes=(per_micro + prompt) * model.hidden * ACT_BYTES / s.tp,
                        link=links.pp) if s.pp > 1 else 0.0
        d, d_send, _ = even(0.0)
        mixed = StepTime(*(p_any * x + (1 - p_any) * y for x, y in zip(
            (c.linear_s, c.attention_s, c.comm_s, c.overhead_s), (d.linear_s, d.attention_s, d.comm_s, d.overhead_s),
            strict=True)))
        return mixed, p_any * c_send + (1 - p_any) * d_send, 1

    unified = role == "unified"
    prefill_per_step = per_micro * isl / max(osl, 1) if unified else 0.0
    slowest, send, steps = step(prefill_per_step)
    cycle_s = s.pp * (slowest.total_s + send)
    tokens_per_s = b / cycle_s
    others_prefill = (b - 1) / micro * isl / max(osl, 1) if unified else 0.0
    if others_prefill == prefill_per_step:
        tpot = cycle_s
    else:
        own_slowest, own_send, _ = step(others_prefill)
        tpot = s.pp * (own_slowest.total_s + own_send)
    if role == "decode":
        return ReplicaMetrics(batch=b, max_batch=mb, fits=fits, memory=worst, ttft_s=0.0, tpot_s=tpot,
                              output_tokens_per_s=tokens_per_s, requests_per_s=tokens_per_s / max(osl, 1),
                              step=slowest, pp_send_s=send)

    # TTFT under in-flight batching at the planned batch. A new prompt first waits for the step
    # running when it arrives (half a stage-step on average), then runs in chunks; each of its
    # steps is a steady-state step: the running decodes plus the step's prompt tokens, its own
    # chunk and the other prompts' chunks that share the budget with it (at least its own
    # chunk, at most the budget). The chunks flow through the pipeline (fill once, then one
    # stage-step per chunk). Under attention DP the groups step together, each prefilling.
    chunk = min(isl, s.max_num_batched_tokens)
    n_chunks = steps_for_tokens(isl, s.max_num_batched_tokens)
    others = (b - 1) / micro
    step_prompt = min(max(chunk, prefill_per_step / steps / s.attention_dp), s.max_num_batched_tokens)
    chunk_times = [_stage_time(model, g, s, st, links, prefill_tokens=step_prompt * s.attention_dp,
                               prefill_context=isl / 2, decode_tokens=others,
                               decode_context=isl + osl / 2).total_s
                   for g, st in zip(gpus, sts, strict=True)]
    chunk_send = send_s(message_bytes=step_prompt * model.hidden * ACT_BYTES / s.attention_tp,
                        link=links.pp) if s.pp > 1 else 0.0
    wait = 0.5 * (slowest.total_s / steps + send) if b > 1 else 0.0
    ttft = (wait + sum(chunk_times) + s.pp * chunk_send + (n_chunks - 1) * (max(chunk_times) + chunk_send)
            + cal.PREFILL_REQUEST_OVERHEAD_S)
    return ReplicaMetrics(batch=b, max_batch=mb, fits=fits, memory=worst, ttft_s=ttft, tpot_s=tpot,
                          output_tokens_per_s=tokens_per_s, requests_per_s=tokens_per_s / max(osl, 1),
                          step=slowest, pp_send_s=send)


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
        return 0.5 * u * self._at(self.stage_step_s, self.tokens_at(u))

    def ttft_s(self, utilization: float) -> float:
        """Mean TTFT at ``utilization``: the wait, the prompt's first chunk in a step of
        ``max(tokens_at(u), own chunk)`` through every stage, further chunks in full-budget steps,
        the per-request overhead and the KV transfer. No M/D/1 factor: the step wait is the queue
        while a step holds every prompt that arrived during the last; once ``tokens_at(u)`` reaches
        the budget (near ``u = 1``) prompts left over wait further steps and a queue builds that
        this figure does not count, which the planner's utilisation cap keeps plans away from."""
        n = max(self.tokens_at(utilization), self.own_tokens)
        return (self.wait_s(utilization) + self._at(self.through_s, n)
                + (self.chunks - 1) * self.stage_step_s[-1] + self.overhead_s + self.kv_transfer_s)

    def ttft_p99_s(self, utilization: float) -> float:
        """p99 TTFT: a prompt arriving just after a step began waits the whole of it."""
        return self.ttft_s(utilization) + self.wait_s(utilization)


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
        times = [_stage_time(model, g, s, st, links, prefill_tokens=tokens, prefill_context=isl / 2,
                             decode_tokens=0, decode_context=0).total_s for g, st in zip(gpus, sts, strict=True)]
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


# -- queueing ---------------------------------------------------------------------------------

def ttft_under_load_s(*, ttft_s: float, utilization: float) -> float:
    """TTFT with queueing: an M/D/1 wait in front of the prompt, ``rho / (2 (1 - rho))`` services.

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

    Inverts :func:`ttft_under_load_s`; capped at ``MAX_PLANNED_UTILIZATION``.

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


# -- a replica under a given request rate ------------------------------------------------------------

@dataclass(frozen=True)
class LoadedMetrics:
    """One replica serving ``rate_per_s`` requests/s (open loop, Poisson-like arrivals)."""

    rate_per_s: float
    batch: int  # sequences in flight on average (Little's law)
    utilization: float  # rate / capacity at the largest batch
    ttft_s: float  # queueing included
    tpot_s: float
    requests_per_s: float  # served: min(rate, capacity)
    output_tokens_per_s: float


def serve_at_rate(model: ModelSpec, gpu: GPUs, s: Strategy, *, isl: int, osl: int, rate_per_s: float,
                  links: Links = Links(), capacity: ReplicaMetrics | None = None) -> LoadedMetrics:
    """Predict a replica at a request rate: the in-flight batch the rate sustains, its TPOT,
    and TTFT with the queueing wait at that utilisation.

    The batch is the least fixed point of Little's law, ``b = rate x (TTFT(b) + (osl - 1)
    TPOT(b))``, capped at the largest batch that fits. At or above capacity the queue has no
    steady state: TTFT is infinite and the replica serves its capacity.
    """
    cap = capacity or evaluate_replica(model, gpu, s, isl=isl, osl=osl, links=links)
    if cap.max_batch < 1 or cap.requests_per_s <= 0:
        return LoadedMetrics(rate_per_s, 0, math.inf, math.inf, math.inf, 0.0, 0.0)
    util = rate_per_s / cap.requests_per_s
    if util >= 1:
        return LoadedMetrics(rate_per_s, cap.batch, util, math.inf, cap.tpot_s, cap.requests_per_s,
                             cap.output_tokens_per_s)
    at: dict[int, ReplicaMetrics] = {}

    def metrics(b: int) -> ReplicaMetrics:
        if b not in at:
            at[b] = evaluate_replica(model, gpu, s, isl=isl, osl=osl, batch=b, links=links)
        return at[b]

    def little(b: int) -> int:
        m = metrics(b)
        return max(1, min(cap.max_batch, math.ceil(rate_per_s * (m.ttft_s + (osl - 1) * m.tpot_s) - 1e-9)))

    b = 1
    for _ in range(24):
        nb = little(b)
        if nb <= b:
            break
        b = nb
    else:  # slow convergence near saturation: bisect for the least b with little(b) <= b
        lo, hi = b, cap.max_batch
        while lo < hi:
            mid = (lo + hi) // 2
            if little(mid) <= mid:
                hi = mid
            else:
                lo = mid + 1
        b = lo
    m = metrics(b)
    return LoadedMetrics(rate_per_s=rate_per_s, batch=b, utilization=util,
                         ttft_s=ttft_under_load_s(ttft_s=m.ttft_s, utilization=util) + cal.ONLINE_REQUEST_OVERHEAD_S,
                         tpot_s=m.tpot_s,
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
    ttft_p99_s: float  # arriving just after a step began: a whole step's wait instead of half
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
        return s.pp * max(_stage_time(model, g, s, st, links, prefill_tokens=prefill, prefill_context=isl / 2,
                                      decode_tokens=per_micro, decode_context=isl + osl / 2).total_s
                          for g, st in zip(gpus, sts, strict=True))

    share = min(1.0, (batch - 1) / micro * isl / max(osl, 1) / chunk)
    return StepMix(decode_s=stage_s(0.0), with_chunk_s=stage_s(chunk * s.attention_dp), chunk_share=share)


def serve_at_concurrency(model: ModelSpec, gpu: GPUs, s: Strategy, *, isl: int, osl: int, concurrency: int,
                         links: Links = Links()) -> ClosedLoopMetrics:
    """Predict a replica at a fixed concurrency, from 1 upward.

    The replica runs ``b = min(concurrency, largest batch that fits)`` requests at once. Each
    request's TTFT is its prompt in the step it joins (``evaluate_replica``'s TTFT at batch b),
    its TPOT the steady step at batch b with the other requests' prompts mixed in, so one
    request alone pays its prompt once before decoding and never in TPOT. A request finishes
    after TTFT + (osl - 1) TPOT, so the replica completes b / e2e requests per second (Little's
    law); clients beyond the b slots wait their turn, ``(concurrency - b) / throughput`` on
    average, which shows up in TTFT as it does in a closed-loop benchmark.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    full = evaluate_replica(model, gpu, s, isl=isl, osl=osl, links=links)
    b = min(concurrency, max(full.max_batch, 0))
    if b < 1:
        inf = math.inf
        return ClosedLoopMetrics(concurrency, 0, inf, inf, inf, 0.0, 0.0, inf, inf, inf)
    m = evaluate_replica(model, gpu, s, isl=isl, osl=osl, batch=b, links=links)
    service_s = m.ttft_s + max(osl - 1, 0) * m.tpot_s
    rate = b / service_s
    wait = (concurrency - b) / rate
    ttft = m.ttft_s + wait
    mix = step_mix(model, gpu, s, isl=isl, osl=osl, batch=b, links=links)
    return ClosedLoopMetrics(concurrency=concurrency, batch=b, ttft_s=ttft, tpot_s=m.tpot_s,
                             e2e_s=ttft + service_s - m.ttft_s, requests_per_s=rate, output_tokens_per_s=rate * osl,
                             ttft_p99_s=ttft + (0.5 * m.step.total_s if b > 1 else 0.0),
                             itl_p50_s=mix.percentile_s(0.5), itl_p99_s=mix.percentile_s(0.99))


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
    pre = [_stage_time(model, g, s, st, links, prefill_tokens=prompt, prefill_context=isl / 2, decode_tokens=0,
                       decode_context=0).total_s for g, st in zip(gpus, sts, strict=True)]
    pre_send = send_s(message_bytes=prompt * model.hidden * ACT_BYTES / s.tp, link=links.pp) if s.pp > 1 else 0.0
    ttft = sum(pre) + (s.pp - 1) * pre_send + cal.PREFILL_REQUEST_OVERHEAD_S
    micro = min(s.pp, batch)
    dec = [_stage_time(model, g, s, st, links, prefill_tokens=0, prefill_context=0, decode_tokens=batch / micro,
                       decode_context=isl + osl / 2).total_s for g, st in zip(gpus, sts, strict=True)]
    dec_send = send_s(message_bytes=batch / micro * model.hidden * ACT_BYTES / s.tp, link=links.pp) if s.pp > 1 else 0.0
    tpot = s.pp * (max(dec) + dec_send)
    e2e = ttft + max(osl - 1, 0) * tpot
    return StaticBatchMetrics(batch=batch, fits=fits, ttft_s=ttft, tpot_s=tpot, e2e_s=e2e,
                              output_tokens_per_s=batch * osl / e2e, requests_per_s=batch / e2e)


# -- tail latencies (p99 SLOs) -------------------------------------------------------------------

#: The quantile the planner's tail SLOs (``--tpot-p99-ms``, ``--ttft-p99-ms``) are priced at.
TAIL_QUANTILE = 0.99


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

    TTFT p99: a prompt arriving just after a step began waits that whole step, where the mean
    counts half of one (at batch 1 nothing runs, so nothing is waited for). A prefill
    replica's mean counts half of the step its load sets (``m.prefill_step``, at
    ``utilization``; :class:`PrefillStep`), so its p99 adds the other half; its mean takes no
    M/D/1 factor (the step wait is its queue). For other roles, under a request rate the same M/D/1 queueing factor as the mean's applies
    (:func:`ttft_under_load_s`); the tail of the queueing wait itself is not modelled, so
    the p99 is optimistic under heavy load.
    """
    if role == "prefill":
        step = m.prefill_step
        return TailLatency(tpot_p99_s=0.0, ttft_extra_s=step.wait_s(utilization) if step is not None else 0.0)
    if role == "decode":
        return TailLatency(tpot_p99_s=m.tpot_s, ttft_extra_s=0.0)
    s = effective_strategy(model, gpu, s, isl=isl, osl=osl)  # the token budget evaluate_replica priced
    mix = step_mix(model, gpu, s, isl=isl, osl=osl, batch=m.batch, links=links)
    return TailLatency(tpot_p99_s=max(m.tpot_s, mix.percentile_s(TAIL_QUANTILE)),
                       ttft_extra_s=0.5 * m.step.total_s if m.batch > 1 else 0.0)
