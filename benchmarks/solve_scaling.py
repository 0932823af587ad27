"""How `planner.search` scales with fleet size, on synthetic fleets.

    python benchmarks/solve_scaling.py [--sizes 8 64 512 1024 4096 16384] [--model llama-3.1-70b]
                                       [--time-limit-s 10] [--json]

Fleets: 8 and 64 GPUs of H100; 512 and 4096 GPUs of H100 + A100, all free; and for 1024,
4096 and 16384 a heterogeneous fleet of H100 + A100 + H200 (racks of 32 nodes on a
leaf-spine network, 10% of GPUs busy at random), built with 1008, 4080 and 16368 GPUs
since three types of 8-GPU nodes need a multiple of 24. Columns:

``total wall s``       time.perf_counter around the whole ``search`` call (topology build
                       excluded; candidate pricing, CP-SAT and placement included).
``plan wall_time_s``   the plan's own ``solver.wall_time_s`` (include_timings=True); note
                       that ``search`` measures it from its start, so it too covers pricing.
``CP-SAT s``           CP-SAT's own solve time, summed over every solve ``search`` makes
                       (measured by wrapping ``planner.solve.objectives.solve``; no core file changes).

Runtime: SGLang by default (``--runtime``), the runtime the search offers prefill/decode pools
for; ``--disaggregation off`` gives the unified-only rows the vLLM default plans.

Targets (total wall): 8 GPUs < 1 s; 4096 GPUs of two types < 10 s; the heterogeneous
fleets of 1,024 GPUs < 5 s and 16,384 GPUs < 30 s (issue 4). A report, not a test: the
exit code is 0 whatever the timings.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import contextmanager
from pathlib import Path

try:
    import planner  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import planner.solve.objectives as objectives  # noqa: E402
from planner import search  # noqa: E402
from topologies.errors import PlanSearchError  # noqa: E402
from topologies.graph import Topology  # noqa: E402
from topologies.synth import synthetic_fleet  # noqa: E402

H100, A100, H200 = "H100-SXM-80GB", "A100-SXM4-80GB", "H200-SXM-141GB"
TARGET_S = {8: 1.0, 1024: 5.0, 4096: 10.0, 16384: 30.0}
HETERO_TARGETS = (1024, 16384)  # issue 4: three types, some busy: 1,024 GPUs < 5 s, 16,384 < 30 s
SHORT = {H100: "H100", A100: "A100", H200: "H200"}


def scenarios(sizes: list[int]) -> list[tuple[int, int, tuple[str, ...], float]]:
    """(requested size, GPUs built, types, busy share). Below 512 GPUs one type; 512 and 4096
    also two types, all free; for 1024, 4096 and 16384 a heterogeneous row of three types
    with 10% of GPUs busy (three types of 8-GPU nodes need a multiple of 24 GPUs, so those
    rows are built with 1008, 4080 and 16368 GPUs)."""
    out = []
    for n in sizes:
        if n < 512:
            out.append((n, n, (H100,), 0.0))
        elif n in (512, 4096):
            out.append((n, n, (H100, A100), 0.0))
        if n >= 1024:
            types = (H100, A100, H200)
            unit = 8 * len(types)
            out.append((n, n // unit * unit, types, 0.10))
    return out


@contextmanager
def cpsat_timer():
    """Sum CP-SAT's own wall time over every solve ``search`` makes (it may solve more than once)."""
    acc = {"s": 0.0, "solves": 0}
    inner = objectives.solve

    def timed(*a, **kw):
        sol = inner(*a, **kw)
        acc["s"] += sol.wall_time_s
        acc["solves"] += 1
        return sol

    objectives.solve = timed
    try:
        yield acc
    finally:
        objectives.solve = inner


