"""p99 SLOs in ``search`` (--tpot-p99-ms, --ttft-p99-ms) and ``evaluate --concurrency``."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest
from click.testing import CliRunner

from costmodels.load import serve_at_concurrency, step_mix, tail_latency
from costmodels.models import get_model
from costmodels.serving import evaluate_replica, residual_quantile
from costmodels.strategy import Strategy
from planner import api, evaluation, search
from planner.cli import main
from planner.plan.check import check_plan
from planner.price.candidate import Request
from planner.price.cluster import cluster_view
from planner.price.shapes import price_candidates

TOPO = "dgx-h100x1"
MODEL = "llama-3.1-8b"


def run(args: list) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, [str(a) for a in args])
    return r.exit_code, r.stdout, r.stderr


def _tp1_candidate(req: Request):
    """The unified tp=1 pp=1 one-domain candidate the pricing keeps for ``req``."""
    topo = api.topology_of(TOPO)
    spec = get_model(MODEL)
    view = cluster_view(topo)
    pr = price_candidates(spec, view, req)
    (c,) = [c for c in pr.candidates if c.role == "unified" and c.span == "intra"]
    return spec, view.gpu_of_type[c.gpu], c


BASE = Request(isl=1024, osl=256, tpot_s=0.020, tp=1, pp=1, disaggregation="off")


def test_p99_target_between_mean_and_p99_lowers_the_batch():
    spec, gpu, c = _tp1_candidate(BASE)
    tail = tail_latency(spec, gpu, c.strategy, c.metrics, isl=1024, osl=256, links=c.links)
    assert tail.tpot_p99_s > c.metrics.tpot_s  # chunk steps make the tail
    target = (c.metrics.tpot_s + tail.tpot_p99_s) / 2
    _, _, c2 = _tp1_candidate(replace(BASE, tpot_p99_s=target))
    assert c2.batch < c.batch
    got = tail_latency(spec, gpu, c2.strategy, c2.metrics, isl=1024, osl=256, links=c2.links)
    assert got.tpot_p99_s <= target
    # the largest batch meeting it: one more breaks it
    m = evaluate_replica(spec, gpu, c2.strategy, isl=1024, osl=256, batch=c2.batch + 1, links=c2.links)
    assert tail_latency(spec, gpu, c2.strategy, m, isl=1024, osl=256, links=c2.links).tpot_p99_s > target


def test_p99_is_never_below_the_mean():
    spec = get_model(MODEL)
    gpu = api.cluster_view(api.topology_of(TOPO)).gpu_of_type["H100-SXM-80GB"]
    for tp in (1, 2):
        for b in (1, 2, 8, 32, 128):
            for isl, osl in ((128, 512), (1024, 256), (8192, 64)):
                m = evaluate_replica(spec, gpu, Strategy(tp=tp), isl=isl, osl=osl, batch=b)
                t = tail_latency(spec, gpu, Strategy(tp=tp), m, isl=isl, osl=osl)
                assert t.tpot_p99_s >= m.tpot_s
                assert t.ttft_p99_s(m.ttft_s) >= m.ttft_s
                # the wait for the running step at its p99 in place of its mean; nothing runs at batch 1
                assert t.ttft_extra_s == m.wait_p99_s - m.wait_s
                assert (m.wait_s, m.wait_p99_s) == (0.0, 0.0) if b == 1 else 0 < m.wait_s < m.wait_p99_s


def test_residual_quantile_is_the_residual_life_quantile():
    """Steps all alike: the wait is uniform over a step, so its 0.99 quantile is 0.99 of it. A mix:
    the quantile r solves P(wait > r) = sum f max(S - r, 0) / sum f S, checked against that tail
    summed directly, and the mean residual E[S^2] / 2E[S] is above half the mean step."""
    assert residual_quantile([(1.0, 0.02)], 0.02, 0.99) == pytest.approx(0.0198)
    kinds = [(0.05, 0.120), (0.95, 0.020)]  # a chunk step in 5 % of the engine steps
    busy = sum(f * s for f, s in kinds)
    r = residual_quantile(kinds, busy, 0.99)
    tail = sum(f * max(s - r, 0.0) for f, s in kinds) / busy
    assert tail == pytest.approx(0.01)
    assert 0.020 < r < 0.120
    mean = sum(f * s * s for f, s in kinds) / (2 * busy)
    assert mean > 0.5 * busy  # busy = the mean step (frequencies sum to 1)


def test_the_mean_wait_is_half_a_step_when_steps_are_alike():
    """At the largest batch every step carries a full chunk (prompt tokens per step >= the budget),
    so the steps are alike: the mean wait is half a step and the p99 0.99 of one."""
    spec = get_model(MODEL)
    gpu = api.cluster_view(api.topology_of(TOPO)).gpu_of_type["H100-SXM-80GB"]
    m = evaluate_replica(spec, gpu, Strategy(tp=2), isl=8192, osl=64)
    assert m.batch > 1 and m.wait_s > 0
    assert m.wait_p99_s == pytest.approx(0.99 / 0.5 * m.wait_s)
    # a mix (a 1,024-token chunk in some steps, at 16 sequences): arrivals land in the long steps
    # more often, so the mean wait is above half the mean step and the p99 near the chunk step
    m = evaluate_replica(spec, gpu, Strategy(tp=2), isl=1024, osl=256, batch=16)
    mean_step = m.step.total_s + m.pp_send_s
    assert m.wait_s > 0.5 * mean_step * 1.05 and m.wait_p99_s > 1.5 * mean_step


@pytest.mark.parametrize("kw", [dict(tpot_p99_ms=25.0), dict(ttft_p99_ms=60.0, qps=5.0),
                                dict(tpot_p99_ms=30.0, ttft_p99_ms=200.0, disaggregation="off")])
def test_plan_under_p99_slos_meets_them_recomputed(kw):
    plan = search(topology=TOPO, model=MODEL, isl=1024, osl=256, time_limit_s=5, **kw)
    assert check_plan(plan).ok, check_plan(plan).problems
    slo = plan.inputs.slo
    assert slo.tpot_p99_ms == kw.get("tpot_p99_ms") and slo.ttft_p99_ms == kw.get("ttft_p99_ms")
    for g in plan.replica_groups:
        m = g.metrics_per_replica
        if g.role != "prefill":
            assert m.tpot_p99_ms >= m.tpot_ms
            assert slo.tpot_p99_ms is None or m.tpot_p99_ms <= slo.tpot_p99_ms
        if g.role != "decode":
            assert m.ttft_p99_ms >= m.ttft_ms
            assert slo.ttft_p99_ms is None or m.ttft_p99_ms <= slo.ttft_p99_ms


def test_check_plan_recomputes_p99():
    plan = search(topology=TOPO, model=MODEL, isl=1024, osl=256, time_limit_s=5, tpot_p99_ms=30.0,
                  disaggregation="off")
    d = json.loads(plan.to_json())
    g = d["replica_groups"][0]
    g["metrics_per_replica"]["tpot_p99_ms"] *= 0.5
    assert any("reported tpot_p99_ms" in p for p in check_plan(d).problems)
    d = json.loads(plan.to_json())
    d["inputs"]["slo"]["tpot_p99_ms"] = d["replica_groups"][0]["metrics_per_replica"]["tpot_p99_ms"] * 0.9
    assert any("TPOT p99" in p and "exceeds the SLO" in p for p in check_plan(d).problems)


@pytest.mark.parametrize("flag,name", [("--tpot-p99-ms", "TPOT p99"), ("--ttft-p99-ms", "TTFT p99")])
def test_unreachable_p99_is_exit_3_one_line(flag, name):
    code, out, err = run(["search", "-t", TOPO, "-m", MODEL, flag, "0.5", "--time-limit-s", "5"])
    assert code == 3 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert f"{name} 0.5 ms is unreachable: the fastest plan reaches" in err and f"relax {flag}" in err


@pytest.mark.parametrize("flag", ["--tpot-p99-ms", "--ttft-p99-ms"])
def test_bad_p99_value_is_exit_2_one_line(flag):
    code, out, err = run(["search", "-t", TOPO, "-m", MODEL, flag, "-1"])
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and flag in err


# -- evaluate --concurrency -------------------------------------------------------------------------

EVAL = ["evaluate", "-t", TOPO, "-m", "llama-3.1-70b", "--tp", "4", "--isl", "4096", "--osl", "128"]


def test_concurrency_1_tpot_is_the_pure_decode_step():
    ev = evaluation.evaluate(topology=TOPO, model="llama-3.1-70b", tp=4, isl=4096, osl=128, concurrency=1)
    c = ev.closed
    mix = step_mix(get_model("llama-3.1-70b"), ev.gpu, ev.strategy, isl=4096, osl=128, batch=1, links=ev.links)
    assert c.tpot_s == pytest.approx(mix.decode_s, rel=1e-9)  # the prompt is not spread over TPOT
    assert c.ttft_s > 5 * c.tpot_s  # it is paid once, before the first token
    assert c.e2e_s == pytest.approx(c.ttft_s + 127 * c.tpot_s, rel=1e-9)
    assert c.itl_p50_s == c.itl_p99_s == pytest.approx(c.tpot_s)
    d = ev.as_dict()["at_concurrency"]
    assert d["concurrency"] == 1 and d["batch_in_flight"] == 1
    assert d["e2e_ms"] == pytest.approx(d["ttft_ms"] + 127 * d["tpot_ms"], abs=0.07)  # rounded to 1 µs


def test_throughput_grows_with_concurrency():
    spec = get_model("llama-3.1-70b")
    ev = evaluation.evaluate(topology=TOPO, model=spec, tp=4, isl=1024, osl=256)
    rates = [serve_at_concurrency(spec, ev.gpu, ev.strategy, isl=1024, osl=256, concurrency=c,
                                  links=ev.links).output_tokens_per_s for c in (1, 2, 8, 32, 128)]
    assert rates == sorted(rates) and rates[-1] > 10 * rates[0]


def test_cli_concurrency_json_and_text():
    code, out, err = run(EVAL + ["--concurrency", "8", "--json"])
    assert code == 0, err
    d = json.loads(out)["at_concurrency"]
    assert set(d) >= {"concurrency", "ttft_ms", "ttft_p99_ms", "tpot_ms", "itl_p50_ms", "itl_p99_ms", "e2e_ms",
                      "requests_per_s", "output_tokens_per_s"}
    assert d["ttft_p99_ms"] >= d["ttft_ms"] and d["itl_p99_ms"] >= d["itl_p50_ms"]
    code, out, _ = run(EVAL + ["--concurrency", "8"])
    assert code == 0 and "at concurrency 8:" in out and "end-to-end" in out
    code, out, _ = run(EVAL + ["--json"])
    assert code == 0 and json.loads(out)["at_concurrency"] is None


@pytest.mark.parametrize("extra,words", [(["--concurrency", "4", "--qps", "2"], "not both"),
                                         (["--concurrency", "0"], "positive integer"),
                                         (["--concurrency", "4", "--batch", "2"], "drop --batch"),
                                         (["--concurrency", "3", "--dp", "2"], "multiple of 2")])
def test_cli_concurrency_refusals_are_exit_2_one_line(extra, words):
    code, out, err = run(EVAL + extra)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "--concurrency" in err and words in err


def test_closed_loop_prompts_queue_for_the_prefill():
    """The wait behind the other clients' prompts is the M/D/1 fixed point at the loop's own rate:
    none for one client, growing with the clients and with the prompt, and the TTFT it adds is the
    end-to-end latency it adds (TPOT is untouched)."""
    from costmodels.load import prompt_queue_s, prompt_work_s

    assert prompt_queue_s(0.4, clients=1, unqueued_s=10.0) == 0.0
    for clients, work, base, servers in ((2, 0.1, 5.0, 1), (50, 0.4, 33.0, 1), (200, 0.3, 20.0, 1), (200, 0.3, 20.0, 4)):
        w = prompt_queue_s(work, clients=clients, unqueued_s=base, servers=servers)
        rho = (clients - 1) * work / servers / (base + w)
        assert rho < 1 and w == pytest.approx(rho * work / (2 * (1 - rho)), rel=1e-9)
    waits = [prompt_queue_s(0.4, clients=c, unqueued_s=30.0) for c in (2, 5, 25, 50, 100)]
    assert waits == sorted(waits) and waits[0] < 0.01 * 0.4 < waits[-1]  # one other client: ahead 1.3 % of the time

    spec = get_model("llama-3.1-70b")
    ev = evaluation.evaluate(topology=TOPO, model=spec, tp=4, isl=4096, osl=256)
    loops = {c: serve_at_concurrency(spec, ev.gpu, ev.strategy, isl=4096, osl=256, concurrency=c, links=ev.links)
             for c in (1, 8, 32)}
    one = loops[1]
    assert one.ttft_s == pytest.approx(evaluation.evaluate(topology=TOPO, model=spec, tp=4, isl=4096, osl=256,
                                                           concurrency=1).closed.ttft_s)
    assert loops[1].ttft_s < loops[8].ttft_s < loops[32].ttft_s
    work = prompt_work_s(spec, ev.gpu, ev.strategy, isl=4096, links=ev.links)
    assert 0 < work < one.ttft_s  # the prompt alone, no wait and no decodes
    for c in (8, 32):
        lp = loops[c]
        assert lp.e2e_s == pytest.approx(lp.ttft_s + 255 * lp.tpot_s, rel=1e-9)
        assert lp.requests_per_s == pytest.approx(c / lp.e2e_s, rel=1e-9)


@pytest.mark.parametrize("model,topo,kw", [
    ("llama-3.1-8b", TOPO, {"tp": 1}),
    ("llama-3.1-70b", TOPO, {"tp": 4, "runtime": "trtllm"}),
    ("mixtral-8x7b", TOPO, {"tp": 2, "ep": 2, "attention_dp": 2, "runtime": "sglang"}),
])
def test_prompt_work_is_the_engines_own_prefill_capacity(model, topo, kw):
    """With one-token answers the engine at its largest batch does nothing but prefill, so its
    requests/s (``evaluate_replica``'s steady state, priced its own way) is the prefill capacity;
    one prompt's work (:func:`prompt_work_s`, per attention-DP group) must match it, and a closed
    loop of any size never serves more (before the prompt queue it claimed three times as much)."""
    from costmodels.load import prompt_work_s
    from costmodels.serving import effective_strategy

    spec = get_model(model)
    for isl in (128, 2048):
        ev = evaluation.evaluate(topology=topo, model=spec, isl=isl, osl=1, **kw)
        run = effective_strategy(spec, ev.gpu, ev.strategy, isl=isl, osl=1)
        work = prompt_work_s(spec, ev.gpu, run, isl=isl, links=ev.links)
        capacity = ev.metrics.requests_per_s
        assert 0.9 <= capacity * work / run.attention_dp <= 1.1, (isl, capacity, run.attention_dp / work)
        for c in (16, 256, 4096):
            lp = serve_at_concurrency(spec, ev.gpu, ev.strategy, isl=isl, osl=1, concurrency=c, links=ev.links)
            assert lp.requests_per_s <= capacity * (1 + 1e-9)


def test_short_prompts_that_share_a_step_barely_queue(monkeypatch):
    """A short prompt costs its share of a full step, so with answers to decode the queue is small
    (it once priced each 128-token prompt as a weight read of its own and cut throughput 2.8x)."""
    import costmodels.load as load

    spec = get_model("llama-3.1-8b")
    ev = evaluation.evaluate(topology=TOPO, model=spec, tp=1, isl=128, osl=16)
    queued = serve_at_concurrency(spec, ev.gpu, ev.strategy, isl=128, osl=16, concurrency=256, links=ev.links)
    monkeypatch.setattr(load, "prompt_queue_s", lambda *a, **k: 0.0)
    bare = serve_at_concurrency(spec, ev.gpu, ev.strategy, isl=128, osl=16, concurrency=256, links=ev.links)
    assert bare.output_tokens_per_s * 0.97 <= queued.output_tokens_per_s <= bare.output_tokens_per_s
    assert bare.ttft_s <= queued.ttft_s <= bare.ttft_s * 1.1
