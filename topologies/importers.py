"""Topology importers: what a machine reports about itself, turned into a topology file.

Two inputs, one node (machine) per file:

``nvidia-smi topo -m``
    The text matrix: a header of columns (``GPU0..GPUn``, then NICs named ``NIC0..`` on
    newer drivers or by device, ``mlx5_0..``, on older ones, then ``CPU Affinity``,
    ``NUMA Affinity``, ``GPU NUMA ID``), one row per device, cells ``X`` (self), ``NV#``
    (a bonded set of # NVLinks), ``PIX``/``PXB``/``PHB``/``NODE``/``SYS`` (PCIe paths;
    ``SOC`` on old drivers), then a ``Legend:`` block and, on newer drivers, a
    ``NIC Legend:`` that names the NICs. Tabs or spaces, leading indentation, log prefixes
    (timestamps) before each line, blank lines and ANSI colour codes are tolerated.
NCCL topology XML
    ``NCCL_TOPO_DUMP_FILE`` output or a hand-written ``NCCL_TOPO_FILE``: ``<system>`` >
    ``<cpu>`` > ``<pci>`` tree > ``<gpu dev= sm=>`` with ``<nvlink target= count=
    tclass=>`` children (tclass 0x068000: an NVSwitch; 0x0302xx/0x0300xx: another GPU),
    and ``<nic>`` > ``<net name= speed=>`` (speed in Mb/s). Parsed with :mod:`defusedxml`
    (no DTDs, entities or external references: no "billion laughs").

The GPU model: ``nvidia-smi topo -m`` does not print it; the caller names it (``--gpu``),
or it is read from ``GPU 0: NVIDIA H100 80GB HBM3`` lines (``nvidia-smi -L``) pasted in the
same file, or, for NCCL XML, from the PCI device id of the GPUs' ``<pci>`` elements.

The fabric: all GPUs joined pairwise by the same number of NVLinks (an NVSwitch box, or a
full direct mesh) -> ``nvswitch`` at links x per-link bandwidth; GPUs joined in disjoint
pairs (NVLink bridges) -> ``nvlink-pairs``; no NVLink -> ``pcie``. A pattern the schema
cannot express exactly (a partial mesh, unequal link counts) becomes the conservative
expressible form, with a warning.

Nothing here reads the GPU catalog (``costmodels`` sits above this layer); the names in
:data:`GPU_LINK_FACTS` are catalog names, which a test checks.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import networkx as nx
import yaml

from topologies.errors import InputError
from topologies.load import MAX_FILE_BYTES, parse_topology, read_text_file
from topologies.schema import (LABEL, MAX_GBIT_PER_S, GpuTypeSpec, MAX_GPUS_PER_NODE, MAX_NICS_PER_NODE, MAX_TOTAL_NODES,
                               MIN_GBIT_PER_S, NAME_MAX_CHARS)

MAX_XML_ELEMENTS = 200_000
MAX_NODES = MAX_TOTAL_NODES


def _clean(text: str, limit: int = 64) -> str:
    """Text a dump gives (a NIC name), kept to printable characters and ``limit`` of them,
    for the description and warnings: a dump cannot put terminal escapes on anyone's screen."""
    kept = "".join(c for c in text if c.isprintable())
    return kept if len(kept) <= limit else kept[:limit] + "..."

# -- what the importers know about each GPU -------------------------------------------------------

# Per-link NVLink figures, per direction. A link is 50 GB/s both ways in NVLink 2, 3 and 4
# (NVLink 3 halves the lanes per link and doubles their rate), 100 GB/s in NVLink 5; sources:
# NVLink (Wikipedia, as mirrored at wikimili.com/en/NVLink): "NVLink 2.0, 3.0 and 4.0 all have a
# 50 GB/s per bidirectional link, and have 6, 12 and 18 links correspondingly".
_NVLINK3 = ("NVLink 3: 12 links, 600 GB/s both ways per GPU, so 25 GB/s per link per direction "
            "(NVIDIA NVLink page, nvidia.com/de-de/data-center/nvlink: an A100 supports up to twelve "
            "third-generation NVLink connections, 600 GB/s in total; A100 datasheet 'NVLink 600GB/s')")
_NVLINK4 = ("NVLink 4: 18 links, 900 GB/s both ways per GPU, so 25 GB/s per link per direction "
            "(NVIDIA H100 datasheet 'NVLink 900GB/s'; NVIDIA MLPerf v4.1 system JSON DGX-H100: "
            "'18x 4th Gen NVLink, 900GB/s')")
_NVLINK4_BRIDGE = ("NVLink 4 over bridges: H100 PCIe pairs get 600 GB/s both ways, 12 links of 25 GB/s "
                   "per direction (NVIDIA H100 datasheet, PCIe column: 'NVLINK 600GB/s')")
_NVLINK5 = ("NVLink 5: 18 links of 100 GB/s both ways per GPU, so 50 GB/s per link per direction "
            "(NVIDIA NVLink page: a Blackwell GPU 'supports up to 18 NVLink 100 gigabyte-per-second (GB/s) "
            "connections for a total bandwidth of 1.8 terabytes per second')")
_PCIE4 = "PCIe Gen4 x16: 64 GB/s both ways, 32 GB/s per direction (NVIDIA A100 and L40S datasheets)"
_PCIE5 = "PCIe Gen5 x16: 128 GB/s both ways, 64 GB/s per direction (NVIDIA H100 datasheet)"
_PCIE5_ASSUMED = ("PCIe Gen5 x16 host link assumed, 64 GB/s per direction (conservative: Blackwell "
                  "also speaks Gen6, glennklockwood.com/garden/processors/B200; host platforms vary)")
_PCIE3 = "PCIe Gen3 x16: 32 GB/s both ways, 16 GB/s per direction (NVIDIA V100, T4 and P40 datasheets)"
_NVLINK2 = ("NVLink 2: 6 links, 300 GB/s both ways per GPU, so 25 GB/s per link per direction (NVIDIA V100 "
            "datasheet, SXM2: 'NVLink 300 GB/s')")
_NVLINK3_BRIDGE = ("NVLink 3 over bridges: A100 PCIe pairs get 600 GB/s both ways, 12 links of 25 GB/s per "
                   "direction (NVIDIA A100 datasheet: 'NVIDIA NVLink Bridge for 2 GPUs: 600GB/s')")
_NVLINK3_A30 = ("NVLink 3 bridge on A30: 200 GB/s both ways, 4 links of 25 GB/s per direction (NVIDIA A30 "
                "datasheet: 'NVLink: 200 GB/s')")
_NVLINK3_GA102 = ("NVLink 3 bridge on RTX A6000: 112.5 GB/s both ways over 4 links (nvidia-smi shows NV4), "
                  "14.0625 GB/s per link per direction (NVIDIA RTX A6000 datasheet: '112.5 GB/s (bidirectional)')")
