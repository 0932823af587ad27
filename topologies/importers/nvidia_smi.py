"""``nvidia-smi topo -m``: the text matrix of one node, read into a :class:`NodeScan`.

A header of columns (``GPU0..GPUn``, then NICs named ``NIC0..`` on newer drivers or by
device, ``mlx5_0..``, on older ones, then ``CPU Affinity``, ``NUMA Affinity``, ``GPU NUMA
ID``), one row per device, cells ``X`` (self), ``NV#`` (a bonded set of # NVLinks),
``PIX``/``PXB``/``PHB``/``NODE``/``SYS`` (PCIe paths; ``SOC`` on old drivers), then a
``Legend:`` block and, on newer drivers, a ``NIC Legend:`` that names the NICs. Tabs or
spaces, leading indentation, log prefixes (timestamps) before each line, blank lines and ANSI
colour codes are tolerated. The table does not name the GPU model; ``GPU 0: NVIDIA H100 80GB
HBM3`` lines (``nvidia-smi -L``) pasted in the same file do.
"""
from __future__ import annotations

import re
import unicodedata

from topologies.errors import InputError
from topologies.importers.common import NodeScan, clean, ports
from topologies.importers.gpu_facts import facts_by_smi_name
from topologies.schema import MAX_GPUS_PER_NODE

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_CELL = re.compile(r"(X|NV\d{1,3}|PIX|PXB|PHB|NODE|SYS|SOC)")
_PCIE_CELLS = ("PIX", "PXB", "PHB", "NODE", "SYS", "SOC")
_AFFINITY = {"CPU_Affinity", "NUMA_Affinity", "GPU_NUMA_ID"}
_DEVICE_NAME = re.compile(r"[A-Za-z][\w.:\-]*")
_GPU_COL = re.compile(r"GPU(\d+)")
#: Tokens that name a device of the matrix (a GPU, a NIC by number or, on older drivers, by device).
_LABELISH = re.compile(r"(?:GPU|NIC)\d+|mlx\d+_\d+")
_SMI_L = re.compile(r"\bGPU ([0-9]{1,4}): (.+?)\s*(?:\(UUID: [^)]*\))?\s*$")
_MIG_L = re.compile(r"^\s*MIG \S+\s+Device\s+\d+:")  # a MIG device line under its GPU in `nvidia-smi -L`
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
    hidden = next((c for c in cols if any(not ch.isprintable() or unicodedata.category(ch) == "Cf" for ch in c)), None)
    if hidden is not None:  # a zero-width space after GPU3 made the message blame GPU4
        raise InputError(f"the header's column {clean(repr(hidden), 40)} holds an invisible character; paste the "
                         "output of `nvidia-smi topo -m` as it printed", source=src, field=where)
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


def _rows(lines: list[list[str]], start: int, cols: list[str], src: str, last: int) -> tuple[dict[str, list[str]], int]:
    """Find each column's row after the header line ``start``; return (label -> its cells, the index of
    the line holding the last row). ``last`` is the index of the file's last non-empty line.

    A row is the first line naming a column label (after any log prefix). A failure in the
    first row raises :class:`_NotThisTable`, so that a later header (the real table) is tried.
    """
    want = set(cols)
    rows: dict[str, list[str]] = {}
    end = start
    for k in range(start + 1, len(lines)):
        toks = lines[k]
        if not toks:
            continue
        if " ".join(toks).endswith("Legend:"):
            break
        hits = [i for i, t in enumerate(toks) if t in want]
        if not hits:
            continue
        q = next((i for i in hits if i + 1 < len(toks) and _is_cell(toks[i + 1])), hits[0])
        label, after = toks[q], toks[q + 1:]
        cells = []
        for t in after:
            if not _is_cell(t):
                break
            cells.append(t)
        error = _row_error(label, cells, after, cols, src, f"row {label} (line {k + 1})",
                           twice=label in rows, at_end=k == last)
        if error is not None:
            raise _NotThisTable(error) if not rows else error
        rows[label] = cells
        end = k
        if len(rows) == len(cols):
            break
    missing = [c for c in cols if c not in rows]
    if missing:
        error = InputError("is missing (the table looks truncated); paste the whole output of "
                           "`nvidia-smi topo -m`", source=src, field=f"row {missing[0]}")
        raise _NotThisTable(error) if not rows else error
    return rows, end


