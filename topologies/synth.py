"""Synthetic GPU fleets for scaling benchmarks and tests (pure: no I/O, no planner imports).

A fleet is HGX/DGX-style 8-GPU NVSwitch nodes, eight NICs each, one node group per GPU
type, racks of ``nodes_per_rack`` nodes and a non-blocking leaf-spine network once there
is more than one rack. Link figures follow the built-in topologies (``dgx-h100x1``,
``hgx-a100x4``, ``hgx-h200x2``).
"""
from __future__ import annotations

import random

from topologies.schema import TopologySpec

GPUS_PER_NODE = 8

# family prefix -> (NVLink GB/s per direction, NIC Gb/s, PCIe GB/s per direction)
_FAMILIES: dict[str, tuple[float, float, float]] = {
    "H100": (450.0, 400.0, 64.0),
    "H200": (450.0, 400.0, 64.0),
    "A100": (300.0, 200.0, 32.0),
    "B200": (900.0, 400.0, 64.0),
}


def _family(gpu: str) -> tuple[float, float, float]:
    key = gpu.upper()
    if "PCIE" not in key:
        for prefix, figures in _FAMILIES.items():
            if key.startswith(prefix):
                return figures
    raise ValueError(f"no 8-GPU NVSwitch node figures for GPU type {gpu!r}; "
                     f"use an SXM part of {', '.join(_FAMILIES)}")


def synthetic_fleet(*, gpus: int, gpu_types: tuple[str, ...] = ("H100-SXM-80GB",), nodes_per_rack: int = 32,
                    busy_fraction: float = 0.0, seed: int = 0) -> TopologySpec:
    """Build a validated :class:`TopologySpec` of ``gpus`` GPUs split evenly over ``gpu_types``.

    Parameters
    ----------
    gpus : int
        Total GPUs; a positive multiple of ``8 * len(gpu_types)`` (8-GPU nodes, the same
        node count per type).
    gpu_types : tuple of str
        GPU catalog names (H100, H200, A100 or B200 SXM parts), one node group each.
        NVLink per direction: H100/H200 450 GB/s, A100 300 GB/s, B200 900 GB/s; 8 NICs
        per node at 400 Gb/s (A100: 200 Gb/s).
    nodes_per_rack : int
        Nodes per rack; each type fills its own racks. More than one rack in total gives
        a leaf-spine network with oversubscription 1.0.
    busy_fraction : float
        Share of GPUs (rounded to the nearest GPU) marked unavailable, in ``[0, 1]``.
        With a non-zero share, nodes are listed one by one with ``unavailable_gpus``.
    seed : int
        Chooses which GPUs are busy; the same seed gives the same fleet.

    Returns
    -------
    TopologySpec

    Raises
    ------
    ValueError
        ``gpus`` is not a positive multiple of ``8 * len(gpu_types)``, a GPU type is
        repeated or unknown, or ``nodes_per_rack``/``busy_fraction`` is out of range.

    Examples
    --------
    >>> spec = synthetic_fleet(gpus=512, gpu_types=("H100-SXM-80GB", "A100-SXM4-80GB"))
    >>> [(g.type, g.count) for g in spec.node_groups]
    [('h100-sxm-80gb', 32), ('a100-sxm4-80gb', 32)]
    >>> spec.network.kind, len({n.rack for n in spec.all_nodes()})
    ('leaf-spine', 2)
    >>> busy = synthetic_fleet(gpus=64, busy_fraction=0.25, seed=1)
    >>> sum(len(n.unavailable_gpus) for n in busy.all_nodes())
    16
    """
    types = tuple(gpu_types)
    if not types:
        raise ValueError("gpu_types is empty")
    if len(set(types)) != len(types):
        raise ValueError(f"gpu_types repeats a type: {types}")
    if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus <= 0 or gpus % (GPUS_PER_NODE * len(types)):
        raise ValueError(f"gpus must be a positive multiple of {GPUS_PER_NODE * len(types)} "
                         f"({GPUS_PER_NODE} per node x {len(types)} GPU types), got {gpus!r}")
    if isinstance(nodes_per_rack, bool) or not isinstance(nodes_per_rack, int) or nodes_per_rack < 1:
        raise ValueError(f"nodes_per_rack must be a positive integer, got {nodes_per_rack!r}")
    if not 0.0 <= busy_fraction <= 1.0:
        raise ValueError(f"busy_fraction must be in [0, 1], got {busy_fraction!r}")

    per_type = gpus // GPUS_PER_NODE // len(types)
    node_types, groups = {}, []
    for gpu in types:
        nvlink, nic, pcie = _family(gpu)
        key = gpu.lower()
        node_types[key] = {
            "gpu": gpu, "gpus_per_node": GPUS_PER_NODE,
            "fabric": {"kind": "nvswitch", "nvlink_bandwidth_gbyte_per_s": nvlink, "pcie_bandwidth_gbyte_per_s": pcie},
            "nics": {"count": GPUS_PER_NODE, "bandwidth_gbit_per_s": nic},
        }
        groups.append({"prefix": f"{key}-", "count": per_type, "type": key, "rack": f"{key}-rack",
                       "nodes_per_rack": nodes_per_rack})
    racks = len(types) * -(-per_type // nodes_per_rack)
    nodes = per_type * len(types)
    network = {"kind": "leaf-spine", "oversubscription": 1.0} if racks > 1 else \
        {"kind": "single-switch" if nodes > 1 else "none"}
    name = f"synthetic-{gpus}-" + "_".join(t.lower().split("-")[0] for t in types)
    data = {"name": name, "description": f"synthetic fleet: {gpus} GPUs, {nodes} nodes, {racks} racks",
            "node_types": node_types, "network": network}

    busy = int(round(busy_fraction * gpus))
    if busy == 0:
        return TopologySpec.model_validate({**data, "node_groups": groups})
    # Expand the groups to explicit nodes (same names and racks) and mark `busy` GPUs.
    expanded = TopologySpec.model_validate({**data, "node_groups": groups}).all_nodes()
    chosen = random.Random(seed).sample(range(gpus), busy)
    down: dict[int, list[int]] = {}
    for x in sorted(chosen):
        down.setdefault(x // GPUS_PER_NODE, []).append(x % GPUS_PER_NODE)
    listed = [{"name": n.name, "type": n.type, "rack": n.rack, "unavailable_gpus": down.get(i, [])}
              for i, n in enumerate(expanded)]
    data["name"] = f"{data['name']}-busy{busy}-seed{seed}"[:63].rstrip("-._")  # a name is at most 63 characters
    return TopologySpec.model_validate({**data, "nodes": listed})
