"""The parallel layouts a shape may take: tensor-parallel degrees a model admits, the
(expert-parallel, attention data-parallel) pairs of a stage, and the pipeline layer split a
runtime can run (pinned where the runtime lets the launch set it, else its own balanced split).
"""
from __future__ import annotations

from dataclasses import replace

from costmodels.memory import balanced_layer_split, front_loaded_split
from costmodels.model_spec import ModelSpec
from costmodels.serving import choose_layer_split
from costmodels.strategy import Strategy, validate_strategy
from planner.price.candidate import Request

MAX_PP = 16


def tp_options(model: ModelSpec, limit: int) -> list[int]:
    out = []
    for t in range(1, limit + 1):
        if validate_strategy(model, Strategy(tp=t)) is None:
            out.append(t)
    return out


def moe_layouts(model: ModelSpec, tp: int, pp: int, req: Request) -> list[tuple[int, int]]:
    """(ep, attention_dp) pairs to price for a stage of ``tp`` GPUs: every EP degree dividing
    tp and the experts with attention on the whole stage, and, for one-stage replicas, ep = tp
    with attention data-parallel in groups of every size dividing tp."""
    if not model.is_moe:
        out = [(1, 1)]
    else:
        out = [(e, 1) for e in range(1, tp + 1) if tp % e == 0 and model.experts % e == 0]
        if pp == 1 and model.experts % tp == 0:
            out += [(tp, d) for d in range(2, tp + 1) if tp % d == 0]
    return [(e, d) for e, d in out if (req.ep is None or e == req.ep)
            and (req.attention_dp is None or d == req.attention_dp)]


#: Runtimes that take an uneven pipeline layer split, and how (the emitters write it). For
#: TensorRT-LLM the planner keeps the runtime's own balanced split.
UNEVEN_SPLIT_RUNTIMES = {"vllm": "VLLM_PP_LAYER_PARTITION", "sglang": "SGLANG_PP_LAYER_PARTITION"}


def with_layer_split(model: ModelSpec, gpu, s: Strategy, req: Request) -> Strategy:
    """The strategy with its pipeline layer split chosen (runtimes that can pin one only)."""
    if s.pp == 1:
        return s
    if s.runtime not in UNEVEN_SPLIT_RUNTIMES:  # the runtime's own split (TensorRT-LLM: front-loaded)
        split = front_loaded_split(model.layers, s.pp)
        return replace(s, layer_split=split) if split != balanced_layer_split(model.layers, s.pp) else s
    split = choose_layer_split(model, gpu, s, isl=req.isl, osl=req.osl)
    return replace(s, layer_split=split) if split != balanced_layer_split(model.layers, s.pp) else s
