"""Robustness: the bad-input corpus and the emitter payload corpus through the real command
line, and the planner's own time and memory on large random fleets.

    python benchmarks/robustness.py [--sizes 1024 4096 16384] [--skip-corpus] [--skip-emitters]
                                    [--skip-large] [--time-limit-s 30] [--json]

Part 1, the corpus: every case of ``tests/test_bad_inputs.py`` (hand-written files in
``tests/corpus/``, hostile files generated at run time: alias bombs, 20 and 100 MiB
files, non-UTF-8 bytes, deep nesting, symlink loops; and bad flags) is run as its own
``python -m planner.cli`` process, as a user would run it. A case is *handled cleanly*
when the exit code is the expected one (2 bad input, 3 infeasible), stderr is exactly one
line naming what the case says it must name, there is no traceback, stdout is empty and
no output file is left behind. Target: all of them.

Part 1b, the emitter payload corpus: every payload of ``tests/test_emit_injection.py``
(command substitution, backticks, line breaks, quotes, ``;``, ``&&``, ``|``, a YAML
document, Python triple quotes, ``${IFS}``, Unicode format characters, terminal escapes,
control characters, a glob, a flag) in every text field that reaches an emitter (node name,
group id, GPU, generator, model name, topology name, ``--model-path``), for every target, on
the test's plans (one per target, multi-node where the target has one). Each hostile plan is
written to a plan JSON and given to ``python -m planner emit --plan X --target T -o DIR``.
The plan loader refuses every payload inside a plan file (one line, exit 2, no folder): the
same hostile plan then goes through the in-process emit API, as a plan built in Python
would (no validation), where it is refused in one line or emitted. ``--model-path`` reaches the emitters
through the real process. Every emitted file is then used as the test uses it: shell
scripts run under ``bash`` (once per plan node) with stub programs first in PATH, the Ray
script against a stub ``ray``, Kubernetes YAML loaded and its ``sh -c`` scripts run. A case
is *handled cleanly* when the process exit is 0 (files written, nothing on stderr) or 2
(one line, no traceback, nothing written), the in-process refusal if any is one line, the
emitted files behave (same code, same documents, the programs started) and the payload's
marker file was never created. *Payloads run* counts the markers created: it must be 0.

Part 2, large instances: synthetic fleets of three GPU types (H100, A100, H200 SXM, 8 per
node, racks of 32 nodes on a leaf-spine network, 10% of GPUs busy at random) planned for
Llama-3.1-70B at 1,024-token prompts and 256-token outputs with TPOT <= 50 ms and
TTFT <= 1 s, once for the most throughput and once for the fewest GPUs serving a rate.
Each instance runs in a fresh process that reports its wall time, the solver status and
gap, and its own peak resident memory (``ru_maxrss``), so one run's memory cannot hide
another's. Target: 16,384 GPUs in under 2 GiB (issue 7) and under 30 s (issue 4).

A report, not a test: the exit code is 0 whatever the figures.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from tabulate import tabulate  # noqa: E402

TYPES = ("H100-SXM-80GB", "A100-SXM4-80GB", "H200-SXM-141GB")
MEMORY_TARGET_BYTES = 2 * 2**30


# -- part 1: the corpus ---------------------------------------------------------------------------

def run_case(case) -> dict:
    """Run one corpus case in its own process; say whether it was handled cleanly and why not."""
    with tempfile.TemporaryDirectory(prefix="robustness-") as tmp:
        made, out_dir, args = case.prepare(Path(tmp))
        t0 = time.perf_counter()
        try:
            p = subprocess.run([sys.executable, "-m", "planner.cli", *args], capture_output=True, text=True,
                               cwd=ROOT, timeout=max(case.timeout_s, 60),
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
        except subprocess.TimeoutExpired:
            return {"id": case.id, "clean": False, "why": "no answer within the time limit", "wall_s": None}
        wall = time.perf_counter() - t0
        expected = case.code if isinstance(case.code, tuple) else (case.code,)
        lines = p.stderr.splitlines()
        why = None
        if "Traceback" in p.stderr:
            why = "traceback"
        elif p.returncode not in expected:
            why = f"exit {p.returncode}, expected {expected}"
        elif len(lines) != 1:
            why = f"{len(lines)} stderr lines"
        elif p.stdout:
            why = "wrote to stdout"
        elif list(out_dir.iterdir()):
            why = "left an output file"
        else:
            for m in case.expected_mentions(made):
                if m not in p.stderr:
                    why = f"stderr does not name {m!r}"
                    break
        return {"id": case.id, "clean": why is None, "why": why, "exit": p.returncode, "wall_s": round(wall, 2),
                "stderr": lines[0] if lines else ""}


def corpus() -> list[dict]:
    from test_bad_inputs import CASES, _plan_text  # the corpus is defined once, beside its test

    # The plan-file cases edit a plan the CLI makes in-process through click's CliRunner, which swaps
    # sys.stdout for the whole process: made from several threads at once, the plan went to this
    # script's stdout and the run stopped there. Made once, here, before the threads start.
    _plan_text()
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        return list(pool.map(run_case, CASES))


# -- part 1b: the emitter payload corpus ---------------------------------------------------------

#: (plan, target) per target, from the injection test's plans: a replica over two nodes (Llama-3.1-405B,
#: one mpirun for TensorRT-LLM), and for SGLang the prefill/decode pools (router script). All are plans
#: the planner made, so the real process writes their files when the payload is only in --model-path.
EMIT_COMBOS = (("multi", "vllm"), ("pools", "sglang"), ("multi", "trtllm"), ("multi", "ray"), ("multi", "k8s"))


def _judge_process(p: subprocess.CompletedProcess, out_dir: Path) -> str | None:
    """Why the emit process was not clean (None when it was): exit 0 with files and a silent
    stderr, or exit 2 with one line, nothing on stdout and no folder."""
    if "Traceback" in p.stderr:
        return "traceback"
    if p.returncode == 0:
        if p.stderr:
            return "exit 0 with a message on stderr"
        return None if out_dir.is_dir() and any(out_dir.iterdir()) else "exit 0 and no file written"
    if p.returncode != 2:
        return f"exit {p.returncode}, expected 0 or 2"
    if len(p.stderr.splitlines()) != 1 or not p.stderr.startswith("plan-search: error: "):
        return f"{len(p.stderr.splitlines())} stderr lines"
    if p.stdout:
        return "wrote to stdout"
    if out_dir.exists():
        return "created the output folder"
    return None


def _use_files(inj, plans, job, plan, model_path, files, d: Path, stub_bin: Path, stub_ray: Path) -> str | None:
    """Run the emitted files as the injection test does; why they misbehaved, or None."""
    kind, field, pname, target = job
    plain, plain_path = inj._plain_twin(plans[pname], field, inj.PAYLOADS[kind])  # as the injection test compares
    base = inj.emit(plain, target, model_path=plain_path)
    try:
        inj._check_files(files, base, plan, d / "run", inj._env(stub_bin, d / "stub.log", plan), stub_ray)
    except AssertionError as e:
        return "launch files misbehaved: " + (str(e).splitlines() or ["assertion"])[0][:200]
    except subprocess.TimeoutExpired:
        return "a launch file did not finish within 60 s"
    return None


def run_emit_case(job: tuple[str, str, str, str], inj, plans, root: Path, stub_bin: Path, stub_ray: Path) -> dict:
    """One payload in one field for one target: the real ``emit`` process, then the files it (or,
    when the plan loader refused, the in-process API) wrote, run with stubs."""
    kind, field, pname, target = job
    case_id = f"{kind}/{field}/{pname}/{target}"
    d = root / case_id.replace("/", "-")
    d.mkdir()
    marker = d / "marker"
    plan, model_path = inj._with_payload(plans[pname], field, inj.PAYLOADS[kind].replace(inj.MARK, str(marker)))
    plan_file, out_dir = d / "plan.json", d / "out"
    plan_file.write_text(json.dumps(plan.model_dump(mode="json"), indent=1), encoding="utf-8")
    args = ["emit", "--plan", str(plan_file), "--target", target, "-o", str(out_dir)]
    if model_path is not None:
        args += ["--model-path", model_path]
    p = subprocess.run([sys.executable, "-m", "planner", *args], capture_output=True, text=True, cwd=d,
                       timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    why = _judge_process(p, out_dir)
    how = "emitted by the process; files run" if why is None else "the emit process was not clean"
    files = None
    if why is None and p.returncode == 0:
        files = {f.name: f.read_text(encoding="utf-8") for f in sorted(out_dir.iterdir())}
    elif why is None:
        try:
            files = inj.emit(plan, target, model_path=model_path)
            how = "refused by the process in one line; emitted in-process, files run"
        except inj.InputError as e:
            how = "refused by the process and by the emit API, each in one line"
            why = None if "\n" not in str(e) and str(e).isprintable() else "a refusal of more than one line"
    if why is None and files is not None:
        why = _use_files(inj, plans, job, plan, model_path, files, d, stub_bin, stub_ray)
    ran = marker.exists()
    if ran:
        why = "the payload ran"
    return {"id": case_id, "clean": why is None, "why": why, "how": how, "payload_ran": ran, "exit": p.returncode,
            "stderr": p.stderr.splitlines()[0] if p.stderr else ""}


def emitter_corpus() -> list[dict]:
    import test_emit_injection as inj  # payloads, fields, plans and stubs are defined once, in the test

    plans = inj.build_plans()
    jobs = [(kind, field, pname, target) for kind in inj.PAYLOADS for field in inj.FIELDS
            for pname, target in EMIT_COMBOS]
    with tempfile.TemporaryDirectory(prefix="robustness-emit-") as tmp:
        root = Path(tmp)
        stub_bin = inj.write_stub_bin(_mkdir(root / "stub-bin"))
        stub_ray = inj.write_stub_ray(_mkdir(root / "stub-ray"))
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            return list(pool.map(lambda j: run_emit_case(j, inj, plans, root, stub_bin, stub_ray), jobs))


def _mkdir(d: Path) -> Path:
    d.mkdir()
    return d


# -- part 2: large instances ----------------------------------------------------------------------

CHILD = r"""
import json, resource, sys, time
import yaml
from planner import search
from topologies.synth import synthetic_fleet
gpus, objective, limit = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
types = tuple(sys.argv[4].split(","))
t0 = time.perf_counter()
spec = synthetic_fleet(gpus=gpus, gpu_types=types, busy_fraction=0.10, seed=7)
path = sys.argv[5]
with open(path, "w") as f:
    yaml.safe_dump(spec.model_dump(mode="json", exclude_defaults=True), f, sort_keys=False)
