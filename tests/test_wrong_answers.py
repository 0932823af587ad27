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
                          "--qps", "20", "--price", f"{H100}=1.5", "--runtime", "sglang", "--no-progress", "-q"])
    assert code == 0, err
    verdict = next(line for line in out.splitlines() if line.startswith("prefill/decode pools:"))
    assert "$/hour" not in verdict
    assert "$1.50 per hour against $" in verdict


def test_a_model_cp_sat_refuses_is_a_bug_not_infeasible(monkeypatch):
    """MODEL_INVALID once came back as "no plan meets the request" (exit 3)."""
    from planner.solve import cpsat

    monkeypatch.setattr(cpsat, "COST_BOUND", 2**70)  # no coarsening: the cost objective overflows int64
    monkeypatch.setattr(cpsat, "PRICE_SCALE", 2**70)
    with pytest.raises(AssertionError, match="invalid"):
        api.search(topology="dgx-h100x128", model="llama-3.1-8b", objective="min-cost", qps=500,
                   price_per_gpu_hour={H100: 10_000.0}, disaggregation="off")


# -- --disaggregation only with an unreachable TPOT: OverflowError (best TPOT tracked for unified only)

def test_pools_only_with_an_unreachable_tpot_says_which_tpot_is_reachable():
    code, out, err = run(["search", "-t", "dgx-h100x2", "-m", "llama-3.1-8b", "--disaggregation", "only",
                          "--runtime", "sglang", "--tpot-ms", "1", "-q"])
    assert code == 3, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "--tpot-ms" in err and "fastest plan reaches" in err


# -- labels ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("objective", ["latency", "throughput-per-gpu"])
def test_solver_label_names_what_its_value_measures(objective):
    """latency printed tokens/s as "min TPOT"; throughput-per-gpu printed total tokens/s as "per GPU"."""
    plan = api.search(topology="dgx-h100x1", model="llama-3.1-8b", objective=objective, isl=512, osl=128)
    assert plan.solver.objective.startswith("max output tokens/s among")
    assert "TPOT" not in plan.solver.objective.split(" among ")[0]
    assert plan.solver.objective_value == pytest.approx(plan.totals.output_tokens_per_s, rel=1e-3)


@pytest.mark.parametrize("incumbent, bound, gap", [(5.0, 0.0, 1.0), (0.0, 7.0, 1.0), (3.0, 3.0, 0.0),
                                                   (0.0, 0.0, 0.0), (100.0, 110.0, 10 / 110), (20.0, 15.0, 0.25)])
def test_progress_gap_is_bounded_when_the_bound_is_zero(incumbent, bound, gap):
    from planner.solve.progress import relative_gap

    assert relative_gap(incumbent, bound) == pytest.approx(gap)


def test_progress_lines_never_print_an_absurd_gap():
    import re

    from planner.solve.progress import SearchControl

    lines: list[str] = []
    api.search(topology="dgx-h100x2", model="llama-3.1-8b", objective="min-cost", qps=20,
               price_per_gpu_hour={H100: 2.0}, control=SearchControl(report=lines.append))
    gaps = [float(g) for line in lines for g in re.findall(r"gap ([0-9.e+]+)%", line)]
    assert gaps and all(0 <= g <= 100 for g in gaps), lines


def test_search_emit_on_a_pools_plan_names_the_search_flag(tmp_path):
    code, out, err = run(["search", "-t", "dgx-h100x2", "-m", "llama-3.1-8b", "--disaggregation", "only", "--runtime", "sglang",
                          "--emit", "vllm", "--emit-dir", tmp_path / "launch", "-q"])
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "--target" not in err
    assert "--emit sglang" in err and err.startswith("plan-search: error: --emit")
    assert not (tmp_path / "launch").exists()


# -- messages -------------------------------------------------------------------------------------

def test_config_json_in_the_current_folder_is_named_after_the_folder(tmp_path, monkeypatch):
    """`-m config.json` in the current folder once gave the model a blank name."""
    import shutil
    from pathlib import Path

    folder = tmp_path / "my-llama"
    folder.mkdir()
    shutil.copy(Path(__file__).parent / "corpus" / "models" / "valid-llama" / "config.json", folder)
    monkeypatch.chdir(folder)
    code, out, err = run(["search", "-t", "dgx-h100x1", "-m", "config.json", "--json"])
    assert code == 0, err
    import json
    assert json.loads(out)["inputs"]["model"]["name"] == "my-llama"


# -- sweeps: a row whose topology parses but cannot be built --------------------------------------

SWEEP = """\
name: one-bad-topology
base: {isl: 512, osl: 128, time_limit_s: 5, model: llama-3.1-8b}
grid:
  topology: [dgx-h100x1, broken.yaml, dgx-h100x2]
"""


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_topology_that_cannot_be_built_fails_its_own_rows(tmp_path, monkeypatch, jobs):
    """--jobs 1 once lost every row (exit 2, no CSV); --jobs 2 blamed a "worker process died"."""
    import csv
    import io
    import shutil
    from pathlib import Path


    shutil.copy(Path(__file__).parent / "corpus" / "topologies" / "valid.yaml", tmp_path / "broken.yaml")
    (tmp_path / "s.yaml").write_text(SWEEP)
    import planner.sweep.run as sweep_run

    real = sweep_run.resolve_topology

    def resolve(value, folder):
        payload = real(value, folder)
        if value == "broken.yaml":  # parses, but has no GPUs to build a graph of
            import dataclasses
            payload = dataclasses.replace(payload, spec=payload.spec.model_copy(update={"nodes": [],
                                                                                        "node_groups": []}))
        return payload
    monkeypatch.setattr(sweep_run, "resolve_topology", resolve)
    code, out, err = run(["sweep", tmp_path / "s.yaml", "-o", tmp_path / "out.csv", "--jobs", jobs, "-q"])
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO((tmp_path / "out.csv").read_text())))
    assert [r["status"] for r in rows] == ["ok", "bad-input", "ok"], rows
    assert "no GPUs" in rows[1]["message"] and "worker" not in rows[1]["message"]


# -- Ctrl-C after the solver found a plan --------------------------------------------------------

def test_ctrl_c_during_the_pools_comparison_keeps_the_plan(monkeypatch, tmp_path):
    """The comparison solve only explains the plan: Ctrl-C there once dropped an OPTIMAL plan
    with "interrupted before any plan was found" (exit 130)."""
    from planner.solve import disagg

    def pressed(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(disagg, "verdict", pressed)
    out = tmp_path / "plan.json"
    code, stdout, err = run(["search", "-t", "dgx-h100x1", "-m", "llama-3.1-8b", "--progress", "--json", "-o", out])
    assert code == 0, err
    assert "interrupted: the best plan found so far (status OPTIMAL" in err
    import json
    assert json.loads(out.read_text()) == json.loads(stdout)


def test_ctrl_c_while_placing_says_the_solver_had_a_plan(monkeypatch, tmp_path):
    def pressed(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(api, "place", pressed)
    code, stdout, err = run(["search", "-t", "dgx-h100x1", "-m", "llama-3.1-8b", "--progress", "-o",
                             tmp_path / "plan.json"])
    assert code == 130 and stdout == ""
    assert err.splitlines()[-1] == ("plan-search: interrupted while assigning GPUs to the plan the solver found; "
                                    "no plan written")
    assert list(tmp_path.iterdir()) == []
