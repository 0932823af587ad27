"""What the importers know about each GPU: NVLink and PCIe figures, PCI device ids and the names
``nvidia-smi`` prints, each figure with its source.

Nothing here reads the GPU catalog (``costmodels`` sits above this layer); the names in
:data:`GPU_LINK_FACTS` are catalog names, which a test checks.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from topologies.schema import GpuTypeSpec

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
PCI_IDS_SOURCE = "PCI ID Repository (pci.ids), vendor 10de"


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
UNCATALOGUED_PCI_IDS = {0x2322: "H800 PCIe", 0x1DB1: "V100 SXM2 16GB", 0x1DB4: "V100 PCIe 16GB",
                        0x1DB6: "V100 PCIe 32GB"}


def facts_by_pci_id(device: int) -> GpuLinkFacts | None:
    """The catalog GPU with this NVIDIA PCI device id, or None."""
    for f in GPU_LINK_FACTS.values():
        if device in f.pci_device_ids:
            return f
    return None


def facts_by_smi_name(name: str) -> GpuLinkFacts | None:
    """The catalog GPU whose ``nvidia-smi`` name patterns match ``name``, or None."""
    for f in GPU_LINK_FACTS.values():
        if any(re.search(p, name, re.IGNORECASE) for p in f.smi_names):
            return f
    return None
