"""Time of one engine step on one GPU of one pipeline stage: a roofline per operation.

Each operation costs ``max(FLOPs / (peak x efficiency), bytes / (HBM x efficiency))``:
linear layers (GEMMs: weights read once per step, FLOPs grow with tokens), attention
(KV read per decode token, FLOPs growing with context), then tensor-parallel and
expert-parallel communication and a fixed per-step overhead.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from costmodels import calibration as cal
from costmodels.attention_tables import decode_attention_s, prompt_attention_s
from costmodels.comm import allgather_s, allreduce_s, alltoall_s
from costmodels.dense_gemm import KERNEL_FORMAT, dense_layers_s, lm_head_s
from costmodels.hardware import GPU, fp4_matmul_share
from costmodels.memory import replicated_kv_params_per_layer
from costmodels.model_spec import ModelSpec
from costmodels.moe_measured import measured_moe_layer_s
from costmodels.units import dtype_bytes, weight_storage_bytes
from topologies.graph import Link

ACT_BYTES = 2.0  # activations travel in 16 bit
#: Routing each routed copy of a token carries in TensorRT-LLM's attention-DP gather: the expert's
#: index (int32) and its weight (float32) (its MoE gathers ``token_selected_experts`` and
#: ``token_final_scales`` beside the hidden states, ``fused_moe_cutlass.py``).
ROUTING_BYTES_PER_COPY = 8.0


def matmul_efficiency(tokens: float) -> float:
    """Share of peak a GEMM with ``tokens`` rows reaches.

    >>> math.isclose(matmul_efficiency(cal.MATMUL_M_HALF_TOKENS), cal.MATMUL_EFFICIENCY_MAX / 2)
    True
    """
    if tokens <= 0:
        return cal.MATMUL_EFFICIENCY_MAX
    return cal.MATMUL_EFFICIENCY_MAX * tokens / (tokens + cal.MATMUL_M_HALF_TOKENS)


@dataclass(frozen=True)
class StepTime:
    linear_s: float
    attention_s: float
    comm_s: float
    overhead_s: float

    @property
    def total_s(self) -> float:
        return self.linear_s + self.attention_s + self.comm_s + self.overhead_s


@dataclass(frozen=True)
class StageShape:
    """What one pipeline stage holds on one GPU."""

    layer_start: int
    layer_count: int
    first: bool
    last: bool


def expert_load_factor(*, routed: float, ep: int, imbalance: float | None = None) -> float:
    """The busiest expert-parallel rank's routed (token, expert) pairs over the mean.

    The step waits for the busiest rank, so its expert GEMMs and its share of the
    all-to-all are what a step pays. With ``imbalance`` given (``--expert-imbalance``) that
    figure is used as is: measured routing skew, or 1.0 for perfectly balanced experts
    (e.g. after an expert-placement load balancer). Otherwise routing is taken as uniform
    and random: ``routed`` pairs fall on ``ep`` ranks about binomially, mean ``mu = routed /
    ep`` and deviation ``sigma = sqrt(routed (1/ep) (1 - 1/ep))``, and the largest of ``ep``
    such counts is about ``mu + sigma sqrt(2 ln ep)`` (the usual bound on the maximum of
    ``ep`` near-normal variables). The factor is large for the few tokens of a decode step
    on many ranks and falls towards 1 as steps grow; it never exceeds ``ep`` (one rank has
    every pair).

    >>> expert_load_factor(routed=8, ep=1)
    1.0
    >>> round(expert_load_factor(routed=8 * 256, ep=8), 3), round(expert_load_factor(routed=8 * 4096, ep=8), 3)
    (1.119, 1.03)
    >>> expert_load_factor(routed=64, ep=8, imbalance=1.5)
    1.5
    """
    if ep <= 1:
        return 1.0
    if imbalance is not None:
        return min(float(imbalance), float(ep))
    if routed <= 0:
        return 1.0
    mean = routed / ep
    sigma = math.sqrt(routed * (1 / ep) * (1 - 1 / ep))
    return min(float(ep), 1 + math.sqrt(2 * math.log(ep)) * sigma / mean)


@dataclass(slots=True)
class _Step:
    """What every term of one stage step reads: the step's shape and the GPU's rates (built once per
    step, thousands of times a search: slots, not frozen, whose __init__ is several times slower)."""

    model: ModelSpec
    gpu: GPU
    stage: StageShape
    tp: int
    ep: int
    dp: int  # attention data-parallel groups
    at: int  # GPUs per attention group
    weight_dtype: str
    kv_dtype: str
    runtime: str
    steps: int
    decode_tokens: float  # the whole stage's
    tok_per_step: float  # every token of the stage, per step
    g_prefill: float  # the busiest attention group's prompt tokens
    g_decode: float  # one attention group's decoding sequences
    group_tokens: float  # the busiest attention group's tokens
    group_per_step: float  # the same, per step
    peak_flop_per_s: float  # the GEMMs' tensor-core peak in the weights' format
    hbm_bytes_per_s: float
    moe_layers: int


def stage_step_time(model: ModelSpec, gpu: GPU, *, stage: StageShape, tp: int, ep: int,
                    weight_dtype: str, kv_dtype: str, prefill_tokens: float, prefill_context: float,
                    decode_tokens: float, decode_context: float, steps: int = 1,
                    tp_link: Link, ep_link: Link | None = None, attention_dp: int = 1,
                    expert_imbalance: float | None = None, ep_local_link: Link | None = None,
                    ep_local_ranks: int = 0, runtime: str = "vllm",
                    busiest_prefill_tokens: float | None = None, host_overlap: bool = True) -> StepTime:
    """Time one stage takes to process a step's tokens on each of its ``tp`` GPUs.

    ``prefill_tokens`` new prompt tokens, each attending to ``prefill_context`` tokens on
    average; ``decode_tokens`` sequences generating one token each, attending to
    ``decode_context`` tokens. ``steps`` is how many engine steps the tokens are spread
    over (chunked prefill caps tokens per step): weights are read, and the fixed
    overhead paid, once per step.

    With ``attention_dp`` > 1 the stage's tokens are split over that many attention groups
    of ``tp / attention_dp`` GPUs, each attending to its own sequences with its own copy of
    the dense weights, all in lockstep; the routed experts see every group's tokens. The
    counts above are the whole stage's. ``runtime`` picks the all-reduce path that runtime runs
    (``costmodels.comm.allreduce_s``).

    ``busiest_prefill_tokens``: under attention DP, the prompt tokens of the attention group
    that carries the most (default: ``prefill_tokens`` spread evenly). The groups run in
    lockstep, so the step waits for that group's dense layers and attention, while the routed
    experts see every group's tokens.

    The terms, each its own function: the dense linear layers, the routed experts, the LM head
    (:func:`_linear_s`), attention (:func:`_attention_s`), tensor- and expert-parallel
    communication (:func:`_communication_s`) and the fixed costs of a step.

    ``host_overlap``: the engine prepares each step on the host while the GPU runs the one before
    (``Strategy.overlaps_host``), so the fixed host work of a step delays it only by what it exceeds
    the GPU's work by; without overlap the GPU waits for all of it. The per-layer small kernels are
    GPU work, and the per-sequence host work is charged either way (README, "Host work behind the
    GPU": hiding it too over-predicts the measured engine that overlaps, at large batches).
    """
    tokens = prefill_tokens + decode_tokens
    if tokens <= 0:
        return StepTime(0.0, 0.0, 0.0, 0.0)
    dp = attention_dp
    peak = gpu.matmul_flop_per_s(weight_dtype)
    if peak > gpu.bf16_flop_per_s:  # the GEMMs run in an 8- or 4-bit tensor-core format
        peak *= cal.LOW_PRECISION_MATMUL_EFFICIENCY
        if weight_dtype == "fp4":  # measured NVFP4 GEMMs gain less over FP8 than the datasheet says
            peak *= fp4_matmul_share(gpu.name, runtime)
    g_prefill = prefill_tokens / dp if busiest_prefill_tokens is None else busiest_prefill_tokens
    # positional, in _Step's field order (a keyword call costs three times as much, thousands of times a search)
    group_tokens = decode_tokens / dp + g_prefill
    st = _Step(model, gpu, stage, tp, ep, dp, tp // dp, weight_dtype, kv_dtype, runtime, steps, decode_tokens,
               tokens / steps, g_prefill, decode_tokens / dp, group_tokens, group_tokens / steps, peak,
               gpu.hbm_bandwidth_bytes_per_s * cal.HBM_EFFICIENCY,
               model.moe_layers_in(stage.layer_start, stage.layer_count))
    linear_s, load = _linear_s(st, expert_imbalance)
    attention_s = _attention_s(st, prefill_context, decode_context)
    comm_s = _communication_s(st, load, tp_link, ep_link, ep_local_link, ep_local_ranks)
    # The GPU's small kernels of every layer; the host's fixed work per step, hidden behind the GPU's
    # work where the engine overlaps; the host's per-sequence work (one scheduler per attention group).
    kernels_s = steps * cal.LAYER_OVERHEAD_S * stage.layer_count
    host_s = steps * cal.STEP_OVERHEAD_S
    if host_overlap:
        host_s = max(0.0, host_s - (linear_s + attention_s + comm_s + kernels_s))
    sequences_s = cal.SEQUENCE_OVERHEAD_S * decode_tokens / dp
    return StepTime(linear_s, attention_s, comm_s, kernels_s + host_s + sequences_s)


def _linear_s(st: _Step, expert_imbalance: float | None) -> tuple[float, float]:
    """The stage's linear layers, and the busiest expert-parallel rank's load factor
    (:func:`expert_load_factor`; 1 without routed experts).

    The dense part (attention projections, dense MLPs, shared experts) runs on the attention
    group's tokens; the routed experts' GEMMs see only the tokens routed to each expert, from
    every group; the last stage adds the LM head."""
    model, gpu, stage, steps = st.model, st.gpu, st.stage, st.steps
    b_w = weight_storage_bytes(st.weight_dtype)
    peak, hbm, at = st.peak_flop_per_s, st.hbm_bytes_per_s, st.at
    moe_layers = st.moe_layers
    # Measured GEMM latencies at the projections' own shapes where a table covers the GPU and
    # format (costmodels.dense_gemm); else the layer's FLOPs at the m-curve, or its weight reads.
    measured_dense = dense_layers_s(model, gpu=gpu.name, runtime=st.runtime, weight_dtype=st.weight_dtype, at=at,
                                    rows=st.group_per_step, dense_layers=stage.layer_count - moe_layers,
                                    moe_layers=moe_layers)
    dense_params = _stage_dense_params(model, stage.layer_count, moe_layers, at)
    if measured_dense is not None:
        # A step reads every dense weight from memory at least once, no faster than the datasheet
        # bandwidth: a table measured with a GEMM's weights warm in the L2 cache can beat that (RTX PRO
        # 6000's under TensorRT-LLM: gpt-j-6b at batch 1 came out 15 % under this floor).
        linear_s = max(steps * measured_dense, steps * dense_params * b_w / gpu.hbm_bandwidth_bytes_per_s)
    else:
        flops = 2 * st.group_tokens * dense_params
        linear_s = max(flops / (peak * matmul_efficiency(st.group_per_step)), steps * dense_params * b_w / hbm)
    load = 1.0
    if moe_layers:
        experts_s, load = _routed_experts_s(st, expert_imbalance, b_w)
        linear_s += experts_s
    if stage.last:
        linear_s += _lm_head_s(st)
    return linear_s, load


def _stage_dense_params(model: ModelSpec, layer_count: int, moe_layers: int, at: int) -> float:
    """Dense parameters one GPU of a stage holds (attention projections, dense MLPs, shared experts:
    split ``at`` ways, with the K/V heads replicated past the KV head count). The stage's layers of
    each kind (``ModelSpec.mlp_kinds``) times that kind's parameters, computed once rather than per layer
    (a search calls this thousands of times); the counts are integers, so the product is the sum."""
    moe_layer_dense = model.attention_params_per_layer() + model.shared_expert_params()
    dense_layer_dense = model.attention_params_per_layer() + model.dense_mlp_params()
    dense_params = float(moe_layers * moe_layer_dense + (layer_count - moe_layers) * dense_layer_dense)
    return dense_params / at + layer_count * replicated_kv_params_per_layer(model, at)


def _routed_experts_s(st: _Step, expert_imbalance: float | None, b_w: float) -> tuple[float, float]:
    """The routed experts of the stage's MoE layers on the busiest expert-parallel rank, and that
    rank's load factor."""
    model, tok_per_step, steps = st.model, st.tok_per_step, st.steps
    local_experts = model.experts / st.ep
    expert_params_per_gpu = model.expert_params() * st.ep / st.tp  # one local expert's slice (sliced tp/ep ways)
    # Only the experts a step touches run a GEMM and read their weights: each of the E
    # experts is missed by a token's k picks with probability 1 - k/E, so a rank's
    # local_experts see local_experts * (1 - (1 - k/E)^tokens) distinct experts, and each
    # touched expert's GEMM has the rank's routed (token, expert) pairs over them as rows.
    # (Pricing every local expert at the average rows per expert, 0.03 at a DeepSeek-V3
    # batch of 1, charged untouched experts a padded tile: TPOT fell as the batch grew.)
    touched = local_experts * (1 - (1 - model.experts_per_token / model.experts) ** tok_per_step)
    load = expert_load_factor(routed=tok_per_step * model.experts_per_token, ep=st.ep, imbalance=expert_imbalance)
    pairs_per_step = load * tok_per_step * model.experts_per_token * local_experts / model.experts
    rows_per_expert = max(pairs_per_step / max(touched, 1e-9), 1.0)
    moe_flops = steps * 2 * pairs_per_step * expert_params_per_gpu
    moe_bytes = steps * touched * expert_params_per_gpu * b_w
    # A measured whole-layer latency where the runtime's table covers this GPU, format,
    # expert shape and split (costmodels.moe_measured), at the busiest rank's tokens;
    # else the expert GEMMs priced from their FLOPs and weight reads.
    measured = measured_moe_layer_s(model, gpu=st.gpu.name, runtime=st.runtime,
                                    weight_dtype=KERNEL_FORMAT.get(st.weight_dtype, st.weight_dtype),
                                    moe_tp=st.tp // st.ep, moe_ep=st.ep, tokens=tok_per_step * load)
    if measured is not None:
        return st.moe_layers * steps * measured, load
    return st.moe_layers * max(moe_flops / (st.peak_flop_per_s * matmul_efficiency(rows_per_expert)
                                            * cal.MOE_GEMM_EFFICIENCY), moe_bytes / st.hbm_bytes_per_s), load


def _lm_head_s(st: _Step) -> float:
    """The LM head: one row per sequence that samples (decode tokens; prompts finishing prefill
    are a small share and ignored)."""
    model, gpu, steps = st.model, st.gpu, st.steps
    head_params = model.lm_head_params() or model.embedding_params()
    head = head_params / st.at
    rows = max(st.g_decode, 1.0)  # a group that samples has at least one row: count it so in both terms
    measured_head = lm_head_s(model, gpu=gpu.name, runtime=st.runtime, at=st.at, rows=max(rows / steps, 1.0))
    if measured_head is not None:
        return steps * measured_head
    return max(2 * rows * head / (gpu.bf16_flop_per_s * matmul_efficiency(max(rows / steps, 1.0))),
               steps * head * 2.0 / st.hbm_bytes_per_s)


def _attention_s(st: _Step, prefill_context: float, decode_context: float) -> float:
    """Attention: FLOPs of QK^T and AV over the attended context; decode reads the KV cache."""
    model, gpu, steps, hbm = st.model, st.gpu, st.steps, st.hbm_bytes_per_s
    g_prefill, g_decode = st.g_prefill, st.g_decode
    heads_per_gpu = model.heads / st.at
    if model.is_mla:
        # MLA: prompts run as ordinary attention over decompressed keys and values (QK over
        # nope + rope dims, AV over v dims); decode runs in the compressed space with the
        # up-projections absorbed into the query and output (FlashMLA, FlashInfer's MLA
        # kernels; DeepSeek-V2 paper, section 2.1.2): QK over kv_lora_rank + rope dims and AV
        # over kv_lora_rank dims per head and context token.
        prefill_flop_per_ctx = 2 * heads_per_gpu * (model.qk_nope_head_dim + model.qk_rope_head_dim
                                                    + model.v_head_dim)
        decode_flop_per_ctx = 2 * heads_per_gpu * (2 * model.kv_lora_rank + model.qk_rope_head_dim)
    else:
        prefill_flop_per_ctx = decode_flop_per_ctx = 4 * heads_per_gpu * model.head_dim
    n_layers = st.stage.layer_count
    prompt_flops = n_layers * prefill_flop_per_ctx * g_prefill * prefill_context
    decode_flops = n_layers * decode_flop_per_ctx * g_decode * decode_context
    # Prompt tokens: the runtime's measured kernel where a table covers it (costmodels.attention_tables;
    # far from peak at a TP shard's head counts, nearer it for long prompts), never faster than the
    # tensor cores' peak; else their FLOPs at the share of peak the tables reach (ATTENTION_EFFICIENCY).
    measured_prompt = prompt_attention_s(model, gpu=gpu.name, runtime=st.runtime, kv_dtype=st.kv_dtype, at=st.at,
                                         tokens=g_prefill / steps, context=prefill_context, layers=n_layers,
                                         flop_per_s=gpu.bf16_flop_per_s) if g_prefill else None
    if measured_prompt is not None:
        prompt_compute_s = max(steps * measured_prompt, prompt_flops / gpu.bf16_flop_per_s)
    else:
        prompt_compute_s = prompt_flops / (gpu.bf16_flop_per_s * cal.ATTENTION_EFFICIENCY)
    attn_compute_s = prompt_compute_s + decode_flops / (gpu.bf16_flop_per_s * cal.DECODE_ATTENTION_EFFICIENCY)
    kv_token_bytes = model.kv_elements_per_token_per_layer(st.at) * dtype_bytes(st.kv_dtype)
    # Decode reads each sequence's cache; every new token's K and V is written once. Prompt
    # attention works on tiles in on-chip memory, so its HBM traffic is the write.
    decode_kv_tokens = g_decode * model.kv_tokens_stored(int(decode_context), n_layers) if g_decode else 0.0
    kv_bytes = (decode_kv_tokens + st.group_tokens * n_layers) * kv_token_bytes
    attention_s = max(attn_compute_s, kv_bytes / hbm)
    # Decode attention is never faster than the runtime's measured kernel (costmodels.attention_tables):
    # at small batches the kernels reach far less than HBM bandwidth and pay a floor per call. The
    # roofline above stays a bound the table cannot undercut: the tables were measured on one
    # sequence set, which the GPU's L2 holds for small shapes (L40S and RTX PRO 6000 tables reach
    # up to 2.4-3.6x their HBM bandwidth, A100's 1.5x), while a served batch's cache streams from HBM.
    measured_decode = decode_attention_s(model, gpu=gpu.name, runtime=st.runtime, kv_dtype=st.kv_dtype, at=st.at,
                                         sequences=g_decode / steps, context=decode_context, layers=n_layers,
                                         hbm_bytes_per_s=gpu.hbm_bandwidth_bytes_per_s) if g_decode else None
    if measured_decode is not None:
        prompt_s = max(prompt_compute_s, g_prefill * n_layers * kv_token_bytes / hbm)
        decode_bytes = (decode_kv_tokens + g_decode * n_layers) * kv_token_bytes
        attention_s = max(attention_s, prompt_s + max(steps * measured_decode, decode_bytes / hbm))
    return attention_s


def _communication_s(st: _Step, load: float, tp_link: Link, ep_link: Link | None, ep_local_link: Link | None,
                     ep_local_ranks: int) -> float:
    """Tensor- and expert-parallel communication of the stage's layers.

    Without attention DP every rank holds every token: two all-reduces per layer across the
    stage (an MoE layer's experts, EP or not, are combined by the second one: each rank computes
    its experts' share of all tokens, as vLLM, SGLang and TensorRT-LLM do when the attention is
    not data-parallel). With attention DP an attention group all-reduces its own tokens, and each
    MoE layer moves the groups' tokens to the ranks holding their experts and back, by the
    exchange the launch uses:

    * inside one scale-up domain, the runtimes' default: all-gather every group's tokens to
      every rank, each computes its experts' share, and a reduce-scatter returns the sums
      (vLLM's allgather_reducescatter, SGLang's DP-attention gather, TensorRT-LLM's
      all-gather/reduce-scatter);
    * over several domains, DeepEP's dispatch and combine (the emitters select it): two
      all-to-alls, each rank sending its 1/tp share of the tokens, k copies each.
    """
    model, tp, steps, moe_layers = st.model, st.tp, st.steps, st.moe_layers
    n_layers = st.stage.layer_count
    if st.dp == 1:
        if tp <= 1:
            return 0.0
        msg = st.tok_per_step * model.hidden * ACT_BYTES
        return steps * 2 * n_layers * allreduce_s(message_bytes=msg, ranks=tp, link=tp_link, runtime=st.runtime,
                                                   gpu=st.gpu.name)
    msg = st.group_per_step * model.hidden * ACT_BYTES
    ar = allreduce_s(message_bytes=msg, ranks=st.at, link=tp_link, runtime=st.runtime, gpu=st.gpu.name)
    per_step = 2 * (n_layers - moe_layers) * ar
    if moe_layers and ep_local_link is not None and 0 < ep_local_ranks < tp:
        # Dispatch carries the experts' GEMM inputs (see dispatch_bytes_per_element); combine is 16-bit.
        dispatch_bytes = dispatch_bytes_per_element(st.runtime, st.weight_dtype, model.native_dtype, alltoall=True)
        pairs = load * st.tok_per_step / tp * model.experts_per_token * model.hidden
        kw: dict[str, Any] = dict(ranks=tp, link=ep_link or tp_link, local_link=ep_local_link,
                                  local_ranks=ep_local_ranks)
        a2a = alltoall_s(message_bytes=pairs * dispatch_bytes, **kw) + alltoall_s(message_bytes=pairs * ACT_BYTES,
                                                                                  **kw)
        per_step += moe_layers * (ar + a2a)
    elif moe_layers:
        # The gather carries every group's tokens of one step in the format the runtime sends them
        # (see dispatch_bytes_per_element); TensorRT-LLM gathers each routed copy's expert index
        # (int32) and weight (fp32) beside them. The reduce-scatter returns 16-bit sums.
        link = ep_link or tp_link
        per_token = model.hidden * dispatch_bytes_per_element(st.runtime, st.weight_dtype, model.native_dtype,
                                                              alltoall=False)
        if st.runtime == "trtllm":
            per_token += model.experts_per_token * ROUTING_BYTES_PER_COPY
        gather = allgather_s(message_bytes=st.tok_per_step * per_token, ranks=tp, link=link)
        scatter = allgather_s(message_bytes=st.tok_per_step * model.hidden * ACT_BYTES, ranks=tp, link=link)
        per_step += moe_layers * (ar + gather + scatter)
    return steps * per_step


def dispatch_bytes_per_element(runtime: str, weight_dtype: str, native_dtype: str = "bf16", *,
                               alltoall: bool) -> float:
    """Bytes per hidden element of the tokens an MoE layer sends to its experts' ranks, by
    all-to-all (``alltoall``: DeepEP's dispatch) or by all-gathering every attention group's
    tokens; ``native_dtype`` is the format the checkpoint ships in (``ModelSpec.native_dtype``).

    TensorRT-LLM's CUTLASS MoE (its default) quantises a token before it leaves the rank when
    attention is data-parallel or experts are reached by all-to-all
    (``tensorrt_llm/_torch/modules/fused_moe/fused_moe_cutlass.py``: ``run_post_quant_allgather =
    self.use_dp and self.parallel_size > 1``; NVFP4 through ``fp4_quantize``, per-tensor FP8
    through ``static_quantize_e4m3_per_tensor``), for the formats a checkpoint quantised for it
    carries: NVFP4 as 4-bit values with one FP8 scale per 16 (0.5625 bytes), per-tensor FP8 as one
    byte. A checkpoint that ships its own FP8 (block scales: DeepSeek-V3/R1, Qwen3-*-FP8) is
    gathered or sent in 16 bits and quantised after, and so is one that ships MXFP4 (GPT-OSS;
    TensorRT-LLM's modes for it gather 16 or 8 bits: 16 taken, the conservative side), and every
    other format under TensorRT-LLM. DeepEP's dispatch under vLLM and SGLang sends 8-bit tokens
    where the experts run in 8 bits (DeepEP's FP8 dispatch, DeepSeek's published inference
    system); their all-gathers, and every other case, carry 16-bit activations.

    >>> dispatch_bytes_per_element("trtllm", "fp4", alltoall=False), dispatch_bytes_per_element("vllm", "fp4", alltoall=False)
    (0.5625, 2.0)
    >>> dispatch_bytes_per_element("trtllm", "fp8", "fp8", alltoall=True), dispatch_bytes_per_element("trtllm", "fp8", alltoall=False)
    (2.0, 1.0)
    >>> dispatch_bytes_per_element("sglang", "fp8", alltoall=True), dispatch_bytes_per_element("sglang", "fp8", alltoall=False)
    (1.0, 2.0)
    """
    if runtime == "trtllm":
        quantised_here = weight_dtype in ("fp8", "fp4") and native_dtype != weight_dtype
        return weight_storage_bytes(weight_dtype) if quantised_here else ACT_BYTES
    return 1.0 if alltoall and dtype_bytes(weight_dtype) == 1.0 else ACT_BYTES


def steps_for_tokens(tokens: float, max_num_batched_tokens: int) -> int:
    """Engine steps needed to process ``tokens`` tokens at a per-step token budget.

    >>> steps_for_tokens(10000, 8192)
    2
    """
    return max(1, math.ceil(tokens / max_num_batched_tokens - 1e-9))
