"""The topology file format.

Keys carry human units (``_gbyte_per_s``, ``_gbit_per_s``, ``_us``); they are converted
to SI once, in :mod:`topologies.graph`. Every model forbids unknown keys so that a typo
in a file fails loudly instead of being ignored.

Bandwidths are *per direction*. Datasheets usually quote NVLink as an aggregate of both
directions (H100 SXM: "900 GB/s" = 450 GB/s each way); files use the per-direction figure.
"""
from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

# -- names ---------------------------------------------------------------------------------------
#
# Names reach shell scripts, Kubernetes manifests, file names and graph vertex ids, so they are
# checked where they enter. A *label* (topology, node, rack, node type, NVLink domain) is a
# DNS-1123 label widened by '.' and '_': 1 to 63 characters from a-z, 0-9, '-', '.', '_',
# starting and ending with a letter or digit. None of these characters means anything to a
# shell, YAML or a path, and '/' and ':' (which graph vertex ids use) are never in a name.

NAME_MAX_CHARS = 63
LABEL = re.compile(r"[a-z0-9](?:[a-z0-9._-]{0,61}[a-z0-9])?")
#: A node group's prefix (or rack prefix): a label that may end in '-', '.' or '_' since a number follows.
PREFIX = re.compile(r"[a-z0-9][a-z0-9._-]{0,56}")
#: GPU names as files give them (catalog names and aliases): letters of either case, digits, '.', '_', '-'.
GPU_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")

#: Sizes the planner serves within 24 GiB of memory (16,368 GPUs plan in ~11 s; graph and
#: candidate tables grow linearly, so 4x that stays well inside): beyond them a file is refused
#: before the graph is built.
MAX_TOTAL_GPUS = 65_536
MAX_TOTAL_NODES = 16_384
#: One node (or NVLink tray) holds at most an NVL72 domain's worth of GPUs.
MAX_GPUS_PER_NODE = 72
MAX_NICS_PER_NODE = 64

# Physical bounds on links. The fastest link today is NVLink 5 at 900 GB/s per direction and
# the slowest anything plans over is a 1 Gb/s Ethernet port; the bounds leave two orders of
# magnitude either side, and keep every time the cost model derives finite and non-zero.
MIN_GBYTE_PER_S = 0.0125  # 0.1 Gb/s
MAX_GBYTE_PER_S = 100_000.0  # 100 TB/s
MIN_GBIT_PER_S = MIN_GBYTE_PER_S * 8
MAX_GBIT_PER_S = MAX_GBYTE_PER_S * 8
MIN_LATENCY_US = 0.01  # 10 ns: less than one switch hop
MAX_LATENCY_US = 1e6  # 1 s: more than any network round trip
MAX_PRICE_PER_GPU_HOUR = 1e6  # US dollars: far above any rental price; keeps the costs of 100,000s of GPUs finite


def _check_name(pattern: re.Pattern, what: str, rule: str) -> AfterValidator:
    def check(v: str) -> str:
        if not pattern.fullmatch(v):
            raise PydanticCustomError("bad_name", "{value} is not a valid {what}: {rule}",
                                      {"value": repr(v)[:80], "what": what, "rule": rule})
        return v
    return AfterValidator(check)


_LABEL_RULE = ("use 1 to 63 characters from a-z, 0-9, '-', '.', '_', starting and ending with a letter or "
               "digit")
Label = Annotated[str, _check_name(LABEL, "name", _LABEL_RULE)]
Prefix = Annotated[str, _check_name(PREFIX, "prefix", "use 1 to 57 characters from a-z, 0-9, '-', '.', '_', "
                                                      "starting with a letter or digit")]
GpuName = Annotated[str, _check_name(GPU_NAME, "GPU name", "use 1 to 63 characters from A-Z, a-z, 0-9, '-', "
                                                           "'.', '_', starting with a letter or digit")]