def run_one(size: int, gpus: int, types: tuple[str, ...], busy: float, *, model: str, isl: int, osl: int,
            time_limit_s: float, disaggregation: str = "auto", runtime: str = "sglang") -> dict:
    row = {"gpus": gpus, "gpu_types": "+".join(SHORT.get(t, t) for t in types), "busy": f"{busy:.0%}"}
    t0 = time.perf_counter()
    try:
        spec = synthetic_fleet(gpus=gpus, gpu_types=types, busy_fraction=busy, seed=7)
    except ValueError as e:
        row.update(status=f"ERROR: {e}", gap=None, candidates_priced=None, replicas=None, gpus_used=None,
                   output_tokens_per_s=None, total_wall_s=None, solver_wall_s=None, target_s=None,
                   meets_target=None)
        return row
    topo = Topology(spec, f"synthetic-{gpus}")
    row["topology_build_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    try:
        with cpsat_timer() as cpsat:
            plan = search(topology=topo, model=model, isl=isl, osl=osl, objective="throughput",
                          time_limit_s=time_limit_s, include_timings=True, disaggregation=disaggregation,
                          runtime=runtime)
    except PlanSearchError as e:
        total = time.perf_counter() - t0
        row.update(status=f"ERROR: {e}", gap=None, candidates_priced=None, replicas=None, gpus_used=None,
                   output_tokens_per_s=None, total_wall_s=total, solver_wall_s=None, cpsat_wall_s=None,
                   cpsat_solves=None)
    else:
        total = time.perf_counter() - t0
        row.update(status=plan.solver.status, gap=plan.solver.gap, candidates_priced=plan.solver.candidates_priced,
                   replicas=sum(g.strategy.dp for g in plan.replica_groups), gpus_used=plan.totals.gpus_used,
                   output_tokens_per_s=plan.totals.output_tokens_per_s, total_wall_s=total,
                   solver_wall_s=plan.solver.wall_time_s, cpsat_wall_s=cpsat["s"], cpsat_solves=cpsat["solves"])
    target = TARGET_S.get(size) if (len(types) == 3) == (size in HETERO_TARGETS) else None
    row["target_s"] = target
    row["meets_target"] = None if target is None else total < target
    return row


COLUMNS = [("gpus", "gpus"), ("gpu_types", "gpu types"), ("busy", "busy"), ("status", "status"), ("gap", "gap"),
           ("candidates_priced", "candidates priced"), ("replicas", "replicas"), ("gpus_used", "gpus used"),
           ("total_wall_s", "total wall s"), ("solver_wall_s", "plan wall_time_s"),
           ("cpsat_wall_s", "CP-SAT s"), ("meets_target", "meets target")]


def _cell(key: str, row: dict) -> str:
    v = row[key]
    if v is None:
        return "-"
    if key == "meets_target":
        return f"{'yes' if v else 'NO'} (< {row['target_s']:g} s)"
    if key in ("total_wall_s", "solver_wall_s", "cpsat_wall_s"):
        return f"{v:.3f}"
    if key == "gap":
        return f"{v:.4g}"
    return str(v)


def table(rows: list[dict]) -> str:
    headers = [h for _, h in COLUMNS]
    cells = [[_cell(k, r) for k, _ in COLUMNS] for r in rows]
    try:
        from tabulate import tabulate
    except ImportError:
        widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
        lines = ["  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True)),
                 "  ".join("-" * w for w in widths)]
        lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
        return "\n".join(lines)
    return tabulate(cells, headers=headers, stralign="right", disable_numparse=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[8, 64, 512, 1024, 4096, 16384],
                    help="fleet sizes in GPUs")
    ap.add_argument("--model", default="llama-3.1-70b")
    ap.add_argument("--isl", type=int, default=1024)
    ap.add_argument("--osl", type=int, default=256)
    ap.add_argument("--time-limit-s", type=float, default=10.0, help="CP-SAT time limit per solve")
    ap.add_argument("--disaggregation", choices=["auto", "off"], default="auto",
                    help="weigh prefill/decode pools (auto, the CLI default) or plan unified replicas only")
    ap.add_argument("--runtime", choices=["sglang", "vllm", "trtllm"], default="sglang",
                    help="the runtime priced; pools are weighed for SGLang only (the runtime whose launch files "
                         "run them), so the default here is sglang")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    args = ap.parse_args(argv)
    rows = []
    for size, gpus, types, busy in scenarios(args.sizes):
        rows.append(run_one(size, gpus, types, busy, model=args.model, isl=args.isl, osl=args.osl,
                            time_limit_s=args.time_limit_s, disaggregation=args.disaggregation,
                            runtime=args.runtime))
        if not args.json:
            print(f"... {gpus} GPUs {rows[-1]['gpu_types']}: {_cell('total_wall_s', rows[-1])} s", file=sys.stderr)
    if args.json:
        print(json.dumps({"model": args.model, "isl": args.isl, "osl": args.osl,
                          "time_limit_s": args.time_limit_s, "rows": rows}, indent=2))
    else:
        print(f"model {args.model}, isl {args.isl}, osl {args.osl}, objective throughput, "
              f"CP-SAT time limit {args.time_limit_s:g} s, runtime {args.runtime}, "
              f"disaggregation {args.disaggregation}")
        print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
