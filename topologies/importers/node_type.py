"""From one :class:`NodeScan` to a node type: its GPU model, its fabric and its NICs, each with a
sentence saying how it was derived.

The fabric: all GPUs joined pairwise by the same number of NVLinks (an NVSwitch box, or a
full direct mesh) -> ``nvswitch`` at links x per-link bandwidth; GPUs joined in disjoint
pairs (NVLink bridges) -> ``nvlink-pairs``; no NVLink -> ``pcie``. A pattern the schema
cannot express exactly (a partial mesh, unequal link counts) becomes the conservative
expressible form, with a warning.
"""
from __future__ import annotations

import networkx as nx

from topologies.errors import InputError
from topologies.importers.common import NodeScan, num, ports
from topologies.importers.gpu_facts import GPU_LINK_FACTS, GpuLinkFacts
from topologies.schema import MAX_NICS_PER_NODE


def resolve_gpu(scan: NodeScan, gpu: str | None, custom: GpuLinkFacts | None = None) -> tuple[GpuLinkFacts, str]:
    """The node's GPU link facts and where they came from: a user-defined GPU spec, ``--gpu``, or the
    file; when none names it, an error listing the GPUs whose link counts and ``sm`` fit the file."""
    known = ", ".join(GPU_LINK_FACTS)
    if custom is not None:
        if scan.gpu_facts is not None:
            scan.warnings.append(f"the file says the GPUs are {scan.gpu_facts.name} ({scan.gpu_evidence}) but --gpu "
                                 f"gives a GPU spec for {custom.name}; using the spec")
        return custom, "from the GPU spec given with --gpu"
    if gpu is not None:
        facts = GPU_LINK_FACTS.get(gpu)
        if facts is None:
            raise InputError(f"{gpu} is not a GPU the importers know link figures for (nvidia-smi and NCCL report "
                             f"NVIDIA GPUs); choose one of {known}", source="--gpu")
        if scan.gpu_facts is not None and scan.gpu_facts.name != gpu:
            scan.warnings.append(f"the file says the GPUs are {scan.gpu_facts.name} ({scan.gpu_evidence}) but --gpu "
                                 f"says {gpu}; using --gpu")
        elif scan.sm is not None and scan.sm != facts.sm:
            scan.warnings.append(f"the file's GPUs have sm={scan.sm} but {gpu} is sm {facts.sm}; using --gpu")
        return facts, "from --gpu"
    if scan.gpu_facts is not None:
        return scan.gpu_facts, scan.gpu_evidence
    most = max([*scan.pair_links.values(), *(scan.switch_links or [])], default=0)
    fits = [f.name for f in GPU_LINK_FACTS.values()
            if f.nvlink_max_links >= most and (scan.sm is None or f.sm == scan.sm)]
    why = "`nvidia-smi topo -m` does not name the GPU model" if scan.fmt == "nvidia-smi" else \
        "the file does not say which GPU model this is"
    if scan.gpu_evidence:
        why = scan.gpu_evidence
    raise InputError(f"{why}; pass --gpu NAME, one of {', '.join(fits or list(GPU_LINK_FACTS))} "
                     f"(see `plan-search catalog gpus`)", source=scan.source)


