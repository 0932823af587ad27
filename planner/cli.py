"""The ``plan-search`` command line: a thin click layer over :mod:`planner`.

Every command loads, calls one library function and prints. Expected failures
(:class:`PlanSearchError`) become one line on stderr and exit code 2 (bad input) or 3
(no plan meets the request); anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import stat
import sys
from functools import wraps
from pathlib import Path

import click

from planner.emit import TARGETS as EMIT_TARGETS
from planner.emit.versions import help_text as _emit_versions_help
from topologies.errors import InfeasibleError, InputError, PlanSearchError

EMIT_VERSIONS_HELP = _emit_versions_help()  # vllm (also k8s), sglang, trtllm: range and default

OBJECTIVES = ["throughput", "throughput-per-gpu", "min-gpus", "min-cost", "latency"]
DTYPE_CHOICES = ["auto", "bf16", "fp16", "fp8", "int8", "int4", "fp4"]
SEARCH_TIME_LIMIT_S = 10.0  # --time-limit-s of a search (and of each --top-k solve); --pareto has its own
DEFAULT_ISL, DEFAULT_OSL = 1024, 256  # prompt and answer tokens when not given: search, evaluate and explain alike


def _clean_errors(fn):
    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except PlanSearchError as e:
            click.echo(f"plan-search: {'error' if e.exit_code == 2 else 'infeasible'}: {e}", err=True)
            sys.exit(e.exit_code)
        except KeyboardInterrupt as e:
            click.echo(f"plan-search: {e.args[0] if e.args else 'interrupted'}", err=True)
            sys.exit(130)
    return wrapper


class _StatusLine:
    """Progress on stderr. On a terminal one line is rewritten in place and cleared at the end;
    elsewhere (``--progress`` into a file or pipe) each report is its own line."""

    def __init__(self, stream):
        self._stream = stream
        self._tty = stream.isatty()
        self._shown = False

    def show(self, line: str) -> None:
        if self._tty:
            self._stream.write("\r\033[K" + line)
        else:
            self._stream.write(line + "\n")
        self._stream.flush()
        self._shown = True

    def close(self) -> None:
        if self._tty and self._shown:
            self._stream.write("\r\033[K")
            self._stream.flush()


def _check_writable(path: str, flag: str = "--output") -> None:
    """Refuse an output path that cannot be written before any work is done."""
    from planner.outfile import check_target
    check_target(path, flag=flag)


def _write_atomic(path: str, text: str, flag: str = "--output") -> None:
    """Write ``text`` to ``path`` whole or not at all (temp file in the same folder, then rename)."""
    from planner.outfile import write_text_atomic
    write_text_atomic(path, text, flag=flag)


def _prices(items: tuple[str, ...]) -> dict[str, float] | None:
    """``--price GPU=USD`` flags as a mapping; malformed ones are one-line errors."""
    out: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            price = float(value)
        except ValueError:
            price = None
        if not sep or not name.strip() or price is None:
            raise InputError(f"expected GPU=USD_PER_HOUR (e.g. H100-SXM-80GB=2.5), got {item!r}", source="--price")
        if name.strip() in out:
            raise InputError(f"{name.strip()} is priced twice", source="--price")
        out[name.strip()] = price
    return out or None


def _count(n: int, word: str) -> str:
    """``1 node``, ``2 nodes``: a count with its noun in the right number."""
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _dtype(v: str) -> str | None:
    return None if v == "auto" else v


# click 8.2+ raises this for a group called with no command; older clicks print the help themselves
_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


class _Group(click.Group):
    """A group whose usage errors are one line on stderr (exit 2), like every other user mistake."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _NO_ARGS_IS_HELP as e:  # a bare group: its help, as git and kubectl print it, and exit 0
            click.echo(e.ctx.get_help())
            sys.exit(0)
        except click.UsageError as e:
            cmd = e.ctx.command_path if e.ctx else "plan-search"
            click.echo(f"plan-search: error: {e.format_message()} (see `{cmd} --help`)", err=True)
            sys.exit(e.exit_code)
        except click.ClickException as e:
            click.echo(f"plan-search: error: {e.format_message()}", err=True)
            sys.exit(e.exit_code)
        except click.exceptions.Abort:
            click.echo("plan-search: aborted", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="plan-search")
def main() -> None:
    """Plan how to serve a large language model on a GPU cluster.

    Picks tensor, pipeline, data and expert parallelism, batch size and the GPU each rank
    sits on, so that the model fits, meets its latency targets and serves the most traffic.
    """


