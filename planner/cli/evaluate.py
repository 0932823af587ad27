"""``plan-search evaluate`` and ``explain``: one given strategy, scored or explained in words."""
from __future__ import annotations

import json

import click

from planner.cli.group import (
    DEFAULT_ISL,
    DEFAULT_OSL,
    apply_in_order,
    clean_errors,
    common_model_options,
    dtype_flag,
    main,
)
from topologies.errors import InfeasibleError


def _strategy_options(f):
    return apply_in_order(f, [
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
@common_model_options
@_strategy_options
@click.option("--qps", type=float, help="Also price the replicas at this request rate (open loop, spread over --dp).")
@click.option("--concurrency", type=int,
              help="Also price the replicas under this many closed-loop clients (spread over --dp).")
@click.option("--requests", type=int, metavar="N",
              help="With --qps (inf: all at once): also run a benchmark of N requests step by step, as a "
                   "published online-serving table measures it (queue build-up and drain included).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@clean_errors
def evaluate(topology, model, weight_dtype, kv_dtype, runtime, tp, pp, dp, ep, attention_dp, expert_imbalance, batch,
             isl, osl, gpu, qps, concurrency, requests, as_json):
    """Score one given strategy: memory, largest batch, TTFT, TPOT, throughput."""
    from planner import evaluation
    from planner.cli.report import evaluation_text

    ev = evaluation.evaluate(topology=topology, model=model, tp=tp, pp=pp, dp=dp, ep=ep, batch=batch, isl=isl, osl=osl,
                      weight_dtype=dtype_flag(weight_dtype), kv_dtype=dtype_flag(kv_dtype), gpu=gpu, runtime=runtime,
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
@common_model_options
@_strategy_options
@clean_errors
def explain(topology, model, weight_dtype, kv_dtype, runtime, tp, pp, dp, ep, attention_dp, expert_imbalance, batch, isl,
            osl, gpu):
    """Explain where memory and time go for one strategy, in words and numbers."""
    from planner.breakdown import explain as explain_fn

    click.echo(explain_fn(topology=topology, model=model, tp=tp, pp=pp, dp=dp, ep=ep, batch=batch, isl=isl, osl=osl,
                          weight_dtype=dtype_flag(weight_dtype), kv_dtype=dtype_flag(kv_dtype), gpu=gpu, runtime=runtime,
                          attention_dp=attention_dp, expert_imbalance=expert_imbalance),
               nl=False)