def node_fabric(scan: NodeScan, facts: GpuLinkFacts) -> tuple[dict, str]:
    """The fabric mapping of a node, and a sentence saying how it was derived."""
    pcie = {"pcie_bandwidth_gbyte_per_s": num(facts.pcie_gbyte_per_s)}
    pcie_note = f"PCIe {num(facts.pcie_gbyte_per_s)} GB/s per direction ({facts.pcie_source})"
    if scan.pcie_paths and any(p in scan.pcie_paths for p in ("NODE", "SYS", "SOC", "PHB")):
        pcie_note += (f"; PCIe paths between GPUs in the table: {', '.join(scan.pcie_paths)} (paths through the "
                      f"host bridge or between sockets are slower; the schema prices all at one figure)")
    pairs: list[tuple[int, int]] = []
    if scan.switch_links is not None:
        kind, links, how = _switched(scan)
    elif scan.pair_links:
        kind, pairs, links, how = _paired(scan, facts)
    else:
        kind, links, how = "pcie", 0, "no NVLink between GPUs"
    if kind == "pcie":
        return {"kind": "pcie", **pcie}, f"fabric pcie: {how}; {pcie_note}"
    if facts.nvlink_gbyte_per_s_per_link is None:
        raise InputError(f"the file shows NVLink between GPUs (NV{links}) but {facts.name} has no NVLink; check "
                         f"--gpu", source=scan.source)
    if links > facts.nvlink_max_links:
        raise InputError(f"the file shows NV{links} ({links} NVLinks) but {facts.name} has at most "
                         f"{facts.nvlink_max_links}; check --gpu", source=scan.source)
    bw = facts.nvlink_total_gbyte_per_s or links * facts.nvlink_gbyte_per_s_per_link
    fabric: dict = {"kind": kind, "nvlink_bandwidth_gbyte_per_s": num(bw)}
    if pairs:
        fabric["pairs"] = [list(p) for p in pairs]
    fabric.update(pcie)
    per = f"{links} links x {num(facts.nvlink_gbyte_per_s_per_link)} GB/s per link per direction = " \
        if facts.nvlink_total_gbyte_per_s is None else ""
    note = f"fabric {kind}: {how}; {per}{num(bw)} GB/s ({facts.nvlink_source}); {pcie_note}"
    if facts.multi_node_nvlink:
        scan.warnings.append(f"{facts.name} trays belong to a multi-node NVLink domain (NVL72); this file shows one "
                             f"tray, written as an NVSwitch node: declare the domain in 'nvlink_domains' by hand")
    return fabric, note


def _switched(scan: NodeScan) -> tuple[str, int, str]:
    """(kind, links, how) of a node whose GPUs have NVLinks to NVSwitches: ``nvswitch`` at the smallest
    count when every GPU reaches them, else PCIe-only (the schema has no partly switched node)."""
    sw = scan.switch_links
    assert sw is not None
    if scan.pair_links:
        scan.warnings.append("direct GPU-to-GPU NVLinks next to NVSwitch links are ignored")
    if not all(sw):
        on = [i for i, c in enumerate(sw) if c]
        scan.warnings.append(f"only GPUs {on} have NVSwitch links; the schema cannot express a partly switched "
                             f"node, so it is written as PCIe-only (conservative)")
        return "pcie", 0, "only some GPUs reach the NVSwitches; written as PCIe-only"
    links = min(sw)
    how = f"every GPU has {links} NVLinks to NVSwitches"
    if max(sw) != links:
        how = f"GPUs have {min(sw)} to {max(sw)} NVLinks to NVSwitches; the smallest is used"
        scan.warnings.append(f"GPUs have unequal NVLink counts to the NVSwitches ({min(sw)} to {max(sw)}); "
                             f"using {links} for all (conservative)")
    return "nvswitch", links, how


def _paired(scan: NodeScan, facts: GpuLinkFacts) -> tuple[str, list[tuple[int, int]], int, str]:
    """(kind, pairs, links, how) of a node with direct GPU-to-GPU NVLinks: disjoint pairs, a full mesh
    (written as ``nvswitch``), or a partial mesh (written as its best disjoint pairs)."""
    pl, n = scan.pair_links, scan.gpus
    degree = [0] * n
    for a, b in pl:
        degree[a] += 1
        degree[b] += 1
    counts = sorted(set(pl.values()))
    if n == 2 or max(degree) <= 1:
        pairs, links = sorted(pl), min(counts)
        how = f"NVLink joins GPUs in disjoint pairs {[list(p) for p in pairs]}, NV{links}"
        if len(counts) > 1:
            how += " (the smallest count)"
            scan.warnings.append(f"NVLink pairs have unequal link counts (NV{', NV'.join(map(str, counts))}); "
                                 f"using NV{links} for all pairs (conservative)")
        return "nvlink-pairs", pairs, links, how
    if len(pl) != n * (n - 1) // 2:
        return _partial_mesh(scan)
    links = min(counts)
    how = f"every GPU pair is joined by NV{links}"
    if links * (n - 1) <= facts.nvlink_max_links:
        how += (f" (a direct all-to-all mesh: each GPU's {links * (n - 1)} links are split among its "
                f"peers; each pair gets NV{links}, which is what is modelled)")
    if len(counts) > 1:
        how = f"every GPU pair is joined by NVLink, NV{counts[0]} to NV{counts[-1]}; the smallest is used"
        scan.warnings.append(f"GPU pairs have unequal NVLink counts (NV{counts[0]} to NV{counts[-1]}); "
                             f"using NV{links} for every pair (conservative)")
    return "nvswitch", [], links, how


