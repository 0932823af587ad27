"""Prefill pools: the step their capacity, TTFT and launch share (issue 13 item 4, issue 15).

The search prices each prefill shape at the token budgets of ``PREFILL_TOKEN_BUDGETS`` and keeps
the one serving the most requests/s within the TTFT SLOs; a prompt shares a full step of that
budget with other prompts; the emitted SGLang launch holds its prefill batches to that step.
"""
from __future__ import annotations

import shlex
from dataclasses import replace

import pytest

from costmodels.hardware import get_gpu
from costmodels.models import get_model
from costmodels.serving import Links, Strategy, evaluate_prefill, tail_latency
from planner import api
from planner.candidates import (PREFILL_TOKEN_BUDGETS, Request, _meets_slos, _utilization_cap, best_prefill,
                                cluster_view, price_candidates)
from planner.check import check_plan
from planner.emit import emit

MODEL = "llama-3.1-70b"
GPU = "H100-SXM-80GB"
POOLS = dict(topology="dgx-h100x2", model=MODEL, runtime="sglang", disaggregation="only", osl=256, tpot_ms=40)


def _commands(script: str) -> list[str]:
    """The script's command lines (comments dropped, continuation lines joined)."""
    out, cur = [], ""
    for line in script.splitlines():
        t = line.strip()
        if not t or t.startswith("#"):
            continue
        cur += (" " if cur else "") + t.removesuffix("\\").strip()
        if not t.endswith("\\"):
            out.append(cur)
            cur = ""
    return out


def _prefill(budget: int, isl: int, tp: int = 4):
    s = Strategy(tp=tp, max_num_batched_tokens=budget, runtime="sglang")
    return evaluate_prefill(get_model(MODEL), get_gpu(GPU), s, isl=isl)


def test_a_short_prompt_shares_a_full_step_and_waits_half_of_one():
    """TTFT of a prompt shorter than the step is half a step's wait plus one full step: it grows
    with the budget (more prompts share the step) while capacity grows too."""
    small, large = _prefill(2048, isl=512), _prefill(8192, isl=512)
    for pm, budget in ((small, 2048), (large, 8192)):
        step_s = budget / (pm.requests_per_s * 512)  # a full step, from the capacity it sustains
        assert pm.ttft_s > 1.5 * step_s
        assert pm.ttft_s < 1.5 * step_s + 0.01  # + the fixed per-request overhead
    assert large.ttft_s > 3 * small.ttft_s
    assert large.requests_per_s > small.requests_per_s


def test_a_long_prompt_runs_its_chunks_in_full_steps():
    """A prompt of several chunks: its chunks are full steps whatever the budget, so a larger step
    (fewer steps, closer to peak) can be faster, never more than the half-step wait slower."""
    for budget in PREFILL_TOKEN_BUDGETS:
        pm = _prefill(budget, isl=16384)
        step_s = budget / (pm.requests_per_s * 16384)
        n_chunks = 16384 // budget
        assert pm.ttft_s == pytest.approx((n_chunks + 0.5) * step_s, rel=0.05)


def test_p99_adds_the_other_half_step():
    from costmodels.serving import ReplicaMetrics
    pm = _prefill(4096, isl=1024)
    s = Strategy(tp=4, max_num_batched_tokens=4096, runtime="sglang")
    m = ReplicaMetrics(batch=pm.in_flight, max_batch=pm.in_flight, fits=True, memory=pm.memory, ttft_s=pm.ttft_s,
                       tpot_s=0.0, output_tokens_per_s=0.0, requests_per_s=pm.requests_per_s)
    tail = tail_latency(get_model(MODEL), get_gpu(GPU), s, m, isl=1024, osl=256, role="prefill")
    step_s = 4096 / (pm.requests_per_s * 1024)
    assert tail.ttft_extra_s == pytest.approx(0.5 * step_s)


