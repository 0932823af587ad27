"""From the scans of one or more files to a topology: node types named by GPU and size, the nodes
(one per file, or one file's node replicated), a description that records every figure's source
and every warning, and the YAML text, validated by the topology loader before it is returned."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from topologies.errors import InputError
from topologies.importers.common import NodeScan, read_stdin, slug
from topologies.importers.gpu_facts import GpuLinkFacts, custom_link_facts
from topologies.importers.nccl import scan_nccl
from topologies.importers.node_type import node_fabric, node_nics, resolve_gpu
from topologies.importers.nvidia_smi import scan_nvidia_smi
from topologies.load import parse_topology, read_text_file
from topologies.schema import (
    LABEL,
    MAX_GBIT_PER_S,
    MAX_NICS_PER_NODE,
    MAX_TOTAL_NODES,
    MIN_GBIT_PER_S,
    NAME_MAX_CHARS,
    GpuTypeSpec,
)

MAX_NODES = MAX_TOTAL_NODES


@dataclass(frozen=True)
class _Shape:
    gpu: str
    gpus: int
    fabric: tuple  # hashable form of the fabric mapping
    nics: tuple | None


class _Folded(str):
    pass


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_Folded, lambda d, s: d.represent_scalar("tag:yaml.org,2002:str", str(s), style=">"))


@dataclass
class ImportResult:
    """A topology built from machine reports: its data, the YAML text, and warnings to show."""

    data: dict
    yaml_text: str
    warnings: list[str]


def import_topology(fmt: str, files: list[str], *, gpu: str | None = None, nodes: int | None = None,
                    nic_gbit_per_s: float | None = None, nics_per_node: int | None = None,
                    name: str | None = None, gpu_spec: tuple[str, GpuTypeSpec, str] | None = None) -> ImportResult:
    """Build a topology from ``nvidia-smi topo -m`` outputs or NCCL topology XML files, one per node.

    ``gpu`` is a catalog GPU name (the caller resolves aliases); ``gpu_spec`` instead a user-defined GPU
    (name, figures, the spec file), written into the topology's ``gpu_types``; ``nodes`` replicates the
    one file's node that many times. Raises :class:`InputError` naming the file (or flag) and the fix.
    """
    custom = custom_link_facts(gpu_spec[0], gpu_spec[1], gpu_spec[2]) if gpu_spec is not None else None
    _check_options(fmt, files, nodes, nic_gbit_per_s, nics_per_node, name)
    scans = _scan_files(fmt, files)
    files = [s.source for s in scans]
    multi = (nodes if nodes is not None else len(files)) > 1
    shapes, notes = _shapes(scans, gpu, custom, multi, nic_gbit_per_s, nics_per_node)
    type_names = _type_names(shapes)
    warnings = [f"{s.source}: {w}" for s in scans for w in s.warnings]
    description = _description(fmt, files, nodes, multi, [(nm, notes[sh]) for sh, nm in type_names.items()],
                               warnings)
    topo_name = name.strip() if name is not None else (
        "imported" if files[0] == "<stdin>" else slug(Path(files[0]).stem)[:NAME_MAX_CHARS].rstrip("-") or "imported")
    data: dict = {"name": topo_name, "description": _Folded(description), "node_types": _node_types(type_names)}
    if nodes is not None and nodes > 1:
        data["node_groups"] = [{"prefix": "node", "count": nodes, "type": type_names[shapes[0]]}]
    else:
        data["nodes"] = [{"name": f"node{i}", "type": type_names[sh]} for i, sh in enumerate(shapes)]
    data["network"] = {"kind": "single-switch"} if multi else {"kind": "none"}
    if gpu_spec is not None:
        figures = gpu_spec[1].model_dump(exclude_none=True)
        figures["source"] = figures.get("source") or f"user-defined GPU type from {gpu_spec[2]}"
        data["gpu_types"] = {gpu_spec[0]: figures}
    return _dumped(fmt, files, data, warnings)


def _check_options(fmt: str, files: list[str], nodes: int | None, nic_gbit_per_s: float | None,
                   nics_per_node: int | None, name: str | None) -> None:
    """Refuse an unknown format, no files, and flags out of range or that contradict each other."""
    if fmt not in ("nvidia-smi", "nccl"):
        raise InputError(f"unknown format {fmt!r}; use nvidia-smi or nccl")
    if not files:
        raise InputError("give at least one file", source="FILE")
    if nodes is not None:
        if len(files) > 1:
            raise InputError(f"replicates one file's node; with {len(files)} files (one per node) leave it out",
                             source="--nodes")
        if isinstance(nodes, bool) or not isinstance(nodes, int) or not 1 <= nodes <= MAX_NODES:
            raise InputError(f"must be an integer from 1 to {MAX_NODES}", source="--nodes")
    if nic_gbit_per_s is not None and not (isinstance(nic_gbit_per_s, (int, float))
                                           and MIN_GBIT_PER_S <= nic_gbit_per_s <= MAX_GBIT_PER_S):
        raise InputError(f"must be a line rate in Gb/s from {MIN_GBIT_PER_S:g} to {MAX_GBIT_PER_S:g}, e.g. 400",
                         source="--nic-gbit-per-s")
    if nics_per_node is not None and (isinstance(nics_per_node, bool) or not isinstance(nics_per_node, int)
                                      or not 1 <= nics_per_node <= MAX_NICS_PER_NODE):
        raise InputError(f"must be an integer from 1 to {MAX_NICS_PER_NODE}", source="--nics-per-node")
    if name is not None and not name.strip():
        raise InputError("must not be empty", source="--name")
    if name is not None and not LABEL.fullmatch(name.strip()):
        raise InputError(f"{name.strip()!r} is not a valid topology name: use 1 to {NAME_MAX_CHARS} characters from "
                         f"a-z, 0-9, '-', '.', '_', starting and ending with a letter or digit", source="--name")
    if files.count("-") > 1:
        raise InputError("standard input ('-') can be given once", source="FILE")


def _scan_files(fmt: str, files: list[str]) -> list[NodeScan]:
    """Read and scan each file (``-``: standard input) in the given format, one node each."""
    scans = []
    for f in files:
        text = read_stdin() if f == "-" else read_text_file(f)[0]
        src = "<stdin>" if f == "-" else f
        scans.append(scan_nvidia_smi(text, src) if fmt == "nvidia-smi" else scan_nccl(text, src))
    return scans


def _shapes(scans: list[NodeScan], gpu: str | None, custom: GpuLinkFacts | None, multi: bool,
            nic_gbit_per_s: float | None, nics_per_node: int | None) -> tuple[list[_Shape], dict[_Shape, str]]:
    """Each scan's node shape (GPU, fabric, NICs), and for each distinct shape the note on its first node."""
    shapes: list[_Shape] = []
    notes: dict[_Shape, str] = {}
    for s in scans:
        facts, evidence = resolve_gpu(s, gpu, custom)
        fabric, fabric_note = node_fabric(s, facts)
        nics, nic_note = node_nics(s, multi, nic_gbit_per_s, nics_per_node)
        shape = _Shape(gpu=facts.name, gpus=s.gpus, fabric=tuple(
            (k, tuple(map(tuple, v)) if k == "pairs" else v) for k, v in fabric.items()),
            nics=tuple(nics.items()) if nics else None)
        shapes.append(shape)
        notes.setdefault(shape, f"{s.gpus}x {facts.name} (GPU model {evidence}); {fabric_note}; {nic_note}")
    return shapes, notes


