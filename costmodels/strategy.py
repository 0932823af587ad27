"""How a replica is split: the parallel degrees and settings it runs with (:class:`Strategy`),
the links its collectives cross (:class:`Links`), which strategies a model admits, and the
pipeline stages a strategy makes.

Every cost model below takes a :class:`Strategy`; nothing here prices anything.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from costmodels import calibration as cal
from costmodels.compute import StageShape
from costmodels.hardware import GPU
from costmodels.memory import (
    balanced_layer_split,
)
from costmodels.model_spec import ModelSpec
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
    # Whether the engine's release overlaps its host work with the GPU's step where it can; None:
    # what the runtime's current release does by default (calibration.RuntimeProfile.overlaps_host).
    # False prices an engine that does not (the releases most published measurements ran).
    host_overlap: bool | None = None

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

    @property
    def overlaps_host(self) -> bool:
        """Whether this replica's steps hide host work behind the GPU: the release overlaps, and the
        replica has no pipeline (every runtime schedules a pipeline through an executor loop that
        does not overlap; calibration's notes on host overlap)."""
        return cal.overlaps_host(self.runtime, pp=self.pp, release=self.host_overlap)


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