_NVLINK4_H800 = ("NVLink 4 on H800: 400 GB/s both ways, 8 links of 25 GB/s per direction (NVIDIA H800 datasheet: "
                 "'NVLink 400GB/s')")
_NVLINK4_H200_NVL = ("NVLink 4 over 2- or 4-way bridges on H200 NVL: 900 GB/s both ways per GPU, 18 links of "
                     "25 GB/s per direction (NVIDIA H200 datasheet, NVL column)")
_PCI_IDS = "PCI ID Repository (pci.ids), vendor 10de"


@dataclass(frozen=True)
class GpuLinkFacts:
    """The link figures of one catalog GPU, each with its source."""

    name: str  # the GPU catalog's name (costmodels/data/gpus.csv)
    sm: int  # CUDA compute capability x 10, as NCCL's ``sm`` attribute prints it
    nvlink_gbyte_per_s_per_link: float | None  # per direction; None: no NVLink
    nvlink_max_links: int  # links per GPU
    nvlink_source: str
    pcie_gbyte_per_s: float  # x16 line rate, per direction
    pcie_source: str
    pci_device_ids: tuple[int, ...]  # NVIDIA (0x10de) PCI device ids of this exact part
    smi_names: tuple[str, ...]  # regexes for the names nvidia-smi prints ("NVIDIA H100 80GB HBM3")
    multi_node_nvlink: bool = False  # its NVLink domain spans trays (GB200 NVL72)
    #: a user-defined GPU's NVLink figure per direction: what NVLink gives each GPU, whatever NV# shows
    nvlink_total_gbyte_per_s: float | None = None


#: PCIe x16 line rate per direction by generation (PCI-SIG: 1 GT/s per lane at Gen1 with 8b/10b coding,
#: doubling each generation; Gen3 on, 128b/130b): Gen3 16, Gen4 32, Gen5 64, Gen6 128 GB/s.
_PCIE_X16_GBYTE_PER_S = {1: 4.0, 2: 8.0, 3: 16.0, 4: 32.0, 5: 64.0, 6: 128.0, 7: 256.0}


def custom_link_facts(name: str, spec: GpuTypeSpec, source: str) -> GpuLinkFacts:
    """Link figures of a user-defined GPU (a ``gpu_types`` entry of a GPU spec file): its NVLink figure
    as the bandwidth NVLink gives each GPU, and its PCIe generation's x16 line rate (Gen4 where the spec
    does not say)."""
    gen = spec.pcie_gen or 4
    nv = spec.nvlink_gbyte_per_s_per_direction
    return GpuLinkFacts(
        name=name, sm=0, nvlink_gbyte_per_s_per_link=nv, nvlink_max_links=1024 if nv else 0,
        nvlink_source=f"{nv:g} GB/s per direction per GPU from the GPU spec {source}" if nv else
        f"no NVLink figure in the GPU spec {source}",
        pcie_gbyte_per_s=_PCIE_X16_GBYTE_PER_S[gen],
        pcie_source=(f"PCIe Gen{gen} x16 line rate" + ("" if spec.pcie_gen else ", assumed: the GPU spec gives no "
                                                        "pcie_gen")),
        pci_device_ids=(), smi_names=(), nvlink_total_gbyte_per_s=nv)


