"""``plan-search search``: the best plan, the k best, or the latency/throughput frontier."""
from __future__ import annotations

import json
import os
import sys

import click

from planner.cli.emit import check_out_dir, write_all_atomic
from planner.cli.group import (
    DEFAULT_ISL,
    DEFAULT_OSL,
    EMIT_VERSIONS_HELP,
    OBJECTIVES,
    SEARCH_TIME_LIMIT_S,
    StatusLine,
    check_writable,
    clean_errors,
    common_model_options,
    dtype_flag,
    main,
    parse_prices,
    write_atomic,
)
from planner.emit import TARGETS as EMIT_TARGETS
from topologies.errors import InputError


@main.command()
@common_model_options
@click.option("--isl", type=int, default=DEFAULT_ISL, show_default=True, help="Input (prompt) tokens per request.")
@click.option("--osl", type=int, default=DEFAULT_OSL, show_default=True, help="Output tokens per request.")
@click.option("--ttft-ms", type=float, help="Time-to-first-token target, queueing included: at --qps when given, else at "
              "the load the plan's throughput counts.")
@click.option("--tpot-ms", type=float, help="Time-per-output-token target.")
@click.option("--tpot-p99-ms", type=float, help="p99 time-per-output-token target (steps carrying a prompt chunk).")
@click.option("--ttft-p99-ms", type=float,
              help="p99 time-to-first-token target (the running step's wait at its p99; queueing included as "
                   "for --ttft-ms).")
@click.option("--qps", type=float, help="Request rate to serve (requests/s).")
@click.option("--objective", type=click.Choice(OBJECTIVES), default="throughput", show_default=True)
@click.option("--max-gpus", type=int, help="Use at most this many GPUs.")
@click.option("--price", "prices", multiple=True, metavar="GPU=USD",
              help="Price of one GPU of this type per hour (repeatable); overrides the topology's "
                   "price_per_gpu_hour. Needed by --objective min-cost.")
@click.option("--allow-cross-domain-tp", is_flag=True, help="Let a TP group span NVLink domains (over the network).")
@click.option("--ep", type=int, help="MoE: pin the expert-parallel degree (default: searched).")
@click.option("--attention-dp", type=int, help="MoE: pin the attention data-parallel degree (default: searched).")
@click.option("--expert-imbalance", type=float, metavar="X",
              help="MoE: the busiest expert-parallel rank's routed tokens over the mean (1 = balanced; "
                   "default: uniform random routing).")
@click.option("--disaggregation", type=click.Choice(["auto", "off", "only"]), default=None,
              help="Prefill/decode pools: auto lets the solver weigh them against unified replicas "
                   "(every objective, --top-k and --pareto); only plans pools alone.  [default: auto; "
                   "off with --emit to a target that writes no pools]")
@click.option("--time-limit-s", type=float,
              help="Time limit: of one search's solves [default: 10]; with --pareto, of the whole frontier, "
                   "every search sharing one deadline (steps it does not reach are left out, and the report "
                   "says how many) [default: 60]; with --top-k, of each of the k solves [default: 10].")
@click.option("--workers", type=int, default=1, show_default=True, help="CP-SAT search workers.")
@click.option("--seed", type=int, default=0, show_default=True, help="CP-SAT random seed.")
@click.option("--json", "as_json", is_flag=True, help="Print the placement JSON instead of the report.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write the placement JSON to this file.")
@click.option("--include-timings", is_flag=True, help="Put the wall time in the JSON (it then differs run to run).")
@click.option("--verbose", "-v", is_flag=True, help="Show the CP-SAT search log on stderr.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but the result (no wall-time line).")
@click.option("--progress/--no-progress", default=None,
              help="Show candidates priced and the solver's incumbent and bound on stderr "
                   "[default: when stderr is a terminal].")
@click.option("--top-k", type=int, help="The N best plans with distinct replica-shape mixes, each with why it "
                                        "ranks below the first (objectives throughput, min-gpus, min-cost).")
@click.option("--pareto", is_flag=True, help="The non-dominated plans: tokens/s per GPU against latency.")
@click.option("--pareto-axis", type=click.Choice(["tpot", "ttft"]), default="tpot", show_default=True,
              help="The latency the frontier trades against throughput.")