def _apply_in_order(f, options):
    """Decorate ``f`` with ``options`` so that ``--help`` lists them in the order given (click lists
    the option applied last first, so they are applied from the end)."""
    for option in reversed(options):
        f = option(f)
    return f


def _common_model_options(f):
    return _apply_in_order(f, [
        click.option("--topology", "-t", required=True, help="Built-in topology name or a YAML/JSON file."),
        click.option("--model", "-m", required=True, help="Built-in model name (HF names accepted) or a config.json."),
        click.option("--weight-dtype", type=click.Choice(DTYPE_CHOICES), default="auto", show_default=True,
                     help="Weight format; auto = the checkpoint's own (bf16, or fp8/fp4 where it ships so)."),
        click.option("--kv-dtype", type=click.Choice(DTYPE_CHOICES), default="auto", show_default=True,
                     help="KV-cache format; auto = bf16."),
        click.option("--runtime", type=click.Choice(["vllm", "sglang", "trtllm"]), default="vllm", show_default=True,
                     help="Serving runtime whose memory and batching defaults to price with."),
    ])


@main.command()
@_common_model_options
@click.option("--isl", type=int, default=DEFAULT_ISL, show_default=True, help="Input (prompt) tokens per request.")
@click.option("--osl", type=int, default=DEFAULT_OSL, show_default=True, help="Output tokens per request.")
@click.option("--ttft-ms", type=float, help="Time-to-first-token target (queueing included when --qps is given).")
@click.option("--tpot-ms", type=float, help="Time-per-output-token target.")
@click.option("--tpot-p99-ms", type=float, help="p99 time-per-output-token target (steps carrying a prompt chunk).")
@click.option("--ttft-p99-ms", type=float,
              help="p99 time-to-first-token target (a whole step's wait; queueing included when --qps is given).")
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
@_clean_errors
def search(topology, model, weight_dtype, kv_dtype, runtime, isl, osl, ttft_ms, tpot_ms, tpot_p99_ms, ttft_p99_ms,
           qps, objective, max_gpus,
           prices, allow_cross_domain_tp, ep, attention_dp, expert_imbalance, disaggregation, time_limit_s, workers, seed, as_json, output, include_timings, verbose,
           quiet, progress, top_k, pareto, pareto_axis, pareto_points, plot_file, emit_target, emit_dir,
           runtime_version):
    """Find the best plan for a model on a topology.

    Ctrl-C while the solver runs stops it and prints the best plan found so far
    (status FEASIBLE, with its optimality gap).
    """
    import time

    from planner import api
    from planner.solve.progress import SearchControl

    t0 = time.perf_counter()
    for path, flag in ((output, "--output"), (plot_file, "--plot")):
        if path is not None:
            _check_writable(path, flag)
    if top_k is not None and pareto:
        raise InputError("give --top-k or --pareto, not both", source="--top-k")
    if plot_file and not pareto:
        raise InputError("--plot draws the frontier: add --pareto", source="--plot")
    if emit_target and (top_k is not None or pareto):
        raise InputError("--emit writes one plan's launch files; drop --top-k/--pareto", source="--emit")
    if emit_target:
        _check_out_dir(emit_dir if emit_dir is not None else f"launch-{emit_target}", "--emit-dir")
        from planner.emit.versions import resolve

        resolve(emit_target, runtime_version)  # a release outside the supported range: before the search
    elif runtime_version is not None:
        raise InputError("--runtime-version picks the release --emit writes for: add --emit", source="--runtime-version")
    if disaggregation is None:
        # offer only what the launch files asked for can run: pools need a target that writes them
        from planner.emit import POOL_TARGETS

        disaggregation = "off" if emit_target and emit_target not in POOL_TARGETS else "auto"
    if progress is None:
        progress = not quiet and sys.stderr.isatty()
    status_line = _StatusLine(sys.stderr) if progress and not quiet else None
    control = SearchControl(report=status_line.show if status_line else None)
    args = dict(topology=topology, model=model, isl=isl, osl=osl, qps=qps, ttft_ms=ttft_ms, tpot_ms=tpot_ms,
                objective=objective, weight_dtype=_dtype(weight_dtype), kv_dtype=_dtype(kv_dtype), max_gpus=max_gpus,
                allow_cross_domain_tp=allow_cross_domain_tp, time_limit_s=time_limit_s, workers=workers, seed=seed,
                runtime=runtime, log=verbose, control=control, price_per_gpu_hour=_prices(prices),
                disaggregation=disaggregation, ep=ep, attention_dp=attention_dp, expert_imbalance=expert_imbalance,
                tpot_p99_ms=tpot_p99_ms, ttft_p99_ms=ttft_p99_ms)
    try:
        if not pareto and time_limit_s is None:
            args["time_limit_s"] = SEARCH_TIME_LIMIT_S
        if top_k is not None:
            from planner.solve.frontier import top_k as top_k_fn
            result = top_k_fn(top_k, **args)
        elif pareto:
            from planner.solve.frontier import frontier
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
    if control.interrupted:
        if isinstance(result, list):
            click.echo(f"plan-search: interrupted: the {len(result)} best plan(s) found so far", err=True)
        else:
            click.echo(f"plan-search: interrupted: the best plan found so far (status {result.solver.status}, "
                       f"gap {result.solver.gap:.2%})", err=True)
    if top_k is not None:
        from planner.solve.frontier import why_worse
        why = [None] + [why_worse(result[0], p) for p in result[1:]]
        text = json.dumps({"kind": "top-k", "objective": objective, "why_below_first": why,
                           "plans": [json.loads(p.to_json()) for p in result]}, indent=2, sort_keys=True) + "\n"
    else:
        text = result.to_json()
    if plot_file:
        from planner.cli_plot import plot_frontier
        plot_frontier(result, plot_file)
    emitted = None
    if emit_target:
        from planner.emit import emit as emit_fn
        try:  # before any file is written: a plan it cannot express writes none
            emitted = emit_fn(result, emit_target, runtime_version=runtime_version)
        except InputError as e:  # emit's words name its own flag; here the flag is --emit
            raise InputError(str(e).replace("--target", "--emit"), source="--emit") from None
    if output:
        _write_atomic(output, text)
    if emitted is not None:
        _write_all_atomic(emit_dir if emit_dir is not None else f"launch-{emit_target}", emitted)
    if as_json:
        click.echo(text, nl=False)
    else:
        if top_k is not None:
            from planner.cli_report import top_k_text
            click.echo(top_k_text(result, why), nl=False)
        elif pareto:
            from planner.cli_report import frontier_text
            click.echo(frontier_text(result), nl=False)
        else:
            from planner.cli_report import plan_text  # with tabulate: only for the text report, not --json
            click.echo(plan_text(result), nl=False)
        if plot_file and not quiet:
            click.echo(f"plot: {plot_file}")
        if emitted is not None and not quiet:
            for name in emitted:
                click.echo(f"launch file: {os.path.join(emit_dir or f'launch-{emit_target}', name)}")
        if not include_timings and not quiet:
            click.echo(f"wall time: {time.perf_counter() - t0:.2f} s")


