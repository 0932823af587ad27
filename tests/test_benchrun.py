"""The finite serving benchmark (costmodels.benchrun): it agrees with the steady-state model
where both apply, and behaves as a queue must where only it applies."""
import math
from itertools import pairwise

import pytest
from hypothesis import example, given, settings, strategies as st

from costmodels.benchrun import arrival_times_s, simulate_benchmark
from costmodels.calibration import ONLINE_REQUEST_OVERHEAD_S
from costmodels.hardware import gpu_catalog
from costmodels.models import get_model
from costmodels.serving import effective_strategy, evaluate_replica, max_batch_size
from costmodels.strategy import Links, Strategy
from topologies.graph import Link

H100 = gpu_catalog()["H100-SXM-80GB"]
NV = Link(450e9, 1e-6, "nvlink")
LINKS = Links(tp=NV, ep=NV)
S70 = Strategy(tp=4, weight_dtype="bf16", kv_dtype="bf16", runtime="trtllm")
S8 = Strategy(tp=1, weight_dtype="bf16", kv_dtype="bf16", runtime="trtllm")


def _run(name="llama-3.1-8b", s=S8, **kw):
    kw = {"isl": 467, "osl": 256, "requests": 200, "rate_per_s": 4.0} | kw
    return simulate_benchmark(get_model(name), H100, s, links=LINKS, **kw)


def test_same_inputs_same_figures():
    assert _run() == _run()


def test_poisson_arrivals_are_seeded_and_have_the_rate():
    a = arrival_times_s(5000, 10.0)
    assert a == arrival_times_s(5000, 10.0)
    assert a[0] == 0.0 and all(x <= y for x, y in pairwise(a))
    assert 5000 / a[-1] == pytest.approx(10.0, rel=0.05)
    assert arrival_times_s(3, math.inf) == [0.0, 0.0, 0.0]


def test_light_load_matches_one_request_alone():
    """At a rate far below capacity requests rarely overlap: TTFT and ITL are those of a
    request alone (evaluate_replica at batch 1) plus the HTTP server's per-request cost."""
    run = _run(rate_per_s=0.05, requests=20)
    alone = evaluate_replica(get_model("llama-3.1-8b"), H100, S8, isl=467, osl=256, batch=1, links=LINKS)
    assert run.itl_mean_s == pytest.approx(alone.tpot_s, rel=0.05)
    assert run.ttft_mean_s == pytest.approx(alone.ttft_s + ONLINE_REQUEST_OVERHEAD_S, rel=0.05)
    assert run.max_in_flight <= 2


def test_all_at_once_fills_the_kv_cache_and_queues():
    m = get_model("llama-3.1-70b")
    s = effective_strategy(m, H100, S70, isl=467, osl=256)  # the token budget the run uses
    cap = max_batch_size(m, H100, s, context=467 + 256)
    run = _run("llama-3.1-70b", S70, requests=cap + 100, rate_per_s=math.inf)
    assert run.max_in_flight == cap
    # the last requests wait for the first ones: mean TTFT is a sizeable part of the run
    assert run.ttft_mean_s > 0.1 * run.duration_s


@given(rate=st.sampled_from([1.0, 4.0, 16.0, 64.0]), osl=st.sampled_from([2, 16, 128]),
       isl=st.sampled_from([64, 467, 3000]))
@settings(max_examples=25, deadline=None)
def test_queue_laws(rate, osl, isl):
    """Served rate never beats the arrival rate by more than the sampling noise nor the
    all-at-once capacity; the output count is exact; a higher rate never lowers mean TTFT."""
    n = 120
    slow = _run(rate_per_s=rate, requests=n, osl=osl, isl=isl)
    flat = _run(rate_per_s=math.inf, requests=n, osl=osl, isl=isl)
    assert slow.output_tokens_per_s == pytest.approx(slow.requests_per_s * osl)
    assert slow.requests_per_s <= n / arrival_times_s(n, rate)[-1] + 1e-9
    # all at once packs the prompt chunks in another order than spread arrivals, and whole steps
    # can end a hair apart (1.3e-6 relative at 64 req/s, 3,000/128 tokens): not a law to 1e-9
    assert slow.requests_per_s <= flat.requests_per_s * (1 + 1e-4)
    assert flat.ttft_mean_s >= slow.ttft_mean_s * (1 - 1e-9)
    assert slow.itl_p50_s <= slow.itl_p99_s
    assert all(math.isfinite(x) and x > 0 for x in (slow.ttft_mean_s, slow.e2e_mean_s, slow.duration_s))


def test_refuses_what_cannot_run():
    with pytest.raises(ValueError):
        _run(requests=0)
    with pytest.raises(ValueError):
        _run(isl=10_000_000)


def test_evaluate_runs_the_benchmark_per_replica():
    from planner.evaluation import evaluate
    one = evaluate(topology="dgx-h100x1", model="llama-3.1-8b", tp=1, dp=1, isl=467, osl=256, runtime="trtllm",
                   qps=8.0, requests=200)
    two = evaluate(topology="dgx-h100x1", model="llama-3.1-8b", tp=1, dp=2, isl=467, osl=256, runtime="trtllm",
                   qps=16.0, requests=400)
    a, b = one.as_dict()["benchmark_run"], two.as_dict()["benchmark_run"]
    assert b["requests"] == 400 and b["qps"] == 16.0
    assert b["ttft_ms"] == a["ttft_ms"] and b["requests_per_s"] == pytest.approx(2 * a["requests_per_s"], rel=1e-3)
    assert "benchmark_run" not in evaluate(topology="dgx-h100x1", model="llama-3.1-8b", tp=1, isl=467,
                                           osl=256).as_dict()


