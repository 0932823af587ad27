"""NCCL topology XML: ``NCCL_TOPO_DUMP_FILE`` output or a hand-written ``NCCL_TOPO_FILE``, read into
a :class:`NodeScan`.

``<system>`` > ``<cpu>`` > ``<pci>`` tree > ``<gpu dev= sm=>`` with ``<nvlink target= count=
tclass=>`` children (tclass 0x068000: an NVSwitch; 0x0302xx/0x0300xx: another GPU), and
``<nic>`` > ``<net name= speed=>`` (speed in Mb/s). The GPU model comes from the PCI device id
of the GPUs' ``<pci>`` elements. Parsed with :mod:`defusedxml` (no DTDs, entities or external
references: no "billion laughs"), walked without recursion, every number parsed strictly.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from topologies.errors import InputError
from topologies.importers.common import NodeScan, clean, ports
from topologies.importers.gpu_facts import PCI_IDS_SOURCE, UNCATALOGUED_PCI_IDS, facts_by_pci_id
from topologies.schema import MAX_GBIT_PER_S, MAX_GPUS_PER_NODE, MIN_GBIT_PER_S

MAX_XML_ELEMENTS = 200_000


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



@dataclass
class _XmlWalk:
    """What the walk over the XML tree collects."""

    gpus: list[_XmlGpu] = field(default_factory=list)  # <gpu> elements
    gpu_pcis: list = field(default_factory=list)  # <pci> elements of a GPU class, with or without a <gpu> child
    nets: list = field(default_factory=list)  # <net> elements, one per NIC port
    nic_pcis: list = field(default_factory=list)  # <pci> elements of a network class


def scan_nccl(text: str, source: str) -> NodeScan:
    """Read an NCCL topology XML file (one node)."""
    root = _parse_xml(text, source)
    _check_root(root, source)
    found = _walk(root, source)
    bare = _bare_gpus(found, source)
    gpus = found.gpus + bare
    if not gpus:
        raise InputError("no GPUs in the topology (no <gpu> element, no <pci> of a display class); give the file "
                         "NCCL writes with NCCL_TOPO_DUMP_FILE=FILE on the machine", source=source)
    _check_distinct(gpus, source)
    n = len(gpus)
    if n > MAX_GPUS_PER_NODE:
        raise InputError(f"the file has {n} GPUs; one node holds at most {MAX_GPUS_PER_NODE} (an NVL72 domain): "
                         f"give one NCCL topology file per node", source=source)
    scan = NodeScan(source=source, fmt="nccl", gpus=n)
    _number_gpus(scan, gpus, bare=len(bare))
    _nvlinks(scan, gpus)
    _gpu_model(scan, gpus)
    _nics(scan, found.nets, found.nic_pcis)
    return scan


def _check_distinct(gpus: list[_XmlGpu], source: str) -> None:
    """Refuse a GPU listed twice: two ``<gpu>`` elements under one bus id are a garbled or hand-merged
    file (one duplicated ``<pci>`` block made a 4-GPU machine 5 GPUs, and rewired its NVLink pairs to a
    GPU that does not exist)."""
    seen: set = set()
    for g in gpus:
        if g.busid is not None and g.busid in seen:
            shown = clean(g.busid, 40)
            raise InputError(f"two GPUs have the bus id {shown}: the file lists a GPU twice (garbled or merged by "
                             "hand); give the file NCCL_TOPO_DUMP_FILE writes on the machine", source=source,
                             field=f"<pci busid={shown!r}>")
        seen.add(g.busid)
    # repeated dev numbers alone fall back to bus order with a warning (_number_gpus): NCCL's fused
    # multi-node NVLink topologies may number each tray's GPUs from 0


def _check_root(root, source: str) -> None:
    """Refuse a file whose top element is not ``<system>`` (an NCCL graph dump, say), saying which file to give."""
    if root.tag in ("graphs", "graph"):
        raise InputError("this is an NCCL graph dump (NCCL_GRAPH_DUMP_FILE: <graphs>, rings and trees), not a "
                         "topology; give the file NCCL writes with NCCL_TOPO_DUMP_FILE=FILE", source=source)
    if root.tag != "system":
        raise InputError(f"not an NCCL topology: the top element is <{root.tag}>, expected <system> (the file "
                         f"NCCL writes with NCCL_TOPO_DUMP_FILE=FILE)", source=source)


def _walk(root, source: str) -> _XmlWalk:
    """Collect the GPUs, GPU- and network-class ``<pci>`` elements and ``<net>`` ports, walking with an
    explicit stack (no recursion, at most :data:`MAX_XML_ELEMENTS`) and remembering each element's
    nearest ``<pci>`` (which holds a GPU's bus id and PCI device id)."""
    found = _XmlWalk()
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
                found.gpu_pcis.append(el)
            elif cls.startswith("0x02"):
                found.nic_pcis.append(el)
        elif tag == "gpu":
            found.gpus.append(_xml_gpu(el, pci, source, len(found.gpus)))
        elif tag == "net":
            found.nets.append(el)
        nxt = el if tag == "pci" else pci
        stack.extend((c, nxt) for c in reversed(list(el)))
    return found


def _xml_gpu(el, pci, source: str, seen_before: int) -> _XmlGpu:
    """One ``<gpu>`` element (``seen_before`` GPUs precede it) under its nearest ``<pci>``: its NVLinks,
    bus id, ``dev`` and ``sm`` numbers and PCI device id."""
    where = f"<gpu dev={clean(el.get('dev'), 20)!r}>" if el.get("dev") is not None else f"<gpu> #{seen_before}"
    links = []
    for nl in el:
        if nl.tag != "nvlink":
            continue
        count = _int_attr(nl, "count", source, where)
        if count is None or count < 1:
            raise InputError("an <nvlink> has no valid count (at least 1 link)", source=source, field=where)
        tclass = (nl.get("tclass") or "").strip().lower()
        if re.fullmatch(r"[0-9a-f]{6}", tclass):  # a class code written without its 0x
            tclass = "0x" + tclass
        links.append(((nl.get("target") or "").strip().lower(), count, tclass))
    device = _int_attr(pci, "device", source, f"<pci busid={clean(pci.get('busid') or '', 40)!r}>", base=16) \
        if pci is not None else None
    return _XmlGpu(busid=(pci.get("busid") or "").strip().lower() or None if pci is not None else None,
                   dev=_int_attr(el, "dev", source, where), sm=_int_attr(el, "sm", source, where),
                   device=device, links=links)


def _bare_gpus(found: _XmlWalk, source: str) -> list[_XmlGpu]:
    """GPUs a hand-written ``NCCL_TOPO_FILE`` lists only as NVIDIA PCI devices (no ``<gpu>`` child)."""
    gpus_by_bus = {g.busid for g in found.gpus}
    bare = []
    for p in found.gpu_pcis:
        busid = (p.get("busid") or "").strip().lower()
        vendor = (p.get("vendor") or "0x10de").lower()
        if busid not in gpus_by_bus and vendor == "0x10de":
            bare.append(_XmlGpu(busid=busid or None, dev=None, sm=None,
                                device=_int_attr(p, "device", source, f"<pci busid={clean(busid, 40)!r}>",
                                                 base=16),
                                links=[]))
    return bare


def _number_gpus(scan: NodeScan, gpus: list[_XmlGpu], *, bare: int) -> None:
    """Sort ``gpus`` into their indices: by ``dev`` where those are 0..n-1, else in PCI bus order,
    with a warning saying why (``bare`` of them were PCI devices only)."""
    n = len(gpus)
    devs = [g.dev for g in gpus]
    if all(d is not None for d in devs) and sorted(devs) == list(range(n)):
        gpus.sort(key=lambda g: g.dev)
        return
    gpus.sort(key=lambda g: _busid_key(g.busid or ""))
    if any(d is not None for d in devs):
        scan.warnings.append(f"the <gpu dev=> numbers {sorted(d for d in devs if d is not None)} are not "
                             f"0..{n - 1}; GPUs are numbered in PCI bus order instead")
    elif len(gpus) > bare:
        scan.warnings.append("the <gpu> elements have no dev= numbers; GPUs are numbered in PCI bus order")
    else:
        scan.warnings.append("no <gpu> elements (a hand-written NCCL_TOPO_FILE?): GPUs are numbered in PCI bus "
                             "order, and with no <nvlink> elements the fabric is written as PCIe-only; if the "
                             "GPUs have NVLink, import the file NCCL_TOPO_DUMP_FILE writes on the machine")


def _nvlinks(scan: NodeScan, gpus: list[_XmlGpu]) -> None:
    """Record each GPU's NVLinks to NVSwitches and each GPU pair's NVLinks (the smaller count where the
    two ends disagree); links to itself, to a device not in the file or of another class are warned
    about and ignored."""
    index = {g.busid: i for i, g in enumerate(gpus) if g.busid}
    switch = [0] * len(gpus)
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
                    odd.append(f"GPU {i} has an NVLink to {clean(target)}, which is not a GPU in the file: ignored")
                else:
                    directed[(i, j)] = directed.get((i, j), 0) + count
            else:
                odd.append(f"GPU {i} has an NVLink to a device of class {clean(tclass) or '?'} (not a GPU or an NVSwitch): "
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


def _gpu_model(scan: NodeScan, gpus: list[_XmlGpu]) -> None:
    """The GPUs' generation (``sm``) and model (PCI device id, looked up in the link facts); a node
    mixing either is refused, since the importer writes one GPU type per node."""
    sms = sorted({g.sm for g in gpus if g.sm is not None})
    if len(sms) > 1:
        raise InputError(f"GPUs of different generations in one node (sm {', '.join(map(str, sms))}); the importer "
                         f"writes one GPU type per node", source=scan.source)
    scan.sm = sms[0] if sms else None
    devices = sorted({g.device for g in gpus if g.device is not None})
    if len(devices) > 1:
        raise InputError(f"GPUs of different models in one node (PCI devices "
                         f"{', '.join(f'0x{d:04x}' for d in devices)}); the importer writes one GPU type per node",
                         source=scan.source)
    if not devices:
        return
    facts = facts_by_pci_id(devices[0])
    if facts is not None:
        scan.gpu_facts = facts
        scan.gpu_evidence = f"from PCI device 0x{devices[0]:04x} ({PCI_IDS_SOURCE})"
    elif devices[0] in UNCATALOGUED_PCI_IDS:
        scan.gpu_evidence = (f"the file's PCI device 0x{devices[0]:04x} is an {UNCATALOGUED_PCI_IDS[devices[0]]}, "
                             f"which is not in the GPU catalog")
    else:
        scan.gpu_evidence = f"the file's PCI device 0x{devices[0]:04x} is not one the importer knows"


def _nics(scan: NodeScan, nets: list, nic_pcis: list) -> None:
    """Count the NIC ports: one ``<net>`` per port (those with GPUDirect RDMA, ``gdr=1``, where only some
    have it), at the slowest ``speed`` (Mb/s). Without ``<net>`` elements (hand-written files),
    network-class ``<pci>`` devices count, at an unknown speed."""
    if not nets:
        if nic_pcis:
            scan.nics = len(nic_pcis)
            scan.nic_note = f"{ports(len(nic_pcis))} (network-class <pci> devices; no <net> elements, so no speed)"
        else:
            scan.nic_note = "no NICs in the file"
        return
    gdr = [x for x in nets if x.get("gdr") == "1"]
    used = gdr if gdr and len(gdr) < len(nets) else nets
    names = [clean(x.get("name") or f"net{k}") for k, x in enumerate(used)]
    scan.nics = len(used)
    scan.nic_note = f"{ports(len(used))} ({', '.join(names)})"
    if used is gdr:
        skipped = [clean(x.get("name") or "?") for x in nets if x not in gdr]
        scan.nic_note += f"; {', '.join(skipped)} not counted (no GPUDirect RDMA: gdr=0)"
    speeds = _net_speeds(scan.source, used)
    if speeds:
        scan.nic_gbit_per_s = min(speeds) / 1000
        if len(set(speeds)) > 1:
            scan.warnings.append(f"NIC speeds differ ({', '.join(f'{s / 1000:g}' for s in sorted(set(speeds)))} "
                                 f"Gb/s); using the slowest, {min(speeds) / 1000:g} Gb/s")
        scan.nic_note += f", {scan.nic_gbit_per_s:g} Gb/s each (<net speed=> in Mb/s)"


def _net_speeds(source: str, nets: list) -> list[int]:
    """The ``speed`` (Mb/s) of each ``<net>`` that gives one; a speed below any data-centre network is refused."""
    speeds = []
    for x in nets:
        where = f"<net name={clean(x.get('name') or '?')!r}>"
        s = _int_attr(x, "speed", source, where)
        if s is not None and 0 < s < MIN_GBIT_PER_S * 1000:
            raise InputError(f"speed={s} Mb/s is below {MIN_GBIT_PER_S * 1000:g} Mb/s, slower than any data "
                             f"centre network", source=source, field=where)
        if s is not None and s > 0:
            speeds.append(s)
    return speeds