def _strategy_options(f):
    return _apply_in_order(f, [
        click.option("--tp", type=int, required=True, help="Tensor-parallel degree."),
        click.option("--pp", type=int, default=1, show_default=True, help="Pipeline-parallel degree."),
        click.option("--dp", type=int, default=1, show_default=True, help="Replicas (data parallelism)."),
        click.option("--ep", type=int, default=1, show_default=True, help="Expert-parallel degree (MoE)."),
        click.option("--attention-dp", type=int, default=1, show_default=True,
                     help="Attention data-parallel groups per stage (MoE; attention tp = tp / this)."),
        click.option("--expert-imbalance", type=float, metavar="X",
                     help="Busiest expert-parallel rank's routed tokens over the mean (default: random routing)."),
        click.option("--batch", type=int, help="Concurrent sequences per replica; default: the largest that fits."),
        click.option("--isl", type=int, default=DEFAULT_ISL, show_default=True, help="Input (prompt) tokens per request."),
        click.option("--osl", type=int, default=DEFAULT_OSL, show_default=True, help="Output tokens per request."),
        click.option("--gpu", help="GPU type to evaluate on, for mixed topologies (default: the most numerous)."),
    ])


@main.command()
@_common_model_options
@_strategy_options
@click.option("--qps", type=float, help="Also price the replicas at this request rate (open loop, spread over --dp).")
@click.option("--concurrency", type=int,
              help="Also price the replicas under this many closed-loop clients (spread over --dp).")
