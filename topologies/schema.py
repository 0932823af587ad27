"""The topology file format.

Keys carry human units (``_gbyte_per_s``, ``_gbit_per_s``, ``_us``); they are converted
to SI once, in :mod:`topologies.graph`. Every model forbids unknown keys so that a typo
in a file fails loudly instead of being ignored.

Bandwidths are *per direction*. Datasheets usually quote NVLink as an aggregate of both
directions (H100 SXM: "900 GB/s" = 450 GB/s each way); files use the per-direction figure.
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_bools_for_numbers(cls, data):
        # pydantic's lax mode reads `true` as 1; in a topology file that is always a typo.
        if isinstance(data, dict):
            for name, info in cls.model_fields.items():
                v = data.get(name)
                if isinstance(v, bool) and info.annotation is not bool:
                    raise ValueError(f"{name}: expected a number, got {str(v).lower()}")
        return data


class Fabric(_Strict):
    """The fabric that joins the GPUs inside one node.

    ``nvswitch``: every GPU reaches every other at ``nvlink_bandwidth_gbyte_per_s``.
    ``nvlink-pairs``: GPUs joined by NVLink bridges in ``pairs``; other pairs talk over PCIe.
    ``pcie``: GPUs talk over the PCIe host fabric only.
    ``nvlink-domain``: the node's GPUs belong to a multi-node NVLink domain declared in
    the file's ``nvlink_domains`` (GB200 NVL72 trays).
    """

    kind: Literal["nvswitch", "nvlink-pairs", "pcie", "nvlink-domain"]
    nvlink_bandwidth_gbyte_per_s: float | None = Field(default=None, gt=0)
    nvlink_latency_us: float = Field(default=1.0, ge=0)
    pairs: list[tuple[int, int]] = Field(default_factory=list)
    pcie_bandwidth_gbyte_per_s: float = Field(default=25.0, gt=0)
    pcie_latency_us: float = Field(default=2.0, ge=0)

    @model_validator(mode="after")
    def _needs_nvlink_figures(self) -> Fabric:
        if self.kind in ("nvswitch", "nvlink-pairs") and self.nvlink_bandwidth_gbyte_per_s is None:
            raise ValueError(f"fabric kind {self.kind!r} needs nvlink_bandwidth_gbyte_per_s")
        if self.kind == "nvlink-pairs" and not self.pairs:
            raise ValueError("fabric kind 'nvlink-pairs' needs a list of GPU index pairs in 'pairs'")
        if self.kind != "nvlink-pairs" and self.pairs:
            raise ValueError(f"'pairs' only applies to fabric kind 'nvlink-pairs', not {self.kind!r}")
        return self


class Nics(_Strict):
    """Scale-out network interfaces of one node (RDMA: InfiniBand or RoCE)."""

    count: int = Field(ge=1)
    bandwidth_gbit_per_s: float = Field(gt=0, description="line rate of one NIC")
    latency_us: float = Field(default=5.0, ge=0)


class NodeType(_Strict):
    gpu: str = Field(description="GPU name from `plan-search catalog gpus`")
    gpus_per_node: int = Field(ge=1, le=1024)
    fabric: Fabric
    nics: Nics | None = None
    price_per_gpu_hour: float | None = Field(default=None, ge=0)


class Node(_Strict):
    name: str = Field(min_length=1)
    type: str
    rack: str = "rack0"
    unavailable: bool = Field(default=False, description="the whole node is busy or down")
    unavailable_gpus: list[int] = Field(default_factory=list)


class NodeGroup(_Strict):
    """Shorthand for ``count`` identical nodes named ``{prefix}{i}``."""

    prefix: str = Field(min_length=1)
    count: int = Field(ge=1, le=100_000)
    type: str
    rack: str | None = None
    nodes_per_rack: int | None = Field(default=None, ge=1)


class NvlinkDomain(_Strict):
    """An NVLink domain that spans several nodes (GB200 NVL72: 18 trays x 4 GPUs)."""

    name: str = Field(min_length=1)
    nodes: list[str] = Field(min_length=1)
    bandwidth_gbyte_per_s: float = Field(gt=0, description="per GPU, per direction")
    latency_us: float = Field(default=1.5, ge=0)


class Network(_Strict):
    """The scale-out network between nodes.

    ``single-switch``: all nodes on one non-blocking switch. ``leaf-spine``: one leaf per
    rack, spines between racks; traffic between racks shares the uplinks, so its
    bandwidth is divided by ``oversubscription``. ``none``: a single node, no network.
    """

    kind: Literal["single-switch", "leaf-spine", "none"] = "single-switch"
    oversubscription: float = Field(default=1.0, ge=1.0)
    switch_latency_us: float = Field(default=1.0, ge=0)


class TopologySpec(_Strict):
    name: str = Field(min_length=1)
    description: str = ""
    node_types: dict[str, NodeType] = Field(min_length=1)
    nodes: list[Node] = Field(default_factory=list)
    node_groups: list[NodeGroup] = Field(default_factory=list)
    nvlink_domains: list[NvlinkDomain] = Field(default_factory=list)
    network: Network = Network()

    def all_nodes(self) -> list[Node]:
        """Nodes listed one by one, then the expansion of every node group, in file order."""
        out = list(self.nodes)
        for g in self.node_groups:
            for i in range(g.count):
                if g.nodes_per_rack:
                    rack = f"{g.rack or g.prefix + 'rack'}{i // g.nodes_per_rack}"
                else:
                    rack = g.rack or "rack0"
                out.append(Node(name=f"{g.prefix}{i}", type=g.type, rack=rack))
        return out

    @model_validator(mode="after")
    def _cross_references(self) -> TopologySpec:
        nodes = self.all_nodes()
        if not nodes:
            raise ValueError("no nodes: give 'nodes' or 'node_groups'")
        seen: set[str] = set()
        for i, n in enumerate(nodes):
            if n.name in seen:
                raise ValueError(f"nodes[{i}].name: duplicate node name {n.name!r}")
            seen.add(n.name)
            if n.type not in self.node_types:
                known = ", ".join(sorted(self.node_types))
                raise ValueError(f"nodes[{i}].type: unknown node type {n.type!r} (declared: {known})")
            count = self.node_types[n.type].gpus_per_node
            for g in n.unavailable_gpus:
                if not 0 <= g < count:
                    raise ValueError(
                        f"nodes[{i}].unavailable_gpus: GPU index {g} out of range 0..{count - 1}")
        for name, nt in self.node_types.items():
            for a, b in nt.fabric.pairs:
                for g in (a, b):
                    if not 0 <= g < nt.gpus_per_node:
                        raise ValueError(f"node_types.{name}.fabric.pairs: GPU index {g} out of "
                                         f"range 0..{nt.gpus_per_node - 1}")
        in_domain: dict[str, str] = {}
        for j, d in enumerate(self.nvlink_domains):
            for n in d.nodes:
                if n not in seen:
                    raise ValueError(f"nvlink_domains[{j}].nodes: unknown node {n!r}")
                if n in in_domain:
                    raise ValueError(f"nvlink_domains[{j}].nodes: node {n!r} is already in "
                                     f"domain {in_domain[n]!r}")
                in_domain[n] = d.name
        by_name = {n.name: n for n in nodes}
        for n, dom in in_domain.items():
            if self.node_types[by_name[n].type].fabric.kind != "nvlink-domain":
                raise ValueError(f"nvlink_domains: node {n!r} is in domain {dom!r} but its node "
                                 f"type's fabric kind is not 'nvlink-domain'")
        for n in nodes:
            if self.node_types[n.type].fabric.kind == "nvlink-domain" and n.name not in in_domain:
                raise ValueError(f"nodes: node {n.name!r} has fabric kind 'nvlink-domain' but is "
                                 f"in no entry of 'nvlink_domains'")
        if len(nodes) > 1 and self.network.kind != "none":
            for n in nodes:
                if self.node_types[n.type].nics is None and n.name not in in_domain:
                    raise ValueError(f"node_types.{n.type}.nics: node {n.name!r} has no NICs, so "
                                     f"it cannot reach the other nodes; add 'nics'")
        if len(nodes) > 1 and self.network.kind == "none":
            domains = {in_domain.get(n.name, n.name) for n in nodes}
            if len(domains) > 1:
                raise ValueError("network.kind: 'none' but the topology has several nodes that "
                                 "share no NVLink domain; use 'single-switch' or 'leaf-spine'")
        return self