@click.option("--pareto-points", type=int, default=8, show_default=True, help="SLO steps the frontier tries.")
@click.option("--plot", "plot_file", type=click.Path(dir_okay=False),
              help="With --pareto: draw the frontier, chosen plan marked (.png or .svg; needs matplotlib).")
@click.option("--emit", "emit_target", type=click.Choice(list(EMIT_TARGETS)),
              help="Also write the plan's launch files for this target (as `plan-search emit`).")
@click.option("--emit-dir", type=click.Path(file_okay=False), help="Folder for --emit (default: ./launch-TARGET).")
@click.option("--runtime-version", metavar="X.Y[.Z]",
              help=f"With --emit: release of the target's runtime to write for ({EMIT_VERSIONS_HELP}).")
@click.option("--model-path", help="With --emit: checkpoint to serve (HF repo id or folder); default: the model's "
                                   "HF repo (as `plan-search emit`).")
@clean_errors
def search(topology, model, weight_dtype, kv_dtype, runtime, isl, osl, ttft_ms, tpot_ms, tpot_p99_ms, ttft_p99_ms,
           qps, objective, max_gpus,
           prices, allow_cross_domain_tp, ep, attention_dp, expert_imbalance, disaggregation, time_limit_s, workers, seed, as_json, output, include_timings, verbose,
           quiet, progress, top_k, pareto, pareto_axis, pareto_points, plot_file, emit_target, emit_dir,
           runtime_version, model_path):
    """Find the best plan for a model on a topology.

    Ctrl-C while the solver runs stops it and prints the best plan found so far
    (status FEASIBLE, with its optimality gap).
    """
    import time

    from planner import api  # noqa: F401  (loaded before the clock: the wall-time line is the search's own)
    from planner.solve.progress import SearchControl

    t0 = time.perf_counter()
    disaggregation = _check_flags(output=output, plot_file=plot_file, top_k=top_k, pareto=pareto,
                                  emit_target=emit_target, emit_dir=emit_dir, runtime_version=runtime_version,
                                  disaggregation=disaggregation, model_path=model_path)
    if emit_target and emit_target != "ray" and model_path is None:  # before the search: no launch file could
        # name the checkpoint (Ray's placement groups name none)
        from costmodels.models import get_model
        from planner.emit import hf_checkpoint

        try:
            hf_checkpoint(get_model(model).name)
        except InputError as e:
            raise InputError(str(e), source="--emit") from None
    if progress is None:
        progress = not quiet and sys.stderr.isatty()
    status_line = StatusLine(sys.stderr) if progress and not quiet else None
    control = SearchControl(report=status_line.show if status_line else None)
    args = dict(topology=topology, model=model, isl=isl, osl=osl, qps=qps, ttft_ms=ttft_ms, tpot_ms=tpot_ms,
                objective=objective, weight_dtype=dtype_flag(weight_dtype), kv_dtype=dtype_flag(kv_dtype), max_gpus=max_gpus,
                allow_cross_domain_tp=allow_cross_domain_tp, time_limit_s=time_limit_s, workers=workers, seed=seed,
                runtime=runtime, log=verbose, control=control, price_per_gpu_hour=parse_prices(prices),
                disaggregation=disaggregation, ep=ep, attention_dp=attention_dp, expert_imbalance=expert_imbalance,
                tpot_p99_ms=tpot_p99_ms, ttft_p99_ms=ttft_p99_ms)
    result = _run(args, top_k=top_k, pareto=pareto, pareto_axis=pareto_axis, pareto_points=pareto_points,
                  include_timings=include_timings, status_line=status_line)
    if control.interrupted:
        if isinstance(result, list):
            click.echo(f"plan-search: interrupted: the {len(result)} best plan(s) found so far", err=True)
        else:
            click.echo(f"plan-search: interrupted: the best plan found so far (status {result.solver.status}, "
                       f"gap {result.solver.gap:.2%})", err=True)
    why = None
    if top_k is not None:
        from planner.frontier import why_worse
        why = [None] + [why_worse(result[0], p) for p in result[1:]]
        text = json.dumps({"kind": "top-k", "objective": objective, "why_below_first": why,
                           "plans": [json.loads(p.to_json()) for p in result]}, indent=2, sort_keys=True) + "\n"
    else:
        text = result.to_json()
    if plot_file:
        from planner.cli.plot import plot_frontier
        plot_frontier(result, plot_file)
    emit_dir = emit_dir if emit_dir is not None else f"launch-{emit_target}"
    emitted = _emit(result, emit_target, runtime_version, model_path) if emit_target else None
    if output:
        write_atomic(output, text)
    if emitted is not None:
        write_all_atomic(emit_dir, emitted)
    if as_json:
        click.echo(text, nl=False)
        return
    _print_report(result, top_k=top_k, pareto=pareto, why=why)
    if plot_file and not quiet:
        click.echo(f"plot: {plot_file}")
    if emitted is not None and not quiet:
        for name in emitted:
            click.echo(f"launch file: {os.path.join(emit_dir, name)}")
    if not include_timings and not quiet:
        click.echo(f"wall time: {time.perf_counter() - t0:.2f} s")


