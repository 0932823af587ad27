"""Start-up stays light: each command imports only what it uses (issue 15, "Speed").

The timings themselves are machine-dependent (``python benchmarks/startup.py``); these tests check
what makes them: which heavy packages a command's process loads, and that the shortcuts taken to
avoid loading them (CP-SAT without pandas, one OpenBLAS thread, weight sums from prefix sums)
leave no trace and change no figure.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from costmodels.memory import stage_weight_bytes
from costmodels.models import builtin_model_names, get_model

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("ortools", "numpy", "pandas", "networkx", "pydantic", "pyarrow")

#: Run the command line in this process's interpreter, then print the heavy packages it loaded.
PROBE = """
import gc, json, os, sys
heavy = set(json.loads(sys.argv[2]))
sys.argv = ["plan-search", *json.loads(sys.argv[1])]
from planner.entry import main
try:
    main()
except SystemExit:
    pass
sys.stdout.flush()
loaded = sorted(name for name in heavy if name in sys.modules)
sys.stderr.write("\\nLOADED " + json.dumps({"loaded": loaded, "blas_env": "OPENBLAS_NUM_THREADS" in os.environ,
                                             "gc_enabled": gc.isenabled(), "gc_frozen": gc.get_freeze_count(),
                                             "gc_thresholds": gc.get_threshold()}))