GPU_LINK_FACTS: dict[str, GpuLinkFacts] = {f.name: f for f in (
    # PCI ids: A100 SXM4 80GB 0x20b2, H100 SXM5 80GB 0x2330, H100 PCIe 0x2331, H200 SXM 141GB
    # 0x2335, GH200 480GB 0x2342, B200 0x2901, HGX GB200 0x2941, L40S 0x26b9 (PCI ID Repository).
    GpuLinkFacts("A100-SXM4-80GB", 80, 25.0, 12, _NVLINK3, 32.0, _PCIE4, (0x20B2,),
                 (r"\bA100[- ]SXM4?[- ]80GB\b",)),
    GpuLinkFacts("H100-SXM-80GB", 90, 25.0, 18, _NVLINK4, 64.0, _PCIE5, (0x2330,),
                 (r"\bH100 80GB HBM3\b", r"\bH100[- ]SXM5?\b")),
    GpuLinkFacts("H100-PCIe-80GB", 90, 25.0, 12, _NVLINK4_BRIDGE, 64.0, _PCIE5, (0x2331,),
                 (r"\bH100 PCIe\b",)),
    GpuLinkFacts("H200-SXM-141GB", 90, 25.0, 18, _NVLINK4, 64.0, _PCIE5, (0x2335,),
                 (r"\bH200\b(?! NVL)",)),
    GpuLinkFacts("GH200-480GB", 90, 25.0, 18, _NVLINK4, 64.0, _PCIE5, (0x2342,),
                 (r"\bGH200\b",)),
    GpuLinkFacts("B200-180GB", 100, 50.0, 18, _NVLINK5, 64.0, _PCIE5_ASSUMED, (0x2901,),
                 (r"\bB200\b",)),
    GpuLinkFacts("GB200-186GB", 100, 50.0, 18, _NVLINK5, 64.0, _PCIE5_ASSUMED, (0x2941,),
                 (r"\bGB200\b",), multi_node_nvlink=True),
    GpuLinkFacts("L40S-48GB", 89, None, 0, "no NVLink (NVIDIA L40S datasheet)", 32.0, _PCIE4, (0x26B9,),
                 (r"\bL40S\b",)),
    # PCI ids (PCI ID Repository): A100 SXM4 40GB 0x20b0, A100 PCIe 40GB 0x20f1, A100 PCIe 80GB 0x20b5,
    # A30 0x20b7, A10 0x2236, A10G 0x2237, RTX A6000 0x2230, L4 0x27b8, L40 0x26b5, RTX 6000 Ada 0x26b1,
    # RTX 4090 0x2684, RTX 5090 0x2b85, RTX PRO 6000 Blackwell Workstation 0x2bb1, Server 0x2bb5,
    # H100 NVL 0x2321, H800 0x2324, H20 0x2329, H200 NVL 0x233b, V100 SXM2 32GB 0x1db5, T4 0x1eb8,
    # P40 0x1b38. B300 and GB300 are named by nvidia-smi only (no id recorded here).
    GpuLinkFacts("A100-SXM4-40GB", 80, 25.0, 12, _NVLINK3, 32.0, _PCIE4, (0x20B0,),
                 (r"\bA100[- ]SXM4?[- ]40GB\b",)),
    GpuLinkFacts("A100-PCIe-40GB", 80, 25.0, 12, _NVLINK3_BRIDGE, 32.0, _PCIE4, (0x20F1,),
                 (r"\bA100[- ]PCIE[- ]40GB\b", r"\bA100 40GB PCIe\b")),
    GpuLinkFacts("A100-PCIe-80GB", 80, 25.0, 12, _NVLINK3_BRIDGE, 32.0, _PCIE4, (0x20B5,),
                 (r"\bA100 80GB PCIe\b", r"\bA100[- ]PCIE[- ]80GB\b")),
    GpuLinkFacts("A30-24GB", 80, 25.0, 4, _NVLINK3_A30, 32.0, _PCIE4, (0x20B7,), (r"\bA30\b",)),
    GpuLinkFacts("A10-24GB", 86, None, 0, "no NVLink (NVIDIA A10 datasheet)", 32.0, _PCIE4, (0x2236,),
                 (r"\bA10\b",)),
    GpuLinkFacts("A10G-24GB", 86, None, 0, "no NVLink (AWS G5 instances: GPUs on PCIe only)", 32.0, _PCIE4,
                 (0x2237,), (r"\bA10G\b",)),
    GpuLinkFacts("RTX-A6000-48GB", 86, 14.0625, 4, _NVLINK3_GA102, 32.0, _PCIE4, (0x2230,),
                 (r"\bRTX A6000\b",)),
    GpuLinkFacts("L4-24GB", 89, None, 0, "no NVLink (NVIDIA L4 datasheet)", 32.0, _PCIE4, (0x27B8,),
                 (r"\bL4\b",)),
    GpuLinkFacts("L40-48GB", 89, None, 0, "no NVLink (NVIDIA L40 datasheet)", 32.0, _PCIE4, (0x26B5,),
                 (r"\bL40\b",)),
    GpuLinkFacts("RTX-6000-Ada-48GB", 89, None, 0, "no NVLink (NVIDIA RTX 6000 Ada datasheet)", 32.0, _PCIE4,
                 (0x26B1,), (r"\bRTX 6000 Ada\b",)),
    GpuLinkFacts("RTX-4090-24GB", 89, None, 0, "no NVLink (NVIDIA Ada whitepaper, GeForce RTX 4090)", 32.0, _PCIE4,
                 (0x2684,), (r"\bRTX 4090\b(?! D)",)),
    GpuLinkFacts("RTX-5090-32GB", 120, None, 0, "no NVLink (NVIDIA GeForce RTX 5090 specifications)", 64.0, _PCIE5,
                 (0x2B85,), (r"\bRTX 5090\b",)),
    GpuLinkFacts("RTX-PRO-6000-Blackwell-Workstation", 120, None, 0, "no NVLink (NVIDIA RTX PRO 6000 product page)",
                 64.0, _PCIE5, (0x2BB1,), (r"\bRTX PRO 6000 Blackwell Workstation\b",)),
    GpuLinkFacts("RTX-PRO-6000-Blackwell-Server", 120, None, 0, "no NVLink (NVIDIA RTX PRO 6000 product page)",
                 64.0, _PCIE5, (0x2BB5,), (r"\bRTX PRO 6000 Blackwell Server\b",)),
    GpuLinkFacts("H100-NVL-94GB", 90, 25.0, 12, _NVLINK4_BRIDGE, 64.0, _PCIE5, (0x2321,), (r"\bH100 NVL\b",)),
    GpuLinkFacts("H800-SXM-80GB", 90, 25.0, 8, _NVLINK4_H800, 64.0, _PCIE5, (0x2324,), (r"\bH800\b(?! PCIe)",)),
    GpuLinkFacts("H20-96GB", 90, 25.0, 18, _NVLINK4, 64.0, _PCIE5, (0x2329,), (r"\bH20\b",)),
    GpuLinkFacts("H200-NVL-141GB", 90, 25.0, 18, _NVLINK4_H200_NVL, 64.0, _PCIE5, (0x233B,), (r"\bH200 NVL\b",)),
    GpuLinkFacts("B300-288GB", 103, 50.0, 18, _NVLINK5, 64.0, _PCIE5_ASSUMED, (), (r"\bB300\b",)),
    GpuLinkFacts("GB300-288GB", 103, 50.0, 18, _NVLINK5, 64.0, _PCIE5_ASSUMED, (), (r"\bGB300\b",),
                 multi_node_nvlink=True),
    GpuLinkFacts("V100-SXM2-32GB", 70, 25.0, 6, _NVLINK2, 16.0, _PCIE3, (0x1DB5,), (r"\bV100[- ]SXM2[- ]32GB\b",)),
    GpuLinkFacts("T4-16GB", 75, None, 0, "no NVLink (NVIDIA T4 datasheet)", 16.0, _PCIE3, (0x1EB8,), (r"\bT4\b",)),
    GpuLinkFacts("P40-24GB", 61, None, 0, "no NVLink (NVIDIA Tesla P40 datasheet)", 16.0, _PCIE3, (0x1B38,),
                 (r"\bP40\b",)),
)}

# Parts the PCI ID Repository names that the GPU catalog does not have: named in errors.
_UNCATALOGUED_PCI_IDS = {0x2322: "H800 PCIe", 0x1DB1: "V100 SXM2 16GB", 0x1DB4: "V100 PCIe 16GB",
                         0x1DB6: "V100 PCIe 32GB"}


def _facts_by_pci_id(device: int) -> GpuLinkFacts | None:
    for f in GPU_LINK_FACTS.values():
        if device in f.pci_device_ids:
            return f
    return None


def _facts_by_smi_name(name: str) -> GpuLinkFacts | None:
    for f in GPU_LINK_FACTS.values():
        if any(re.search(p, name, re.IGNORECASE) for p in f.smi_names):
            return f
    return None


# -- what one file says about one node -----------------------------------------------------------

@dataclass
class NodeScan:
    """What one file says about one machine, before the GPU type is known."""

    source: str
    fmt: str  # "nvidia-smi" | "nccl"
    gpus: int
    pair_links: dict[tuple[int, int], int] = field(default_factory=dict)  # (i < j) -> NVLinks between them
    switch_links: list[int] | None = None  # NCCL: NVLinks from each GPU to NVSwitches
    pcie_paths: list[str] = field(default_factory=list)  # nvidia-smi path kinds between GPUs without NVLink
    nics: int = 0
    nic_note: str = ""
    nic_gbit_per_s: float | None = None
    gpu_facts: GpuLinkFacts | None = None  # inferred from the file
    gpu_evidence: str = ""  # why (or, with gpu_facts None, what the file says)
    sm: int | None = None
    warnings: list[str] = field(default_factory=list)


# -- nvidia-smi topo -m ---------------------------------------------------------------------------

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_CELL = re.compile(r"(X|NV\d{1,3}|PIX|PXB|PHB|NODE|SYS|SOC)")
_PCIE_CELLS = ("PIX", "PXB", "PHB", "NODE", "SYS", "SOC")
_AFFINITY = {"CPU_Affinity", "NUMA_Affinity", "GPU_NUMA_ID"}
_DEVICE_NAME = re.compile(r"[A-Za-z][\w.:\-]*")
_GPU_COL = re.compile(r"GPU(\d+)")
_SMI_L = re.compile(r"\bGPU ([0-9]{1,4}): (.+?)\s*(?:\(UUID: [^)]*\))?\s*$")
_NIC_LEGEND = re.compile(r"\b(NIC\d+)\s*:\s*(\S+)\s*$")


