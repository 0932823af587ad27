"""Robustness: the bad-input corpus through the real command line, and the planner's own
time and memory on large random fleets.

    python benchmarks/robustness.py [--sizes 1024 4096 16384] [--skip-corpus] [--skip-large]
                                    [--time-limit-s 30] [--json]

Part 1, the corpus: every case of ``tests/test_bad_inputs.py`` (hand-written files in
``tests/corpus/``, hostile files generated at run time: alias bombs, 20 and 100 MiB
files, non-UTF-8 bytes, deep nesting, symlink loops; and bad flags) is run as its own
``python -m planner.cli`` process, as a user would run it. A case is *handled cleanly*
when the exit code is the expected one (2 bad input, 3 infeasible), stderr is exactly one
line naming what the case says it must name, there is no traceback, stdout is empty and
no output file is left behind. Target: all of them.

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
    from test_bad_inputs import CASES  # the corpus is defined once, beside its test

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        return list(pool.map(run_case, CASES))


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096, 16384])
    ap.add_argument("--time-limit-s", type=float, default=30.0)
    ap.add_argument("--skip-corpus", action="store_true")
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