def _partial_mesh(scan: NodeScan) -> tuple[str, list[tuple[int, int]], int, str]:
    """A partial NVLink mesh, which the schema cannot express: written as the disjoint pairs of a
    maximum-weight matching (most links kept), at the smallest count among them, PCIe between the rest."""
    pl = scan.pair_links
    g = nx.Graph()
    g.add_nodes_from(range(scan.gpus))
    for (a, b), c in sorted(pl.items()):
        g.add_edge(a, b, weight=c)
    matching = nx.max_weight_matching(g, maxcardinality=True)
    pairs = sorted(tuple(sorted(e)) for e in matching)
    links = min(pl[p] for p in pairs)
    shown = ", ".join(f"{a}-{b} NV{c}" for (a, b), c in sorted(pl.items()))
    how = f"a partial NVLink mesh, written as the disjoint pairs {[list(p) for p in pairs]} at NV{links}"
    scan.warnings.append(f"NVLink forms a partial mesh ({shown}) that the schema cannot express; writing "
                         f"the disjoint pairs {[list(p) for p in pairs]} at NV{links} and PCIe between the "
                         f"rest (conservative)")
    return "nvlink-pairs", pairs, links, how


def node_nics(scan: NodeScan, multi_node: bool, nic_gbit_per_s: float | None,
              nics_per_node: int | None) -> tuple[dict | None, str]:
    """The ``nics`` mapping of a node (None where no speed is known, or no NICs), and a sentence saying
    how it was derived; a multi-node topology needs both a count and a speed."""
    count = nics_per_node if nics_per_node is not None else scan.nics
    if count > MAX_NICS_PER_NODE:
        raise InputError(f"{count} NIC ports in one node; at most {MAX_NICS_PER_NODE} (check the file, or give "
                         f"--nics-per-node)", source=scan.source if nics_per_node is None else "--nics-per-node")
    how = f"{ports(count)} (--nics-per-node)" if nics_per_node is not None else scan.nic_note
    speed = nic_gbit_per_s if nic_gbit_per_s is not None else scan.nic_gbit_per_s
    if nic_gbit_per_s is not None:
        how += f", {num(nic_gbit_per_s)} Gb/s each (--nic-gbit-per-s)"
    if multi_node:
        if count == 0:
            raise InputError(f"no NICs found ({scan.nic_note}); the nodes of a multi-node topology need them: pass "
                             f"--nics-per-node K and --nic-gbit-per-s B", source=scan.source)
        if speed is None:
            what = "`nvidia-smi topo -m` does not print NIC speeds" if scan.fmt == "nvidia-smi" else \
                "the file gives no NIC speed"
            raise InputError(f"required for a multi-node topology: {what} ({scan.source}); give the line rate of one "
                             f"NIC port in Gb/s, e.g. --nic-gbit-per-s 400", source="--nic-gbit-per-s")
    if count == 0 or speed is None:
        if count:
            how += "; left out: no speed given (--nic-gbit-per-s), and one node needs no network"
        return None, f"NICs: {how}"
    return {"count": count, "bandwidth_gbit_per_s": num(speed)}, f"NICs: {how}"
