"""Topology importers: what a machine reports about itself, turned into a topology file.

Two inputs, one node (machine) per file, each read by its own module into a
:class:`~topologies.importers.common.NodeScan` (what the file says about the node):

:mod:`~topologies.importers.nvidia_smi`
    the text matrix ``nvidia-smi topo -m`` prints;
:mod:`~topologies.importers.nccl`
    NCCL topology XML (``NCCL_TOPO_DUMP_FILE`` output or a hand-written ``NCCL_TOPO_FILE``).

Then :mod:`~topologies.importers.node_type` turns a scan into a node type (the GPU model,
the fabric, the NICs, each with a sentence saying how it was derived), and
:mod:`~topologies.importers.build` assembles the topology and its YAML. The link figures
of each GPU, with their sources, are in :mod:`~topologies.importers.gpu_facts`; the helpers
the formats share are in :mod:`~topologies.importers.common`.

The GPU model: ``nvidia-smi topo -m`` does not print it; the caller names it (``--gpu``),
or it is read from ``GPU 0: NVIDIA H100 80GB HBM3`` lines (``nvidia-smi -L``) pasted in the
same file, or, for NCCL XML, from the PCI device id of the GPUs' ``<pci>`` elements.

Nothing here reads the GPU catalog (``costmodels`` sits above this layer); the names in
:data:`GPU_LINK_FACTS` are catalog names, which a test checks.
"""
from topologies.importers.build import MAX_NODES, ImportResult, import_topology
from topologies.importers.common import NodeScan
from topologies.importers.gpu_facts import GPU_LINK_FACTS, GpuLinkFacts, custom_link_facts
from topologies.importers.nccl import MAX_XML_ELEMENTS, scan_nccl
from topologies.importers.nvidia_smi import scan_nvidia_smi

__all__ = ["GPU_LINK_FACTS", "MAX_NODES", "MAX_XML_ELEMENTS", "GpuLinkFacts", "ImportResult", "NodeScan",
           "custom_link_facts", "import_topology", "scan_nccl", "scan_nvidia_smi"]
