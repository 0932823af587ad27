"""Memory per GPU: weights, KV cache, activations, runtime overhead and the reserve.

All functions are pure; sizes are bytes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from costmodels import calibration as cal
from costmodels.model_spec import ModelSpec
from costmodels.units import dtype_bytes, weight_storage_bytes

#: Embedding and LM head stay in 16 bit when the linear layers are quantised (vLLM and
#: TensorRT-LLM FP8/INT4 recipes leave ``lm_head`` and the embedding unquantised).
EMBEDDING_BYTES = 2.0


def weight_bytes(*, params: float, dtype: str) -> float:
    """Bytes to hold ``params`` parameters in ``dtype``, quantisation scales included
    (``costmodels.units.SCALE_BYTES_PER_WEIGHT``).

    >>> weight_bytes(params=130e9, dtype="fp16") / 1e9
    260.0
    >>> round(weight_bytes(params=130e9, dtype="int4") / 1e9, 2)
    67.54
    """
    return params * weight_storage_bytes(dtype)


def replicated_kv_params_per_layer(model: ModelSpec, attention_tp: int) -> float:
    """K and V projection weights one GPU holds beyond its 1/attention_tp share.

    With more attention ranks than KV heads each rank still needs a whole KV head: the runtimes
    replicate the K/V projections (vLLM ``QKVParallelLinear``: ``num_kv_head_replicas =
    tp_size // total_num_kv_heads``; TensorRT-LLM the same), so a rank holds ``2 x hidden x
    head_dim`` of them instead of ``2 x hidden x kv_heads x head_dim / tp``. MLA's latent
    projections are not split by head and are counted whole already.

    >>> from costmodels.models import get_model
    >>> m = get_model("llama-3.1-70b")
    >>> replicated_kv_params_per_layer(m, 8), replicated_kv_params_per_layer(m, 16)
    (0.0, 1048576.0)
    """
    if model.is_mla or attention_tp <= model.kv_heads:
        return 0.0
    return 2 * model.hidden * model.head_dim * (1 - model.kv_heads / attention_tp)


def kv_cache_bytes_per_token(*, layers: int, kv_heads: int, head_dim: int, tp: int, dtype_bytes: float) -> float:
    """Bytes of K and V one token occupies on one GPU (GQA/MQA heads replicated past tp).

    >>> kv_cache_bytes_per_token(layers=80, kv_heads=8, head_dim=128, tp=1, dtype_bytes=2)
    327680
    """
    return 2 * layers * max(kv_heads // tp, 1) * head_dim * dtype_bytes


def front_loaded_split(layers: int, pp: int) -> tuple[int, ...]:
    """Layers per stage as TensorRT-LLM splits them (``Mapping.pp_layers``: ``torch.tensor_split``,
    so when ``layers % pp = n`` the first ``n`` stages get one layer more).

    >>> front_loaded_split(31, 2), front_loaded_split(80, 3)
    ((16, 15), (27, 27, 26))
    """
    if not 1 <= pp <= layers:
        raise ValueError(f"pp={pp} must be between 1 and the {layers} layers")
    base, extra = divmod(layers, pp)
    return tuple(base + (1 if i < extra else 0) for i in range(pp))


def balanced_layer_split(layers: int, pp: int) -> tuple[int, ...]:
    """Layers per pipeline stage, as even as possible; extra layers go to the middle stages.

    The first and last stages also hold the embedding and the LM head, so they are the
    ones left lighter when the split is uneven; the last (which also runs the LM head
    GEMM) before the first.

    >>> balanced_layer_split(80, 3)
    (27, 27, 26)
    >>> balanced_layer_split(126, 4)
    (31, 32, 32, 31)
    """
    if not 1 <= pp <= layers:
        raise ValueError(f"pp={pp} must be between 1 and the {layers} layers")
    base, extra = divmod(layers, pp)
    split = [base] * pp
    order = sorted(range(pp), key=lambda i: (i in (0, pp - 1), abs(i - (pp - 1) / 2), i))
    for i in order[:extra]:
        split[i] += 1
    return tuple(split)


@lru_cache(maxsize=64)
def _params_before(model: ModelSpec) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Prefix sums of :meth:`ModelSpec.layer_params` and :meth:`ModelSpec.routed_expert_params`:
    entry ``i`` is the total over layers ``0 .. i-1``.

    A search prices thousands of stages of one model; summing layer by layer for each made
    this the largest cost of an 8-GPU search. The sums are integers, so differences of these
    prefixes are exactly the per-stage sums (the same bytes, not an approximation).
    """
    all_params, routed = [0], [0]
    for i in range(model.layers):
        all_params.append(all_params[-1] + model.layer_params(i))
        routed.append(routed[-1] + model.routed_expert_params(i))
    return tuple(all_params), tuple(routed)


def stage_weight_bytes(model: ModelSpec, *, tp: int, layer_start: int, layer_count: int,
                       first: bool, last: bool, weight_dtype: str, attention_tp: int | None = None) -> float:
    """Weight bytes on one GPU of a pipeline stage of ``tp`` GPUs holding layers [start, start+count).

    The routed experts are spread over all ``tp`` ranks of the stage (with expert parallelism
    of degree ``ep`` each rank holds experts/ep experts sliced tp/ep ways: the same bytes).
    Everything else (attention, dense MLPs, shared experts, router) is split across the
    attention group's ``attention_tp`` ranks (``tp`` without attention data parallelism; with
    it, each attention group holds its own copy, as TensorRT-LLM and SGLang run the dense
    part under attention DP). Embedding on the first stage and LM head on the last, both
    split by vocabulary across the attention group.
    """
    at = attention_tp or tp
    end = layer_start + layer_count
    if 0 <= layer_start <= end <= model.layers:
        all_params, routed_params = _params_before(model)
        routed = routed_params[end] - routed_params[layer_start]
        dense = all_params[end] - all_params[layer_start] - routed
    else:  # a range past the model's layers (no caller builds one): sum it layer by layer, as before
        routed = sum(model.routed_expert_params(i) for i in range(layer_start, end))
        dense = sum(model.layer_params(i) for i in range(layer_start, end)) - routed
    replicated = layer_count * replicated_kv_params_per_layer(model, at)
    out = weight_bytes(params=dense / at + routed / tp + replicated, dtype=weight_dtype)
    emb_bytes = max(EMBEDDING_BYTES, dtype_bytes(weight_dtype))
    if first:
        out += model.embedding_params() / at * emb_bytes
    if last:
        out += (model.lm_head_params() / at + model.hidden) * emb_bytes
    return out


def kv_bytes_per_token_per_gpu(model: ModelSpec, *, tp: int, layers: int, kv_dtype: str) -> float:
    """KV-cache bytes one token of context takes on one GPU of a stage with ``layers`` layers.

    >>> from costmodels.models import get_model
    >>> kv_bytes_per_token_per_gpu(get_model("llama-2-70b"), tp=1, layers=80, kv_dtype="fp16")
    327680.0
    """
    return layers * model.kv_elements_per_token_per_layer(tp) * dtype_bytes(kv_dtype)


def kv_bytes_per_sequence_per_gpu(model: ModelSpec, *, tp: int, layers: int, kv_dtype: str,
                                  context: int, sliding_window: bool = True) -> float:
    """KV-cache bytes one sequence of ``context`` tokens holds on one GPU.

    With ``sliding_window`` the runtime keeps only the window for sliding-window layers.
    """
    stored = model.kv_tokens_stored(context, layers) if sliding_window else float(context * layers)
    return stored * model.kv_elements_per_token_per_layer(tp) * dtype_bytes(kv_dtype)


def activation_bytes(model: ModelSpec, *, tp: int, step_tokens: int, batch: int) -> float:
    """Peak activation workspace of one forward step on one GPU.

    The largest live tensors of a step of ``step_tokens`` tokens: the MLP's up/gate
    projection output (the widest), the QKV projection, a few hidden-size buffers for
    residual and norm, all in 16 bit; plus FP32 logits for the ``batch`` sequences being
    sampled. This is what vLLM's profiling run measures at ``max_num_batched_tokens``.
    """
    mlp_width = model.moe_intermediate * model.experts_per_token if model.is_moe else model.intermediate
    # An MoE model with dense layers anywhere in its pattern also runs the dense MLP's width.
    mlp_width = max(mlp_width, model.intermediate if not model.is_moe or model.dense_layers else 0)
    per_token = ((2 if model.gated_mlp else 1) * mlp_width / tp
                 + (model.heads + 2 * model.kv_heads) * model.head_dim / tp
                 + 4 * model.hidden) * 2.0
    logits = batch * model.vocab / tp * 4.0
    return step_tokens * per_token + logits


@dataclass(frozen=True)
class MemoryBreakdown:
    """Memory of the most loaded GPU of a replica, in bytes."""

    weights: float
    kv_cache: float
    activations: float
    overhead: float
    reserve: float
    capacity: float

    @property
    def total(self) -> float:
        return self.weights + self.kv_cache + self.activations + self.overhead + self.reserve

    @property
    def fits(self) -> bool:
        return self.total <= self.capacity * (1 + 1e-9) and self.kv_cache >= 0

    def as_dict(self) -> dict[str, int]:
        return {"weights": int(self.weights), "kv_cache": int(self.kv_cache),
                "activations": int(self.activations), "overhead": int(self.overhead),
                "reserve": int(self.reserve), "total": int(self.total), "capacity": int(self.capacity)}


def overhead_bytes(*, gpus_in_replica: int) -> float:
    return cal.RUNTIME_OVERHEAD_BYTES + (cal.NCCL_BUFFER_BYTES if gpus_in_replica > 1 else 0.0)


def kv_budget_bytes(*, capacity: float, weights: float, activations: float, overhead: float,
                    utilization: float = cal.GPU_MEMORY_UTILIZATION, rule: str = "total") -> tuple[float, float]:
    """(KV-cache budget, reserve) in bytes on one GPU; the budget is negative when the rest does not fit.

    ``rule="total"``: the runtime claims ``utilization`` of the whole GPU (vLLM, SGLang).
    ``rule="free"``: the KV cache gets ``utilization`` of what is free after the rest (TensorRT-LLM).

    >>> [round(x, 6) for x in kv_budget_bytes(capacity=100.0, weights=50.0, activations=5.0, overhead=5.0, utilization=0.9)]
    [30.0, 10.0]
    >>> [round(x, 6) for x in kv_budget_bytes(capacity=100.0, weights=50.0, activations=5.0, overhead=5.0,
    ...                                       utilization=0.9, rule="free")]
    [36.0, 4.0]
    """
    if rule == "free":
        free = capacity - weights - activations - overhead
        return free * utilization, max(free, 0.0) * (1 - utilization)
    reserve = capacity * (1 - utilization)
    return capacity - reserve - weights - activations - overhead, reserve


def max_sequences(*, kv_budget: float, kv_bytes_per_sequence: float) -> int:
    """How many sequences of a given KV footprint fit in ``kv_budget`` bytes.

    >>> max_sequences(kv_budget=10.0, kv_bytes_per_sequence=3.0)
    3
    """
    if kv_budget <= 0 or kv_bytes_per_sequence <= 0:
        return 0
    return math.floor(kv_budget / kv_bytes_per_sequence)
