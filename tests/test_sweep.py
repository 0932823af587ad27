"""`plan-search sweep`: a grid of search requests as one table (planner/sweep/).

Covers: the same CSV bytes from one process, two local processes and a local Ray instance;
every row equal to calling ``planner.api.search`` directly; failing rows (infeasible, bad
input, a crash) kept as rows; bad sweep files refused before anything runs (exit 2, one line
naming the file and the field, nothing written); Parquet output; the example in benchmarks/.
"""
from __future__ import annotations

import csv
import inspect
import io
import json
import shutil
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from planner import api, sweep as sw
from planner.cli import main

ROOT = Path(__file__).resolve().parent.parent

SMALL = """\
name: small
base: {isl: 512, osl: 128, time_limit_s: 5}
grid:
  topology: [dgx-h100x1, pcie-l40sx1]
  model: [llama-3.1-8b, mistral-7b]
  tpot_ms: [null, 50]
cases:
  - {topology: dgx-h100x1, model: llama-3.1-8b, tpot_ms: 2}
  - {topology: pcie-l40sx1, model: no-such-model}
"""
GRID_ROWS = 8


def run(args: list) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def rows_of(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.fixture
def small(tmp_path) -> Path:
    p = tmp_path / "small.yaml"
    p.write_text(SMALL)
    return p


@pytest.fixture(scope="module")
def reference_csv(tmp_path_factory) -> bytes:
    """The small sweep run in this process (--jobs 1)."""
    d = tmp_path_factory.mktemp("ref")
    (d / "small.yaml").write_text(SMALL)
    code, out, err = run(["sweep", d / "small.yaml", "-o", d / "out.csv", "--jobs", 1])
    assert code == 0, err
    return (d / "out.csv").read_bytes()


# -- the table -----------------------------------------------------------------------------------

def test_jobs_1_and_2_give_the_same_bytes(small, tmp_path, reference_csv):
    out = tmp_path / "two.csv"
    code, stdout, err = run(["sweep", small, "-o", out, "--jobs", 2])
    assert code == 0, err
    assert out.read_bytes() == reference_csv
    assert "2 local processes" in stdout
    # Without -o the CSV goes to stdout (and the summary to stderr).
    code, stdout, err = run(["sweep", small, "--jobs", 1])
    assert code == 0, err
    assert stdout.encode() == reference_csv
    assert "sweep small: 10 rows" in err


def test_rows_match_search(reference_csv):
    rows = rows_of(reference_csv.decode())
    assert list(rows[0]) == list(sw.COLUMNS)
    assert [int(r["index"]) for r in rows] == list(range(GRID_ROWS + 2))
    # Grid order: the last grid key varies fastest; cases follow the grid.
    assert [(r["topology"], r["model"], r["tpot_ms"]) for r in rows[:4]] == [
        ("dgx-h100x1", "llama-3.1-8b", ""), ("dgx-h100x1", "llama-3.1-8b", "50.0"),
        ("dgx-h100x1", "mistral-7b", ""), ("dgx-h100x1", "mistral-7b", "50.0")]
    for r in rows[:GRID_ROWS]:
        assert (r["isl"], r["osl"], r["time_limit_s"], r["objective"], r["runtime"]) == \
            ("512", "128", "5.0", "throughput", "vllm")
        plan = api.search(topology=r["topology"], model=r["model"], isl=512, osl=128,
                          tpot_ms=float(r["tpot_ms"]) if r["tpot_ms"] else None, time_limit_s=5)
        t = plan.totals
        assert r["status"] == "ok" and r["message"] == ""
        assert int(r["gpus_used"]) == t.gpus_used
        assert float(r["output_tokens_per_s"]) == t.output_tokens_per_s
        assert float(r["output_tokens_per_s_per_gpu"]) == t.output_tokens_per_s_per_gpu
        assert float(r["requests_per_s"]) == t.requests_per_s
        assert float(r["plan_ttft_ms"]) == t.ttft_ms
        assert float(r["plan_tpot_ms"]) == t.tpot_ms
        assert (r["solver_status"], float(r["solver_gap"])) == (plan.solver.status, plan.solver.gap)
        assert r["replica_groups"] == "; ".join(
            f"{g.gpu} tp={g.strategy.tp} pp={g.strategy.pp} batch={g.strategy.batch_size} x{g.strategy.dp}"
            for g in plan.replica_groups)


def test_failing_rows_are_rows(reference_csv):
    rows = rows_of(reference_csv.decode())
    infeasible, bad = rows[GRID_ROWS], rows[GRID_ROWS + 1]
    with pytest.raises(api.InfeasibleError) as e:
        api.search(topology="dgx-h100x1", model="llama-3.1-8b", isl=512, osl=128, tpot_ms=2, time_limit_s=5)
    assert infeasible["status"] == "infeasible"
    assert infeasible["message"] == str(e.value)
    assert infeasible["gpus_used"] == "" and infeasible["replica_groups"] == ""
    assert bad["status"] == "bad-input"
    assert "unknown model 'no-such-model'" in bad["message"]


def test_summary(small, tmp_path):
    code, out, err = run(["sweep", small, "-o", tmp_path / "o.csv", "-j", 1])
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("sweep small: 10 rows in ") and lines[0].endswith(" s on 1 process")
    counts = {ln.split()[0]: int(ln.split()[1]) for ln in lines[3:7]}
    assert counts == {"ok": 8, "infeasible": 1, "failed": 1, "total": 10}
    assert "failed: 1 bad-input" in out and f"wrote {tmp_path / 'o.csv'}" in out
    code, out, err = run(["sweep", small, "-o", tmp_path / "q.csv", "-j", 1, "--quiet"])
    assert (code, out, err) == (0, "", "")
    code, out, err = run(["sweep", small, "-o", tmp_path / "p.csv", "-j", 1, "--progress"])
    assert code == 0 and "sweep small: 10/10 rows (8 ok, 1 infeasible, 1 failed)" in err


def test_a_crashing_row_does_not_stop_the_sweep(small, tmp_path, monkeypatch):
    real = api.search

    def flaky(**kw):
        if kw["model"].name == "mistral-7b":
            raise RuntimeError("boom\nsecond line")
        return real(**kw)

    monkeypatch.setattr(api, "search", flaky)
    code, out, err = run(["sweep", small, "-o", tmp_path / "o.csv", "-j", 1])
    assert code == 0, err
    rows = rows_of((tmp_path / "o.csv").read_text())
    errors = [r for r in rows if r["status"] == "error"]
    assert len(errors) == 4 and all(r["model"] == "mistral-7b" for r in errors)
    assert {r["message"] for r in errors} == {"RuntimeError: boom"}
    assert sum(r["status"] == "ok" for r in rows) == 4


def test_relative_paths_are_relative_to_the_sweep_file(tmp_path, monkeypatch):
    d = tmp_path / "sweeps"
    (d / "topos").mkdir(parents=True)
    (d / "models" / "my-llama").mkdir(parents=True)
    shutil.copy(ROOT / "topologies" / "builtin" / "dgx-h100x1.yaml", d / "topos" / "one.yaml")
    shutil.copy(ROOT / "tests" / "corpus" / "models" / "valid-llama" / "config.json",
                d / "models" / "my-llama" / "config.json")
    (d / "s.json").write_text(json.dumps({
        "base": {"isl": 256, "osl": 64, "time_limit_s": 5},
        "grid": {"topology": ["topos/one.yaml", "dgx-h100x1"], "model": ["models/my-llama/config.json"]},
        "cases": [{"topology": "topos/missing.yaml", "model": "llama-3.1-8b"}]}))
    monkeypatch.chdir(tmp_path)
    code, out, err = run(["sweep", d / "s.json", "-o", tmp_path / "o.csv", "-j", 1])
    assert code == 0, err
    rows = rows_of((tmp_path / "o.csv").read_text())
    assert [r["topology"] for r in rows] == ["topos/one.yaml", "dgx-h100x1", "topos/missing.yaml"]
    assert [r["status"] for r in rows] == ["ok", "ok", "bad-input"]
    assert "file does not exist" in rows[2]["message"]
    plan = api.search(topology=d / "topos" / "one.yaml", model=str(d / "models" / "my-llama" / "config.json"),
                      isl=256, osl=64, time_limit_s=5)
    for r in rows[:2]:
        assert float(r["output_tokens_per_s"]) == plan.totals.output_tokens_per_s


def test_example_sweep_runs(tmp_path):
    code, out, err = run(["sweep", ROOT / "benchmarks" / "sweeps" / "example.yaml", "-o", tmp_path / "ex.csv",
                          "-j", 2])
    assert code == 0, err
    rows = rows_of((tmp_path / "ex.csv").read_text())
    assert len(rows) == 10
    assert [r["status"] for r in rows] == ["ok"] * 9 + ["infeasible"], [r["message"] for r in rows]
    assert rows[8]["objective"] == "min-gpus" and rows[8]["qps"] == "20.0"


def test_readme_shows_the_example():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("`benchmarks/sweeps/example.yaml`:\n\n```yaml\n", 1)[1].split("```", 1)[0]
    assert block in (ROOT / "benchmarks" / "sweeps" / "example.yaml").read_text()


# -- Parquet -------------------------------------------------------------------------------------

def test_parquet(small, tmp_path, reference_csv):
    pq = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "o.parquet"
    code, _, err = run(["sweep", small, "-o", out, "-j", 1])
    assert code == 0, err
    table = pq.read_table(out)
    assert table.column_names == list(sw.COLUMNS)
    assert str(table.schema.field("gpus_used").type) == "int64"
    assert str(table.schema.field("tpot_ms").type) == "double"
    assert str(table.schema.field("allow_cross_domain_tp").type) == "bool"
    back = table.to_pylist()
    assert sw.to_csv(back).encode() == reference_csv


def test_parquet_without_pyarrow(small, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setattr(sw, "run_sweep", lambda *a, **k: pytest.fail("ran before refusing"))
    code, out, err = run(["sweep", small, "-o", tmp_path / "o.parquet"])
    assert code == 2 and out == ""
    assert err == (f"plan-search: error: {tmp_path / 'o.parquet'}: Parquet output needs pyarrow: "
                   "pip install 'plan-search[parquet]' (or write a .csv)\n")
    assert list(tmp_path.iterdir()) == [small]


# -- refused before anything runs ----------------------------------------------------------------

GRID = "grid: {topology: [dgx-h100x1], model: [llama-3.1-8b]}\n"
BAD_FILES = {
    "unknown-key-grid": ("grid: {topology: [dgx-h100x1], model: [llama-3.1-8b], tpot: [50]}", "grid.tpot",
                         "unknown key"),
    "unknown-key-base": ("base: {isl: 1024, bogus: 1}\n" + GRID, "base.bogus", "unknown key"),
    "unknown-key-top": ("bases: {}\n" + GRID, "bases", "unknown key"),
    "unknown-key-case": ("cases: [{topology: dgx-h100x1, model: llama-3.1-8b, tp: 2}]", "cases.0.tp", "unknown key"),
    "wrong-type-base": ("base: {isl: '1024'}\n" + GRID, "base.isl", "valid integer, got '1024'"),
    "wrong-type-grid": ("grid: {topology: [dgx-h100x1], model: [llama-3.1-8b], tpot_ms: [50, fast]}",
                        "grid.tpot_ms.1", "valid number, got 'fast'"),
    "bool-as-number": ("base: {max_gpus: true}\n" + GRID, "base.max_gpus", "valid integer"),
    "scalar-not-list": ("grid: {topology: dgx-h100x1, model: [llama-3.1-8b]}", "grid.topology", "valid list"),
    "bad-objective": ("base: {objective: fastest}\n" + GRID, "base.objective", "'throughput'"),
    "negative": ("base: {isl: -1}\n" + GRID, "base.isl", "greater than 0"),
    # printed in the summary: a terminal escape or a line break reached the terminal (found by a fuzzing pass)
    "name-escape": ('name: "evil\\e[31mRED\\nline2"\n' + GRID, "name", "unprintable character"),
    "price-overflow": ("base: {price_per_gpu_hour: {H100-SXM-80GB: 1.0e+308}}\n" + GRID,
                       "base.price_per_gpu_hour.H100-SXM-80GB", "less than or equal to 1000000"),
    "empty-grid": ("grid: {}", "grid", "nothing to run"),
    "empty-file-grid": ("name: nothing", "grid", "nothing to run"),
    "empty-list": ("grid: {topology: [], model: [llama-3.1-8b]}", "grid.topology", "empty list"),
    "no-model": ("grid: {topology: [dgx-h100x1]}", "model", "missing"),
    "case-no-topology": ("cases: [{model: llama-3.1-8b}]", "cases.0.topology", "missing"),
    "not-a-mapping": ("- 1\n- 2", None, "must be a mapping"),
    "grid-not-a-mapping": ("grid: [1, 2]", "grid", "must be a mapping"),
    "too-big": ("grid: {topology: [dgx-h100x1], model: [llama-3.1-8b], "
                f"isl: [{', '.join(str(i) for i in range(1, 401))}], osl: [{', '.join(str(i) for i in range(1, 301))}]}}",
                "grid", "120,000 rows is more than the limit of 100,000"),
    "invalid-yaml": ("grid: {topology: [dgx-h100x1", None, "invalid YAML"),
    "bad-disaggregation": ("base: {disaggregation: sometimes}\n" + GRID, "base.disaggregation",
                           "'auto', 'off' or 'only', got 'sometimes'"),
    "disaggregation-true": ("base: {disaggregation: on}\n" + GRID, "base.disaggregation",
                            "true is not a value here: give auto, off or only"),
    "ep-zero": ("base: {ep: 0}\n" + GRID, "base.ep", "greater than 0"),
    "attention-dp-float": ("grid: {topology: [dgx-h100x1], model: [llama-3.1-8b], attention_dp: [2, 1.5]}",
                           "grid.attention_dp.1", "valid integer, got 1.5"),
    "imbalance-below-1": ("base: {expert_imbalance: 0.5}\n" + GRID, "base.expert_imbalance",
                          "greater than or equal to 1, got 0.5"),
    "price-not-mapping": ("base: {price_per_gpu_hour: 2.5}\n" + GRID, "base.price_per_gpu_hour",
                          "must be a mapping"),
    "price-negative": ("cases: [{topology: dgx-h100x1, model: llama-3.1-8b, price_per_gpu_hour: {H100: -1}}]",
                       "cases.0.price_per_gpu_hour.H100", "greater than or equal to 0, got -1"),
    "price-not-number": ("base: {price_per_gpu_hour: {H100: cheap}}\n" + GRID, "base.price_per_gpu_hour.H100",
                         "valid number, got 'cheap'"),
    # each result row repeats the inputs: a 20,000-entry price mapping made a 300 KB file write 48 MB, and a
    # model name with terminal escapes went raw into the CSV and the status line (found by a red-team pass)
    "price-too-many": ("base: {price_per_gpu_hour: {" + ", ".join(f"G{i}: 1" for i in range(65)) + "}}\n" + GRID,
                       "base.price_per_gpu_hour", "at most 64 items"),
    "price-not-a-gpu-name": ("base: {price_per_gpu_hour: {'H100 SXM': 2.0}}\n" + GRID, "base.price_per_gpu_hour.H100 SXM.[key]",
                             "is not a valid GPU name"),
    "model-escape": ('grid: {topology: [dgx-h100x1], model: ["llama\\e[2J\\nx"]}', "grid.model.0",
                     "unprintable character"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_sweep_file(name, tmp_path, monkeypatch):
    text, field, words = BAD_FILES[name]
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    out = tmp_path / "o.csv"
    monkeypatch.setattr(sw, "run_sweep", lambda *a, **k: pytest.fail("ran a bad sweep file"))
    code, stdout, err = run(["sweep", f, "-o", out])
    assert code == 2, err
    assert stdout == ""
    assert err.count("\n") == 1 and err.startswith(f"plan-search: error: {f}: "), err
    if field:
        assert f"{f}: {field}: " in err, err
    assert words in err, err
    assert not out.exists()


def test_missing_sweep_file(tmp_path):
    code, out, err = run(["sweep", tmp_path / "nope.yaml", "-o", tmp_path / "o.csv"])
    assert code == 2 and out == ""
    assert err == f"plan-search: error: {tmp_path / 'nope.yaml'}: file does not exist; check the path\n"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("output, words", [("missing-dir/o.csv", "folder does not exist"),
                                           ("o.xlsx", "give a file name ending in .csv or .parquet"),
                                           (".", "is a directory")])
def test_bad_output_is_refused_before_running(small, tmp_path, monkeypatch, output, words):
    monkeypatch.setattr(sw, "run_sweep", lambda *a, **k: pytest.fail("ran before refusing"))
    monkeypatch.chdir(tmp_path)
    code, out, err = run(["sweep", small, "-o", output])
    assert code == 2 and out == "" and err.count("\n") == 1 and words in err, err


def test_ray_address_without_ray(small, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    code, out, err = run(["sweep", small, "-o", tmp_path / "o.csv", "--ray-address", "auto"])
    assert (code, out) == (2, "")
    assert err == "plan-search: error: --ray-address needs Ray: pip install 'plan-search[ray]'\n"
    assert not (tmp_path / "o.csv").exists()


def test_sweep_keys_are_search_arguments():
    params = inspect.signature(api.search).parameters
    for k, default in sw.SEARCH_DEFAULTS.items():
        assert params[k].kind is inspect.Parameter.KEYWORD_ONLY
        if k in ("topology", "model"):
            assert params[k].default is inspect.Parameter.empty
        elif k in ("weight_dtype", "kv_dtype"):
            assert (params[k].default, default) == (None, "auto")
        else:
            assert params[k].default == default, k


# -- Ray -----------------------------------------------------------------------------------------

def test_ray_local_instance_gives_the_same_bytes(small, tmp_path, reference_csv, monkeypatch):
    ray = pytest.importorskip("ray")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():  # another test's cluster: this one starts its own
        ray.shutdown()
    out = tmp_path / "ray.csv"
    code, stdout, err = run(["sweep", small, "-o", out, "--ray-address", "local", "--jobs", 2])
    assert code == 0, err
    assert "on Ray at local (2 CPUs)" in stdout
    assert out.read_bytes() == reference_csv
    assert not ray.is_initialized()  # the sweep shut down the instance it started


def test_a_sweep_sets_the_p99_slos(tmp_path):
    """Tail targets are search arguments like the others: a row with an unreachable p99 TPOT is
    infeasible where the same row without it plans."""
    f = tmp_path / "p99.yaml"
    f.write_text("base: {topology: dgx-h100x1, model: llama-3.1-8b, time_limit_s: 5}\n"
                 "grid:\n  tpot_p99_ms: [null, 0.5]\n", encoding="utf-8")
    rows = sw.run_sweep(sw.load_sweep(f), jobs=1).rows
    assert [r["tpot_p99_ms"] for r in rows] == [None, 0.5]
    assert [r["status"] for r in rows] == ["ok", "infeasible"]


def test_a_sweep_sets_pools_moe_degrees_and_prices(tmp_path):
    """disaggregation, ep, attention_dp, expert_imbalance and price_per_gpu_hour are sweep keys like the
    others (an unquoted YAML ``off`` is taken as off): each row equals search() with the same
    arguments, pool groups name their role in replica_groups, and prices are written as --price says
    them, with the plan's cost beside them."""
    f = tmp_path / "more.yaml"
    f.write_text("base: {topology: dgx-h100x2, model: llama-3.1-70b, tpot_ms: 50, runtime: sglang, time_limit_s: 5}\n"
                 "grid:\n  disaggregation: [only, off]\n"
                 "cases:\n"
                 "  - {qps: 5, objective: min-cost, disaggregation: off, price_per_gpu_hour: {H100-SXM-80GB: 2.5}}\n"
                 "  - {topology: dgx-h100x1, model: mixtral-8x7b, ep: 2, attention_dp: 1, expert_imbalance: 1.2}\n",
                 encoding="utf-8")
    rows = sw.run_sweep(sw.load_sweep(f), jobs=1).rows
    assert [r["status"] for r in rows] == ["ok"] * 4, [r["message"] for r in rows]
    assert [r["disaggregation"] for r in rows] == ["only", "off", "off", "auto"]
    pools = rows[0]["replica_groups"].split("; ")
    assert any(" prefill tp=" in g for g in pools) and any(" decode tp=" in g for g in pools), pools
    assert " prefill " not in rows[1]["replica_groups"] and " decode " not in rows[1]["replica_groups"]
    assert rows[2]["price_per_gpu_hour"] == "H100-SXM-80GB=2.5"
    cheapest = api.search(topology="dgx-h100x2", model="llama-3.1-70b", tpot_ms=50, runtime="sglang", qps=5,
                          objective="min-cost", disaggregation="off", time_limit_s=5,
                          price_per_gpu_hour={"H100-SXM-80GB": 2.5})
    assert rows[2]["cost_per_hour"] == cheapest.totals.cost_per_hour == 2.5 * cheapest.totals.gpus_used
    assert rows[0]["cost_per_hour"] is None  # no price given, none in the topology
    moe = api.search(topology="dgx-h100x1", model="mixtral-8x7b", tpot_ms=50, runtime="sglang", time_limit_s=5,
                     ep=2, attention_dp=1, expert_imbalance=1.2)
    assert (rows[3]["ep"], rows[3]["attention_dp"], rows[3]["expert_imbalance"]) == (2, 1, 1.2)
    assert rows[3]["output_tokens_per_s"] == moe.totals.output_tokens_per_s
    assert rows[3]["replica_groups"] == sw.replica_groups_summary(moe) and " ep=2 " in rows[3]["replica_groups"]
    text = sw.to_csv(rows)
    assert ",H100-SXM-80GB=2.5," in text
