"""Disaggregated prefill/decode: the solver weighs pools against unified replicas and says why."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from planner import api
from planner.cli import main
from planner.cli.report import plan_text
from planner.emit import emit
from planner.plan.check import check_plan
from topologies.errors import InputError

# SGLang: the runtime whose launch files run pools, so the only one the search offers them for
LONG_TIGHT = dict(topology="dgx-h100x2", model="llama-3.1-70b", isl=8192, osl=256, tpot_ms=40, runtime="sglang")
SHORT_LOOSE = dict(topology="dgx-h100x2", model="llama-3.1-70b", isl=256, osl=256, runtime="sglang")


@pytest.fixture(scope="module")
def pools_plan():
    return api.search(**LONG_TIGHT)


def test_pools_win_for_long_prompts_and_a_tight_tpot(pools_plan):
    p = pools_plan
    roles = {g.role for g in p.replica_groups}
    assert {"prefill", "decode"} <= roles
    d = p.disaggregation
    assert d is not None and d.decision in ("disaggregated", "mixed") and d.alternative == "unified-only"
    assert d.alternative_objective_value is not None and p.solver.objective_value > d.alternative_objective_value
    assert "decode replicas" in d.reason and "meets TPOT <= 40 ms only at batch" in d.reason
    assert "prefill/decode pools: " + d.decision in plan_text(p)
    for g in p.replica_groups:
        if g.role == "prefill":  # TTFT includes moving the KV cache, priced on a real link
            assert g.metrics_per_replica.kv_transfer_ms > 0 and "kv" in g.links
            assert g.metrics_per_replica.ttft_unloaded_ms > g.metrics_per_replica.kv_transfer_ms
        if g.role == "decode":
            assert g.metrics_per_replica.tpot_ms <= 40
    assert p.totals.tpot_ms <= 40


def test_a_comparison_the_time_limit_left_no_room_for_is_not_called_a_proof(monkeypatch):
    """When the search spends its whole time limit on the plan, the unified-only alternative is
    not solved; the verdict says so instead of claiming that no such plan meets the request."""
    from types import SimpleNamespace

    import planner.solve.disagg as disagg

    monkeypatch.setattr(disagg, "time", SimpleNamespace(perf_counter=lambda: float("inf")))
    d = api.search(**LONG_TIGHT).disaggregation
    assert d is not None and d.alternative_objective_value is None
    assert "unified replicas only not weighed: no time was left within --time-limit-s" in d.reason
    assert "meets the request" not in d.reason


def test_a_comparison_that_times_out_keeps_the_plan(monkeypatch):
    """The comparison solve running out of time (CP-SAT UNKNOWN) once threw the plan away with
    "no plan found within --time-limit-s"; the plan stands and the verdict says the comparison
    was not settled."""
    from planner.solve import objectives
    from topologies.errors import SolveTimeout

    compared = []

    def comparison_times_out(cands, *args, **kw):
        if all(c.role == "unified" for c in cands):  # the verdict's unified-only comparison
            compared.append(1)
            raise SolveTimeout("no plan found within --time-limit-s 10")
        return objectives.solve_objective(cands, *args, **kw)

    monkeypatch.setattr(api, "solve_objective", comparison_times_out)
    p = api.search(**LONG_TIGHT)
    assert compared == [1] and {"prefill", "decode"} <= {g.role for g in p.replica_groups}
    assert "unified replicas only not settled within the comparison's 2 s" in p.disaggregation.reason
    assert p.disaggregation.alternative_objective_value is None


def test_a_proven_absence_is_said_as_one():
    """At 36 requests/s no plan of unified replicas meets TPOT 50 ms on two DGX H100 (the
    solver proves it: --disaggregation off is infeasible), and the verdict says so."""
    req = dict(topology="dgx-h100x2", model="llama-3.1-70b", tpot_ms=50, qps=36, runtime="sglang")
    d = api.search(**req).disaggregation
    assert "against no plan with unified replicas only meets the request" in d.reason
    with pytest.raises(api.InfeasibleError):
        api.search(disaggregation="off", **req)


def test_unified_wins_for_short_prompts_and_loose_slos():
    p = api.search(**SHORT_LOOSE)
    assert {g.role for g in p.replica_groups} == {"unified"}
    d = p.disaggregation
    assert d is not None and d.decision == "unified" and d.alternative == "pools-only"
    assert d.alternative_objective_value is not None and p.solver.objective_value > d.alternative_objective_value
    assert "256-token prompts" in d.reason and "dedicating GPUs to prompts" in d.reason


def test_serving_a_rate_with_pools_covers_it():
    p = api.search(objective="min-gpus", qps=3, **LONG_TIGHT)
    assert p.totals.requests_per_s >= 3
    assert check_plan(p).ok
    shares = {}
    for g in p.replica_groups:
        shares[g.role] = shares.get(g.role, 0) + g.traffic_share
    # a request goes to one unified group, or to one prefill and one decode group
    assert shares.get("unified", 0) + shares.get("prefill", 0) == pytest.approx(1, abs=1e-4)
    assert shares.get("unified", 0) + shares.get("decode", 0) == pytest.approx(1, abs=1e-4)


def test_off_and_only():
    off = api.search(disaggregation="off", **LONG_TIGHT)
    assert {g.role for g in off.replica_groups} == {"unified"} and off.disaggregation is None
    only = api.search(disaggregation="only", **LONG_TIGHT)
    assert {g.role for g in only.replica_groups} == {"prefill", "decode"} and only.disaggregation is None
    for objective in ("latency", "throughput-per-gpu"):  # every objective weighs pools, pools alone too
        plan = api.search(disaggregation="only", objective=objective, **LONG_TIGHT)
        assert {g.role for g in plan.replica_groups} == {"prefill", "decode"}


def test_check_plan_needs_both_pools(pools_plan):
    no_decode = pools_plan.model_copy(update={"replica_groups": [g for g in pools_plan.replica_groups
                                                                 if g.role != "decode"]})
    problems = check_plan(no_decode).problems
    assert any("no decode group" in x for x in problems), problems


def test_emit_writes_pools_for_sglang_and_refuses_elsewhere(pools_plan, tmp_path):
    files = emit(pools_plan, "sglang")
    text = "".join(files.values())
    assert "--disaggregation-mode prefill" in text and "--disaggregation-mode decode" in text
    assert "sglang-router.sh" in files and "--pd-disaggregation" in files["sglang-router.sh"]
    for target in ("vllm", "trtllm", "k8s"):
        with pytest.raises(InputError, match="prefill/decode pools"):
            emit(pools_plan, target)
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(pools_plan.to_json())
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["emit", "--plan", str(plan_file), "--target", "vllm", "-o", str(out)])
    assert r.exit_code == 2 and len(r.stderr.splitlines()) == 1 and "--disaggregation off" in r.stderr
    assert not out.exists()


def test_cli_flag_and_json(tmp_path):
    r = CliRunner().invoke(main, ["search", "-t", "dgx-h100x2", "-m", "llama-3.1-70b", "--isl", "8192",
                                  "--osl", "256", "--tpot-ms", "40", "--runtime", "sglang", "--json"])
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["disaggregation"]["decision"] in ("disaggregated", "mixed")
    r = CliRunner().invoke(main, ["search", "-t", "dgx-h100x1", "-m", "llama-3.1-8b", "--disaggregation", "sometimes"])
    assert r.exit_code == 2 and "--disaggregation" in r.stderr
