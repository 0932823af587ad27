"""The fidelity harness (benchmarks/fidelity.py): its arithmetic, grouping, skips and bad input.

The arithmetic tests feed hand-checkable (predicted, measured) pairs, or a stub predictor
on the hand-made CSV, so they do not move when the cost model is recalibrated.
"""
from __future__ import annotations

import csv
import importlib.util
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "fidelity.py"
SMALL = Path(__file__).resolve().parent / "data" / "fidelity_small.csv"


def _load():
    if str(SCRIPT.parent) not in sys.path:  # its sibling modules (fidelity_rows, fidelity_predict)
        sys.path.insert(0, str(SCRIPT.parent))
    spec = importlib.util.spec_from_file_location("fidelity_harness", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


F = _load()
P = importlib.import_module("fidelity_predict")  # the predicting half, loaded by F


# -- aggregation on hand-checkable pairs ----------------------------------------------------------

def test_ape_stats_hand_numbers():
    # APEs 0.10, 0.20, 0.50, 0.00 (measured 100 each)
    s = F.ape_stats([(110, 100), (80, 100), (150, 100), (100, 100)])
    assert s["n"] == 4
    assert s["mape"] == pytest.approx(0.20)
    assert s["median_ape"] == pytest.approx(0.15)
    assert s["within_10pct"] == pytest.approx(0.50)  # 0.10 counts as within 10 %
    assert s["within_25pct"] == pytest.approx(0.75)
    assert s["median_signed_pe"] == pytest.approx(0.05)  # signed: +0.1, -0.2, +0.5, 0


def test_ape_is_relative_to_the_measurement():
    assert F.ape(50, 100) == pytest.approx(0.5)
    assert F.ape(200, 100) == pytest.approx(1.0)


def test_ape_stats_empty():
    s = F.ape_stats([])
    assert s["n"] == 0 and s["mape"] is None and s["within_25pct"] is None


def test_choice_stats_top1_and_regret():
    C = F.Candidate
    groups = {
        # predicted pick (2,) measures 8 against a best of 10: regret 0.2
        ("g1",): [C((1,), 8.0, 10.0), C((2,), 10.0, 8.0), C((4,), 6.0, 6.0)],
        # predicted pick is the measured best: regret 0
        ("g2",): [C((2,), 3.3, 3.0), C((4,), 3.675, 3.5), C((8,), 1.5, 3.0)],
        # one layout only: not a choice
        ("g3",): [C((1,), 5.0, 1.0), C((1,), 4.0, 2.0)],
        # the best layout cannot be priced (does not fit): the pick loses 50 %
        ("g4",): [C((1,), None, 10.0), C((2,), 1.0, 5.0)],
    }
    s = F.choice_stats(groups)
    assert s["groups"] == 3
    assert s["top1_match"] == pytest.approx(1 / 3)
    assert s["mean_regret"] == pytest.approx((0.2 + 0.0 + 0.5) / 3)
    assert s["worst_regret"] == pytest.approx(0.5)
    by = {tuple(d["group"]): d for d in s["details"]}
    assert by[("g4",)]["unpriced"] == 1 and not by[("g4",)]["top1"]


def test_choice_stats_ties_in_measurement_count_as_a_match():
    C = F.Candidate
    s = F.choice_stats({("g",): [C((1,), 2.0, 5.0), C((2,), 1.0, 5.0)]})
    assert s["top1_match"] == 1.0 and s["worst_regret"] == 0.0


def test_choice_stats_no_groups():
    s = F.choice_stats({})
    assert s["groups"] == 0 and s["top1_match"] is None and s["mean_regret"] is None


# -- the small CSV through run(), with a stub predictor (no cost model) --------------------------

#: predicted value per file line of tests/data/fidelity_small.csv (None: skipped with reason)
STUB = {
    2: 8000.0,     # meas 10000 (per GPU 10000) -> APE 0.20; per GPU 8000
    3: 20000.0,    # meas 16000 (per GPU 8000)  -> APE 0.25; per GPU 10000 (the pick)
    4: 24000.0,    # meas 24000 (per GPU 6000)  -> APE 0;    per GPU 6000
    5: 6600.0,     # meas 6000  (per GPU 3000)  -> APE 0.10; per GPU 3300
    6: 14700.0,    # meas 14000 (per GPU 3500)  -> APE 0.05; per GPU 3675 (the pick = best)
    7: 12000.0,    # meas 24000 (per GPU 3000)  -> APE 0.50; per GPU 1500
    8: None,       # does not fit
    9: None,       # unknown model
    10: 12.0,      # ttft meas 15 -> APE 0.20 (latency)
    11: None,      # metric not modelled
}


class StubPredictor(F.Predictor):
    def predict(self, row):
        v = STUB[row.line]
        if v is not None:
            return F.Result(row, v)
        real = F.Predictor().predict(row)  # the harness's own skip reasons for these rows
        return F.Result(row, None, real.reason)


def test_run_with_stub_predictions_hand_numbers():
    r = F.run(SMALL, predictor=StubPredictor())
    assert r["rows"] == 10 and r["rows_predicted"] == 7 and r["rows_skipped"] == 3
    assert r["rows_not_fitting"] == 1
    assert r["skipped_reasons"] == {F.NOT_FIT: 1, "unknown model Imaginary-13B": 1,
                                    "metric not modelled: energy_j_per_tok": 1}
    t = r["throughput"]  # APEs .20 .25 0 .10 .05 .50
    assert t["n"] == 6
    assert t["mape"] == pytest.approx(1.10 / 6)
    assert t["median_ape"] == pytest.approx(0.15)
    assert t["within_10pct"] == pytest.approx(3 / 6)
    assert t["within_25pct"] == pytest.approx(5 / 6)
    assert r["latency"]["n"] == 1 and r["latency"]["mape"] == pytest.approx(0.20)
    # all predicted rows: APEs .20 .25 0 .10 .05 .50 .20
    assert r["mape"] == pytest.approx(1.30 / 7)
    assert r["median_ape"] == pytest.approx(0.20)
    # choices: 8B group picks tp2 (measured 8000/GPU vs best 10000/GPU): regret 0.2;
    # 70B group picks tp4, the measured best: regret 0
    assert r["groups"] == 2
    assert r["top1_match"] == pytest.approx(0.5)
    assert r["mean_regret"] == pytest.approx(0.1)
    assert r["worst_regret"] == pytest.approx(0.2)
    a, b = r["per_source"]["HAND_A"], r["per_source"]["HAND_B"]
    assert (a["rows_predicted"], a["rows_skipped"], a["groups"]) == (6, 0, 2)
    assert (b["rows_predicted"], b["rows_skipped"], b["groups"]) == (1, 3, 0)
    assert b["mape"] == pytest.approx(0.20)


def test_grouping_keys_and_per_gpu_normalisation():
    rows = F.read_rows(SMALL)
    results = [F.Result(row, STUB[row.line]) if STUB[row.line] else F.Result(row, None, F.NOT_FIT)
               for row in rows]
    groups = F.choice_groups(results)
    keyed = {(k[1], k[7]): v for k, v in groups.items()}
    eight = keyed[("Llama-3.1-8B", "offline")]
    assert sorted(c.layout for c in eight) == [(1, 1, 1, 1), (2, 1, 1, 1), (4, 1, 1, 1)]
    assert sorted(c.measured for c in eight) == [6000.0, 8000.0, 10000.0]  # total / num_gpus
    # the per-GPU metric row is not divided again; latency rows are not in any group
    per_gpu_rows = [c for k, v in groups.items() if k[6] == "output_tok_per_s_per_gpu" for c in v]
    assert [c.measured for c in per_gpu_rows] == [500.0]
    assert all(k[6] != "ttft_ms" for k in groups)


# -- the real cost model end to end ---------------------------------------------------------------

def test_end_to_end_small_csv_with_the_cost_model():
    r = F.run(SMALL)
    assert r["rows"] == 10
    assert r["rows_predicted"] > 0
    assert r["rows_predicted"] + r["rows_skipped"] == 10
    assert r["skipped_reasons"].get("unknown model Imaginary-13B") == 1
    assert r["skipped_reasons"].get("metric not modelled: energy_j_per_tok") == 1
    assert r["skipped_reasons"].get(F.NOT_FIT) == 1 and r["rows_not_fitting"] == 1
    assert r["groups"] == 2
    assert 0.0 <= r["mean_regret"] <= r["worst_regret"] <= 1.0


def test_json_output_has_the_documented_keys(capsys):
    assert F.main(["--data", str(SMALL), "--json"]) == 0
    out = capsys.readouterr().out
    d = json.loads(out)
    for k in ("rows_predicted", "rows_skipped", "mape", "median_ape", "within_10pct", "within_25pct",
              "top1_match", "mean_regret", "worst_regret", "skipped_reasons", "per_source"):
        assert k in d
    assert set(d["per_source"]) == {"HAND_A", "HAND_B"}
    assert "top1_match" in d["per_source"]["HAND_A"]
    assert F.main(["--data", str(SMALL), "--json"]) == 0
    assert capsys.readouterr().out == out  # deterministic


def test_filters(capsys):
    r = F.run(SMALL, holdout_gpu="A100")  # an alias of A100-SXM4-80GB
    assert r["rows"] == 2 and r["rows_outside_filter"] == 8
    r = F.run(SMALL, source="HAND_A")
    assert r["rows"] == 6
    assert F.main(["--data", str(SMALL), "--holdout-gpu", "MI300X"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "matches no row" in err


def test_online_rows_use_the_request_rate_in_notes(tmp_path):
    head = "source_id,model,precision,gpu,num_gpus,tp,pp,dp,ep,isl,osl,max_batch_or_concurrency,metric,value,notes\n"
    body = "".join(f"S,Llama-3.1-8B,BF16,H100-SXM-80GB,1,1,1,1,,467,256,,{m},1,request_rate_qps={q}\n"
                   for q in ("2", "INF") for m in ("req_per_s", "total_output_tok_per_s", "itl_ms_mean",
                                                   "ttft_ms_mean"))
    p = tmp_path / "online.csv"
    p.write_text(head + body)
    res = {(r.row.metric, r.row.request_rate): r for r in map(F.Predictor().predict, F.read_rows(p))}
    assert res[("req_per_s", 2.0)].predicted == pytest.approx(2.0)  # well below capacity: served = rate
    assert res[("total_output_tok_per_s", 2.0)].predicted == pytest.approx(2.0 * 256)
    cap = res[("req_per_s", math.inf)].predicted
    assert cap > 2.0
    assert res[("itl_ms_mean", 2.0)].predicted < res[("itl_ms_mean", math.inf)].predicted
    assert res[("ttft_ms_mean", 2.0)].predicted > 0
    assert res[("ttft_ms_mean", math.inf)].reason.startswith("metric not modelled: ttft_ms_mean")


def test_rows_say_whether_their_engine_overlapped_host_work(tmp_path):
    """Only the engines that overlap their host work with the GPU are priced so: the TensorRT-LLM
    PyTorch backend and SGLang from 0.4; every other source, and the shipped data's, is not."""
    head = "source_id,model,precision,gpu,num_gpus,tp,pp,dp,ep,isl,osl,max_batch_or_concurrency,metric,value,notes\n"
    notes = {"trtllm-bench (PyTorch backend, cuda-graph padding)": True, "SGLang 0.4.3.post2, launch --tp 8": True,
             "SGLang 0.5.14": True, "SGLang 0.3.6 launch": False, "TensorRT-LLM v0.14 trtllm-serve": False,
             "vLLM 0.7.3": False, "": False}
    body = "".join(f"S,Llama-3.1-8B,BF16,H100-SXM-80GB,1,1,1,1,,128,128,8,req_per_s,1,\"{n}\"\n" for n in notes)
    p = tmp_path / "engines.csv"
    p.write_text(head + body)
    assert {r.notes: r.host_overlap for r in F.read_rows(p)} == notes
    shipped = F.read_all([ROOT / "benchmarks" / "data" / "benchmarks.csv", ROOT / "benchmarks" / "data" / "latency.csv"])
    overlapped = {r.source_id for r in shipped if r.host_overlap}
    assert overlapped == {"TRTLLM_PERF_v1.0", "DSTACK_DSR1_H200_MI300X"}
    assert all(r.host_overlap for r in shipped if r.source_id == "TRTLLM_PERF_v1.0")
    # the same runtime, set-up and metric (requests/s at batch 8): the older engine's row is priced
    # with its host work exposed, so it serves less than the row of the engine that overlaps
    by_notes = {r.notes: r for r in F.read_rows(p)}
    current, legacy = (by_notes[n] for n in ("trtllm-bench (PyTorch backend, cuda-graph padding)",
                                             "TensorRT-LLM v0.14 trtllm-serve"))
    assert current.runtime == legacy.runtime == "trtllm"
    now, old = (F.Predictor().predict(r).predicted for r in (current, legacy))
    assert now > old * 1.01


def test_harness_topologies():
    from topologies.schema import TopologySpec

    def kind(gpu, n=1):
        d = P.harness_topology_spec(P.get_gpu(gpu), n)
        TopologySpec.model_validate(d)
        return d

    assert kind("L40S")["node_types"]["n"]["fabric"]["kind"] == "pcie"
    assert kind("H100-PCIe")["node_types"]["n"]["fabric"]["kind"] == "nvlink-pairs"
    h = kind("H100")["node_types"]["n"]
    assert h["fabric"] == {"kind": "nvswitch", "nvlink_bandwidth_gbyte_per_s": 450.0}
    assert h["gpus_per_node"] == 8
    big = kind("H100", 16)
    assert big["node_groups"][0]["count"] == 2 and big["network"]["kind"] == "single-switch"


def test_2000_rows_under_two_minutes(tmp_path):
    rows = list(csv.DictReader(SMALL.open()))
    out = tmp_path / "big.csv"
    with out.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        for i in range(2000):
            r = dict(rows[i % len(rows)])
            r["isl"] = str(int(r["isl"]) + i // len(rows))  # distinct shapes: no cache hits across copies
            r["source_id"] = f"{r['source_id']}_{i % 3}"
            w.writerow(r)
    t0 = time.perf_counter()
    r = F.run(out)
    assert time.perf_counter() - t0 < 120
    assert r["rows"] == 2000 and r["rows_predicted"] + r["rows_skipped"] == 2000


# -- bad input: one line on stderr, exit 2 --------------------------------------------------------

def _run_script(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--data", str(path)], capture_output=True, text=True,
                          cwd=str(path.parent))


def _one_error_line(cp) -> str:
    """Exit 2, nothing on stdout, exactly one line on stderr and no traceback; returns the line."""
    assert cp.returncode == 2
    lines = cp.stderr.strip().splitlines()
    assert len(lines) == 1, cp.stderr
    assert "Traceback" not in cp.stderr and cp.stdout == ""
    return lines[0]


def test_missing_column_exits_2_with_one_line(tmp_path):
    text = SMALL.read_text().splitlines()
    header = text[0].split(",")
    drop = header.index("tp")
    bad = [",".join(c for j, c in enumerate(line.split(",")) if j != drop) for line in text[:3]]
    p = tmp_path / "missing.csv"
    p.write_text("\n".join(bad) + "\n")
    line = _one_error_line(_run_script(p))
    assert "missing.csv" in line and "missing column tp;" in line and "fix" in line


def test_unreadable_rows_are_set_aside_with_their_reason_and_the_rest_is_scored(tmp_path):
    """Free text in a number column, a missing OSL (variable-length sets) and a stray unquoted comma
    each set their row aside with a reason; the other rows are still scored and nothing is refused."""
    text = SMALL.read_text().splitlines()
    text[3] = text[3].replace(",1024,256,", ",1024,lots,", 1)      # line 4: free text
    text[4] = text[4].replace(",128,128,", ",128,,", 1)            # line 5: osl missing
    text[5] = text[5].replace(",14000,", ",14000,x,", 1)           # line 6: one field too many
    p = tmp_path / "partly_bad.csv"
    p.write_text("\n".join(text) + "\n")
    rows = F.read_rows(p)
    assert [r.line for r in rows] == list(range(2, 12))
    problems = {r.line: r.problem for r in rows if r.problem}
    assert problems == {4: "column 'osl' is not a positive integer: 'lots'", 5: "column 'osl' is empty",
                        6: "more fields than the 17 header columns (unquoted comma?)"}
    report = F.run(p, predictor=StubPredictor())  # set-aside rows never reach the predictor
    assert report["rows"] == 10 and report["rows_predicted"] == 4 and report["rows_skipped"] == 6
    assert report["skipped_reasons"] == {F.NOT_FIT: 1, "unknown model Imaginary-13B": 1,
                                         "metric not modelled: energy_j_per_tok": 1,
                                         "column 'osl' is not a positive integer: 'lots'": 1,
                                         "column 'osl' is empty": 1,
                                         "more fields than the 17 header columns (unquoted comma?)": 1}
    # the set-aside rows never join a planner-choice group: the 8B group keeps 2 layouts, 70B keeps 1
    assert report["groups"] == 1 and report["top1_match"] == 0.0
    cp = subprocess.run([sys.executable, str(SCRIPT), "--data", str(p)], capture_output=True, text=True)
    assert cp.returncode == 0 and cp.stderr == "" and "column 'osl' is empty" in cp.stdout


def test_empty_file_exits_2(tmp_path):
    p = tmp_path / "empty.csv"
    p.write_text("")
    assert "empty file" in _one_error_line(_run_script(p))


def test_binary_file_exits_2(tmp_path):
    p = tmp_path / "blob.csv"
    p.write_bytes(b"\xff\xfe\x00\x81garbage")
    assert "not UTF-8" in _one_error_line(_run_script(p))


def test_missing_file_exits_2(tmp_path):
    _one_error_line(_run_script(tmp_path / "nope.csv"))


def test_peer_compare_prices_each_published_closed_loop_row_with_both_models(tmp_path):
    """``peer_compare.py --published`` against a stub peer whose figures come from its arguments: every
    row of the NIM source at its own ISL/OSL and clients, the peer's TPOT read as ITL and its
    tokens/s/GPU scaled to the run's GPUs, ours as the harness prices the row; one peer call per
    set-up and concurrency, with the row's precision as the peer's quantisation modes."""
    calls = tmp_path / "calls"
    stub = tmp_path / "aiconfigurator"
    stub.write_text("#!/bin/sh\necho \"$@\" >> " + str(calls) + "\n"
                    "isl=0; osl=0; bs=0\n"
                    "while [ $# -gt 0 ]; do case \"$1\" in --isl) isl=$2;; --osl) osl=$2;; --batch-size) bs=$2;; esac; "
                    "shift; done\n"
                    "echo \"  TTFT: $isl ms\"\necho \"  TPOT: $osl ms\"\necho \"  tokens/s/gpu: $bs\"\n")
    stub.chmod(0o755)
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "peer_compare.py"), "--published", "--json"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={"PATH": "/usr/bin:/bin", "AIC_BIN": str(stub), "HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)["published"]
    assert {f["source"] for f in found} == {"NIM_LLAMA33_70B_H100_V180"}
    rows = [r for r in F.read_all(ROOT / "benchmarks" / "data" / "latency.csv")
            if r.source_id == "NIM_LLAMA33_70B_H100_V180"]
    assert len(found) == len(rows) > 100
    pred = P.Predictor()
    for f, r in zip(found, rows, strict=True):
        assert (f["isl"], f["osl"], f["concurrency"], f["metric"], f["measured"]) == (
            r.isl, r.osl, r.concurrency, r.metric, r.value)
        assert f["ours"] == pytest.approx(pred.predict(r).predicted)
        expected = {"ttft_ms_mean": r.isl, "itl_ms_mean": r.osl, "total_output_tok_per_s": r.concurrency * 2}
        assert f["peer"] == expected[r.metric]
    estimates = [ln.split() for ln in calls.read_text().splitlines() if ln.startswith("cli estimate")]
    shapes = {(e[e.index("--isl") + 1], e[e.index("--osl") + 1], e[e.index("--batch-size") + 1]) for e in estimates}
    assert len(estimates) == len(shapes) == len({(r.isl, r.osl, r.concurrency) for r in rows})
    assert shapes == {(str(r.isl), str(r.osl), str(r.concurrency)) for r in rows}
    assert all(" ".join(e).count("--gemm-quant-mode fp8 --kvcache-quant-mode fp8") == 1 and "--tp" in e
               and e[e.index("--tp") + 1] == "2" for e in estimates)


def test_peer_compare_prices_the_peer_pick_at_the_budget_plan_search_launches():
    """``peer_compare.our_budget`` is the token budget the plan records (and ``emit --target trtllm``
    launches with) for the same shape: checked against a real search of the first scenario."""
    from benchmarks.peer_compare import SCENARIOS, Config, our_budget
    from planner import api

    sc = SCENARIOS[0]
    plan = api.search(topology=sc.topology, model=sc.model, isl=sc.isl, osl=sc.osl, tpot_ms=sc.tpot_ms,
                      ttft_ms=sc.ttft_ms, runtime="trtllm", disaggregation="off")
    s = plan.replica_groups[0].strategy
    assert s.max_num_batched_tokens == our_budget(sc, Config(tp=s.tp, pp=s.pp, ep=s.ep, attention_dp=s.attention_dp))
    assert our_budget(sc, Config(tp=2)) != our_budget(sc, Config(tp=8))  # it follows the shape's largest batch