@click.option("--requests", type=int, metavar="N",
              help="With --qps (inf: all at once): also run a benchmark of N requests step by step, as a "
                   "published online-serving table measures it (queue build-up and drain included).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_clean_errors
def evaluate(topology, model, weight_dtype, kv_dtype, runtime, tp, pp, dp, ep, attention_dp, expert_imbalance, batch,
             isl, osl, gpu, qps, concurrency, requests, as_json):
    """Score one given strategy: memory, largest batch, TTFT, TPOT, throughput."""
    from planner import evaluation
    from planner.cli_report import evaluation_text

    ev = evaluation.evaluate(topology=topology, model=model, tp=tp, pp=pp, dp=dp, ep=ep, batch=batch, isl=isl, osl=osl,
                      weight_dtype=_dtype(weight_dtype), kv_dtype=_dtype(kv_dtype), gpu=gpu, runtime=runtime,
                      attention_dp=attention_dp, expert_imbalance=expert_imbalance, qps=qps, concurrency=concurrency,
                      requests=requests)
    d = ev.as_dict()
    if not d["fits"]:
        raise InfeasibleError(_does_not_fit(d))
    click.echo(json.dumps(d, indent=2, sort_keys=True) if as_json else evaluation_text(d), nl=not not as_json)


def _does_not_fit(d: dict) -> str:
    """One line for a strategy ``evaluate`` cannot run: no figures, they would describe nothing real."""
    what = f"tp={d['tp']} pp={d['pp']} dp={d['dp']}" + (f" ep={d['ep']}" if d["ep"] > 1 else "") + f" on {d['gpu']}"
    mem = d["memory_per_gpu_bytes"]
    if d["reason"] == "does not fit in GPU memory":
        gib = 2**30
        why = (f"does not fit in GPU memory: batch {d['batch_size']} needs {mem['total'] / gib:.1f} GiB per GPU of "
               f"{mem['capacity'] / gib:.1f} GiB") if d["max_batch_size"] >= 1 else \
            f"does not fit in GPU memory: not even one sequence fits ({mem['weights'] / 2**30:.1f} GiB of weights per GPU)"
        fix = f"; the largest batch that fits is {d['max_batch_size']}" if d["max_batch_size"] >= 1 else \
            "; try a larger --tp/--pp or a smaller --weight-dtype"
        return f"{what} {why}{fix} (`plan-search explain` shows where the memory goes)"
    return f"{what} does not fit: {d['reason']}"


@main.command()
@_common_model_options
@_strategy_options
@_clean_errors
def explain(topology, model, weight_dtype, kv_dtype, runtime, tp, pp, dp, ep, attention_dp, expert_imbalance, batch, isl,
            osl, gpu):
    """Explain where memory and time go for one strategy, in words and numbers."""
    from planner.breakdown import explain as explain_fn

    click.echo(explain_fn(topology=topology, model=model, tp=tp, pp=pp, dp=dp, ep=ep, batch=batch, isl=isl, osl=osl,
                          weight_dtype=_dtype(weight_dtype), kv_dtype=_dtype(kv_dtype), gpu=gpu, runtime=runtime,
                          attention_dp=attention_dp, expert_imbalance=expert_imbalance),
               nl=False)


@main.command()
@click.option("--plan", "plan_file", required=True, help="Placement JSON written by `search --json` or `-o`.")
@click.option("--target", required=True, type=click.Choice(list(EMIT_TARGETS)),
              help="Serving runtime (vllm, sglang, trtllm), Ray placement groups (ray) or Kubernetes manifests (k8s).")
@click.option("--model-path", help="Checkpoint to serve (HF repo id or folder); default: the model's HF repo.")
@click.option("--runtime-version", metavar="X.Y[.Z]",
              help=f"Release of the target's runtime to write for ({EMIT_VERSIONS_HELP}).")
@click.option("--output", "-o", "out_dir", type=click.Path(file_okay=False),
              help="Write the files into this folder (created); default: print them all.")
@_clean_errors
def emit(plan_file, target, model_path, runtime_version, out_dir):
    """Write the runtime's launch files for a plan (scripts per replica group)."""
    from planner.emit import emit as emit_fn, load_plan
    from planner.emit.verify import check_against_topology

    if out_dir is not None:
        _check_out_dir(out_dir, "--output")
    plan = load_plan(plan_file)
    try:
        files = emit_fn(plan, target, model_path=model_path, runtime_version=runtime_version)
    except InputError as e:  # a plan the runtime cannot express: say which file
        if e.source is not None:
            raise
        raise InputError(str(e), source=plan_file) from None
    check_against_topology(plan, source=plan_file)  # the independent check, where the topology loads here
    if out_dir is None:
        click.echo("".join(f"# === {name} ===\n{text}" for name, text in files.items()), nl=False)
        return
    _write_all_atomic(out_dir, files)
    for name in files:
        click.echo(os.path.join(out_dir, name))


def _check_out_dir(out_dir: str, flag: str) -> None:
    """Refuse an output folder that cannot be written, before any work is done: an empty name, a path
    that is not a folder, or a folder (or its nearest existing parent, when it is to be created) that
    this user cannot write into."""
    if not out_dir.strip():
        raise InputError("empty; give a folder", source=flag)
    d = Path(out_dir)
    if d.exists() and not d.is_dir():
        raise InputError("exists and is not a folder", source=out_dir)
    probe = d
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise InputError(f"cannot create the folder: {probe} is not a folder", source=out_dir)
    if not os.access(probe, os.W_OK | os.X_OK):
        raise InputError(f"cannot write into {probe}: permission denied", source=out_dir)


def _plain_file_name(name: str, out_dir: str) -> None:
    """Refuse a launch-file name that is not one plain file name inside the folder (defence in depth:
    the emitters make names from checked group ids)."""
    if (not isinstance(name, str) or name in ("", ".", "..") or os.path.basename(name) != name
            or "/" in name or "\\" in name or "\0" in name or not name.isprintable()):
        raise InputError(f"refusing to write {name!r}: not a plain file name", source=out_dir)


def _write_all_atomic(out_dir: str, files: dict[str, str]) -> None:
    """Write every file into ``out_dir`` (created) via temp files renamed only once all are written.

    Scripts get mode 0o777 and other files 0o666, less the umask (as any new file). An existing
    target that is not a regular file (a symlink, a device, a fifo, a folder) is refused before
    anything is written; any error while writing is one line naming the file and leaves no temp file.
    """
    _check_out_dir(out_dir, "--output")
    d = Path(out_dir)
    for name in files:
        _plain_file_name(name, out_dir)
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"cannot create folder: {e.strerror}", source=out_dir) from None
    for name in files:
        try:
            st = os.lstat(d / name)
        except FileNotFoundError:
            continue
        except OSError as e:
            raise InputError(f"cannot inspect: {e.strerror}", source=str(d / name)) from None
        if not stat.S_ISREG(st.st_mode):
            raise InputError("exists and is not a regular file (a symlink, device, fifo or folder); remove it or "
                             "choose another folder", source=str(d / name))
    temps: list[tuple[Path, Path]] = []
    current = out_dir
    try:
        for i, (name, text) in enumerate(files.items()):
            current = str(d / name)
            tmp = d / f".plan-search-{os.getpid()}-{i}-{secrets.token_hex(4)}.tmp"  # short: any legal name fits
            mode = 0o777 if name.endswith(".sh") else 0o666  # the kernel takes the umask off
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            temps.append((tmp, d / name))
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
        for tmp, target in temps:
            current = str(target)
            os.replace(tmp, target)
    except OSError as e:
        _remove_temps(temps)
        raise InputError(f"cannot write: {e.strerror or e}", source=current) from None
    except BaseException:
        _remove_temps(temps)
        raise