def _tokens(line: str) -> list[str]:
    line = re.sub(r"CPU\s+Affinity", "CPU_Affinity", line)
    line = re.sub(r"NUMA\s+Affinity", "NUMA_Affinity", line)
    line = re.sub(r"GPU\s+NUMA\s+ID", "GPU_NUMA_ID", line)
    return line.split()


def _is_cell(tok: str) -> bool:
    return _CELL.fullmatch(tok) is not None


def _header_at(toks: list[str]) -> int | None:
    """Index of ``GPU0`` if this line looks like the matrix header, else None."""
    if "GPU0" not in toks:
        return None
    p = toks.index("GPU0")
    if p + 1 < len(toks) and _is_cell(toks[p + 1]):
        return None  # that is the GPU0 row
    return p


def _columns(toks: list[str], src: str, lineno: int) -> list[str]:
    cols = []
    for t in toks:
        if t in _AFFINITY:
            break
        cols.append(t)
    gpus = [c for c in cols if _GPU_COL.fullmatch(c)]
    where = f"line {lineno}"
    if len(gpus) > MAX_GPUS_PER_NODE:
        raise InputError(f"the table has {len(gpus)} GPU columns; one node holds at most {MAX_GPUS_PER_NODE} "
                         f"GPUs (an NVL72 domain): give one `nvidia-smi topo -m` table per node", source=src,
                         field=where)
    for i, c in enumerate(gpus):
        if c != f"GPU{i}" or cols[i] != c:
            raise InputError(f"the header names {c} where GPU{i} was expected; the table is garbled or "
                             f"edited: paste the whole output of `nvidia-smi topo -m`", source=src, field=where)
    for c in cols[len(gpus):]:
        if not _DEVICE_NAME.fullmatch(c):
            raise InputError(f"the header has a column {c!r} that is not a device name; the table is garbled: "
                             f"paste the whole output of `nvidia-smi topo -m`", source=src, field=where)
    if len(set(cols)) != len(cols):
        dup = next(c for c in cols if cols.count(c) > 1)
        raise InputError(f"the header names column {dup} twice; the table is garbled", source=src, field=where)
    return cols


class _NotThisTable(Exception):
    """A header candidate whose rows are not a topology matrix (e.g. the `topo -p2p` matrix)."""

    def __init__(self, error: InputError):
        self.error = error


def _rows(lines: list[list[str]], start: int, cols: list[str], src: str) -> dict[str, list[str]]:
    """Find each column's row after the header line ``start``; return label -> its cells.

    A row is the first line naming a column label (after any log prefix). A failure in the
    first row raises :class:`_NotThisTable`, so that a later header (the real table) is tried.
    """
    want = set(cols)
    rows: dict[str, list[str]] = {}
    n = len(cols)
    last = max((k for k, toks in enumerate(lines) if toks), default=-1)
    for k in range(start + 1, len(lines)):
        toks = lines[k]
        if not toks:
            continue
        joined = " ".join(toks)
        if joined.endswith("Legend:"):
            break
        hits = [i for i, t in enumerate(toks) if t in want]
        if not hits:
            continue
        q = next((i for i in hits if i + 1 < len(toks) and _is_cell(toks[i + 1])), hits[0])
        label = toks[q]
        after = toks[q + 1:]
        cells = []
        for t in after:
            if not _is_cell(t):
                break
            cells.append(t)
        where = f"row {label} (line {k + 1})"
        error = None
        if label in rows:
            error = InputError("appears twice; give one `nvidia-smi topo -m` table per file (one file per node)",
                               source=src, field=where)
        elif len(cells) < n and k == last:
            error = InputError(f"the file ends in the middle of row {label}: the table is truncated; paste the whole "
                               f"output of `nvidia-smi topo -m`", source=src, field=where)
        elif len(cells) < n:
            bad = after[len(cells)] if len(after) > len(cells) else None
            if bad is not None and label.startswith("GPU") and not re.fullmatch(r"[\d,\-]+|N/A", bad):
                error = InputError(f"{bad!r} is not a topology cell (X, NV#, PIX, PXB, PHB, NODE, SYS, SOC); the "
                                   f"table is garbled: paste the whole output of `nvidia-smi topo -m`",
                                   source=src, field=f"{where}, column {cols[len(cells)]}")
            else:
                got = f"{len(cells)} cells" + (f" then {bad!r}" if bad is not None else "")
                error = InputError(f"has {got}, but the header has {n} columns ({cols[0]}..{cols[-1]}); the "
                                   f"table is truncated or garbled: paste the whole output of `nvidia-smi topo -m`",
                                   source=src, field=where)
        elif len(cells) > n:
            error = InputError(f"has {len(cells)} cells, but the header has {n} columns ({cols[0]}..{cols[-1]}): "
                               f"the matrix is not square; paste the whole output of `nvidia-smi topo -m`",
                               source=src, field=where)
        if error is not None:
            raise _NotThisTable(error) if not rows else error
        rows[label] = cells
        if len(rows) == n:
            break
    missing = [c for c in cols if c not in rows]
    if missing:
        error = InputError(f"row {missing[0]} is missing (the table looks truncated); paste the whole output of "
                           f"`nvidia-smi topo -m`", source=src, field=f"row {missing[0]}")
        raise _NotThisTable(error) if not rows else error
    return rows


def _check_matrix(cols: list[str], rows: dict[str, list[str]], src: str) -> None:
    for i, a in enumerate(cols):
        for j, b in enumerate(cols):
            cell = rows[a][j]
            if i == j and cell != "X":
                raise InputError(f"the diagonal cell is {cell}, not X (self); the table is garbled: paste the "
                                 f"whole output of `nvidia-smi topo -m`", source=src, field=f"row {a}, column {b}")
            if i != j and cell == "X":
                raise InputError("X (self) off the diagonal; the table is garbled: paste the whole output of "
                                 "`nvidia-smi topo -m`", source=src, field=f"row {a}, column {b}")
            if j > i and cell != rows[b][i]:
                raise InputError(f"is {cell} but row {b}, column {a} is {rows[b][i]}: the matrix is not "
                                 f"symmetric, so the table is garbled; paste the whole output of "
                                 f"`nvidia-smi topo -m`", source=src, field=f"row {a}, column {b}")