def _check_not_wrapped(lines: list[list[str]], start: int, end: int, cols: list[str], src: str) -> None:
    """Refuse a table whose lines were cut and continued on the next line (a mail client, a ticket
    system or `fold` wraps it at a fixed width): its first lines read as a smaller header and shorter
    rows, so without this check a wrapped 8-GPU table imports as 7 GPUs, or with one NIC of eight.
    Between the header and the last row, every line must be a row; a line naming a device the header
    lacks, or holding cells but no row label, is a wrapped piece."""
    want = set(cols)
    for k in range(start + 1, min(end + 2, len(lines))):
        toks = lines[k]
        if not toks or " ".join(toks).endswith("Legend:"):
            continue
        # past the last row only its continuation can follow: a log line naming a NIC there is no row
        stray = next((t for t in toks if _LABELISH.fullmatch(t) and t not in want), None) if k <= end else None
        if stray is not None:
            raise InputError(f"names {stray}, a device the header ({cols[0]}..{cols[-1]}) does not list: the table "
                             "looks wrapped or cut; paste the output of `nvidia-smi topo -m` unwrapped", source=src,
                             field=f"line {k + 1}")
        if not any(t in want for t in toks) and sum(map(_is_cell, toks)) >= 2:
            raise InputError("holds topology cells but no row label: the table looks wrapped (each row continued on "
                             "the next line); paste the output of `nvidia-smi topo -m` unwrapped", source=src,
                             field=f"line {k + 1}")


def _row_error(label: str, cells: list[str], after: list[str], cols: list[str], src: str, where: str, *,
               twice: bool, at_end: bool) -> InputError | None:
    """What is wrong with the row ``label`` (its ``cells``, then the tokens ``after`` its label), if
    anything: a second row of one label, a truncated file, a token that is no cell, too few or too
    many cells for the header's columns."""
    n = len(cols)
    if twice:
        return InputError("appears twice; give one `nvidia-smi topo -m` table per file (one file per node)",
                          source=src, field=where)
    if len(cells) < n and at_end:
        return InputError(f"the file ends in the middle of row {label}: the table is truncated; paste the whole "
                          f"output of `nvidia-smi topo -m`", source=src, field=where)
    if len(cells) < n:
        bad = after[len(cells)] if len(after) > len(cells) else None
        if bad is not None and label.startswith("GPU") and not re.fullmatch(r"[\d,\-]+|N/A", bad):
            return InputError(f"{bad!r} is not a topology cell (X, NV#, PIX, PXB, PHB, NODE, SYS, SOC); the "
                              f"table is garbled: paste the whole output of `nvidia-smi topo -m`",
                              source=src, field=f"{where}, column {cols[len(cells)]}")
        got = f"{len(cells)} cells" + (f" then {bad!r}" if bad is not None else "")
        return InputError(f"has {got}, but the header has {n} columns ({cols[0]}..{cols[-1]}); the "
                          f"table is truncated or garbled: paste the whole output of `nvidia-smi topo -m`",
                          source=src, field=where)
    if len(cells) > n:
        return InputError(f"has {len(cells)} cells, but the header has {n} columns ({cols[0]}..{cols[-1]}): "
                          f"the matrix is not square; paste the whole output of `nvidia-smi topo -m`",
                          source=src, field=where)
    return None


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
    k, cols, rows = _find_table([_tokens(x) for x in raw_lines], source)
    _check_matrix(cols, rows, source)
    gpu_cols = [c for c in cols if _GPU_COL.fullmatch(c)]
    scan = NodeScan(source=source, fmt="nvidia-smi", gpus=len(gpu_cols))
    _gpu_links(scan, gpu_cols, rows)
    _nics(scan, raw_lines[k + len(cols):], cols, rows, gpu_cols)
    _gpu_names(scan, raw_lines)
    return scan


def _find_table(lines: list[list[str]], source: str) -> tuple[int, list[str], dict[str, list[str]]]:
    """The topology matrix: (its header's line index, its columns, its rows). A file may hold other
    matrices first (``topo -p2p``); the first header whose rows read as a topology matrix wins, and
    when none does, the error of the first is raised."""
    candidates = [(k, p) for k, toks in enumerate(lines) if (p := _header_at(toks)) is not None]
    if not candidates:
        raise InputError("no `nvidia-smi topo -m` table found (no header line naming GPU0); paste the output of "
                         "`nvidia-smi topo -m`", source=source)
    last = max((k for k, toks in enumerate(lines) if toks), default=-1)  # once: a log may hold many candidates
    first_error: InputError | None = None
    found: tuple[int, list[str], dict[str, list[str]]] | None = None
    end = -1
    for k, p in candidates:
        if k <= end:
            continue  # a line of the table found
        try:
            cols = _columns(lines[k][p:], source, k + 1)
            rows, row_end = _rows(lines, k, cols, source, last)
        except _NotThisTable as e:
            first_error = first_error or e.error
            continue
        except InputError as e:  # a log line naming GPU0 ("Using GPU0 for rank 0") is no header
            first_error = first_error or e
            continue
        if found is not None:
            raise InputError(f"a second `nvidia-smi topo -m` table starts here (the first is at line {found[0] + 1}); "
                             "give one table per file, one file per node", source=source, field=f"line {k + 1}")
        _check_not_wrapped(lines, k, row_end, cols, source)
        found, end = (k, cols, rows), row_end
    if found is not None:
        return found
    assert first_error is not None
    raise first_error


