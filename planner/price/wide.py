"""Wide expert parallelism (span ``wide``, MoE models, one stage): ``tp`` GPUs over ``tp / g``
domains of ``g`` free GPUs each, attention data-parallel inside each domain, the experts spread
over all ``tp`` GPUs (``ep = tp``) and reached by all-to-alls over the network (DeepSeek's and
SGLang's large-scale EP, TensorRT-LLM's wide EP).
"""
from __future__ import annotations

from costmodels.model_spec import ModelSpec
from costmodels.strategy import Strategy, validate_strategy
from planner.price.candidate import Pricing, Request
from planner.price.cluster import ClusterView, DomainClass
from planner.price.roles import disaggregate, price_roles
from planner.price.spans import slowness, wide_span

#: Runtimes whose launches the emitters can point at DeepEP's all-to-alls, the exchange a wide
#: stage is priced with (vLLM: VLLM_ALL2ALL_BACKEND; SGLang: --moe-a2a-backend deepep).
#: TensorRT-LLM's wide-EP path has its own kernels and configuration, not written here.
WIDE_EP_RUNTIMES = ("vllm", "sglang")


#: Wide expert parallelism: stages of at most this many domains (DeepSeek's published decode
#: deployment spans 18 nodes, 144 GPUs; past that the all-to-all's per-peer messages are tiny).
MAX_WIDE_DOMAINS = 32


def price_wide_ep(model: ModelSpec, view: ClusterView, req: Request, by_type: dict[str, list[DomainClass]],
                   pr: Pricing) -> int:
    """One-stage MoE replicas across ``k`` >= 2 domains (span ``wide``): each domain gives its
    ``g`` free GPUs, attention runs data-parallel in groups of ``g / m`` GPUs inside a domain,
    and the experts are spread over all ``k g`` GPUs (ep = tp), dispatched and combined by
    all-to-alls that leave each domain through its NICs."""
    if not model.is_moe or (req.pp is not None and req.pp != 1) or req.runtime not in WIDE_EP_RUNTIMES:
        return 0
    priced = 0
    for gpu_name, classes in sorted(by_type.items()):
        gpu = view.gpu_of_type[gpu_name]
        for g0 in sorted({c.free for c in classes}):
            same = [c for c in classes if c.free == g0]
            domains = sum(c.count for c in same)
            spans: dict[int, tuple] = {}  # attention TP -> wide_span (its links do not depend on k)
            for k in range(2, min(domains, MAX_WIDE_DOMAINS) + 1):
                tp = k * g0
                if model.experts % tp or (req.tp is not None and tp != req.tp) or (req.ep is not None and req.ep != tp):
                    continue
                for at in range(1, g0 + 1):
                    if g0 % at or (req.attention_dp is not None and tp // at != req.attention_dp):
                        continue
                    s = Strategy(tp=tp, pp=1, ep=tp, attention_dp=tp // at, weight_dtype=req.weight_dtype,
                                 kv_dtype=req.kv_dtype, max_num_batched_tokens=req.max_num_batched_tokens,
                                 runtime=req.runtime, expert_imbalance=req.expert_imbalance)
                    why = validate_strategy(model, s)
                    if why:
                        pr.rejected[why] = pr.rejected.get(why, 0) + 1
                        continue
                    if at not in spans:
                        spans[at] = wide_span(view, same, tp, at)
                    g, cls, links = spans[at]
                    cls_ok = tuple(c.signature for c in cls)
                    if disaggregate(req):
                        priced += price_roles(model, gpu, gpu_name, s, "wide", g, k, k, cls_ok, links,
                                               max(links.ep, links.tp, key=slowness), req, pr)
                    if req.disaggregation == "only":
                        continue
                    priced += pr.add_replica(model, gpu, s, req, links, gpu=gpu_name, span="wide", unit_gpus=g,
                                             units_per_replica=k, units_per_stage=k, classes=cls_ok)
    return priced
