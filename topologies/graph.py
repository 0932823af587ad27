"""Cluster topology as a networkx graph, and the queries the cost models ask of it.

Vertices are GPUs (``"node0/gpu3"``) and the switches between them: per-node NVSwitch
(``"node0/nvswitch"``), PCIe host fabric (``"node0/pcie"``), NICs (``"node0/nic1"``),
a multi-node NVLink switch (``"net:nvlink/<domain>"``), rack leaves (``"net:leaf/<rack>"``),
the spine (``"net:spine"``) or the single switch (``"net:switch"``). Names in a topology
file never hold ``/`` or ``:`` (:mod:`topologies.schema`), so no user name can collide with
these vertices: a node called ``leaf`` or ``spine`` is just a node. Every edge carries SI
attributes:

``bandwidth_bytes_per_s``
    per direction.
``latency_s``
    one traversal of the edge; a path's latency is the sum of its edges.
``kind``
    ``nvlink``, ``pcie``, ``nic`` or ``network``.

GPU vertices carry ``node``, ``index``, ``gpu`` (catalog name), ``rack``, ``available``,
``domain`` (the scale-up domain: the set of GPUs a tensor-parallel group may span without
crossing the scale-out network) and ``nvlink_domain`` (``None`` on PCIe-only GPUs).

The scale-up domain is the NVLink domain where NVLink joins all the node's GPUs
(NVSwitch, or a multi-node NVLink domain such as GB200 NVL72). On nodes whose GPUs are
joined by PCIe (with or without NVLink bridges between pairs) it is the node: runtimes
run tensor parallelism over PCIe there (vLLM and TensorRT-LLM on L40S), and the cost
model prices it at the slowest link in the group.
"""
from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from topologies.errors import TopologyError
from topologies.schema import Node, NodeType, NvlinkDomain, TopologySpec

if TYPE_CHECKING:
    import networkx as nx

GBYTE = 1e9
GBIT = 1e9 / 8
US = 1e-6


@dataclass(frozen=True)
class Link:
    """The effective link between two GPUs or inside a group."""

    bandwidth_bytes_per_s: float
    latency_s: float
    kind: str  # the kind of the bottleneck edge: nvlink, pcie, nic, network, local

    def transfer_s(self, payload_bytes: float) -> float:
        """Time to move ``payload_bytes`` one way over this link (latency + size/bandwidth)."""
        return self.latency_s + payload_bytes / self.bandwidth_bytes_per_s


LOCAL = Link(bandwidth_bytes_per_s=float("inf"), latency_s=0.0, kind="local")


def gpu_id(node: str, index: int) -> str:
    return f"{node}/gpu{index}"


#: The shared network vertices, in a namespace (``net:``) no topology name can enter.
SPINE = "net:spine"
SWITCH = "net:switch"


def leaf_id(rack: str) -> str:
    """The leaf switch vertex of a rack (leaf-spine networks)."""
    return f"net:leaf/{rack}"


def nvlink_switch_id(domain: str) -> str:
    """The NVLink switch vertex of a multi-node NVLink domain."""
    return f"net:nvlink/{domain}"