@pytest.mark.parametrize("isl, ttft_ms", [(8192, None), (512, None), (512, 150), (2048, 400)])
def test_the_kept_budget_is_the_best_priced_of_the_three(isl, ttft_ms):
    """For every prefill candidate the pricing keeps, no other budget of the same shape serves more
    requests/s within the SLOs (ties: lower TTFT, then the smaller step)."""
    req = Request(isl=isl, osl=256, tpot_s=0.040, ttft_s=ttft_ms / 1e3 if ttft_ms else None, runtime="sglang",
                  disaggregation="only")
    topo = api._topology("dgx-h100x2")
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
            if not _meets_slos(m, tail, req, role="prefill"):
                continue
            usable = pm.requests_per_s * _utilization_cap(m, tail, req)
            assert usable <= c.usable_requests_per_s * (1 + 1e-12), (c.label(), budget)


def test_the_budget_follows_the_workload():
    """Long prompts keep the largest step (capacity, and their chunks are full anyway); short
    prompts under a tight TTFT take a smaller one (a shared step is a prompt's TTFT)."""
    gpu = get_gpu(GPU)
    spec = get_model(MODEL)
    s = Strategy(tp=4, runtime="sglang")
    kv = Links().tp
    long = best_prefill(spec, gpu, GPU, s, Request(isl=8192, osl=256, runtime="sglang"), Links(), kv)
    tight = best_prefill(spec, gpu, GPU, s, Request(isl=512, osl=256, ttft_s=0.2, runtime="sglang"), Links(), kv)
    assert long[0].max_num_batched_tokens == 8192
    assert tight[0].max_num_batched_tokens == 2048
    # the tight TTFT rules the two larger steps out for this shape; without it the largest wins
    loose = best_prefill(spec, gpu, GPU, s, Request(isl=512, osl=256, runtime="sglang"), Links(), kv)
    assert loose[0].max_num_batched_tokens == 8192


@pytest.fixture(scope="module")
def tight_plan():
    return api.search(isl=512, ttft_ms=150, **POOLS)


def test_plan_records_and_sglang_launches_the_priced_step(tight_plan):
    """The plan's max_num_batched_tokens is the step the prefill pool was priced at (2,048 here, not
    the 8,192 default), and each SGLang prefill server gets it as both of its prefill budgets."""
    pre = [g for g in tight_plan.replica_groups if g.role == "prefill"]
    assert pre and {g.strategy.max_num_batched_tokens for g in pre} == {2048}
    assert check_plan(tight_plan).ok
    files = emit(tight_plan, "sglang")
    for g in tight_plan.replica_groups:
        cmds = [c for c in _commands(files[f"sglang-{g.id}.sh"]) if "sglang.launch_server" in c]
        assert cmds
        for cmd in cmds:
            words = shlex.split(cmd)
            flags = dict(zip(words, words[1:]))
            d = g.strategy.attention_dp
            assert flags["--chunked-prefill-size"] == str(g.strategy.max_num_batched_tokens * d)
            if g.role == "prefill":
                assert flags["--max-prefill-tokens"] == str(g.strategy.max_num_batched_tokens)
            else:
                assert "--max-prefill-tokens" not in words


def test_prefill_ttft_grows_with_load():
    """A prefill group's reported TTFT is its shared step (at least one and a half full steps of its
    budget, and the KV transfer) with the queueing its load adds in front (M/D/1 at the group's
    utilisation): a higher rate, a longer TTFT."""
    seen = []
    for qps in (2, 6):
        p = api.search(isl=2048, objective="min-gpus", qps=qps, **POOLS)
        assert check_plan(p).ok
        for g in p.replica_groups:
            if g.role != "prefill":
                continue
            m = g.metrics_per_replica
            step_ms = 1e3 * g.strategy.max_num_batched_tokens / (m.requests_per_s * 2048)
            assert m.ttft_unloaded_ms >= 1.5 * step_ms + m.kv_transfer_ms
            u = m.utilization
            assert 0 < u < 1
            queued = (m.ttft_unloaded_ms - m.kv_transfer_ms) * (1 + u / (2 * (1 - u))) + m.kv_transfer_ms
            assert m.ttft_ms == pytest.approx(queued, rel=1e-3)
            seen.append(m.ttft_ms)
    assert len(seen) >= 2 and seen[-1] > seen[0]