def scan_nvidia_smi(text: str, source: str) -> NodeScan:
    """Read the text of ``nvidia-smi topo -m`` (one node)."""
    raw_lines = _ANSI.sub("", text.replace("\r\n", "\n").replace("\r", "\n")).split("\n")
    lines = [_tokens(x) for x in raw_lines]
    candidates = [(k, p) for k, toks in enumerate(lines) if (p := _header_at(toks)) is not None]
    if not candidates:
        raise InputError("no `nvidia-smi topo -m` table found (no header line naming GPU0); paste the output of "
                         "`nvidia-smi topo -m`", source=source)
    first_error: InputError | None = None
    for k, p in candidates:
        cols = _columns(lines[k][p:], source, k + 1)
        try:
            rows = _rows(lines, k, cols, source)
        except _NotThisTable as e:
            first_error = first_error or e.error
            continue
        break
    else:
        assert first_error is not None
        raise first_error
    _check_matrix(cols, rows, source)

    gpu_cols = [c for c in cols if _GPU_COL.fullmatch(c)]
    nic_cols = cols[len(gpu_cols):]
    n = len(gpu_cols)
    scan = NodeScan(source=source, fmt="nvidia-smi", gpus=n)
    paths = set()
    for i in range(n):
        for j in range(i + 1, n):
            cell = rows[gpu_cols[i]][j]
            if cell.startswith("NV"):
                links = int(cell[2:])
                if links < 1:
                    raise InputError(f"{cell} is not a number of NVLinks", source=source,
                                     field=f"row {gpu_cols[i]}, column {gpu_cols[j]}")
                scan.pair_links[(i, j)] = links
            else:
                paths.add(cell)
    scan.pcie_paths = [c for c in _PCIE_CELLS if c in paths]

    # NICs: those within a PCIe switch of some GPU (PIX/PXB) carry GPUDirect RDMA traffic; a NIC
    # further from every GPU (NODE/SYS) is a storage or management port when the others exist.
    legend = {}
    for x in raw_lines[k + len(cols):]:
        m = _NIC_LEGEND.search(x)
        if m:
            legend[m.group(1)] = _clean(m.group(2))

    def label(c: str) -> str:
        return f"{c} ({legend[c]})" if c in legend else c

    near = [c for j, c in enumerate(cols) if c in nic_cols and any(rows[g][j] in ("PIX", "PXB") for g in gpu_cols)]
    if near and len(near) < len(nic_cols):
        far = [c for c in nic_cols if c not in near]
        scan.nics = len(near)
        scan.nic_note = (f"{_ports(len(near))} within a PCIe switch of a GPU ({', '.join(map(label, near))}); "
                         f"{', '.join(map(label, far))} not counted (no GPU within a PCIe switch: storage or "
                         f"management)")
    elif nic_cols:
        scan.nics = len(nic_cols)
        scan.nic_note = f"{_ports(len(nic_cols))} ({', '.join(map(label, nic_cols))})"
    else:
        scan.nic_note = "no NIC columns in the table"

    # The GPU model, where `nvidia-smi -L` lines were pasted with the table.
    names = {}
    for x in raw_lines:
        m = _SMI_L.search(x)
        if m:
            names.setdefault(int(m.group(1)), m.group(2).strip())
    if names:
        found = {_facts_by_smi_name(v) for v in names.values()}
        shown = sorted(set(names.values()))
        if len(found) == 1 and None not in found:
            scan.gpu_facts = found.pop()
            scan.gpu_evidence = f"from the file's `nvidia-smi -L` lines ({shown[0]!r})"
        else:
            scan.gpu_evidence = f"the file names the GPUs {', '.join(map(repr, shown))}"
    return scan


# -- NCCL topology XML ----------------------------------------------------------------------------

def _parse_xml(text: str, source: str):
    import xml.etree.ElementTree as ET

    import defusedxml
    import defusedxml.ElementTree as DET

    if text.count("<") > 2 * MAX_XML_ELEMENTS:  # refuse before building a tree of millions of elements
        raise InputError(f"more than {MAX_XML_ELEMENTS} XML elements; an NCCL topology of one node has a few "
                         f"hundred", source=source)
    try:
        return DET.fromstring(text)
    except defusedxml.DefusedXmlException as e:
        raise InputError(f"refusing XML with {type(e).__name__.replace('Forbidden', '').lower()} declarations "
                         f"(NCCL topology files have none; possibly an XML bomb)", source=source) from None
    except ET.ParseError as e:
        line, col = getattr(e, "position", (0, 0))
        msg = str(e).split(":")[0]
        raise InputError(f"invalid XML at line {line} column {col + 1}: {msg}; the file is truncated or "
                         f"garbled: give the whole NCCL_TOPO_DUMP_FILE output", source=source) from None
    except (ValueError, RecursionError) as e:
        raise InputError(f"invalid XML: {str(e).splitlines()[0] if str(e) else type(e).__name__}",
                         source=source) from None


_DECIMAL = re.compile(r"[0-9]{1,12}")
_HEX = re.compile(r"(?:0[xX])?[0-9a-fA-F]{1,8}")
#: The largest value each numeric attribute may take (NCCL writes far smaller ones).
_ATTR_MAX = {"count": 1024, "dev": 1023, "sm": 1000, "device": 0xFFFF, "speed": int(MAX_GBIT_PER_S * 1000)}


def _int_attr(el, name: str, source: str, what: str, *, base: int = 10) -> int | None:
    """A numeric attribute, parsed strictly: ASCII digits (hex with ``base=16``), at most
    :data:`_ATTR_MAX`; anything else is one line naming the attribute, never an overflow."""
    v = el.get(name)
    if v is None or v.strip() == "":
        return None
    text = v.strip()
    if not (_HEX if base == 16 else _DECIMAL).fullmatch(text):
        shown = repr(v) if len(v) <= 20 else repr(v[:20]) + f"... ({len(v)} characters)"
        kind = "hexadecimal, at most 8 digits" if base == 16 else "decimal, at most 12 digits"
        raise InputError(f"{name}={shown} is not a number ({kind})", source=source, field=what)
    n = int(text, base)
    if n > _ATTR_MAX.get(name, 10**9):
        raise InputError(f"{name}={text} is out of range (at most {_ATTR_MAX.get(name, 10**9)})", source=source,
                         field=what)
    return n


def _busid_key(busid: str) -> tuple:
    parts = re.split(r"[:.]", busid)
    try:
        return (0, tuple(int(p, 16) for p in parts))
    except ValueError:
        return (1, busid)


@dataclass
class _XmlGpu:
    busid: str | None
    dev: int | None
    sm: int | None
    device: int | None
    links: list[tuple[str, int, str]]  # (target busid, count, tclass)


