"""The command group and what its commands share: the error handling that turns a
:class:`PlanSearchError` into one line and an exit code, the model and runtime flags, the status
line, all-or-nothing output files.
"""
from __future__ import annotations

import sys
from functools import wraps

import click

from planner.emit.versions import help_text as _emit_versions_help
from topologies.errors import InputError, PlanSearchError

EMIT_VERSIONS_HELP = _emit_versions_help()  # vllm (also k8s), sglang, trtllm: range and default

OBJECTIVES = ["throughput", "throughput-per-gpu", "min-gpus", "min-cost", "latency"]
DTYPE_CHOICES = ["auto", "bf16", "fp16", "fp8", "int8", "int4", "fp4"]
SEARCH_TIME_LIMIT_S = 10.0  # --time-limit-s of a search (and of each --top-k solve); --pareto has its own
DEFAULT_ISL, DEFAULT_OSL = 1024, 256  # prompt and answer tokens when not given: search, evaluate and explain alike


def clean_errors(fn):
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


class StatusLine:
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


def check_writable(path: str, flag: str = "--output") -> None:
    """Refuse an output path that cannot be written before any work is done."""
    from planner.outfile import check_target
    check_target(path, flag=flag)


def write_atomic(path: str, text: str, flag: str = "--output") -> None:
    """Write ``text`` to ``path`` whole or not at all (temp file in the same folder, then rename)."""
    from planner.outfile import write_text_atomic
    write_text_atomic(path, text, flag=flag)


def parse_prices(items: tuple[str, ...]) -> dict[str, float] | None:
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


def plural(n: int, word: str) -> str:
    """``1 node``, ``2 nodes``: a count with its noun in the right number."""
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def dtype_flag(v: str) -> str | None:
    return None if v == "auto" else v


# click 8.2+ raises this for a group called with no command; older clicks print the help themselves
_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


class Group(click.Group):
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


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="plan-search")
def main() -> None:
    """Plan how to serve a large language model on a GPU cluster.

    Picks tensor, pipeline, data and expert parallelism, batch size and the GPU each rank
    sits on, so that the model fits, meets its latency targets and serves the most traffic.
    """


def apply_in_order(f, options):
    """Decorate ``f`` with ``options`` so that ``--help`` lists them in the order given (click lists
    the option applied last first, so they are applied from the end)."""
    for option in reversed(options):
        f = option(f)
    return f


def common_model_options(f):
    return apply_in_order(f, [
        click.option("--topology", "-t", required=True, help="Built-in topology name or a YAML/JSON file."),
        click.option("--model", "-m", required=True, help="Built-in model name (HF names accepted) or a config.json."),
        click.option("--weight-dtype", type=click.Choice(DTYPE_CHOICES), default="auto", show_default=True,
                     help="Weight format; auto = the checkpoint's own (bf16, or fp8/fp4 where it ships so)."),
        click.option("--kv-dtype", type=click.Choice(DTYPE_CHOICES), default="auto", show_default=True,
                     help="KV-cache format; auto = bf16."),
        click.option("--runtime", type=click.Choice(["vllm", "sglang", "trtllm"]), default="vllm", show_default=True,
                     help="Serving runtime whose memory and batching defaults to price with."),
    ])
