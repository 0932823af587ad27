"""Wall time of whole ``plan-search`` processes, start-up included, against the targets of issue 15.

    python benchmarks/startup.py [--runs 7] [--only TEXT] [--json]

Each command runs as a fresh process of this Python, ``python -c`` calling the installed
program's entry point (``planner.entry:main``, pyproject's ``[project.scripts]``) from the
checkout, so the figure is what a user waits for: interpreter start, imports, the work and
exit. The first run of each command is a warm-up and not counted (it also fills the byte-code
cache, in a temporary folder through ``PYTHONPYCACHEPREFIX``, as ``pip install`` leaves
compiled files beside an installed package); the next ``--runs`` are, and the table shows
their median and fastest wall time and the median CPU time (user + system) of the process.
On a shared machine the CPU time is the steadier figure: wall time includes waiting for a
core.

Targets: ``--help``, ``catalog``, ``topology validate`` and ``emit`` at most 0.25 s; a search on
8 GPUs at most 0.4 s (the README's first search plans 16 GPUs and is shown against the same
target). ``ratio`` is median wall time over target. A report, not a test: the exit code is 0
whatever the timings, 1 only when a command fails.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENTRY = "import sys; from planner.entry import main; sys.argv[0] = 'plan-search'; main()"
SEARCH_8 = ["search", "-t", "dgx-h100x1", "-m", "llama-3.1-70b"]

#: (label, arguments after `plan-search`, target seconds). "{plan}" is a plan made before timing.
COMMANDS = [
    ("plan-search --help", ["--help"], 0.25),
    ("catalog gpus", ["catalog", "gpus"], 0.25),
    ("catalog models", ["catalog", "models"], 0.25),
    ("catalog topologies", ["catalog", "topologies"], 0.25),
    ("topology validate dgx-h100x2.yaml", ["topology", "validate", str(ROOT / "topologies/builtin/dgx-h100x2.yaml")],
     0.25),
    ("emit --target vllm", ["emit", "--plan", "{plan}", "--target", "vllm"], 0.25),
    ("emit --target sglang", ["emit", "--plan", "{plan}", "--target", "sglang"], 0.25),
    ("search -t dgx-h100x1 -m llama-3.1-70b (8 GPUs)", SEARCH_8, 0.4),
    ("search --topology dgx-h100x2 --model llama-3.1-70b (16 GPUs)",
     ["search", "--topology", "dgx-h100x2", "--model", "llama-3.1-70b"], 0.4),
]


def bytecode_cache_environment(cache: str) -> dict[str, str]:
    """This process's environment with byte code cached in ``cache`` (see the module docstring)."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = cache
    return env


def run_once(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall s, CPU s) of one ``plan-search`` process; raise RuntimeError if it fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", ENTRY, *args], cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"plan-search {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def measure(label: str, args: list[str], target_s: float, runs: int, env: dict[str, str]) -> dict:
    """One row of the table: a warm-up, then ``runs`` timed processes."""
    run_once(args, env)
    walls, cpus = zip(*(run_once(args, env) for _ in range(runs)), strict=True)
    median = statistics.median(walls)
    return {"command": label, "median_wall_s": round(median, 3), "min_wall_s": round(min(walls), 3),
            "median_cpu_s": round(statistics.median(cpus), 3), "target_s": target_s,
            "ratio": round(median / target_s, 2), "meets_target": median <= target_s}


def make_plan(folder: Path, env: dict[str, str]) -> Path:
    """The plan the ``emit`` rows read: the 8-GPU search's, written with ``-o``."""
    plan = folder / "plan.json"
    run_once([*SEARCH_8, "-q", "-o", str(plan)], env)
    return plan


def table(rows: list[dict]) -> str:
    head = ("command", "median wall s", "min wall s", "median CPU s", "target s", "ratio", "meets")
    body = [(r["command"], f"{r['median_wall_s']:.3f}", f"{r['min_wall_s']:.3f}", f"{r['median_cpu_s']:.3f}",
             f"{r['target_s']:.2f}", f"{r['ratio']:.2f}", "yes" if r["meets_target"] else "no") for r in rows]
    widths = [max(len(str(x[i])) for x in (head, *body)) for i in range(len(head))]
    lines = ["  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                       for i, (c, w) in enumerate(zip(x, widths, strict=True)))
             for x in (head, *body)]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=7, help="timed runs per command (after one warm-up)")
    ap.add_argument("--only", metavar="TEXT", help="time only the commands whose label contains TEXT")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    a = ap.parse_args(argv)
    if a.runs < 1:
        ap.error("--runs must be at least 1")
    commands = [c for c in COMMANDS if a.only is None or a.only in c[0]]
    if not commands:
        ap.error(f"--only {a.only!r} matches no command")
    with tempfile.TemporaryDirectory(prefix="plan-search-startup-") as tmp:
        env = bytecode_cache_environment(str(Path(tmp) / "pycache"))
        try:
            plan = make_plan(Path(tmp), env)
            rows = [measure(label, [str(plan) if x == "{plan}" else x for x in args], target, a.runs, env)
                    for label, args, target in commands]
        except RuntimeError as e:
            print(f"startup.py: {e}", file=sys.stderr)
            return 1
    if a.json:
        print(json.dumps({"runs": a.runs, "python": sys.version.split()[0], "cpus": os.cpu_count(), "rows": rows},
                         indent=2))
    else:
        print(f"{a.runs} timed runs per command after one warm-up; Python {sys.version.split()[0]}, "
              f"{os.cpu_count()} CPUs")
        print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