def scan_nccl(text: str, source: str) -> NodeScan:
    """Read an NCCL topology XML file (one node)."""
    root = _parse_xml(text, source)
    if root.tag in ("graphs", "graph"):
        raise InputError("this is an NCCL graph dump (NCCL_GRAPH_DUMP_FILE: <graphs>, rings and trees), not a "
                         "topology; give the file NCCL writes with NCCL_TOPO_DUMP_FILE=FILE", source=source)
    if root.tag != "system":
        raise InputError(f"not an NCCL topology: the top element is <{root.tag}>, expected <system> (the file "
                         f"NCCL writes with NCCL_TOPO_DUMP_FILE=FILE)", source=source)
    # Walk with an explicit stack (no recursion), remembering each element's nearest <pci>.
    gpus: list[_XmlGpu] = []
    gpu_pcis = []  # <pci> elements of a GPU class, with or without a <gpu> child
    nets = []
    nic_pcis = []
    stack = [(root, None)]
    seen = 0
    while stack:
        el, pci = stack.pop()
        seen += 1
        if seen > MAX_XML_ELEMENTS:
            raise InputError(f"more than {MAX_XML_ELEMENTS} XML elements; an NCCL topology of one node has a few "
                             f"hundred", source=source)
        tag = el.tag if isinstance(el.tag, str) else ""
        if tag == "pci":
            cls = (el.get("class") or "").lower()
            if cls.startswith("0x03"):
                gpu_pcis.append(el)
            elif cls.startswith("0x02"):
                nic_pcis.append(el)
        elif tag == "gpu":
            where = f"<gpu dev={el.get('dev')!r}>" if el.get("dev") is not None else f"<gpu> #{len(gpus)}"
            links = []
            for nl in el:
                if nl.tag != "nvlink":
                    continue
                count = _int_attr(nl, "count", source, where)
                if count is None or count < 0:
                    raise InputError("an <nvlink> has no valid count", source=source, field=where)
                links.append(((nl.get("target") or "").strip().lower(), count, (nl.get("tclass") or "").lower()))
            device = _int_attr(pci, "device", source, f"<pci busid={pci.get('busid')!r}>", base=16) \
                if pci is not None else None
            gpus.append(_XmlGpu(busid=(pci.get("busid") or "").strip().lower() or None if pci is not None else None,
                                dev=_int_attr(el, "dev", source, where), sm=_int_attr(el, "sm", source, where),
                                device=device, links=links))
        elif tag == "net":
            nets.append(el)
        nxt = el if tag == "pci" else pci
        stack.extend((c, nxt) for c in reversed(list(el)))
    gpus_by_bus = {g.busid for g in gpus}
    bare = []
    for p in gpu_pcis:  # GPUs a hand-written NCCL_TOPO_FILE lists only as PCI devices
        busid = (p.get("busid") or "").strip().lower()
        vendor = (p.get("vendor") or "0x10de").lower()
        if busid not in gpus_by_bus and vendor == "0x10de":
            bare.append(_XmlGpu(busid=busid or None, dev=None, sm=None,
                                device=_int_attr(p, "device", source, f"<pci busid={busid!r}>", base=16),
                                links=[]))
    gpus.extend(bare)
    if not gpus:
        raise InputError("no GPUs in the topology (no <gpu> element, no <pci> of a display class); give the file "
                         "NCCL writes with NCCL_TOPO_DUMP_FILE=FILE on the machine", source=source)
    n = len(gpus)
    if n > MAX_GPUS_PER_NODE:
        raise InputError(f"the file has {n} GPUs; one node holds at most {MAX_GPUS_PER_NODE} (an NVL72 domain): "
                         f"give one NCCL topology file per node", source=source)
    scan = NodeScan(source=source, fmt="nccl", gpus=n)

    devs = [g.dev for g in gpus]
    if all(d is not None for d in devs) and sorted(devs) == list(range(n)):
        gpus.sort(key=lambda g: g.dev)
    else:
        gpus.sort(key=lambda g: _busid_key(g.busid or ""))
        if any(d is not None for d in devs):
            scan.warnings.append(f"the <gpu dev=> numbers {sorted(d for d in devs if d is not None)} are not "
                                 f"0..{n - 1}; GPUs are numbered in PCI bus order instead")
        elif len(gpus) > len(bare):
            scan.warnings.append("the <gpu> elements have no dev= numbers; GPUs are numbered in PCI bus order")
        else:
            scan.warnings.append("no <gpu> elements (a hand-written NCCL_TOPO_FILE?): GPUs are numbered in PCI bus "
                                 "order, and with no <nvlink> elements the fabric is written as PCIe-only; if the "
                                 "GPUs have NVLink, import the file NCCL_TOPO_DUMP_FILE writes on the machine")
    index = {g.busid: i for i, g in enumerate(gpus) if g.busid}

    switch = [0] * n
    directed: dict[tuple[int, int], int] = {}
    odd: list[str] = []
    to_self: list[int] = []
    for i, g in enumerate(gpus):
        for target, count, tclass in g.links:
            if tclass == "0x068000":
                switch[i] += count
            elif tclass.startswith("0x03"):
                j = index.get(target)
                if j == i:
                    to_self.append(i)
                elif j is None:
                    odd.append(f"GPU {i} has an NVLink to {_clean(target)}, which is not a GPU in the file: ignored")
                else:
                    directed[(i, j)] = directed.get((i, j), 0) + count
            else:
                odd.append(f"GPU {i} has an NVLink to a device of class {_clean(tclass) or '?'} (not a GPU or an NVSwitch): "
                           f"ignored")
    if to_self:
        scan.warnings.append(f"GPUs {', '.join(map(str, sorted(set(to_self))))} list an NVLink to themselves (a "
                             f"hand-written NCCL_TOPO_FILE?): ignored")
    scan.warnings.extend(odd)
    for (i, j), c in sorted(directed.items()):
        a, b = min(i, j), max(i, j)
        back = directed.get((j, i))
        if back is not None and back != c and i < j:
            scan.warnings.append(f"GPU {i} lists {c} NVLinks to GPU {j}, GPU {j} lists {back} back; using "
                                 f"{min(c, back)}")
        scan.pair_links[(a, b)] = min(c, back) if back is not None else c
    if any(switch):
        scan.switch_links = switch

    sms = sorted({g.sm for g in gpus if g.sm is not None})
    if len(sms) > 1:
        raise InputError(f"GPUs of different generations in one node (sm {', '.join(map(str, sms))}); the importer "
                         f"writes one GPU type per node", source=source)
    scan.sm = sms[0] if sms else None
    devices = sorted({g.device for g in gpus if g.device is not None})
    if len(devices) > 1:
        raise InputError(f"GPUs of different models in one node (PCI devices "
                         f"{', '.join(f'0x{d:04x}' for d in devices)}); the importer writes one GPU type per node",
                         source=source)
    if devices:
        facts = _facts_by_pci_id(devices[0])
        if facts is not None:
            scan.gpu_facts = facts
            scan.gpu_evidence = f"from PCI device 0x{devices[0]:04x} ({_PCI_IDS})"
        elif devices[0] in _UNCATALOGUED_PCI_IDS:
            scan.gpu_evidence = (f"the file's PCI device 0x{devices[0]:04x} is an {_UNCATALOGUED_PCI_IDS[devices[0]]}, "
                                 f"which is not in the GPU catalog")
        else:
            scan.gpu_evidence = f"the file's PCI device 0x{devices[0]:04x} is not one the importer knows"

    # NICs: one <net> per port, speed in Mb/s. Without <net> elements (hand-written files),
    # network-class <pci> devices count, at an unknown speed.
    if nets:
        gdr = [x for x in nets if x.get("gdr") == "1"]
        used = gdr if gdr and len(gdr) < len(nets) else nets
        names = [_clean(x.get("name") or f"net{k}") for k, x in enumerate(used)]
        scan.nics = len(used)
        scan.nic_note = f"{_ports(len(used))} ({', '.join(names)})"
        if used is gdr:
            skipped = [_clean(x.get("name") or "?") for x in nets if x not in gdr]
            scan.nic_note += f"; {', '.join(skipped)} not counted (no GPUDirect RDMA: gdr=0)"
        speeds = []
        for x in used:
            where = f"<net name={_clean(x.get('name') or '?')!r}>"
            s = _int_attr(x, "speed", source, where)
            if s is not None and 0 < s < MIN_GBIT_PER_S * 1000:
                raise InputError(f"speed={s} Mb/s is below {MIN_GBIT_PER_S * 1000:g} Mb/s, slower than any data "
                                 f"centre network", source=source, field=where)
            if s is not None and s > 0:
                speeds.append(s)
        if speeds:
            scan.nic_gbit_per_s = min(speeds) / 1000
            if len(set(speeds)) > 1:
                scan.warnings.append(f"NIC speeds differ ({', '.join(f'{s / 1000:g}' for s in sorted(set(speeds)))} "
                                     f"Gb/s); using the slowest, {min(speeds) / 1000:g} Gb/s")
            scan.nic_note += f", {scan.nic_gbit_per_s:g} Gb/s each (<net speed=> in Mb/s)"
    elif nic_pcis:
        scan.nics = len(nic_pcis)
        scan.nic_note = f"{_ports(len(nic_pcis))} (network-class <pci> devices; no <net> elements, so no speed)"
    else:
        scan.nic_note = "no NICs in the file"
    return scan