def _remove_temps(temps: list[tuple[Path, Path]]) -> None:
    for tmp, _ in temps:
        try:
            os.unlink(tmp)
        except OSError:
            pass


@main.group(cls=_Group)
def topology():
    """Validate, show and import topology files."""


@topology.command("validate")
@click.argument("file")
@_clean_errors
def topology_validate(file):
    """Check a topology file (or built-in name); print a one-line summary."""
    from planner.price.cluster import cluster_view
    from topologies.graph import Topology
    from topologies.load import load_topology

    spec, sha = load_topology(file)
    topo = Topology(spec, sha, source=file)
    cluster_view(topo)  # GPU names resolve against the catalog
    click.echo(f"{file}: ok: {topo.name}, {_count(len(spec.all_nodes()), 'node')}, {_count(len(topo.gpus()), 'GPU')} "
               f"({len(topo.gpus(available_only=True))} available), {_count(len(topo.domains), 'scale-up domain')}")


@topology.command("show")
@click.argument("file")
@click.option("--json", "as_json", is_flag=True, help="Print the graph as node-link JSON.")
@_clean_errors
def topology_show(file, as_json):
    """Show a topology: nodes, domains, and the links between representative GPUs."""
    import networkx as nx
    from tabulate import tabulate

    from topologies.graph import Topology
    from topologies.load import load_topology

    spec, sha = load_topology(file)
    topo = Topology(spec, sha, source=file)
    if as_json:
        click.echo(json.dumps(nx.node_link_data(topo.graph, edges="links"), indent=2, sort_keys=True, default=str))
        return
    rows = []
    for dom, gpus in topo.domains.items():
        a = topo.gpu(gpus[0])
        free = sum(1 for x in gpus if topo.gpu(x)["available"])
        inner = topo.slowest_link(gpus) if len(gpus) > 1 else None
        rows.append([dom, a["gpu"], len(gpus), free, a["rack"],
                     f"{inner.kind} {inner.bandwidth_bytes_per_s / 1e9:.0f} GB/s" if inner else "-"])
    click.echo(f"{topo.name}: {spec.description.strip()}\n")
    click.echo(tabulate(rows, headers=["domain", "GPU", "GPUs", "free", "rack", "slowest link inside"]))
    doms = list(topo.domains.values())
    if len(doms) > 1:
        lk = topo.link(doms[0][0], doms[-1][0])
        click.echo(f"\nbetween domains ({doms[0][0]} -> {doms[-1][0]}): {lk.kind} "
                   f"{lk.bandwidth_bytes_per_s / 1e9:.1f} GB/s, {lk.latency_s * 1e6:.1f} us")