"""


def _loaded(args: list[str], tmp_path: Path, heavy: tuple[str, ...] = HEAVY) -> dict:
    """The modules of ``heavy`` (packages or dotted modules) that ``plan-search ARGS`` loaded."""
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args), json.dumps(heavy)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    line = proc.stderr.rsplit("\nLOADED ", 1)
    assert len(line) == 2, proc.stderr
    return json.loads(line[1])


@pytest.mark.parametrize("args", [["--help"], ["catalog", "gpus"], ["catalog", "models"]])
def test_help_and_catalogs_import_no_heavy_package(args, tmp_path):
    assert _loaded(args, tmp_path)["loaded"] == []


def test_validate_and_emit_never_load_the_solver(tmp_path):
    assert "ortools" not in _loaded(["topology", "validate", "dgx-h100x2"], tmp_path)["loaded"]
    plan = tmp_path / "plan.json"
    made = subprocess.run([sys.executable, "-m", "planner", "search", "-t", "dgx-h100x1", "-m", "llama-3.1-8b", "-q",
                           "-o", str(plan)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    loaded = _loaded(["emit", "--plan", str(plan), "--target", "vllm", "-o", str(tmp_path / "out")], tmp_path)
    assert (tmp_path / "out").is_dir()
    assert not {"ortools", "numpy", "pandas"} & set(loaded["loaded"])


def test_search_loads_cp_sat_without_pandas_and_leaves_no_trace(tmp_path):
    seen = _loaded(["search", "-t", "dgx-h100x1", "-m", "llama-3.1-70b", "-q", "-o", str(tmp_path / "p.json")],
                   tmp_path)
    assert "ortools" in seen["loaded"] and "pandas" not in seen["loaded"]
    assert not seen["blas_env"], "OPENBLAS_NUM_THREADS is set for numpy's first load only"
    assert json.loads((tmp_path / "p.json").read_text())["solver"]["status"] == "OPTIMAL"


def test_search_loads_the_text_report_and_the_simulator_only_where_used(tmp_path):
    """tabulate (with wcwidth) serves the text report alone, the benchmark simulator `evaluate --requests`."""
    report_only = ("tabulate", "wcwidth", "costmodels.benchrun")
    search = ["search", "-t", "dgx-h100x1", "-m", "llama-3.1-8b", "-q"]
    assert _loaded([*search, "--json"], tmp_path, report_only)["loaded"] == []
    assert _loaded([*search, "-o", str(tmp_path / "p.json")], tmp_path, report_only)["loaded"] == ["tabulate", "wcwidth"]
    simulated = ["evaluate", "-t", "dgx-h100x1", "-m", "llama-3.1-8b", "--tp", "1", "--qps", "1", "--requests", "20"]
    assert "costmodels.benchrun" in _loaded(simulated, tmp_path, report_only)["loaded"]


def test_the_command_line_freezes_what_is_left_and_keeps_the_collector(tmp_path):
    """planner.entry freezes what is alive at the end, so the interpreter's last collection skips
    it (start-up time), and leaves the collector as Python sets it: each CP-SAT model is a cycle,
    and a frontier or a top-k without collections would keep them all."""
    import gc

    for args in (["search", "-t", "dgx-h100x1", "-m", "llama-3.1-8b", "-q", "--json"], ["catalog", "gpus"]):
        seen = _loaded(args, tmp_path)
        assert seen["gc_enabled"] is True and tuple(seen["gc_thresholds"]) == gc.get_threshold()
        assert seen["gc_frozen"] > 1_000


def test_pandas_imported_after_cp_sat_is_the_real_package():
    """The stand-in never outlives cp_model's import: a later `import pandas` gets pandas itself."""
    pytest.importorskip("pandas")
    code = ("import sys; from planner.solve.ortools_loader import cp_model\n"
            "assert 'pandas' not in sys.modules\n"
            "import pandas\n"
            "print(pandas.DataFrame({'a': [1, 2]})['a'].sum(), cp_model.CpModel().new_int_var(0, 3, 'x').name)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["3", "x"]


@pytest.mark.parametrize("name", builtin_model_names())
def test_stage_weight_bytes_equals_the_layer_by_layer_sum(name):
    """The prefix sums give exactly the bytes of summing every layer of the stage (the old code)."""
    m = get_model(name)
    bounds = sorted({0, 1, m.dense_layers, m.layers // 3, m.layers // 2, m.layers - 1, m.layers})
    for start in bounds:
        for end in bounds:
            if end < start:
                continue
            for tp, at in ((1, None), (8, None), (8, 2)):
                got = stage_weight_bytes(m, tp=tp, layer_start=start, layer_count=end - start, first=start == 0,
                                         last=end == m.layers, weight_dtype="bf16", attention_tp=at)
                assert got == _reference_stage_weight_bytes(m, tp, at, start, end, "bf16"), (name, start, end, tp)


def _reference_stage_weight_bytes(m, tp, at, start, end, dtype):
    """stage_weight_bytes as it was before the prefix sums: layer by layer."""
    from costmodels.memory import EMBEDDING_BYTES, replicated_kv_params_per_layer, weight_bytes
    from costmodels.units import dtype_bytes

    a = at or tp
    layers = range(start, end)
    routed = sum(m.routed_expert_params(i) for i in layers)
    dense = sum(m.layer_params(i) for i in layers) - routed
    out = weight_bytes(params=dense / a + routed / tp + (end - start) * replicated_kv_params_per_layer(m, a),
                       dtype=dtype)
    emb = max(EMBEDDING_BYTES, dtype_bytes(dtype))
    if start == 0:
        out += m.embedding_params() / a * emb
    if end == m.layers:
        out += (m.lm_head_params() / a + m.hidden) * emb
    return out


def test_max_batch_size_cache_answers_as_the_computation_does():
    """The memoised largest batch equals a fresh computation for every argument it is keyed on, and
    a stage list of the wrong length is still refused."""
    from costmodels.hardware import get_gpu
    from costmodels.serving import _max_batch_size, max_batch_size
    from costmodels.strategy import Strategy

    h100, a100 = get_gpu("H100-SXM-80GB"), get_gpu("A100-SXM-80GB")
    m = get_model("llama-3.1-70b")
    cases = [(h100, Strategy(tp=4), 2048, None), (h100, Strategy(tp=4), 8192, None), (h100, Strategy(tp=4), 2048, 7),
             (h100, Strategy(tp=4, runtime="trtllm"), 2048, None), (h100, Strategy(tp=2, pp=2), 2048, None),
             ([h100, a100], Strategy(tp=2, pp=2), 2048, None), ([a100, h100], Strategy(tp=2, pp=2), 2048, None)]
    answers = []
    for _ in range(2):  # the second round is answered from the cache
        for gpu, s, context, cap in cases:
            got = max_batch_size(m, gpu, s, context=context, cap=cap)
            stage_gpus = tuple(gpu) if isinstance(gpu, list) else (gpu,) * s.pp
            assert got == _max_batch_size.__wrapped__(m, stage_gpus, s, context, cap)
            answers.append(got)
    assert len(set(answers[:len(cases)])) > 3  # the cases differ: a key missing an argument would show
    with pytest.raises(ValueError):
        max_batch_size(m, [h100], Strategy(tp=2, pp=2), context=2048)


def test_startup_benchmark_reports_every_row_it_times():
    proc = subprocess.run([sys.executable, "benchmarks/startup.py", "--runs", "1", "--only=--help", "--json"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)["rows"]
    assert [r["command"] for r in rows] == ["plan-search --help"]
    assert rows[0]["target_s"] == 0.25 and rows[0]["median_wall_s"] > 0
    # the ratio is rounded from the unrounded median: within one step of each rounding
    assert rows[0]["ratio"] == pytest.approx(rows[0]["median_wall_s"] / 0.25, abs=0.011)