def _gpu_links(scan: NodeScan, gpu_cols: list[str], rows: dict[str, list[str]]) -> None:
    """Record the NVLinks between each GPU pair (``NV#`` cells) and the PCIe path kinds between the rest."""
    n = len(gpu_cols)
    paths = set()
    for i in range(n):
        for j in range(i + 1, n):
            cell = rows[gpu_cols[i]][j]
            if cell.startswith("NV"):
                links = int(cell[2:])
                if links < 1:
                    raise InputError(f"{cell} is not a number of NVLinks", source=scan.source,
                                     field=f"row {gpu_cols[i]}, column {gpu_cols[j]}")
                scan.pair_links[(i, j)] = links
            else:
                paths.add(cell)
    scan.pcie_paths = [c for c in _PCIE_CELLS if c in paths]


def _nics(scan: NodeScan, after_table: list[str], cols: list[str], rows: dict[str, list[str]],
          gpu_cols: list[str]) -> None:
    """Count the NIC ports. NICs within a PCIe switch of some GPU (PIX/PXB) carry GPUDirect RDMA
    traffic; a NIC further from every GPU (NODE/SYS) is a storage or management port when the others
    exist. The ``NIC Legend:`` lines after the table name them."""
    nic_cols = cols[len(gpu_cols):]
    legend = {}
    for x in after_table:
        m = _NIC_LEGEND.search(x)
        if m:
            legend[m.group(1)] = clean(m.group(2))

    def label(c: str) -> str:
        return f"{c} ({legend[c]})" if c in legend else c

    near = [c for j, c in enumerate(cols) if c in nic_cols and any(rows[g][j] in ("PIX", "PXB") for g in gpu_cols)]
    if near and len(near) < len(nic_cols):
        far = [c for c in nic_cols if c not in near]
        scan.nics = len(near)
        scan.nic_note = (f"{ports(len(near))} within a PCIe switch of a GPU ({', '.join(map(label, near))}); "
                         f"{', '.join(map(label, far))} not counted (no GPU within a PCIe switch: storage or "
                         f"management)")
    elif nic_cols:
        scan.nics = len(nic_cols)
        scan.nic_note = f"{ports(len(nic_cols))} ({', '.join(map(label, nic_cols))})"
    else:
        scan.nic_note = "no NIC columns in the table"


def _gpu_names(scan: NodeScan, raw_lines: list[str]) -> None:
    """The GPU model, where ``nvidia-smi -L`` lines were pasted with the table: found when all name one
    catalog GPU, else what they say is kept as evidence for the error that asks for ``--gpu``."""
    names = {}
    mig = set()
    current = None
    for x in raw_lines:
        m = _SMI_L.search(x)
        if m:
            current = int(m.group(1))
            names.setdefault(current, m.group(2).strip())
        elif current is not None and _MIG_L.search(x):
            mig.add(current)
    beyond = sorted(i for i in names if i >= scan.gpus)
    if beyond:
        raise InputError(f"the `nvidia-smi -L` lines name GPU {beyond[0]}, but the table has {scan.gpus} GPUs: the "
                         "lines come from another machine; paste both outputs from the same node", source=scan.source)
    if mig:
        which = f"GPU {min(mig)} is" if len(mig) == 1 else f"GPUs {', '.join(map(str, sorted(mig)))} are"
        scan.warnings.append(f"{which} in MIG mode "
                             "(`nvidia-smi -L` lists MIG devices): the topology plans whole GPUs; disable MIG "
                             "before serving from it, or plan the MIG slices as GPUs of their own")
    if names:
        found = {facts_by_smi_name(v) for v in names.values()}
        shown = sorted(set(names.values()))
        if len(found) == 1 and None not in found:
            scan.gpu_facts = found.pop()
            scan.gpu_evidence = f"from the file's `nvidia-smi -L` lines ({shown[0]!r})"
        else:
            scan.gpu_evidence = f"the file names the GPUs {', '.join(map(repr, shown))}"
