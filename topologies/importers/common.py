"""What the importers share: :class:`NodeScan` (what one file says about one node), and the
small helpers every format uses to read its input and word its notes."""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field

from topologies.errors import InputError
from topologies.importers.gpu_facts import GpuLinkFacts
from topologies.load import MAX_FILE_BYTES


def clean(text: str, limit: int = 64) -> str:
    """Text a dump gives (a NIC name), kept to printable characters and ``limit`` of them,
    for the description and warnings: a dump cannot put terminal escapes on anyone's screen."""
    kept = "".join(c for c in text if c.isprintable())
    return kept if len(kept) <= limit else kept[:limit] + "..."


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


def read_stdin() -> str:
    """Standard input as text (``FILE`` given as ``-``), refused when too large, not UTF-8 or empty."""
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


def ports(k: int) -> str:
    """``k`` NIC port(s), in words."""
    return f"{k} NIC port{'' if k == 1 else 's'}"


def num(x: float) -> int | float:
    """A figure as YAML should show it: an int when whole, else rounded to 3 places."""
    return int(x) if float(x).is_integer() else round(x, 3)


def slug(s: str) -> str:
    """Lower-case letters and digits joined by '-' (a name for a node type or a topology)."""
    return re.sub(r"[^a-z0-9]+", "-", s.lower()).strip("-")
