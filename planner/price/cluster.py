"""The cluster as the pricer sees it: scale-up domains grouped into interchangeable classes.

Scale-up domains (an NVSwitch node, a multi-node NVLink domain, a PCIe server) with the same GPU
type, node type, free GPU positions and rack are interchangeable, so the solver decides counts
per class (:class:`DomainClass`) and :mod:`planner.place` picks the concrete GPUs afterwards.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from costmodels.hardware import GPU, topology_gpu
from topologies.errors import InputError
from topologies.graph import Topology


@dataclass(frozen=True)
class DomainClass:
    """Scale-up domains the solver treats as interchangeable.

    Domains whose GPUs are all-to-all (NVSwitch, multi-node NVLink) are alike when their
    GPU type, node type, size and number of free GPUs match: which GPUs are free does not
    change any link. On PCIe servers (with or without NVLink bridges) the free positions
    matter too, since they decide which pairs a TP group gets. Racks are not part of the
    class: links between domains are priced at the worst rack pair, and placement keeps
    pipeline neighbours in one rack where it can.
    """

    index: int
    gpu: str  # catalog name
    node_type: str
    domains: tuple[str, ...]
    free: int
    domain_size: int
    free_positions: tuple[int, ...] | None  # None where positions do not matter

    @property
    def count(self) -> int:
        return len(self.domains)

    @property
    def signature(self) -> tuple:
        return (self.gpu, self.node_type, self.domain_size, self.free, self.free_positions)


@dataclass
class ClusterView:
    topology: Topology
    classes: list[DomainClass]
    gpu_of_type: dict[str, GPU] = field(default_factory=dict)
    free_of: dict[str, list[str]] = field(default_factory=dict)  # domain -> its free GPUs, in order

    @cached_property
    def free_by_type(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for c in self.classes:
            out[c.gpu] = out.get(c.gpu, 0) + c.free * c.count
        return out

    def free_gpus(self, domain: str) -> list[str]:
        return list(self.free_of[domain])

    def rack_of(self, domain: str) -> str:
        return self.topology.gpu(self.topology.domains[domain][0])["rack"]


def _bridged_pairs_first(topo: Topology, free: list[str]) -> list[str]:
    """The order in which pricing and placement take a domain's free GPUs (the first tp of them).

    On servers whose GPUs are NVLink-bridged in pairs, the two GPUs of every wholly free pair
    come first, pair by pair, so a TP group of two gets a bridge even where the pairs are not
    neighbouring indices (bridges joining GPU0-GPU2 and GPU1-GPU3); then the other free GPUs.
    Elsewhere the order is the GPU index order.
    """
    if not free:
        return free
    node = topo.gpu(free[0])["node"]
    fabric = topo.spec.node_types[topo.node_type_of(node)].fabric
    if fabric.kind != "nvlink-pairs":
        return free
    by_index = {topo.gpu(x)["index"]: x for x in free if topo.gpu(x)["node"] == node}
    first = [by_index[i] for a, b in sorted(tuple(sorted(p)) for p in fabric.pairs)
             if a in by_index and b in by_index for i in (a, b)]
    taken = set(first)
    return first + [x for x in free if x not in taken]


def check_fabrics(topo: Topology) -> None:
    """Refuse hardware that cannot exist: a fabric joining more GPUs by NVLink than the GPU can.

    The GPU catalog's ``nvlink_domain_gpus`` is the most GPUs one NVLink domain of that part
    joins (1: no NVLink, as on an L40S; 2: NVLink bridges, H100 PCIe; 8: an HGX baseboard; 72:
    GB200 NVL72). An NVSwitch node, NVLink pairs or a multi-node NVLink domain beyond that is a
    mistake in the file, which would otherwise be priced at NVLink speed.
    """
    spec = topo.spec
    for name, nt in spec.node_types.items():
        kind = nt.fabric.kind
        if kind == "pcie":
            continue
        gpu = topology_gpu(spec, nt.gpu, source=topo.source, field=f"node_types.{name}.gpu")
        most = gpu.nvlink_domain_gpus
        where = f"node_types.{name}.fabric.kind"
        if most < 2 and (kind != "nvswitch" or nt.gpus_per_node > 1):
            raise InputError(f"{kind!r} is impossible: {gpu.name} has no NVLink to other GPUs (GPU catalog); use "
                             f"'pcie'", source=topo.source, field=where)
        if kind == "nvswitch" and nt.gpus_per_node > most:
            raise InputError(f"'nvswitch' with {nt.gpus_per_node} GPUs per node is impossible: NVLink joins at most "
                             f"{most} {gpu.name} (GPU catalog); use more nodes, or 'nvlink-pairs' or 'pcie'",
                             source=topo.source, field=where)
        if kind == "nvswitch":  # not bridged pairs: a pair's rate is its bridge's or link count's, not the part's
            _check_nvlink_rate(nt.fabric.nvlink_bandwidth_gbyte_per_s, gpu, topo,
                               f"node_types.{name}.fabric.nvlink_bandwidth_gbyte_per_s")
    types = {n.name: spec.node_types[n.type] for n in spec.all_nodes()} if spec.nvlink_domains else {}
    for j, d in enumerate(spec.nvlink_domains):
        first = types[d.nodes[0]]
        gpu = topology_gpu(spec, first.gpu, source=topo.source, field="nvlink_domains")
        total = sum(types[n].gpus_per_node for n in d.nodes)
        _check_nvlink_rate(d.bandwidth_gbyte_per_s, gpu, topo, f"nvlink_domains[{j}].bandwidth_gbyte_per_s")
        if total > gpu.nvlink_domain_gpus:
            raise InputError(f"domain {d.name!r} joins {total} GPUs by NVLink, but one NVLink domain of {gpu.name} "
                             f"holds at most {gpu.nvlink_domain_gpus} (GPU catalog)", source=topo.source,
                             field=f"nvlink_domains[{j}].nodes")


def _check_nvlink_rate(gbyte_per_s: float, gpu: GPU, topo: Topology, field: str) -> None:
    """Refuse an NVLink rate above what the GPU's NVLink carries each way (GPU catalog): the file's
    figure is per direction, and datasheets quote both directions added (H100: 900 GB/s, 450 each way),
    so the datasheet figure here would price tensor parallelism twice as fast as it runs."""
    if not gpu.nvlink_bytes_per_s:  # no figure in the catalog (MI300X's Infinity Fabric): nothing to hold it to
        return
    most = gpu.nvlink_bytes_per_s / 1e9
    if gbyte_per_s > most * 1.001:
        raise InputError(f"{gbyte_per_s:g} GB/s is more than {gpu.name}'s NVLink carries each way ({most:g} GB/s, "
                         "GPU catalog); the figure is per direction, datasheets quote both directions added",
                         source=topo.source, field=field)


def cluster_view(topo: Topology) -> ClusterView:
    """Group the topology's scale-up domains into interchangeable classes."""
    check_fabrics(topo)
    g = topo.graph
    by_key: dict[tuple, list[str]] = {}
    free_of: dict[str, list[str]] = {}
    types: dict[str, GPU] = {}  # catalog name -> GPU
    # The file may name a GPU by an alias or in any case (H100, h100-sxm-80gb): classes and plans use the
    # name it resolves to. Each name as written is resolved once, not once per domain.
    resolved: dict[str, GPU] = {}

    def resolve(written: str, node_type: str) -> GPU:
        if written not in resolved:
            resolved[written] = topology_gpu(topo.spec, written, source=topo.source, field=f"node_types.{node_type}.gpu")
        return resolved[written]

    for dom, gpus in topo.domains.items():
        free = _bridged_pairs_first(topo, [x for x in gpus if g.nodes[x]["available"]])
        if not free:
            continue
        free_of[dom] = free
        first = g.nodes[gpus[0]]
        node_type = topo.node_type_of(first["node"])
        gpu = resolve(first["gpu"], node_type)
        gpu_names = {resolve(g.nodes[x]["gpu"], node_type).name for x in gpus}
        if len(gpu_names) > 1:  # by catalog name: trays may spell one GPU differently (GB200, GB200-186GB)
            raise InputError(f"NVLink domain {dom!r} mixes GPU types {sorted(gpu_names)}", source=topo.source,
                             field="nvlink_domains")
        types[gpu.name] = gpu
        kind = topo.spec.node_types[node_type].fabric.kind
        positions = None if kind in ("nvswitch", "nvlink-domain") else tuple(
            i for i, x in enumerate(gpus) if g.nodes[x]["available"])
        key = (gpu.name, node_type, len(gpus), len(free), positions)
        by_key.setdefault(key, []).append(dom)
    classes = []
    for i, (key, doms) in enumerate(sorted(by_key.items(), key=lambda kv: (kv[0][0], kv[0][1], -kv[0][3],
                                                                           kv[0][4] or ()))):
        gpu_name, node_type, size, free, positions = key
        classes.append(DomainClass(index=i, gpu=gpu_name, node_type=node_type, domains=tuple(doms), free=free,
                                   domain_size=size, free_positions=positions))
    if not classes:
        raise InputError("every GPU is marked unavailable; free some in 'nodes'", source=topo.source, field="nodes")
    return ClusterView(topology=topo, classes=classes, gpu_of_type={c.gpu: types[c.gpu] for c in classes},
                       free_of=free_of)