def _no_controls(v: str) -> str:
    if any(not (c.isprintable() or c in "\n\t") for c in v):
        raise PydanticCustomError("control_character", "holds a control character (a terminal escape?); "
                                                       "remove it", {})
    return v


Text = Annotated[str, AfterValidator(_no_controls)]
GbytePerS = Annotated[float, Field(ge=MIN_GBYTE_PER_S, le=MAX_GBYTE_PER_S)]
LatencyUs = Annotated[float, Field(ge=MIN_LATENCY_US, le=MAX_LATENCY_US)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_bools_for_numbers(cls, data):
        # pydantic's lax mode reads `true` as 1; in a topology file that is always a typo, in a list of
        # numbers too (`unavailable_gpus: [true]` was GPU 1, `pairs: [[false, true]]` GPUs 0 and 1).
        if isinstance(data, dict):
            for name, info in cls.model_fields.items():
                v = data.get(name)
                if isinstance(v, bool) and info.annotation is not bool:
                    raise ValueError(f"{name}: expected a number, got {str(v).lower()}")
                if isinstance(v, list) and _holds_bool(v):
                    raise ValueError(f"{name}: a true or false in the list; write the numbers or names it holds")
        return data


def _holds_bool(items: list, depth: int = 2) -> bool:
    """Whether a list, or a list inside it (``depth`` levels: the schema's lists of numbers and of
    pairs), holds a boolean. Deeper nesting is no field's type, and walking it would let an alias
    bomb's shared lists expand before the schema refuses them."""
    return any(isinstance(x, bool) or (depth > 1 and isinstance(x, list) and _holds_bool(x, depth - 1))
               for x in items)


class Fabric(_Strict):
    """The fabric that joins the GPUs inside one node.

    ``nvswitch``: every GPU reaches every other at ``nvlink_bandwidth_gbyte_per_s``.
    ``nvlink-pairs``: GPUs joined by NVLink bridges in ``pairs``; other pairs talk over PCIe.
    ``pcie``: GPUs talk over the PCIe host fabric only.
    ``nvlink-domain``: the node's GPUs belong to a multi-node NVLink domain declared in
    the file's ``nvlink_domains`` (GB200 NVL72 trays).
    """

    kind: Literal["nvswitch", "nvlink-pairs", "pcie", "nvlink-domain"]
    nvlink_bandwidth_gbyte_per_s: GbytePerS | None = None
    nvlink_latency_us: LatencyUs = 1.0
    pairs: list[tuple[int, int]] = Field(default_factory=list, max_length=MAX_GPUS_PER_NODE)
    pcie_bandwidth_gbyte_per_s: GbytePerS = 25.0
    pcie_latency_us: LatencyUs = 2.0

    @model_validator(mode="after")
    def _needs_nvlink_figures(self) -> Fabric:
        if self.kind in ("nvswitch", "nvlink-pairs") and self.nvlink_bandwidth_gbyte_per_s is None:
            raise ValueError(f"fabric kind {self.kind!r} needs nvlink_bandwidth_gbyte_per_s")
        if self.kind == "nvlink-pairs" and not self.pairs:
            raise ValueError("fabric kind 'nvlink-pairs' needs a list of GPU index pairs in 'pairs'")
        if self.kind != "nvlink-pairs" and self.pairs:
            raise ValueError(f"'pairs' only applies to fabric kind 'nvlink-pairs', not {self.kind!r}")
        used: set[int] = set()
        for a, b in self.pairs:  # an NVLink bridge joins two distinct GPUs, each in one bridge
            for g in (a, b):
                if g in used or a == b:
                    raise ValueError(f"pairs: GPU {g} is in two pairs (or paired with itself); NVLink bridges "
                                     f"join disjoint pairs of GPUs")
                used.add(g)
        return self


class Nics(_Strict):
    """Scale-out network interfaces of one node (RDMA: InfiniBand or RoCE)."""

    count: int = Field(ge=1, le=MAX_NICS_PER_NODE)
    bandwidth_gbit_per_s: float = Field(ge=MIN_GBIT_PER_S, le=MAX_GBIT_PER_S, description="line rate of one NIC")
    latency_us: LatencyUs = 5.0


class NodeType(_Strict):
    gpu: GpuName = Field(description="GPU name from `plan-search catalog gpus`")
    gpus_per_node: int = Field(ge=1, le=MAX_GPUS_PER_NODE)
    fabric: Fabric
    nics: Nics | None = None
    price_per_gpu_hour: float | None = Field(default=None, ge=0, le=MAX_PRICE_PER_GPU_HOUR)


class Node(_Strict):
    name: Label
    type: Label
    rack: Label = "rack0"
    unavailable: bool = Field(default=False, description="the whole node is busy or down")
    unavailable_gpus: list[int] = Field(default_factory=list, max_length=MAX_GPUS_PER_NODE)


class NodeGroup(_Strict):
    """Shorthand for ``count`` identical nodes named ``{prefix}{i}``.

    With ``nodes_per_rack``, ``rack`` is a prefix too: racks ``{rack}{i // nodes_per_rack}``.
    """

    prefix: Prefix
    count: int = Field(ge=1, le=MAX_TOTAL_NODES)
    type: Label
    rack: Prefix | None = None
    nodes_per_rack: int | None = Field(default=None, ge=1, le=MAX_TOTAL_NODES)

    @model_validator(mode="after")
    def _expanded_names_are_labels(self) -> NodeGroup:
        last = f"{self.prefix}{self.count - 1}"
        if not LABEL.fullmatch(last):
            raise ValueError(f"prefix: the last node's name {last!r} is not a valid name: {_LABEL_RULE}")
        if self.nodes_per_rack:
            rack = f"{self.rack or self.prefix + 'rack'}{(self.count - 1) // self.nodes_per_rack}"
        else:
            rack = self.rack or "rack0"
        if not LABEL.fullmatch(rack):
            raise ValueError(f"rack: the rack name {rack!r} is not a valid name: {_LABEL_RULE}")
        return self


class NvlinkDomain(_Strict):
    """An NVLink domain that spans several nodes (GB200 NVL72: 18 trays x 4 GPUs)."""

    name: Label
    nodes: list[Label] = Field(min_length=1, max_length=MAX_TOTAL_NODES)
    bandwidth_gbyte_per_s: GbytePerS = Field(description="per GPU, per direction")
    latency_us: LatencyUs = 1.5


class Network(_Strict):
    """The scale-out network between nodes.

    ``single-switch``: all nodes on one non-blocking switch. ``leaf-spine``: one leaf per
    rack, spines between racks; traffic between racks shares the uplinks, so its
    bandwidth is divided by ``oversubscription``. ``none``: a single node, no network.
    """

    kind: Literal["single-switch", "leaf-spine", "none"] = "single-switch"
    oversubscription: float = Field(default=1.0, ge=1.0, le=1000.0)
    switch_latency_us: LatencyUs = 1.0


# -- user-defined GPU types ----------------------------------------------------------------------
# A GPU the catalog lacks is described with the catalog's own columns (costmodels/data/gpus.csv).
# Numbers are strict: a string ("12"), a bool, NaN or infinity is refused, never converted. The bounds
# are far past any GPU made (B200: 2,250 dense BF16 TFLOPS, 180 GB, 8 TB/s) and keep every derived time
# finite and non-zero.

MAX_TFLOPS = 1e6  # 1 EFLOP/s from one GPU
MAX_MEMORY_GIB = 65_536.0  # 64 TiB
MAX_MEMORY_TBYTE_PER_S = 1_000.0


def _figure(high: float, **kw):
    return Annotated[float, Field(strict=True, gt=0, le=high, **kw)]


class GpuTypeSpec(_Strict):
    """One user-defined GPU: the figures of a catalog row, per GPU, dense (no 2:4 sparsity)."""

    bf16_dense_tflops: _figure(MAX_TFLOPS, description="16-bit tensor rate the runtime computes at")
    fp8_dense_tflops: _figure(MAX_TFLOPS) | None = None
    fp4_dense_tflops: _figure(MAX_TFLOPS) | None = None
    int8_dense_tops: _figure(MAX_TFLOPS) | None = None
    memory_gib: _figure(MAX_MEMORY_GIB, description="memory as the datasheet gives it")
    memory_mib_driver: _figure(MAX_MEMORY_GIB * 1024) | None = Field(
        default=None, description="memory as nvidia-smi reports it; used instead of memory_gib when given")
    hbm_bandwidth_tbyte_per_s: _figure(MAX_MEMORY_TBYTE_PER_S)
    nvlink_gbyte_per_s_per_direction: Annotated[float, Field(strict=True, ge=MIN_GBYTE_PER_S,
                                                             le=MAX_GBYTE_PER_S)] | None = None
    nvlink_domain_gpus: Annotated[int, Field(strict=True, ge=1, le=MAX_TOTAL_GPUS)] = 1
    nic_gbit_per_s: Annotated[float, Field(strict=True, ge=MIN_GBIT_PER_S, le=MAX_GBIT_PER_S)] | None = None
    pcie_gen: Annotated[int, Field(strict=True, ge=1, le=7)] | None = None
    source: Text = Field(default="", max_length=4000, description="where the figures come from")

    @model_validator(mode="after")
    def _nvlink_needs_a_domain(self) -> GpuTypeSpec:
        if self.nvlink_gbyte_per_s_per_direction is not None and self.nvlink_domain_gpus < 2:
            raise ValueError("nvlink_domain_gpus: an NVLink figure is given, so NVLink joins at least 2 GPUs; give "
                             "how many one NVLink domain holds (2 for bridged pairs, 8 for an HGX baseboard)")
        return self


GpuTypes = Annotated[dict[GpuName, GpuTypeSpec], Field(max_length=64)]


class GpuSpecFile(_Strict):
    """A file of user-defined GPUs: ``gpu_types:`` mapping each name to its figures."""

    gpu_types: GpuTypes = Field(min_length=1)


class TopologySpec(_Strict):
    name: Label
    description: Text = Field(default="", max_length=100_000)
    node_types: dict[Label, NodeType] = Field(min_length=1, max_length=64)
    nodes: list[Node] = Field(default_factory=list, max_length=MAX_TOTAL_NODES)
    node_groups: list[NodeGroup] = Field(default_factory=list, max_length=MAX_TOTAL_NODES)
    nvlink_domains: list[NvlinkDomain] = Field(default_factory=list, max_length=MAX_TOTAL_NODES)
    network: Network = Network()
    #: GPUs the catalog lacks, defined here (name -> figures), and/or a file of them (``gpu_spec``, a path
    #: relative to this file, whose ``gpu_types`` the loader merges in). A name may not be a catalog GPU's.
    gpu_types: GpuTypes = Field(default_factory=dict)
    gpu_spec: Text | None = Field(default=None, min_length=1, max_length=4096)

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
    def _within_size_limits(self) -> TopologySpec:
        """Refuse, before any node is expanded, a cluster larger than the planner serves."""
        where = "node_groups" if self.node_groups else "nodes"
        n_nodes = len(self.nodes) + sum(g.count for g in self.node_groups)
        if n_nodes > MAX_TOTAL_NODES:
            raise ValueError(f"{where}: {n_nodes:,} nodes; plan-search plans at most {MAX_TOTAL_NODES:,} nodes "
                             f"(and {MAX_TOTAL_GPUS:,} GPUs) in one topology")
        per_node = {k: t.gpus_per_node for k, t in self.node_types.items()}
        n_gpus = sum(per_node.get(n.type, 0) for n in self.nodes) + \
            sum(per_node.get(g.type, 0) * g.count for g in self.node_groups)
        if n_gpus > MAX_TOTAL_GPUS:
            raise ValueError(f"{where}: {n_gpus:,} GPUs; plan-search plans at most {MAX_TOTAL_GPUS:,} GPUs in one "
                             f"topology")
        return self

    def node_fields(self) -> list[str]:
        """Where each node of :meth:`all_nodes` comes from in the file, for messages:
        ``nodes[3]``, or ``node_groups[1] (node 'gpu12')`` for a node a group expands to."""
        out = [f"nodes[{i}]" for i in range(len(self.nodes))]
        for j, g in enumerate(self.node_groups):
            out += [f"node_groups[{j}] (node '{g.prefix}{i}')" for i in range(g.count)]
        return out

    @staticmethod
    def _field(where: str, attr: str) -> str:
        """``nodes[3].type``, or ``node_groups[1].type (node 'gpu12')``: the key the message is about.
        A group's node name is made from its ``prefix``."""
        if where.startswith("nodes["):
            return f"{where}.{attr}"
        group, _, node = where.partition(" ")
        return f"{group}.{'prefix' if attr == 'name' else attr} {node}"

    @model_validator(mode="after")
    def _cross_references(self) -> TopologySpec:
        nodes = self.all_nodes()
        if not nodes:
            raise ValueError("no nodes: give 'nodes' or 'node_groups'")
        wheres = self.node_fields()
        seen: dict[str, str] = {}
        for where, n in zip(wheres, nodes, strict=True):
            if n.name in seen:
                raise ValueError(f"{self._field(where, 'name')}: duplicate node name {n.name!r} (also "
                                 f"{seen[n.name].partition(' ')[0]})")
            seen[n.name] = where
            if n.type not in self.node_types:
                known = ", ".join(sorted(self.node_types))
                raise ValueError(f"{self._field(where, 'type')}: unknown node type {n.type!r} (declared: {known})")
            count = self.node_types[n.type].gpus_per_node
            for g in n.unavailable_gpus:
                if not 0 <= g < count:
                    raise ValueError(
                        f"{self._field(where, 'unavailable_gpus')}: GPU index {g} out of range 0..{count - 1}")
        for name, nt in self.node_types.items():
            for a, b in nt.fabric.pairs:
                for g in (a, b):
                    if not 0 <= g < nt.gpus_per_node:
                        raise ValueError(f"node_types.{name}.fabric.pairs: GPU index {g} out of "
                                         f"range 0..{nt.gpus_per_node - 1}")
        in_domain: dict[str, str] = {}
        domain_names: set[str] = set()
        for j, d in enumerate(self.nvlink_domains):
            # Domain and node names share one namespace: a node outside any domain is its own
            # scale-up domain, named after the node.
            if d.name in domain_names or d.name in seen:
                other = "another domain" if d.name in domain_names else "a node"
                raise ValueError(f"nvlink_domains[{j}].name: {d.name!r} is also the name of {other}; domain "
                                 f"names must differ from each other and from node names")
            domain_names.add(d.name)
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
        for where, n in zip(wheres, nodes, strict=True):
            if self.node_types[n.type].fabric.kind == "nvlink-domain" and n.name not in in_domain:
                raise ValueError(f"{where.partition(' ')[0]}: node {n.name!r} has fabric kind 'nvlink-domain' "
                                 f"but is in no entry of 'nvlink_domains'")
        if len(nodes) > 1 and self.network.kind != "none":
            for where, n in zip(wheres, nodes, strict=True):
                if self.node_types[n.type].nics is None and n.name not in in_domain:
                    raise ValueError(f"node_types.{n.type}.nics: node {n.name!r} ({where.partition(' ')[0]}) has "
                                     f"no NICs, so it cannot reach the other nodes; add 'nics'")
        if len(nodes) > 1 and self.network.kind == "none":
            domains = {in_domain.get(n.name, n.name) for n in nodes}
            if len(domains) > 1:
                raise ValueError("network.kind: 'none' but the topology has several nodes that "
                                 "share no NVLink domain; use 'single-switch' or 'leaf-spine'")
        return self
