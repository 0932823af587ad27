"""``plan-search catalog``: the built-in GPUs, models and topologies, each with its source."""
from __future__ import annotations

import json
import re

import click

from planner.cli.group import Group, main


@main.group(cls=Group)
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
