"""Prefill pools: the step their capacity, TTFT and launch share (issue 13 item 4, issue 15).

The search prices each prefill shape at the token budgets of ``PREFILL_TOKEN_BUDGETS`` and keeps
the one serving the most requests/s within the TTFT SLOs; a prompt shares a full step of that
budget with other prompts; the emitted SGLang launch holds its prefill batches to that step.
"""
from __future__ import annotations

import shlex
from dataclasses import replace
from itertools import pairwise

import pytest

from costmodels.batch import PREFILL_TOKEN_BUDGETS, failed_slo, utilization_cap
from costmodels.hardware import get_gpu
from costmodels.load import tail_latency
from costmodels.models import get_model
from costmodels.prefill import evaluate_prefill
from costmodels.strategy import Links, Strategy
from planner import api
from planner.emit import emit
from planner.plan.check import check_plan
from planner.price.candidate import Request
from planner.price.cluster import cluster_view
from planner.price.roles import best_prefill
from planner.price.shapes import price_candidates

from test_emit_attention_dp import _commands  # command lines of a script, continuations joined

MODEL = "llama-3.1-70b"
GPU = "H100-SXM-80GB"
POOLS = dict(topology="dgx-h100x2", model=MODEL, runtime="sglang", disaggregation="only", osl=256, tpot_ms=40)


def _prefill(budget: int, isl: int, tp: int = 4):
    s = Strategy(tp=tp, max_num_batched_tokens=budget, runtime="sglang")
    return evaluate_prefill(get_model(MODEL), get_gpu(GPU), s, isl=isl)


def _full_step_s(pm, budget: int, isl: int) -> float:
    """A full step, from the capacity it sustains (independent of the TTFT code)."""
    return budget / (pm.requests_per_s * isl)


