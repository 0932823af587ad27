"""Prefill-only and decode-only replicas of a disaggregated deployment (the two pools).

A prefill replica is priced at the step token budget that serves the most prompts/s within the
TTFT limits (:func:`costmodels.batch.choose_prefill_budget`), its TTFT including the KV cache's
trip to the decode pool; a decode replica at its best batch with no prompt in its steps.
"""
from __future__ import annotations

from dataclasses import replace

from costmodels.batch import PREFILL_TOKEN_BUDGETS, PrefillChoice, choose_prefill_budget
from costmodels.hardware import GPU
from costmodels.model_spec import ModelSpec
from costmodels.strategy import Links, Strategy
from planner.price.candidate import Candidate, Pricing, Request
from planner.price.cluster import ClusterView, DomainClass
from planner.price.spans import inter_domain_link_fn, slowness
from topologies.graph import Link


def disaggregate(req: Request) -> bool:
    """Whether prefill-only and decode-only replicas are priced: for every objective, unless
    turned off (every objective weighs unified replicas and pools alike)."""
    return req.disaggregation != "off"


def pool_kv_link(view: ClusterView, classes: list[DomainClass], tp: int, links: Links) -> Link:
    """The link a prefill replica's KV cache takes to the decode pool, worst case: across the
    network when the cluster has more than one domain (the pools may sit in different
    domains), else the domain's own links."""
    if sum(c.count for c in view.classes) > 1:
        return max(inter_domain_link_fn(view.topology, view, view.classes)(tp), links.tp, key=slowness)
    return max(links.tp, links.pp, key=slowness)


def price_roles(model: ModelSpec, gpu: GPU, gpu_name: str, s: Strategy, span: str, unit: int, units: int,
                 per_stage: int, cls_ok: tuple, links: Links, kv_link: Link, req: Request, pr: Pricing) -> int:
    """Add this shape's prefill-only and decode-only candidates (disaggregated serving)."""
    out = pr.candidates
    common = dict(gpu=gpu_name, span=span, unit_gpus=unit, units_per_replica=units,
                  units_per_stage=per_stage, classes=cls_ok)
    n = len(PREFILL_TOKEN_BUDGETS)
    best = best_prefill(model, gpu, gpu_name, s, req, links, kv_link, pr)
    if best is not None:
        out.append(Candidate(index=len(out), batch=best.metrics.batch, metrics=best.metrics, role="prefill",
                             kv_transfer_s=best.kv_transfer_s, usable_requests_per_s=best.usable_requests_per_s,
                             strategy=best.strategy, links=links, **common))
    # a decode replica's TTFT is not its own: priced without the TTFT limits, at the plain utilisation cap
    n += pr.add_replica(model, gpu, s, replace(req, ttft_s=None, ttft_p99_s=None), links, role="decode", **common)
    return n


def best_prefill(model: ModelSpec, gpu: GPU, gpu_name: str, s: Strategy, req: Request, links: Links,
                 kv_link: Link, pr: Pricing | None = None) -> PrefillChoice | None:
    """:func:`costmodels.batch.choose_prefill_budget` for this shape; each budget priced updates
    ``pr``'s fastest prompt (the infeasibility message and the TTFT frontier)."""
    best, seen = choose_prefill_budget(model, gpu, s, req, links, kv_link)
    if pr is not None:
        for budget, ttft_s, ttft_p99_s in seen:
            label = f"{gpu_name} prefill tp={s.tp} pp={s.pp} step {budget}"
            if ttft_s < pr.best_ttft_s:  # a pools plan's fastest prompt (--disaggregation only, the TTFT frontier)
                pr.best_ttft_s, pr.best_ttft_label = ttft_s, label
            if ttft_p99_s is not None and ttft_p99_s < pr.best_ttft_p99_s:
                pr.best_ttft_p99_s, pr.best_ttft_p99_label = ttft_p99_s, label
    return best