@topology.group("import", cls=_Group)
def topology_import():
    """Write a topology file from what machines report: `nvidia-smi topo -m` or NCCL's topology XML.

    One FILE per node; or one FILE and --nodes N for N identical nodes. The YAML goes to stdout,
    or to -o FILE (whole or not at all); warnings (a pattern written conservatively) go to stderr.
    """


def _import_options(f):
    f = click.option("--output", "-o", type=click.Path(dir_okay=False),
                     help="Write the topology YAML to this file instead of stdout.")(f)
    f = click.option("--name", help="Topology name  [default: from the first FILE's name].")(f)
    f = click.option("--nics-per-node", type=click.IntRange(1, 1024),
                     help="NIC ports per node  [default: counted in the file].")(f)
    f = click.option("--nic-gbit-per-s", type=click.FloatRange(0, min_open=True),
                     help="Line rate of one NIC port in Gb/s; needed for several nodes unless the file gives it.")(f)
    f = click.option("--nodes", type=click.IntRange(1, 100_000), help="Replicate the one FILE's node N times.")(f)
    f = click.option("--gpu", help="GPU model, a name from `plan-search catalog gpus`, or a GPU spec file "
                                   "(.yaml/.json, `gpu_types:` with one GPU) for a GPU the catalog lacks; needed "
                                   "unless the file names it.")(f)
    return f


def _gpu_spec_flag(path: str):
    """``--gpu FILE``: the one user-defined GPU of a GPU spec file, as (name, figures, file)."""
    from costmodels.hardware import custom_gpus
    from topologies.load import read_gpu_spec_file

    types, _ = read_gpu_spec_file(path)
    if len(types) != 1:
        raise InputError(f"defines {len(types)} GPU types ({', '.join(types)}); --gpu takes a spec file with one",
                         source=path, field="gpu_types")
    custom_gpus(types, source=path)  # refuses a catalog GPU's name
    (name, figures), = types.items()
    return name, figures, path


def _import(fmt: str, files: tuple[str, ...], gpu, nodes, nic_gbit_per_s, nics_per_node, name, output) -> None:
    from costmodels.hardware import get_gpu, topology_gpu
    from topologies.importers import import_topology
    from topologies.load import parse_topology

    if output is not None:
        _check_writable(output)
    spec_file = gpu is not None and (gpu.lower().endswith((".yaml", ".yml", ".json")) or os.sep in gpu)
    gpu_spec = _gpu_spec_flag(gpu) if spec_file else None
    gpu_name = get_gpu(gpu, source="--gpu").name if gpu is not None and not spec_file else None
    result = import_topology(fmt, list(files), gpu=gpu_name, nodes=nodes, nic_gbit_per_s=nic_gbit_per_s,
                             nics_per_node=nics_per_node, name=name, gpu_spec=gpu_spec)
    spec = parse_topology(result.data, source=files[0])
    for nt_name, nt in spec.node_types.items():
        topology_gpu(spec, nt.gpu, source=files[0], field=f"node_types.{nt_name}.gpu")
    if output:
        _write_atomic(output, result.yaml_text)
    for w in result.warnings:
        click.echo(f"plan-search: warning: {w}", err=True)
    if output:
        nodes_ = spec.all_nodes()
        gpus = sum(spec.node_types[x.type].gpus_per_node for x in nodes_)
        click.echo(f"{output}: {spec.name}, {_count(len(nodes_), 'node')}, {_count(gpus, 'GPU')}")
    else:
        click.echo(result.yaml_text, nl=False)


@topology_import.command("nvidia-smi")
@click.argument("files", nargs=-1, required=True, metavar="FILE [FILE...]")
@_import_options
@_clean_errors
def topology_import_nvidia_smi(files, gpu, nodes, nic_gbit_per_s, nics_per_node, name, output):
    """Import the text of `nvidia-smi topo -m` (pasted from a terminal or a log), one FILE per node.

    NV# cells between all GPU pairs become an NVSwitch fabric, NVLink bridge pairs become
    nvlink-pairs, no NVLink becomes PCIe; bandwidth is NV# x the GPU's per-link NVLink figure.
    The table does not name the GPU model: pass --gpu unless the file also holds
    `nvidia-smi -L` lines. NIC speeds are not in the table: pass --nic-gbit-per-s for several nodes.
    """
    _import("nvidia-smi", files, gpu, nodes, nic_gbit_per_s, nics_per_node, name, output)