@pytest.mark.parametrize("budget, isl", [(2048, 512), (8192, 512), (4096, 16384), (8192, 1024)])
def test_ttft_limits_prompt_alone_unloaded_full_step_at_capacity(budget, isl):
    """At u = 0 a prompt runs alone (a step of just its own chunk); at u = 1 it waits half a full
    step and runs its chunks in full steps (tp=4, pp=1: a step leaves the stage as it ends)."""
    pm = _prefill(budget, isl=isl)
    overhead = pm.step.overhead_s
    chunks = -(-isl // budget)
    assert pm.ttft_s == pm.step.ttft_s(0.0)
    if isl <= budget:
        alone = _prefill(isl, isl=isl)  # a budget of the prompt: every step is the prompt alone
        assert pm.ttft_s == pytest.approx(_full_step_s(alone, isl, isl) + overhead, rel=1e-9)
    else:  # every chunk is a full step either way: the load adds only the half-step wait
        assert pm.step.ttft_s(1.0) - pm.ttft_s == pytest.approx(0.5 * _full_step_s(pm, budget, isl), rel=1e-9)
    assert pm.step.ttft_s(1.0) == pytest.approx((chunks + 0.5) * _full_step_s(pm, budget, isl) + overhead, rel=1e-9)


@pytest.mark.parametrize("budget, isl", [(2048, 512), (8192, 512), (4096, 16384), (8192, 1024)])
def test_ttft_rises_with_the_load(budget, isl):
    """Mean and p99 TTFT never fall as the utilisation rises, and the step never shrinks."""
    step = _prefill(budget, isl=isl).step
    us = [i / 100 for i in range(101)]
    for f in (step.ttft_s, step.ttft_p99_s, step.tokens_at):
        vals = [f(u) for u in us]
        assert all(b >= a for a, b in pairwise(vals)), f
    assert step.ttft_s(0.9) > step.ttft_s(0.0)
    assert step.tokens_at(1.0) == budget


def test_the_step_carries_the_tokens_arriving_during_it():
    """Below capacity the step size n solves n = lambda T(n), lambda = u x capacity in tokens/s."""
    pm = _prefill(8192, isl=512)
    step = pm.step
    for u in (0.2, 0.5, 0.8, 0.95):
        n = step.tokens_at(u)
        lam = u * pm.requests_per_s * 512
        assert n == pytest.approx(lam * step._at(step.stage_step_s, n), rel=1e-9)
        assert n < 8192


def test_p99_waits_the_rest_of_the_running_step():
    """A step runs a share u of the time and a prompt arriving in one waits the rest of it, uniform
    over the step: the p99 wait is T (1 - 0.01 / u) where the mean is u T / 2 (never below the mean)."""
    from costmodels.serving import ReplicaMetrics  # noqa: F401 (the type tail_latency reads)
    pm = _prefill(4096, isl=1024)
    s = Strategy(tp=4, max_num_batched_tokens=4096, runtime="sglang")
    m = pm.as_replica(0.0)
    step = pm.step
    for u in (0.0, 0.005, 0.5, 1.0):
        tail = tail_latency(get_model(MODEL), get_gpu(GPU), s, m, isl=1024, osl=256, role="prefill", utilization=u)
        assert tail.ttft_p99_s(step.ttft_s(u)) == pytest.approx(step.ttft_p99_s(u), rel=1e-12)
        t = step._at(step.stage_step_s, step.tokens_at(u))
        assert step.wait_s(u) == pytest.approx(0.5 * u * t)
        # reported never below the mean (at u <= 1 % the quantile itself is no wait at all)
        assert step.wait_p99_s(u) == pytest.approx(max(t * (1 - 0.01 / u) if u > 0.01 else 0.0, 0.5 * u * t))
    full = _full_step_s(pm, 4096, 1024)
    assert tail.ttft_extra_s == pytest.approx((0.99 - 0.5) * full)


@pytest.mark.parametrize("isl, ttft_ms", [(8192, None), (512, None), (512, 150), (2048, 400)])
def test_the_kept_budget_is_the_best_priced_of_the_three(isl, ttft_ms):
    """For every prefill candidate the pricing keeps, no other budget of the same shape serves more
    requests/s within the SLOs (ties: lower TTFT, then the smaller step)."""
    req = Request(isl=isl, osl=256, tpot_s=0.040, ttft_s=ttft_ms / 1e3 if ttft_ms else None, runtime="sglang",
                  disaggregation="only")
    topo = api.topology_of("dgx-h100x2")
    spec = get_model(MODEL)
    view = cluster_view(topo)
    pr = price_candidates(spec, view, req)
    pre = [c for c in pr.candidates if c.role == "prefill"]
    assert pre
    gpu = view.gpu_of_type[GPU]
    for c in pre:
        assert c.strategy.max_num_batched_tokens in PREFILL_TOKEN_BUDGETS
        for budget in PREFILL_TOKEN_BUDGETS:
            sb = replace(c.strategy, max_num_batched_tokens=budget)
            pm = evaluate_prefill(spec, gpu, sb, isl=isl, links=c.links)
            if not pm.fits:
                continue
            from costmodels.serving import ReplicaMetrics
            m = ReplicaMetrics(batch=pm.in_flight, max_batch=pm.in_flight, fits=True, memory=pm.memory,
                               ttft_s=pm.ttft_s + c.kv_transfer_s, tpot_s=0.0, output_tokens_per_s=0.0,
                               requests_per_s=pm.requests_per_s)
            tail = tail_latency(spec, gpu, sb, m, isl=isl, osl=256, links=c.links, role="prefill")
            if failed_slo(m, tail, req, "prefill") is not None:
                continue
            usable = pm.requests_per_s * utilization_cap(m, tail, req.ttft_s, req.ttft_p99_s)
            assert usable <= c.usable_requests_per_s * (1 + 1e-12), (c.label(), budget)


def test_a_larger_budget_only_caps_the_step():
    """A step carries what arrived during the last one, so at the same rate a larger budget gives
    the same step until the smaller one caps it: a tight TTFT no longer forces a small budget."""
    gpu = get_gpu(GPU)
    spec = get_model(MODEL)
    s = Strategy(tp=4, runtime="sglang")
    kv = Links().tp
    free = best_prefill(spec, gpu, GPU, s, Request(isl=512, osl=256, runtime="sglang"), Links(), kv)
    tight = best_prefill(spec, gpu, GPU, s, Request(isl=512, osl=256, ttft_s=0.1, runtime="sglang"), Links(), kv)
    assert tight.strategy.max_num_batched_tokens == free.strategy.max_num_batched_tokens  # the budget of most capacity
    small, large = _prefill(2048, isl=512), _prefill(8192, isl=512)
    rate = 0.5 * small.requests_per_s  # half the small budget's capacity
    u_small, u_large = rate / small.requests_per_s, rate / large.requests_per_s
    assert small.step.tokens_at(u_small) == pytest.approx(large.step.tokens_at(u_large), rel=1e-9)


@pytest.fixture(scope="module")
def tight_plan():
    return api.search(isl=512, ttft_ms=150, **POOLS)


def test_plan_records_and_sglang_launches_the_priced_step(tight_plan):
    """The plan's max_num_batched_tokens is the step the prefill pool was priced at, and each
    SGLang prefill server gets it as both of its prefill budgets."""
    pre = [g for g in tight_plan.replica_groups if g.role == "prefill"]
    assert pre and {g.strategy.max_num_batched_tokens for g in pre} <= set(PREFILL_TOKEN_BUDGETS)
    assert check_plan(tight_plan).ok
    files = emit(tight_plan, "sglang")
    for g in tight_plan.replica_groups:
        cmds = [c for c in _commands(files[f"sglang-{g.id}.sh"]) if "sglang.launch_server" in c]
        assert cmds
        for cmd in cmds:
            words = shlex.split(cmd)
            flags = dict(pairwise(words))
            d = g.strategy.attention_dp
            assert flags["--chunked-prefill-size"] == str(g.strategy.max_num_batched_tokens * d)
            if g.role == "prefill":
                assert flags["--max-prefill-tokens"] == str(g.strategy.max_num_batched_tokens)
            else:
                assert "--max-prefill-tokens" not in words


def test_prefill_ttft_grows_with_load():
    """A prefill group's reported TTFT is its step at the group's utilisation (no M/D/1 factor on
    top), check_plan recomputes the same figure, and a higher rate gives a longer TTFT."""
    seen = []
    for qps in (2, 6):
        p = api.search(isl=2048, objective="min-gpus", qps=qps, **POOLS)
        assert check_plan(p).ok
        for g in p.replica_groups:
            if g.role != "prefill":
                continue
            m = g.metrics_per_replica
            u = m.utilization
            assert 0 < u < 1
            s = Strategy(tp=g.strategy.tp, pp=g.strategy.pp, max_num_batched_tokens=g.strategy.max_num_batched_tokens,
                         runtime="sglang")
            step = replace(evaluate_prefill(get_model(MODEL), get_gpu(GPU), s, isl=2048).step,
                           kv_transfer_s=m.kv_transfer_ms / 1e3)
            assert m.ttft_ms == pytest.approx(step.ttft_s(u) * 1e3, rel=2e-3)  # links: the plan's own
            assert m.ttft_ms >= m.ttft_unloaded_ms
            seen.append(m.ttft_ms)
    assert len(seen) >= 2 and seen[-1] > seen[0]


def test_check_plan_rejects_a_changed_prefill_ttft(tight_plan):
    """check_plan recomputes a prefill group's TTFT at its utilisation and wants the plan's figure exactly."""
    d = tight_plan.model_dump()
    g = next(x for x in d["replica_groups"] if x["role"] == "prefill")
    g["metrics_per_replica"]["ttft_ms"] += 0.001
    rep = check_plan(d)
    assert not rep.ok and any("reported ttft_ms" in p for p in rep.problems)
