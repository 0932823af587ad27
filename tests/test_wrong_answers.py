"""Wrong answers found on the way (issue 12, section 5): each test failed before its fix."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from planner import api
from planner.cli import main
from topologies.graph import Topology
from topologies.synth import synthetic_fleet

H100, A100, H200 = "H100-SXM-80GB", "A100-SXM4-80GB", "H200-SXM-141GB"


def run(args) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


# -- min-cost: an objective that overflowed int64 was reported as "infeasible" -------------------

def _cost_of(plan, prices: dict[str, float]) -> float:
    return sum(prices[g.gpu] * g.strategy.tp * g.strategy.pp * g.strategy.dp for g in plan.replica_groups)


@pytest.mark.parametrize("disaggregation", ["auto", "off"])
def test_min_cost_on_1024_gpus_is_proven(disaggregation):
    """The issue's command: exit 3 "infeasible" (MODEL_INVALID) while the cluster serves 44,604 req/s."""
    plan = api.search(topology="dgx-h100x128", model="llama-3.1-8b", objective="min-cost", qps=500,
                      price_per_gpu_hour={H100: 1.0}, disaggregation=disaggregation, time_limit_s=10)
    assert plan.solver.status == "OPTIMAL", plan.solver
    assert plan.totals.requests_per_s >= 500
    assert plan.totals.cost_per_hour == pytest.approx(plan.totals.gpus_used * 1.0)
    assert plan.solver.objective_value == pytest.approx(plan.totals.cost_per_hour)


@pytest.fixture(scope="module")
def fleet():
    return Topology(synthetic_fleet(gpus=1536, gpu_types=(H100, A100, H200)))


@pytest.mark.parametrize("prices, cheapest", [
    ({H100: 0.01, A100: 10_000.0, H200: 10_000.0}, H100),
    ({H100: 10_000.0, A100: 0.01, H200: 5_000.0}, A100),
    ({H100: 10_000.0, A100: 10_000.0, H200: 9_999.0}, None),
], ids=["h100-at-a-cent", "a100-at-a-cent", "all-near-10k"])
def test_min_cost_with_prices_from_a_cent_to_ten_thousand(fleet, prices, cheapest):
    plan = api.search(topology=fleet, model="llama-3.1-8b", objective="min-cost", qps=300,
                      price_per_gpu_hour=prices, disaggregation="off", time_limit_s=5)
    assert plan.solver.status in ("OPTIMAL", "FEASIBLE")
    assert plan.totals.requests_per_s >= 300
    assert plan.totals.cost_per_hour == pytest.approx(_cost_of(plan, prices), rel=1e-9)
    assert plan.solver.objective_value == pytest.approx(plan.totals.cost_per_hour, rel=1e-3)
    if cheapest is not None:  # one type costs a millionth of the others and can serve it all alone
        assert {g.gpu for g in plan.replica_groups} == {cheapest}


def test_min_cost_verdict_prints_the_dollar_once():
    code, out, err = run(["search", "-t", "dgx-h100x2", "-m", "llama-3.1-8b", "--objective", "min-cost",
                          "--qps", "20", "--price", f"{H100}=1.5", "--no-progress", "-q"])
    assert code == 0, err
    verdict = next(line for line in out.splitlines() if line.startswith("prefill/decode pools:"))
    assert "$/hour" not in verdict
    assert "$1.50 per hour against $" in verdict


def test_a_model_cp_sat_refuses_is_a_bug_not_infeasible(monkeypatch):
    """MODEL_INVALID once came back as "no plan meets the request" (exit 3)."""
    from planner import cpsat

    monkeypatch.setattr(cpsat, "COST_BOUND", 2**62)  # no coarsening: the objective overflows int64
    monkeypatch.setattr(cpsat, "OBJECTIVE_BOUND", 2**62)
    with pytest.raises(AssertionError, match="invalid"):
        api.search(topology="dgx-h100x128", model="llama-3.1-8b", objective="min-cost", qps=500,
                   price_per_gpu_hour={H100: 10_000.0}, disaggregation="off")


# -- --disaggregation only with an unreachable TPOT: OverflowError (best TPOT tracked for unified only)

def test_pools_only_with_an_unreachable_tpot_says_which_tpot_is_reachable():
    code, out, err = run(["search", "-t", "dgx-h100x2", "-m", "llama-3.1-8b", "--disaggregation", "only",
                          "--tpot-ms", "1", "-q"])
    assert code == 3, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "--tpot-ms" in err and "fastest plan reaches" in err
