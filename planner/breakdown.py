"""``explain``: the memory and time breakdown of one strategy, in words and numbers."""
from __future__ import annotations

from costmodels.memory import kv_bytes_per_sequence_per_gpu, kv_bytes_per_token_per_gpu
from costmodels.strategy import stages
from planner.evaluation import evaluate

GIB = 2**30


def explain(**kwargs) -> str:
    """Same arguments as :func:`planner.evaluate`; returns a paragraph per concern.

    >>> text = explain(topology="dgx-h100x1", model="llama-3.1-8b", tp=1, isl=1024, osl=128)
    >>> "KV cache" in text
    True
    """
    ev = evaluate(**kwargs)
    m, s, gpu = ev.metrics, ev.strategy, ev.gpu
    from planner.api import model_of
    spec = model_of(kwargs["model"])
    isl, osl = kwargs["isl"], kwargs["osl"]
    mem = m.memory
    st = stages(spec, s)
    layers = max(x.layer_count for x in st)
    # A sequence's KV cache lives on its attention group's GPUs: the whole tp group without attention
    # data parallelism, tp / attention_dp GPUs with it (costmodels.serving prices it so).
    at = s.attention_tp
    kv_tok = kv_bytes_per_token_per_gpu(spec, tp=at, layers=layers, kv_dtype=s.kv_dtype)
    kv_seq = kv_bytes_per_sequence_per_gpu(spec, tp=at, layers=layers, kv_dtype=s.kv_dtype, context=isl + osl,
                                           sliding_window=s.profile.sliding_window_kv)
    def ways(n: int) -> str:
        return "whole on each GPU" if n == 1 else f"split {n} ways"

    split = (ways(s.tp) if s.attention_dp == 1 else
             f"experts {ways(s.tp)}, attention and dense layers {ways(at)}, one copy per attention group "
             f"({s.attention_dp} groups)")
    holder = ("per GPU" if s.attention_dp == 1 else
              f"on each GPU of the sequence's attention group ({s.attention_dp} groups share the batch)")
    out = [f"{spec.name} ({spec.total_params() / 1e9:.1f}B parameters, {spec.active_params() / 1e9:.1f}B active, "
           f"{spec.attention_kind}) on {gpu.name}, tp={s.tp} pp={s.pp} ep={s.ep}, weights {s.weight_dtype}, "
           f"KV {s.kv_dtype}, {isl} in / {osl} out tokens."]
    frac = s.profile.memory_fraction
    budget_rule = (f"The runtime ({s.runtime}) may use {frac:.0%} of {mem.capacity / GIB:.1f} GiB; after "
                   if s.profile.kv_rule == "total" else
                   f"The runtime ({s.runtime}) gives the KV cache {frac:.0%} of what is free of "
                   f"{mem.capacity / GIB:.1f} GiB after weights, ")
    out.append(
        f"Memory: the most loaded GPU holds {mem.weights / GIB:.1f} GiB of weights (its stage's "
        f"{layers} layers: {split}; plus embedding or LM head on the end stages). "
        + budget_rule +
        f"{mem.overhead / GIB:.1f} GiB of runtime overhead and {mem.activations / GIB:.1f} GiB of activation "
        f"workspace for {s.max_num_batched_tokens}-token steps, the KV cache gets what is left. One token of "
        f"context costs {kv_tok / 1024:.0f} KiB of KV cache {holder}, one {isl + osl}-token sequence "
        f"{kv_seq / GIB:.3f} GiB, so at most {m.max_batch} sequences fit"
        + (f" - not one: weights alone exceed the {mem.capacity * frac / GIB:.1f} GiB the "
           f"runtime may use by {(mem.weights + mem.overhead - mem.capacity * frac) / GIB:.1f} "
           f"GiB; raise tp or pp, or quantise the weights." if mem.weights + mem.overhead
           > mem.capacity * frac else
           " - not one: no room is left for a sequence's KV cache." if m.max_batch < 1 else "."))
    if m.batch >= 1:
        step = m.step
        parts = {"linear layers": step.linear_s, "attention": step.attention_s, "TP communication": step.comm_s,
                 "step overhead": step.overhead_s, "PP send": m.pp_send_s}
        total = sum(parts.values())
        share = ", ".join(f"{k} {v * 1e3:.2f} ms ({v / total:.0%})" for k, v in parts.items() if v > 0)
        bound = max(parts, key=parts.get)
        out.append(
            f"Time: at batch {m.batch} each stage step (decode of {m.batch / min(s.pp, m.batch):.0f} sequences plus "
            f"their share of new prompts) takes {total * 1e3:.2f} ms: {share}. The largest part is {bound}. "
            f"A token passes {s.pp} stage(s), so TPOT is {m.tpot_s * 1e3:.2f} ms and the replica emits "
            f"{m.output_tokens_per_s:,.0f} tokens/s ({m.output_tokens_per_s / s.gpus:,.0f} per GPU). "
            f"A new prompt of {isl} tokens is prefilled in {m.ttft_s * 1e3:.1f} ms before queueing.")
    if ev.reason:
        out.append(f"Placement: {ev.reason}.")
    else:
        out.append((f"Links: TP over {ev.links.tp.kind} ({ev.links.tp.bandwidth_bytes_per_s / 1e9:.0f} GB/s each way)"
                    if s.tp > 1 else "Links: no TP communication (tp=1)")
                   + (f", PP over {ev.links.pp.kind} ({ev.links.pp.bandwidth_bytes_per_s / 1e9:.1f} GB/s per GPU)"
                      if s.pp > 1 else "") + ".")

    return "\n\n".join(out) + "\n"