def _read_stdin() -> str:
    import sys

    raw = sys.stdin.buffer.read(MAX_FILE_BYTES + 1)
    if len(raw) > MAX_FILE_BYTES:
        raise InputError(f"more than {MAX_FILE_BYTES // 2**20} MiB on standard input", source="-")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"not UTF-8 text (byte {e.start})", source="-") from None
    if not text.strip():
        raise InputError("nothing on standard input; pipe `nvidia-smi topo -m` into it", source="-")
    return text


# -- from scans to a topology ---------------------------------------------------------------------

def _ports(k: int) -> str:
    return f"{k} NIC port{'' if k == 1 else 's'}"


def _num(x: float) -> int | float:
    return int(x) if float(x).is_integer() else round(x, 3)


def _slug(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", s.lower()).strip("-")


@dataclass(frozen=True)
class _Shape:
    gpu: str
    gpus: int
    fabric: tuple  # hashable form of the fabric mapping
    nics: tuple | None


def _resolve_gpu(scan: NodeScan, gpu: str | None, custom: GpuLinkFacts | None = None) -> tuple[GpuLinkFacts, str]:
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


def _fabric(scan: NodeScan, facts: GpuLinkFacts) -> tuple[dict, str]:
    """The fabric mapping of a node, and a sentence saying how it was derived."""
    n = scan.gpus
    pcie = {"pcie_bandwidth_gbyte_per_s": _num(facts.pcie_gbyte_per_s)}
    pcie_note = f"PCIe {_num(facts.pcie_gbyte_per_s)} GB/s per direction ({facts.pcie_source})"
    if scan.pcie_paths and any(p in scan.pcie_paths for p in ("NODE", "SYS", "SOC", "PHB")):
        pcie_note += (f"; PCIe paths between GPUs in the table: {', '.join(scan.pcie_paths)} (paths through the "
                      f"host bridge or between sockets are slower; the schema prices all at one figure)")
    sw = scan.switch_links
    kind: str
    links: int
    pairs: list[tuple[int, int]] = []
    how: str
    if sw is not None:
        if scan.pair_links:
            scan.warnings.append("direct GPU-to-GPU NVLinks next to NVSwitch links are ignored")
        if all(sw):
            kind, links = "nvswitch", min(sw)
            how = f"every GPU has {links} NVLinks to NVSwitches"
            if max(sw) != links:
                how = f"GPUs have {min(sw)} to {max(sw)} NVLinks to NVSwitches; the smallest is used"
                scan.warnings.append(f"GPUs have unequal NVLink counts to the NVSwitches ({min(sw)} to {max(sw)}); "
                                     f"using {links} for all (conservative)")
        else:
            on = [i for i, c in enumerate(sw) if c]
            scan.warnings.append(f"only GPUs {on} have NVSwitch links; the schema cannot express a partly switched "
                                 f"node, so it is written as PCIe-only (conservative)")
            kind, links, how = "pcie", 0, "only some GPUs reach the NVSwitches; written as PCIe-only"
    elif scan.pair_links:
        pl = scan.pair_links
        degree = [0] * n
        for a, b in pl:
            degree[a] += 1
            degree[b] += 1
        counts = sorted(set(pl.values()))
        if n == 2 or max(degree) <= 1:
            kind, pairs, links = "nvlink-pairs", sorted(pl), min(counts)
            how = f"NVLink joins GPUs in disjoint pairs {[list(p) for p in pairs]}, NV{links}"
            if len(counts) > 1:
                how += " (the smallest count)"
                scan.warnings.append(f"NVLink pairs have unequal link counts (NV{', NV'.join(map(str, counts))}); "
                                     f"using NV{links} for all pairs (conservative)")
        elif len(pl) == n * (n - 1) // 2:
            kind, links = "nvswitch", min(counts)
            how = f"every GPU pair is joined by NV{links}"
            if links * (n - 1) <= facts.nvlink_max_links:
                how += (f" (a direct all-to-all mesh: each GPU's {links * (n - 1)} links are split among its "
                        f"peers; each pair gets NV{links}, which is what is modelled)")
            if len(counts) > 1:
                how = f"every GPU pair is joined by NVLink, NV{counts[0]} to NV{counts[-1]}; the smallest is used"
                scan.warnings.append(f"GPU pairs have unequal NVLink counts (NV{counts[0]} to NV{counts[-1]}); "
                                     f"using NV{links} for every pair (conservative)")
        else:
            g = nx.Graph()
            g.add_nodes_from(range(n))
            for (a, b), c in sorted(pl.items()):
                g.add_edge(a, b, weight=c)
            matching = nx.max_weight_matching(g, maxcardinality=True)
            pairs = sorted(tuple(sorted(e)) for e in matching)
            links = min(pl[p] for p in pairs)
            kind = "nvlink-pairs"
            shown = ", ".join(f"{a}-{b} NV{c}" for (a, b), c in sorted(pl.items()))
            how = f"a partial NVLink mesh, written as the disjoint pairs {[list(p) for p in pairs]} at NV{links}"
            scan.warnings.append(f"NVLink forms a partial mesh ({shown}) that the schema cannot express; writing "
                                 f"the disjoint pairs {[list(p) for p in pairs]} at NV{links} and PCIe between the "
                                 f"rest (conservative)")
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
    fabric: dict = {"kind": kind, "nvlink_bandwidth_gbyte_per_s": _num(bw)}
    if pairs:
        fabric["pairs"] = [list(p) for p in pairs]
    fabric.update(pcie)
    per = f"{links} links x {_num(facts.nvlink_gbyte_per_s_per_link)} GB/s per link per direction = " \
        if facts.nvlink_total_gbyte_per_s is None else ""
    note = f"fabric {kind}: {how}; {per}{_num(bw)} GB/s ({facts.nvlink_source}); {pcie_note}"
    if facts.multi_node_nvlink:
        scan.warnings.append(f"{facts.name} trays belong to a multi-node NVLink domain (NVL72); this file shows one "
                             f"tray, written as an NVSwitch node: declare the domain in 'nvlink_domains' by hand")
    return fabric, note


def _nics(scan: NodeScan, multi_node: bool, nic_gbit_per_s: float | None,
          nics_per_node: int | None) -> tuple[dict | None, str]:
    count = nics_per_node if nics_per_node is not None else scan.nics
    if count > MAX_NICS_PER_NODE:
        raise InputError(f"{count} NIC ports in one node; at most {MAX_NICS_PER_NODE} (check the file, or give "
                         f"--nics-per-node)", source=scan.source if nics_per_node is None else "--nics-per-node")
    how = f"{_ports(count)} (--nics-per-node)" if nics_per_node is not None else scan.nic_note
    speed = nic_gbit_per_s if nic_gbit_per_s is not None else scan.nic_gbit_per_s
    if nic_gbit_per_s is not None:
        how += f", {_num(nic_gbit_per_s)} Gb/s each (--nic-gbit-per-s)"
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
    return {"count": count, "bandwidth_gbit_per_s": _num(speed)}, f"NICs: {how}"


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
    scans = []
    for f in files:
        text = _read_stdin() if f == "-" else read_text_file(f)[0]
        src = "<stdin>" if f == "-" else f
        scans.append(scan_nvidia_smi(text, src) if fmt == "nvidia-smi" else scan_nccl(text, src))
    files = [s.source for s in scans]
    total = nodes if nodes is not None else len(files)
    multi = total > 1

    shapes: list[_Shape] = []
    notes: dict[_Shape, str] = {}
    for s in scans:
        facts, evidence = _resolve_gpu(s, gpu, custom)
        fabric, fabric_note = _fabric(s, facts)
        nics, nic_note = _nics(s, multi, nic_gbit_per_s, nics_per_node)
        shape = _Shape(gpu=facts.name, gpus=s.gpus, fabric=tuple(
            (k, tuple(map(tuple, v)) if k == "pairs" else v) for k, v in fabric.items()),
            nics=tuple(nics.items()) if nics else None)
        shapes.append(shape)
        notes.setdefault(shape, f"{s.gpus}x {facts.name} (GPU model {evidence}); {fabric_note}; {nic_note}")

    type_names: dict[_Shape, str] = {}
    for sh in shapes:
        if sh in type_names:
            continue
        base = f"{_slug(sh.gpu)}-{sh.gpus}gpu"
        nm, k = base, 2
        while nm in type_names.values():
            nm, k = f"{base}-{k}", k + 1
        type_names[sh] = nm

    node_types = {}
    for sh, nm in type_names.items():
        fabric = {k: ([list(p) for p in v] if k == "pairs" else v) for k, v in sh.fabric}
        nt: dict = {"gpu": sh.gpu, "gpus_per_node": sh.gpus, "fabric": fabric}
        if sh.nics:
            nt["nics"] = dict(sh.nics)
        node_types[nm] = nt

    tool = "nvidia-smi topo -m" if fmt == "nvidia-smi" else "NCCL topology XML"
    if nodes is not None and nodes > 1:
        origin = f"{files[0]} (every node)"
    elif len(files) == 1:
        origin = files[0]
    else:
        origin = ", ".join(f"{f} (node{i})" for i, f in enumerate(files))
    parts = [f"Imported by `plan-search topology import {fmt}` from {tool}: {origin}."]
    for sh, nm in type_names.items():
        parts.append(f"{nm}: {notes[sh]}.")
    parts.append("GPU indices are the tool's (NVML, PCI bus order): run with CUDA_DEVICE_ORDER=PCI_BUS_ID so "
                 "CUDA_VISIBLE_DEVICES means the same GPUs.")
    if multi:
        parts.append("Nodes on one non-blocking switch (single-switch; edit 'network' for a leaf-spine fabric).")
    warnings = [f"{s.source}: {w}" for s in scans for w in s.warnings]
    if warnings:
        parts.append("Warnings: " + " ".join(w if w.endswith(".") else w + "." for w in warnings))

    topo_name = name.strip() if name is not None else (
        "imported" if files[0] == "<stdin>" else _slug(Path(files[0]).stem)[:NAME_MAX_CHARS].rstrip("-") or "imported")
    data: dict = {"name": topo_name, "description": _Folded(" ".join(parts)), "node_types": node_types}
    if nodes is not None and nodes > 1:
        data["node_groups"] = [{"prefix": "node", "count": nodes, "type": type_names[shapes[0]]}]
    else:
        data["nodes"] = [{"name": f"node{i}", "type": type_names[sh]} for i, sh in enumerate(shapes)]
    data["network"] = {"kind": "single-switch"} if multi else {"kind": "none"}
    if gpu_spec is not None:
        figures = gpu_spec[1].model_dump(exclude_none=True)
        figures["source"] = figures.get("source") or f"user-defined GPU type from {gpu_spec[2]}"
        data["gpu_types"] = {gpu_spec[0]: figures}

    header = (f"# Generated by `plan-search topology import {fmt}` from {len(files)} file(s); "
              f"figures and their sources are in the description.\n")
    body = yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=None, width=100, allow_unicode=True)
    plain = yaml.safe_load(body)
    parse_topology(plain, source=f"imported topology from {files[0]}")  # validates; a failure here is a bug
    return ImportResult(data=plain, yaml_text=header + body, warnings=warnings)
