"""``plan-search sweep``: a grid of search requests, one table of results."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from planner.cli.group import StatusLine, check_writable, clean_errors, main, plural, write_atomic
from topologies.errors import InputError


@main.command("sweep")
@click.argument("file")
@click.option("--output", "-o", type=click.Path(dir_okay=False),
              help="Write the table to this file: .csv, or .parquet (needs pyarrow)  [default: CSV on stdout].")
@click.option("--jobs", "-j", type=click.IntRange(1, 4096),
              help="Local processes; with --ray-address local, the Ray instance's CPUs; with a Ray cluster, "
                   "at most 2 x N tasks queued at once  [default: CPU count].")
@click.option("--ray-address", metavar="ADDR",
              help="Run each row as a Ray task: auto or ray://HOST:PORT or HOST:PORT (a running cluster), "
                   "or local (start a local instance). Needs the ray extra.")
@click.option("--quiet", "-q", is_flag=True, help="No progress and no summary.")
@click.option("--progress/--no-progress", default=None,
              help="Show the rows done on stderr  [default: when stderr is a terminal].")
@clean_errors
def sweep_command(file, output, jobs, ray_address, quiet, progress):
    """Run a grid of search requests from FILE (YAML or JSON) and write one table of results.

    FILE has `base` (search arguments every row shares), `grid` (lists whose cartesian
    product gives the rows) and optional `cases` (extra rows); see README.md, "Sweeps".
    One row per request, in grid order: the request, its status (ok, infeasible, bad-input,
    timeout, error), the message of a failed row and the plan's totals. A failing row does
    not stop the sweep; a bad FILE stops it before anything runs (exit 2).
    """
    import time

    from planner import sweep as sw

    spec = sw.load_sweep(file)
    parquet = _parquet(output)
    if ray_address is not None:
        sw.require_ray()
    if progress is None:
        progress = sys.stderr.isatty()
    status_line = StatusLine(sys.stderr) if progress and not quiet else None
    t0 = time.perf_counter()
    last = [0.0]

    def report(done: int, total: int, counts: dict[str, int]) -> None:
        now = time.perf_counter()
        if done < total and now - last[0] < (0.1 if sys.stderr.isatty() else 2.0):
            return
        last[0] = now
        failed = done - counts["ok"] - counts["infeasible"]
        status_line.show(f"sweep {spec.name}: {done:,}/{plural(total, 'row')} ({counts['ok']:,} ok, "
                         f"{counts['infeasible']:,} infeasible, {failed:,} failed), {now - t0:.1f} s")

    try:
        result = sw.run_sweep(spec, jobs=jobs, ray_address=ray_address, progress=report if status_line else None)
    except KeyboardInterrupt:
        raise KeyboardInterrupt("sweep interrupted: nothing written") from None
    finally:
        if status_line:
            status_line.close()
    if not output:
        click.echo(sw.to_csv(result.rows), nl=False)
    elif parquet:
        sw.write_parquet(result.rows, output)
    else:
        write_atomic(output, sw.to_csv(result.rows))
    if not quiet:
        click.echo(_summary(spec.name, result, output), err=not output)


def _parquet(output: str | None) -> bool:
    """Whether ``--output`` asks for Parquet (refused before the sweep runs if pyarrow is missing);
    any other file name than .csv or .parquet is refused."""
    from planner import sweep as sw

    if output is None:
        return False
    check_writable(output)
    suffix = Path(output).suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise InputError("give a file name ending in .csv or .parquet", source=output)
    if suffix == ".parquet":
        sw.require_pyarrow(output)
    return suffix == ".parquet"


def _summary(name: str, result, output: str | None) -> str:
    """The rows by status, the wall time and where the table went."""
    from tabulate import tabulate

    c = result.counts()
    failed = len(result.rows) - c["ok"] - c["infeasible"]
    why = ", ".join(f"{c[s]:,} {s}" for s in ("bad-input", "timeout", "error") if c[s])
    lines = [f"sweep {name}: {plural(len(result.rows), 'row')} in {result.wall_time_s:.2f} s on {result.backend}",
             tabulate([["ok", c["ok"]], ["infeasible", c["infeasible"]], ["failed", failed],
                       ["total", len(result.rows)]], headers=["status", "rows"])]
    if failed:
        lines.append(f"failed: {why}; the status and message columns say why")
    if output:
        lines.append(f"wrote {output}")
    return "\n".join(lines)