def build_graph(spec: TopologySpec) -> nx.Graph:
    """Build the cluster graph from a validated :class:`TopologySpec` (pure; no I/O)."""
    import networkx as nx  # imported where a graph is built: --help and catalog never load it

    g = nx.Graph(name=spec.name)
    nodes = spec.all_nodes()
    domain_of_node = {n: d.name for d in spec.nvlink_domains for n in d.nodes}
    domains = {d.name: d for d in spec.nvlink_domains}
    for d in spec.nvlink_domains:
        g.add_node(nvlink_switch_id(d.name), kind="nvswitch")
    multi_node = len(nodes) > 1 and spec.network.kind != "none"
    racks = sorted({n.rack for n in nodes})
    if multi_node:
        if spec.network.kind == "leaf-spine":
            g.add_node(SPINE, kind="switch")
            for r in racks:
                g.add_node(leaf_id(r), kind="switch", rack=r)
        else:
            g.add_node(SWITCH, kind="switch")
    rack_nic_bytes_per_s: dict[str, float] = {r: 0.0 for r in racks}

    for node in nodes:
        nt = spec.node_types[node.type]
        _add_gpus(g, node, nt, domain_of_node)
        _add_scale_up(g, node, nt, domains, domain_of_node)
        if multi_node and nt.nics is not None:
            uplink = leaf_id(node.rack) if spec.network.kind == "leaf-spine" else SWITCH
            rack_nic_bytes_per_s[node.rack] += _add_nics(g, node, nt, uplink, spec.network.switch_latency_us)
    if multi_node and spec.network.kind == "leaf-spine":
        for r in racks:
            g.add_edge(leaf_id(r), SPINE, kind="network",
                       bandwidth_bytes_per_s=rack_nic_bytes_per_s[r] / spec.network.oversubscription,
                       latency_s=spec.network.switch_latency_us * US)
    validate_graph(g)
    return g


def _add_gpus(g: nx.Graph, node: Node, nt: NodeType, domain_of_node: dict[str, str]) -> None:
    """A node's GPUs and the PCIe switch they hang off, each GPU tagged with its scale-up domain
    and the NVLink domain it shares (none for PCIe-only GPUs)."""
    fab = nt.fabric
    busy = set(node.unavailable_gpus)
    pcie = f"{node.name}/pcie"
    g.add_node(pcie, kind="pcie", node=node.name)
    pairs = {i: k for k, pair in enumerate(fab.pairs) for i in pair}
    for i in range(nt.gpus_per_node):
        if fab.kind == "nvswitch":
            nvd: str | None = node.name
        elif fab.kind == "nvlink-domain":
            nvd = domain_of_node[node.name]
        elif fab.kind == "nvlink-pairs":
            nvd = f"{node.name}/pair{pairs[i]}" if i in pairs else None
        else:
            nvd = None
        scale_up = domain_of_node.get(node.name, node.name)
        g.add_node(gpu_id(node.name, i), kind="gpu", node=node.name, index=i, gpu=nt.gpu,
                   rack=node.rack, available=not node.unavailable and i not in busy,
                   domain=scale_up, nvlink_domain=nvd)
        g.add_edge(gpu_id(node.name, i), pcie, kind="pcie",
                   bandwidth_bytes_per_s=fab.pcie_bandwidth_gbyte_per_s * GBYTE,
                   latency_s=fab.pcie_latency_us * US / 2)


def _add_scale_up(g: nx.Graph, node: Node, nt: NodeType, domains: dict[str, NvlinkDomain], domain_of_node: dict[str, str]) -> None:
    """A node's NVLink: its NVSwitch, its bridged pairs, or its links into a multi-node domain."""
    fab = nt.fabric
    if fab.kind == "nvswitch":
        sw = f"{node.name}/nvswitch"
        g.add_node(sw, kind="nvswitch", node=node.name)
        for i in range(nt.gpus_per_node):
            g.add_edge(gpu_id(node.name, i), sw, kind="nvlink",
                       bandwidth_bytes_per_s=fab.nvlink_bandwidth_gbyte_per_s * GBYTE,
                       latency_s=fab.nvlink_latency_us * US / 2)
    elif fab.kind == "nvlink-pairs":
        for a, b in fab.pairs:
            g.add_edge(gpu_id(node.name, a), gpu_id(node.name, b), kind="nvlink",
                       bandwidth_bytes_per_s=fab.nvlink_bandwidth_gbyte_per_s * GBYTE,
                       latency_s=fab.nvlink_latency_us * US)
    elif fab.kind == "nvlink-domain":
        d = domains[domain_of_node[node.name]]
        for i in range(nt.gpus_per_node):
            g.add_edge(gpu_id(node.name, i), nvlink_switch_id(d.name), kind="nvlink",
                       bandwidth_bytes_per_s=d.bandwidth_gbyte_per_s * GBYTE,
                       latency_s=d.latency_us * US / 2)


