"""``plan-search topology``: validate and show topology files, import real dumps."""
from __future__ import annotations

import json
import os

import click

from planner.cli.group import Group, check_writable, clean_errors, main, plural, write_atomic
from topologies.errors import InputError


@main.group(cls=Group)
def topology():
    """Validate, show and import topology files."""


@topology.command("validate")
@click.argument("file")
@clean_errors
def topology_validate(file):
    """Check a topology file (or built-in name); print a one-line summary."""
    from planner.price.cluster import cluster_view
    from topologies.graph import Topology
    from topologies.load import load_topology

    spec, sha = load_topology(file)
    topo = Topology(spec, sha, source=file)
    cluster_view(topo)  # GPU names resolve against the catalog
    click.echo(f"{file}: ok: {topo.name}, {plural(len(spec.all_nodes()), 'node')}, {plural(len(topo.gpus()), 'GPU')} "
               f"({len(topo.gpus(available_only=True))} available), {plural(len(topo.domains), 'scale-up domain')}")


@topology.command("show")
@click.argument("file")
@click.option("--json", "as_json", is_flag=True, help="Print the graph as node-link JSON.")
@clean_errors
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


@topology.group("import", cls=Group)
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
        check_writable(output)
    spec_file = gpu is not None and (gpu.lower().endswith((".yaml", ".yml", ".json")) or os.sep in gpu)
    gpu_spec = _gpu_spec_flag(gpu) if spec_file else None
    gpu_name = get_gpu(gpu, source="--gpu").name if gpu is not None and not spec_file else None
    result = import_topology(fmt, list(files), gpu=gpu_name, nodes=nodes, nic_gbit_per_s=nic_gbit_per_s,
                             nics_per_node=nics_per_node, name=name, gpu_spec=gpu_spec)
    spec = parse_topology(result.data, source=files[0])
    for nt_name, nt in spec.node_types.items():
        topology_gpu(spec, nt.gpu, source=files[0], field=f"node_types.{nt_name}.gpu")
    if output:
        write_atomic(output, result.yaml_text)
    for w in result.warnings:
        click.echo(f"plan-search: warning: {w}", err=True)
    if output:
        nodes_ = spec.all_nodes()
        gpus = sum(spec.node_types[x.type].gpus_per_node for x in nodes_)
        click.echo(f"{output}: {spec.name}, {plural(len(nodes_), 'node')}, {plural(gpus, 'GPU')}")
    else:
        click.echo(result.yaml_text, nl=False)


@topology_import.command("nvidia-smi")
@click.argument("files", nargs=-1, required=True, metavar="FILE [FILE...]")
@_import_options
@clean_errors
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
@clean_errors
def topology_import_nccl(files, gpu, nodes, nic_gbit_per_s, nics_per_node, name, output):
    """Import NCCL topology XML (NCCL_TOPO_DUMP_FILE output, or an NCCL_TOPO_FILE), one FILE per node.

    NVLinks to NVSwitches (tclass 0x068000) become an NVSwitch fabric, GPU-to-GPU NVLinks pairs
    or a mesh; the GPU model comes from the GPUs' PCI device id (or --gpu), NIC ports and speeds
    from the <net> elements.
    """
    _import("nccl", files, gpu, nodes, nic_gbit_per_s, nics_per_node, name, output)