@pytest.mark.parametrize("kw, field", [
    ({"requests": 100}, "--requests"),  # no rate
    ({"requests": 0, "qps": 1.0}, "--requests"),
    ({"requests": 101, "qps": 1.0, "dp": 2}, "--requests"),
    ({"requests": 100, "qps": 1.0, "batch": 8}, "--requests"),
    ({"requests": 10**7, "qps": 1.0}, "--requests"),
])
def test_evaluate_refuses_a_run_it_cannot_price(kw, field):
    from planner.evaluation import evaluate
    from topologies.errors import InputError
    with pytest.raises(InputError) as e:
        evaluate(topology="dgx-h100x1", model="llama-3.1-8b", tp=1, isl=467, osl=256, **kw)
    assert e.value.source == field or field in str(e.value)


def _reference_run(model, gpu, s, *, isl, osl, requests, rate_per_s, links):
    """The benchmark written out request by request, the plainest way (no cohorts, one step at
    a time), on the same step clock: what simulate_benchmark must reproduce."""
    from collections import deque

    from costmodels.benchrun import _StepClock

    s = effective_strategy(model, gpu, s, isl=isl, osl=osl)
    cap = max_batch_size(model, gpu, s, context=isl + osl)
    budget = s.max_num_batched_tokens * s.attention_dp
    clock = _StepClock(model, gpu, s, links, isl)
    arrivals, waiting, running, done = deque(arrival_times_s(requests, rate_per_s)), deque(), [], []
    t, gaps, peak = 0.0, {}, 0
    while arrivals or waiting or running:
        while arrivals and arrivals[0] <= t:
            waiting.append({"arr": arrivals.popleft(), "left": isl, "tok": 0})
        while waiting and len(running) < cap:
            running.append(waiting.popleft())
        if not running:
            t = arrivals[0]
            continue
        peak = max(peak, len(running))
        dec = [r for r in running if r["left"] == 0]
        room, chunks = max(budget - len(dec), 0), []
        for r in running:
            if r["left"] and room:
                take = min(r["left"], room)
                chunks.append((r, take))
                room -= take
        ctx = sum(isl + r["tok"] for r in dec) / len(dec) if dec else isl
        dt = clock(len(dec), sum(n for _, n in chunks), ctx)
        t += dt
        if dec:
            gaps[dt] = gaps.get(dt, 0) + len(dec)
        for r in dec:
            r["tok"] += 1
        for r, n in chunks:
            r["left"] -= n
            if r["left"] == 0:
                r["tok"], r["first"] = 1, t
        for r in running:
            if r["tok"] >= osl:
                r["last"] = t
                done.append(r)
        running = [r for r in running if r["tok"] < osl]
    return done, gaps, peak


@given(rate=st.sampled_from([math.inf, math.inf, 2.0, 32.0]), osl=st.sampled_from([1, 2, 40, 300]),
       isl=st.sampled_from([30, 467, 5000]), requests=st.sampled_from([1, 9, 150, 700]),
       model=st.sampled_from(["llama-3.1-8b", "llama-3.1-70b"]), pp=st.sampled_from([1, 2]))
# the runs the perf-overview rows make: all at once, many times what the KV cache holds, prompts
# split across steps; and a queue that arrives while earlier requests decode alone
@example(rate=math.inf, osl=40, isl=5000, requests=3000, model="llama-3.1-70b", pp=1)
@example(rate=math.inf, osl=300, isl=467, requests=700, model="llama-3.1-70b", pp=2)
@example(rate=2.0, osl=300, isl=30, requests=150, model="llama-3.1-8b", pp=1)
@settings(max_examples=30, deadline=None)
def test_cohorts_reproduce_the_run_request_by_request(rate, osl, isl, requests, model, pp):
    """simulate_benchmark moves requests in the same state together and takes runs of identical
    decode steps at once; every figure must still be the one-request-at-a-time run's."""
    m = get_model(model)
    s = Strategy(tp=4 if model == "llama-3.1-70b" else 1, pp=pp, weight_dtype="bf16", kv_dtype="bf16",
                 runtime="trtllm")
    run = simulate_benchmark(m, H100, s, isl=isl, osl=osl, requests=requests, rate_per_s=rate, links=LINKS,
                             online=False)
    done, gaps, peak = _reference_run(m, H100, s, isl=isl, osl=osl, requests=requests, rate_per_s=rate,
                                      links=LINKS)
    assert len(done) == requests
    assert run.max_in_flight == peak
    end = max(r["last"] for r in done)
    assert run.duration_s == pytest.approx(end - min(r["arr"] for r in done), rel=1e-12)
    ttfts = sorted(r["first"] - r["arr"] for r in done)
    from costmodels.calibration import PREFILL_REQUEST_OVERHEAD_S as pre
    assert run.ttft_mean_s == pytest.approx(sum(ttfts) / requests + pre, rel=1e-9)
    assert run.ttft_p99_s == pytest.approx(ttfts[min(requests - 1, math.ceil(0.99 * requests) - 1)] + pre, rel=1e-12)
    assert run.e2e_mean_s == pytest.approx(sum(r["last"] - r["arr"] for r in done) / requests + pre, rel=1e-9)
    n_gaps = sum(gaps.values())
    assert run.itl_mean_s == pytest.approx(sum(v * n for v, n in gaps.items()) / n_gaps if n_gaps else 0.0, rel=1e-9)