t1 = time.perf_counter()
qps = {"min-gpus": gpus * 0.25}.get(objective)  # a rate a quarter of the fleet can serve
plan = search(topology=path, model="llama-3.1-70b", isl=1024, osl=256, tpot_ms=50, ttft_ms=1000, qps=qps,
              objective=objective, time_limit_s=limit)
t2 = time.perf_counter()
print(json.dumps({"build_s": t1 - t0, "search_s": t2 - t1, "status": plan.solver.status, "gap": plan.solver.gap,
                  "gpus_used": plan.totals.gpus_used, "free_gpus": plan.inputs.topology.gpus_available,
                  "groups": len(plan.replica_groups), "candidates": plan.solver.candidates_priced,
                  "tokens_per_s": plan.totals.output_tokens_per_s,
                  "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def large(sizes: list[int], time_limit_s: float) -> list[dict]:
    rows = []
    for n in sizes:
        built = n // (8 * len(TYPES)) * (8 * len(TYPES))  # three types of 8-GPU nodes: a multiple of 24
        for objective in ("throughput", "min-gpus"):
            with tempfile.TemporaryDirectory(prefix="robustness-") as tmp:
                p = subprocess.run([sys.executable, "-c", CHILD, str(built), objective, str(time_limit_s),
                                    ",".join(TYPES), str(Path(tmp) / "fleet.yaml")],
                                   capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
            if p.returncode != 0:
                rows.append({"gpus": built, "objective": objective, "error": p.stderr.strip().splitlines()[-1]})
                continue
            rows.append({"gpus": built, "objective": objective, **json.loads(p.stdout)})
    return rows


def emitter_summary(rows: list[dict]) -> dict:
    by_outcome: dict[str, int] = {}
    for r in rows:
        by_outcome[r["how"]] = by_outcome.get(r["how"], 0) + 1
    return {"cases": len(rows), "handled_cleanly": sum(r["clean"] for r in rows),
            "payloads_run": sum(r["payload_ran"] for r in rows), "by_outcome": dict(sorted(by_outcome.items()))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096, 16384])
    ap.add_argument("--time-limit-s", type=float, default=30.0)
    ap.add_argument("--skip-corpus", action="store_true")
    ap.add_argument("--skip-emitters", action="store_true", help="leave out the emitter payload corpus")
    ap.add_argument("--skip-large", action="store_true")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    a = ap.parse_args()

    out: dict = {}
    if not a.skip_corpus:
        rows = corpus()
        clean = sum(r["clean"] for r in rows)
        out["corpus"] = {"cases": len(rows), "handled_cleanly": clean, "failures": [r for r in rows if not r["clean"]]}
        if not a.json:
            print(f"Bad-input corpus: {clean} of {len(rows)} inputs handled cleanly (target: all), "
                  f"median {sorted(r['wall_s'] or 0 for r in rows)[len(rows) // 2]:.2f} s per process")
            for r in rows:
                if not r["clean"]:
                    print(f"  NOT CLEAN {r['id']}: {r['why']}  [{r.get('stderr', '')}]")
            print()
    if not a.skip_emitters:
        t0 = time.perf_counter()
        rows = emitter_corpus()
        summary = {**emitter_summary(rows), "wall_s": round(time.perf_counter() - t0, 1)}
        out["emitters"] = {**summary, "failures": [r for r in rows if not r["clean"]]}
        if not a.json:
            print(f"Emitter payload corpus: {summary['handled_cleanly']} of {summary['cases']} cases handled cleanly "
                  f"(target: all); payloads run: {summary['payloads_run']} (target: 0); {summary['wall_s']:.0f} s")
            for how, n in summary["by_outcome"].items():
                print(f"  {n:4d} {how}")
            for r in rows:
                if not r["clean"]:
                    print(f"  NOT CLEAN {r['id']}: {r['why']}  [{r.get('stderr', '')}]")
            print()
    if not a.skip_large:
        rows = large(a.sizes, a.time_limit_s)
        out["large"] = rows
        if not a.json:
            table = []
            for r in rows:
                if "error" in r:
                    table.append([r["gpus"], r["objective"], "error: " + r["error"]] + [""] * 7)
                    continue
                peak = r["peak_rss_bytes"]
                table.append([f"{r['gpus']:,}", r["objective"], f"{r['free_gpus']:,}", r["candidates"],
                              f"{r['search_s']:.1f}", r["status"], f"{r['gap']:.2%}", f"{r['gpus_used']:,}",
                              f"{peak / 2**30:.2f}", "yes" if peak < MEMORY_TARGET_BYTES else "NO"])
            print("Large fleets (3 GPU types, 10% busy; Llama-3.1-70B, 1024/256 tokens, TPOT<=50 ms, TTFT<=1 s):")
            print(tabulate(table, headers=["GPUs", "objective", "free", "candidates", "search s", "status", "gap",
                                           "GPUs used", "peak GiB", "< 2 GiB"], tablefmt="github"))
            print("search s: topology load, pricing, CP-SAT and placement in one fresh process (fleet build "
                  "excluded); peak GiB: that process's ru_maxrss, interpreter and imports included.")
    if a.json:
        print(json.dumps(out, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