def _type_names(shapes: list[_Shape]) -> dict[_Shape, str]:
    """A node type name for each distinct shape, in order of first use: ``<gpu>-<n>gpu``, numbered from
    ``-2`` when two shapes would share one."""
    type_names: dict[_Shape, str] = {}
    for sh in shapes:
        if sh in type_names:
            continue
        base = f"{slug(sh.gpu)}-{sh.gpus}gpu"
        nm, k = base, 2
        while nm in type_names.values():
            nm, k = f"{base}-{k}", k + 1
        type_names[sh] = nm
    return type_names


def _node_types(type_names: dict[_Shape, str]) -> dict[str, dict]:
    """The ``node_types`` mapping: each shape back in the topology schema's form."""
    node_types = {}
    for sh, nm in type_names.items():
        fabric = {k: ([list(p) for p in v] if k == "pairs" else v) for k, v in sh.fabric}
        nt: dict = {"gpu": sh.gpu, "gpus_per_node": sh.gpus, "fabric": fabric}
        if sh.nics:
            nt["nics"] = dict(sh.nics)
        node_types[nm] = nt
    return node_types


def _description(fmt: str, files: list[str], nodes: int | None, multi: bool, type_notes: list[tuple[str, str]],
                 warnings: list[str]) -> str:
    """The topology's description: where it came from, how each node type was derived (with the
    figures' sources), how GPU indices are numbered, the network assumed, and every warning."""
    tool = "nvidia-smi topo -m" if fmt == "nvidia-smi" else "NCCL topology XML"
    if nodes is not None and nodes > 1:
        origin = f"{files[0]} (every node)"
    elif len(files) == 1:
        origin = files[0]
    else:
        origin = ", ".join(f"{f} (node{i})" for i, f in enumerate(files))
    parts = [f"Imported by `plan-search topology import {fmt}` from {tool}: {origin}."]
    for nm, note in type_notes:
        parts.append(f"{nm}: {note}.")
    parts.append("GPU indices are the tool's (NVML, PCI bus order): run with CUDA_DEVICE_ORDER=PCI_BUS_ID so "
                 "CUDA_VISIBLE_DEVICES means the same GPUs.")
    if multi:
        parts.append("Nodes on one non-blocking switch (single-switch; edit 'network' for a leaf-spine fabric).")
    if warnings:
        parts.append("Warnings: " + " ".join(w if w.endswith(".") else w + "." for w in warnings))
    return " ".join(parts)


def _dumped(fmt: str, files: list[str], data: dict, warnings: list[str]) -> ImportResult:
    """The topology as YAML (a header comment, the description folded), validated by the loader."""
    header = (f"# Generated by `plan-search topology import {fmt}` from {len(files)} file(s); "
              f"figures and their sources are in the description.\n")
    body = yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=None, width=100, allow_unicode=True)
    plain = yaml.safe_load(body)
    parse_topology(plain, source=f"imported topology from {files[0]}")  # validates; a failure here is a bug
    return ImportResult(data=plain, yaml_text=header + body, warnings=warnings)