@topology_import.command("nccl")
@click.argument("files", nargs=-1, required=True, metavar="FILE [FILE...]")
@_import_options
@_clean_errors
def topology_import_nccl(files, gpu, nodes, nic_gbit_per_s, nics_per_node, name, output):
    """Import NCCL topology XML (NCCL_TOPO_DUMP_FILE output, or an NCCL_TOPO_FILE), one FILE per node.

    NVLinks to NVSwitches (tclass 0x068000) become an NVSwitch fabric, GPU-to-GPU NVLinks pairs
    or a mesh; the GPU model comes from the GPUs' PCI device id (or --gpu), NIC ports and speeds
    from the <net> elements.
    """
    _import("nccl", files, gpu, nodes, nic_gbit_per_s, nics_per_node, name, output)


@main.group(cls=_Group)
def catalog():
    """List the built-in GPUs, models and topologies."""


#: A web reference in a source note: a host name with a dot, then a path (``huggingface.co/org/x``).
_URL = re.compile(r"(?:https?://)?(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}/[^\s,;()'\"\]]*")
#: Width of the source column in the plain catalog tables; ``--json`` gives the whole note.
SOURCE_COLUMN_CHARS = 48


def short_source(note: str, width: int = SOURCE_COLUMN_CHARS) -> str:
    """The first reference of a source note, for a table column: the web address in its first
    clause (up to ``;``) if there is one, else that clause's first sentence without asides in
    parentheses or a leading ``[kind]`` tag ("Hugging Face" shortened to "HF"); cut to ``width``
    characters with ``...``. ``-`` for an empty note.

    >>> short_source("[secondary] vendor page (example.org/a100: BF16 312); datasheet")
    'example.org/a100'
    >>> short_source("Hugging Face org/model config.json (fields kept): 8 layers; more", width=24)
    'HF org/model config.json'
    """
    clause = note.strip().split(";", 1)[0]
    url = _URL.search(clause)
    if url:
        text = url.group(0).rstrip(".:")
    else:
        text = re.sub(r"^\[[^]]*\]\s*", "", re.sub(r"\s*\([^)]*\)?", "", clause)).strip()
        end = re.search(r"(?<=.{16})(?::\s|\.\s)", text)  # a first sentence, not a short lead-in ("Copies:")
        text = (text[:end.start()] if end else text).rstrip(".").replace("Hugging Face ", "HF ")
    text = text or "-"
    return text if len(text) <= width else text[: width - 3].rstrip() + "..."


def topology_source(description: str) -> str:
    """Where a topology file's figures come from: its description from ``Source:`` or
    ``Sources:`` on, else its last sentence (built-ins that reuse another file's figures say
    so there)."""
    m = re.search(r"\bSources?:\s*", description)
    if m:
        return description[m.end():].strip()
    sentences = [x.strip() for x in re.split(r"(?<=\.)\s+", description.strip()) if x.strip()]
    return sentences[-1] if sentences else ""


@catalog.command("gpus")
@click.option("--json", "as_json", is_flag=True, help="Every figure and the full source text.")
def catalog_gpus(as_json):
    """GPUs with their datasheet figures and sources."""
    from tabulate import tabulate

    from costmodels.hardware import gpu_catalog

    gs = sorted(gpu_catalog().values(), key=lambda g: g.name)
    if as_json:
        click.echo(json.dumps([{"name": g.name, "aliases": list(g.aliases), "bf16_flop_per_s": g.bf16_flop_per_s,
                                "fp8_flop_per_s": g.fp8_flop_per_s, "fp4_flop_per_s": g.fp4_flop_per_s,
                                "memory_bytes": g.memory_bytes, "hbm_bandwidth_bytes_per_s": g.hbm_bandwidth_bytes_per_s,
                                "pcie_gen": g.pcie_gen, "source": g.source} for g in gs], indent=2))
        return
    click.echo(tabulate([[g.name, f"{g.bf16_flop_per_s / 1e12:g}", f"{(g.fp8_flop_per_s or 0) / 1e12:g}" or "-",
                          f"{g.memory_bytes / 2**30:g}", f"{g.hbm_bandwidth_bytes_per_s / 1e12:g}",
                          g.nvlink_domain_gpus, short_source(g.source)] for g in gs],
                        headers=["GPU", "BF16 TFLOPS", "FP8 TFLOPS", "memory GiB", "HBM TB/s", "NVLink domain",
                                 "source (--json: full)"]))