def _add_nics(g: nx.Graph, node: Node, nt: NodeType, uplink: str, switch_latency_us: float) -> float:
    """A node's NICs, each shared by the GPUs nearest it, up to ``uplink``; their bandwidth in all."""
    fab, nics = nt.fabric, nt.nics
    assert nics is not None  # the caller adds NICs only to node types that have them
    nic_bytes_per_s = nics.bandwidth_gbit_per_s * GBIT
    for j in range(nics.count):
        nic = f"{node.name}/nic{j}"
        sharing = [i for i in range(nt.gpus_per_node)
                   if i * nics.count // nt.gpus_per_node == j]
        g.add_node(nic, kind="nic", node=node.name, gpus=len(sharing) or 1)
        # GPUDirect RDMA: each GPU reaches its nearest NIC through the PCIe switch.
        for i in sharing:
            g.add_edge(gpu_id(node.name, i), nic, kind="pcie",
                       bandwidth_bytes_per_s=fab.pcie_bandwidth_gbyte_per_s * GBYTE,
                       latency_s=fab.pcie_latency_us * US / 2)
        g.add_edge(nic, uplink, kind="nic", bandwidth_bytes_per_s=nic_bytes_per_s,
                   latency_s=nics.latency_us * US / 2 + switch_latency_us * US / 2)
    return nics.count * nic_bytes_per_s


def validate_graph(g: nx.Graph) -> None:
    """Check the invariants the queries rely on; raise :class:`TopologyError` if broken."""
    for u, v, d in g.edges(data=True):
        if not d.get("bandwidth_bytes_per_s", 0) > 0 or d.get("latency_s", -1) < 0:
            raise TopologyError(f"edge {u} -- {v} has no positive bandwidth", field="graph")
    gpus = [n for n, k in g.nodes(data="kind") if k == "gpu"]
    if not gpus:
        raise TopologyError("the topology has no GPUs", field="nodes")
    import networkx as nx

    comp = nx.node_connected_component(g, gpus[0])
    lost = [n for n in gpus if n not in comp]
    if lost:
        raise TopologyError(f"GPU {lost[0]} cannot reach GPU {gpus[0]}: give its node NICs or "
                            f"put both in one NVLink domain", field="nodes")


def _edge_weight(weight: str | Callable) -> Callable:
    if callable(weight):
        return weight
    return lambda u, v, d: d[weight]


class Topology:
    """A validated topology and its graph, with the queries the planner needs.

    >>> from topologies.schema import Node, NodeType, NvlinkDomain, TopologySpec
    >>> spec = TopologySpec.model_validate({"name": "t", "node_types": {"n": {
    ...     "gpu": "H100-SXM-80GB", "gpus_per_node": 2,
    ...     "fabric": {"kind": "nvswitch", "nvlink_bandwidth_gbyte_per_s": 450}}},
    ...     "nodes": [{"name": "a", "type": "n"}], "network": {"kind": "none"}})
    >>> t = Topology(spec)
    >>> t.link("a/gpu0", "a/gpu1").bandwidth_bytes_per_s
    450000000000.0
    """

    def __init__(self, spec: TopologySpec, content_sha256: str = "", *, source: str | None = None):
        self.spec = spec
        self.content_sha256 = content_sha256
        self.source = source or spec.name  # the file (or built-in name) errors should point at
        self.graph = build_graph(spec)
        self._link_cache: dict[tuple, Link] = {}
        self._node_type = {n.name: n.type for n in spec.all_nodes()}

    @property
    def name(self) -> str:
        return self.spec.name

    def node_type_of(self, node: str) -> str:
        return self._node_type[node]

    @cached_property
    def _gpus(self) -> list[str]:
        nodes = {n.name: k for k, n in enumerate(self.spec.all_nodes())}
        ids = [n for n, k in self.graph.nodes(data="kind") if k == "gpu"]
        return sorted(ids, key=lambda x: (nodes[self.graph.nodes[x]["node"]], self.graph.nodes[x]["index"]))

    def gpus(self, *, available_only: bool = False) -> list[str]:
        """GPU vertex ids in file order (node order, then index)."""
        if available_only:
            return [x for x in self._gpus if self.graph.nodes[x]["available"]]
        return list(self._gpus)

    def gpu(self, gid: str) -> dict:
        """The attributes of one GPU vertex."""
        if gid not in self.graph or self.graph.nodes[gid].get("kind") != "gpu":
            raise TopologyError(f"no GPU {gid!r} in topology {self.name!r}", field="gpu")
        return self.graph.nodes[gid]

    def domain_of(self, gid: str) -> str:
        """The scale-up domain a tensor-parallel group containing ``gid`` may span."""
        return self.gpu(gid)["domain"]

    def nvlink_domain_of(self, gid: str) -> str | None:
        """The NVLink domain of ``gid`` (``None`` for a GPU with no NVLink)."""
        return self.gpu(gid)["nvlink_domain"]

    @cached_property
    def domains(self) -> dict[str, list[str]]:
        """Scale-up domain name -> its GPUs (all, busy included), in file order."""
        out: dict[str, list[str]] = {}
        for x in self._gpus:
            out.setdefault(self.graph.nodes[x]["domain"], []).append(x)
        return out

    def link(self, u: str, v: str) -> Link:
        """The widest path between two GPUs (ties: lowest latency).

        The bandwidth is the path's bottleneck edge, per direction; the latency the sum of
        the path's edge latencies.
        """
        if u == v:
            return LOCAL
        key = self._signature(u, v)
        hit = self._link_cache.get(key)
        if hit is None:
            hit = self._widest_path(*sorted((u, v)))
            self._link_cache[key] = hit
        return hit

    def _signature(self, u: str, v: str) -> tuple:
        """Pairs with equal signatures have equal widest paths, by how :func:`build_graph` builds.

        Within a node the path depends on the node type and the two indices; between nodes
        on the node types, the indices (which NIC), whether the nodes share an NVLink
        domain, and the two racks (uplinks). Caching by signature keeps queries on
        clusters of thousands of GPUs to a handful of graph searches.
        """
        a, b = self.graph.nodes[u], self.graph.nodes[v]
        if (a["node"], a["index"]) > (b["node"], b["index"]):
            a, b = b, a
        ta, tb = self._node_type[a["node"]], self._node_type[b["node"]]
        if a["node"] == b["node"]:
            return ("node", ta, a["index"], b["index"])
        if a["domain"] == b["domain"]:
            return ("domain", ta, tb)
        # Racks enter only through their leaf's uplink to the spine (build_graph gives every
        # leaf-spine edge the same latency and the rack's NIC total over the oversubscription as
        # bandwidth; a path between two racks crosses exactly their two uplinks).
        up = self._rack_uplinks
        racks = (up.get(a["rack"]), up.get(b["rack"])) if self.spec.network.kind == "leaf-spine" else ()
        return ("net", ta, a["index"], tb, b["index"], a["rack"] == b["rack"], racks)

    @cached_property
    def _rack_uplinks(self) -> dict[str, tuple[float, float]]:
        """(bandwidth, latency) of each rack's leaf-to-spine edge (leaf-spine networks)."""
        g = self.graph
        return {g.nodes[leaf]["rack"]: (d["bandwidth_bytes_per_s"], d["latency_s"])
                for _, leaf, d in g.edges(SPINE, data=True)} if SPINE in g else {}

    def _widest_path(self, s: str, t: str) -> Link:
        g = self.graph
        ends = (g.nodes[s]["node"], g.nodes[t]["node"])
        best: dict[str, tuple[float, float]] = {s: (float("inf"), 0.0)}
        kinds: dict[str, str] = {s: "local"}
        heap = [(-float("inf"), 0.0, s)]
        done: set[str] = set()
        while heap:
            nbw, lat, x = heapq.heappop(heap)
            if x in done:
                continue
            done.add(x)
            if x == t:
                return Link(bandwidth_bytes_per_s=-nbw, latency_s=lat, kind=kinds[x])
            for y, d in g[x].items():
                # Only switches and the two endpoints relay traffic; other GPUs do not. Another
                # node's NIC leads only to that node's GPUs, so it is a dead end: skipping it keeps
                # the search to the two nodes and the switches between them on big clusters.
                kind = g.nodes[y].get("kind")
                if y in done or (kind == "gpu" and y != t) or (kind == "nic" and g.nodes[y]["node"] not in ends):
                    continue
                bw = min(-nbw, d["bandwidth_bytes_per_s"])
                cand = (bw, lat + d["latency_s"])
                old = best.get(y)
                if old is None or cand[0] > old[0] or (cand[0] == old[0] and cand[1] < old[1]):
                    best[y] = cand
                    kinds[y] = d["kind"] if d["bandwidth_bytes_per_s"] <= -nbw else kinds[x]
                    heapq.heappush(heap, (-cand[0], cand[1], y))
        raise TopologyError(f"no path between {s} and {t}", field="graph")

    def path(self, u: str, v: str, weight: str | Callable = "latency_s") -> list[str]:
        """Shortest path by ``weight`` (an edge attribute name or a callable ``(u, v, d)``)."""
        import networkx as nx

        return nx.shortest_path(self.graph, u, v, weight=_edge_weight(weight))

    def slowest_link(self, group: Iterable[str]) -> Link:
        """The slowest link of a ring over ``group`` (in the given order), as a collective sees it.

        Each hop of the ring is the widest path between neighbours. Where several members
        of the group leave their node through the same NIC, or their rack through the same
        uplink, that edge's bandwidth is shared among them.
        """
        members = list(group)
        if len(members) < 2:
            return LOCAL
        return self._slowest_of_pairs(zip(members, members[1:] + members[:1], strict=True), members)

    def stage_link(self, a: list[str], b: list[str]) -> Link:
        """Per-GPU link of a pipeline send where rank i of group ``a`` sends to rank i of ``b``.

        All ranks send at once, so GPUs that leave their node through the same NIC (or their
        rack through the same uplink) share it. Returns the slowest rank pair's link.
        """
        return self._slowest_of_pairs(zip(a, b, strict=False), list(a) + list(b))

    def _slowest_of_pairs(self, pairs: Iterable[tuple[str, str]], members: list[str]) -> Link:
        """The slowest of the pairs' widest paths, scale-out edges shared by all ``members`` at once."""
        g = self.graph
        nic_of = {m: next((n for n in g[m] if g.nodes[n].get("kind") == "nic"), None) for m in members}
        per_nic: dict[str | None, int] = {}
        per_rack: dict[str, int] = {}
        for m in members:
            per_nic[nic_of[m]] = per_nic.get(nic_of[m], 0) + 1
            per_rack[g.nodes[m]["rack"]] = per_rack.get(g.nodes[m]["rack"], 0) + 1
        worst = None
        for x, y in pairs:
            lk = self.link(x, y)
            if lk.kind in ("nic", "network"):
                share = max(per_nic.get(nic_of[x], 1), per_nic.get(nic_of[y], 1))
                if lk.kind == "network" and len(per_rack) > 1:
                    share = max(share, max(per_rack.values()))
                lk = Link(bandwidth_bytes_per_s=lk.bandwidth_bytes_per_s / share, latency_s=lk.latency_s,
                          kind=lk.kind)
            if worst is None or (lk.bandwidth_bytes_per_s, -lk.latency_s) < (
                    worst.bandwidth_bytes_per_s, -worst.latency_s):
                worst = lk
        return worst or LOCAL