def _check_flags(*, output, plot_file, top_k, pareto, emit_target, emit_dir, runtime_version, disaggregation,
                 model_path) -> str:
    """Refuse flags that do not go together, before any search; the ``--disaggregation`` to use."""
    for path, flag in ((output, "--output"), (plot_file, "--plot")):
        if path is not None:
            check_writable(path, flag)
    if top_k is not None and pareto:
        raise InputError("give --top-k or --pareto, not both", source="--top-k")
    if plot_file and not pareto:
        raise InputError("--plot draws the frontier: add --pareto", source="--plot")
    if emit_target and (top_k is not None or pareto):
        raise InputError("--emit writes one plan's launch files; drop --top-k/--pareto", source="--emit")
    if emit_target:
        check_out_dir(emit_dir if emit_dir is not None else f"launch-{emit_target}", "--emit-dir")
        from planner.emit.versions import resolve

        resolve(emit_target, runtime_version)  # a release outside the supported range: before the search
    elif runtime_version is not None:
        raise InputError("--runtime-version picks the release --emit writes for: add --emit", source="--runtime-version")
    elif model_path is not None:
        raise InputError("--model-path names the checkpoint --emit's launch files serve: add --emit",
                         source="--model-path")
    if model_path is not None:
        from planner.emit import check_model_path

        check_model_path(model_path)  # before the search
    if disaggregation is None:
        # offer only what the launch files asked for can run: pools need a target that writes them
        from planner.emit import POOL_TARGETS

        return "off" if emit_target and emit_target not in POOL_TARGETS else "auto"
    return disaggregation


def _run(args: dict, *, top_k, pareto, pareto_axis, pareto_points, include_timings, status_line):
    """The search, the k best plans or the frontier; a Ctrl-C before any plan is one line."""
    from planner import api

    try:
        if not pareto and args["time_limit_s"] is None:
            args["time_limit_s"] = SEARCH_TIME_LIMIT_S
        if top_k is not None:
            from planner.frontier import top_k as top_k_fn
            result = top_k_fn(top_k, **args)
        elif pareto:
            from planner.frontier import frontier
            args.pop("control")  # time_limit_s None: the frontier's own default
            result = frontier(axis=pareto_axis, points=pareto_points, **args)
        else:
            result = api.search(include_timings=include_timings, **args)
    except KeyboardInterrupt as e:
        if status_line:
            status_line.close()
        raise KeyboardInterrupt(e.args[0] if e.args else "interrupted before any plan was found") from None
    if status_line:
        status_line.close()
    return result


def _emit(plan, target: str, runtime_version: str | None, model_path: str | None) -> dict[str, str]:
    """``--emit``: the plan's launch files, before any file is written (a plan the target cannot
    express writes none)."""
    from planner.emit import emit as emit_fn
    try:
        return emit_fn(plan, target, runtime_version=runtime_version, model_path=model_path)
    except InputError as e:  # emit's words name its own flag; here the flag is --emit
        raise InputError(str(e).replace("--target", "--emit"), source="--emit") from None


def _print_report(result, *, top_k, pareto, why) -> None:
    if top_k is not None:
        from planner.cli.report import top_k_text
        click.echo(top_k_text(result, why), nl=False)
    elif pareto:
        from planner.cli.report import frontier_text
        click.echo(frontier_text(result), nl=False)
    else:
        from planner.cli.report import plan_text  # with tabulate: only for the text report, not --json
        click.echo(plan_text(result), nl=False)