@catalog.command("models")
@click.option("--json", "as_json", is_flag=True, help="The counts and the full source text.")
def catalog_models(as_json):
    """Built-in models."""
    from tabulate import tabulate

    from costmodels.models import builtin_model_names, get_model

    ms = [get_model(n) for n in builtin_model_names()]
    if as_json:
        click.echo(json.dumps([{"name": m.name, "params": m.total_params(), "active_params": m.active_params(),
                                "layers": m.layers, "attention": m.attention_kind, "experts": m.experts,
                                "source": m.source} for m in ms], indent=2))
        return
    click.echo(tabulate([[m.name, f"{m.total_params() / 1e9:.1f}", f"{m.active_params() / 1e9:.1f}", m.layers,
                          m.attention_kind, f"{m.experts}x{m.experts_per_token}" if m.is_moe else "dense",
                          m.native_dtype, short_source(m.source)] for m in ms],
                        headers=["model", "params B", "active B", "layers", "attention", "experts", "weights",
                                 "source (--json: full)"]))


@catalog.command("topologies")
@click.option("--json", "as_json", is_flag=True, help="The description and the full source text.")
def catalog_topologies(as_json):
    """Built-in topologies (use the name with --topology)."""
    from tabulate import tabulate

    from topologies.load import builtin_topology_names, load_topology

    rows = []
    for n in builtin_topology_names():
        spec, _ = load_topology(n)
        nodes = spec.all_nodes()
        gpus = sum(spec.node_types[x.type].gpus_per_node for x in nodes)
        types = sorted({spec.node_types[x.type].gpu for x in nodes})
        rows.append({"name": n, "nodes": len(nodes), "gpus": gpus, "gpu_types": types,
                     "description": spec.description, "source": topology_source(spec.description)})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(tabulate([[r["name"], r["nodes"], r["gpus"], ", ".join(r["gpu_types"]), short_source(r["source"])]
                         for r in rows], headers=["topology", "nodes", "GPUs", "GPU types", "source (--json: full)"]))


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
@_clean_errors
def sweep_command(file, output, jobs, ray_address, quiet, progress):
    """Run a grid of search requests from FILE (YAML or JSON) and write one table of results.

    FILE has `base` (search arguments every row shares), `grid` (lists whose cartesian
    product gives the rows) and optional `cases` (extra rows); see README.md, "Sweeps".
    One row per request, in grid order: the request, its status (ok, infeasible, bad-input,
    timeout, error), the message of a failed row and the plan's totals. A failing row does
    not stop the sweep; a bad FILE stops it before anything runs (exit 2).
    """
    import time

    from tabulate import tabulate

    from planner import sweep as sw

    spec = sw.load_sweep(file)
    parquet = False
    if output is not None:
        _check_writable(output)
        suffix = Path(output).suffix.lower()
        if suffix not in (".csv", ".parquet"):
            raise InputError("give a file name ending in .csv or .parquet", source=output)
        _check_writable(output)
        parquet = suffix == ".parquet"
        if parquet:
            sw.require_pyarrow(output)
    if ray_address is not None:
        sw.require_ray()
    if progress is None:
        progress = sys.stderr.isatty()
    status_line = _StatusLine(sys.stderr) if progress and not quiet else None
    t0 = time.perf_counter()
    last = [0.0]

    def report(done: int, total: int, counts: dict[str, int]) -> None:
        now = time.perf_counter()
        if done < total and now - last[0] < (0.1 if sys.stderr.isatty() else 2.0):
            return
        last[0] = now
        failed = done - counts["ok"] - counts["infeasible"]
        status_line.show(f"sweep {spec.name}: {done:,}/{_count(total, 'row')} ({counts['ok']:,} ok, "
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
        _write_atomic(output, sw.to_csv(result.rows))
    if quiet:
        return
    c = result.counts()
    failed = len(result.rows) - c["ok"] - c["infeasible"]
    why = ", ".join(f"{c[s]:,} {s}" for s in ("bad-input", "timeout", "error") if c[s])
    lines = [f"sweep {spec.name}: {_count(len(result.rows), 'row')} in {result.wall_time_s:.2f} s on {result.backend}",
             tabulate([["ok", c["ok"]], ["infeasible", c["infeasible"]], ["failed", failed],
                       ["total", len(result.rows)]], headers=["status", "rows"])]
    if failed:
        lines.append(f"failed: {why}; the status and message columns say why")
    if output:
        lines.append(f"wrote {output}")
    click.echo("\n".join(lines), err=not output)


if __name__ == "__main__":  # pragma: no cover
    main()
