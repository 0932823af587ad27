"""Collective and point-to-point communication times over a :class:`topologies.graph.Link`.

The link is what the topology graph reports for the group: its slowest hop's per-direction
bandwidth and that hop's latency. The all-reduce follows each runtime's own path (its
peer-memory kernels or NCCL) with constants read off NVIDIA's measured op tables
(``costmodels/data/collectives.csv``); the other collectives reach ``COLLECTIVE_EFFICIENCY`` of
the link, NCCL's measured ring efficiency.
"""
from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources

from costmodels import calibration as cal
from topologies.graph import Link


def _bw(link: Link) -> float:
    return link.bandwidth_bytes_per_s * cal.COLLECTIVE_EFFICIENCY


# -- all-reduce: each runtime's path, with constants read off measured op tables ------------------

#: Runtimes whose own all-reduce kernels (one-shot / two-shot over peer memory) the model knows.
KERNEL_RUNTIMES = ("vllm", "sglang", "trtllm")


@dataclass(frozen=True)
class Measured:
    """One row of ``costmodels/data/collectives.csv``: the fixed latency of an all-reduce path at
    a rank count and the share of the link its bytes move at (see benchmarks/derive_collectives.py)."""

    alpha_s: float
    bus_efficiency: float
    bus_efficiency_8mib: float | None = None  # NCCL: the share reached by an 8 MiB message

    def efficiency(self, message_bytes: float) -> float:
        """The share of the link reached at this size: NCCL ramps from its 8 MiB figure to its
        large-message one (64 MiB and above), log-linearly in the size; kernels have one figure."""
        small, large = self.bus_efficiency_8mib, self.bus_efficiency
        if small is None or message_bytes >= RAMP_END_BYTES:
            return large
        if message_bytes <= RAMP_START_BYTES:
            return small
        f = math.log(message_bytes / RAMP_START_BYTES) / math.log(RAMP_END_BYTES / RAMP_START_BYTES)
        return small + f * (large - small)


#: NCCL's bandwidth ramp (costmodels/data/collectives.csv: measured at 8 MiB and over 64-256 MiB).
RAMP_START_BYTES = 8 * 2**20
RAMP_END_BYTES = 64 * 2**20


@lru_cache(maxsize=1)
def _table() -> dict[tuple[str, str, str, int], Measured]:
    """(gpu, link kind, path, ranks) -> measured constants; a path is "nccl" or a runtime's kernel
    algorithm, "vllm/one-shot", "trtllm/two-shot", ..."""
    text = (resources.files("costmodels") / "data" / "collectives.csv").read_text(encoding="utf-8")
    return table_from_rows(csv.DictReader(text.splitlines()))


def table_from_rows(rows: Iterable[Mapping[str, str]]) -> dict[tuple[str, str, str, int], Measured]:
    """The lookup table of :func:`_table` from rows shaped like collectives.csv."""
    out = {}
    for r in rows:
        path = "nccl" if r["runtime"] == "nccl" else f"{r['runtime']}/{r['algorithm']}"
        out[(r["gpu"], r["link"], path, int(r["ranks"]))] = Measured(
            float(r["alpha_us"]) * 1e-6, float(r["bus_efficiency"]),
            float(r["bus_efficiency_8mib"]) if r["bus_efficiency_8mib"] else None)
    return out


def _measured(gpu: str | None, kind: str, path: str, ranks: int,
              table: dict[tuple[str, str, str, int], Measured] | None = None) -> Measured:
    """The constants of ``path`` for ``gpu`` on a link of ``kind`` at ``ranks`` ranks.

    A rank count between measured ones takes the next larger (more steps, never optimistic); more
    ranks than measured take the largest. A GPU without its own measurements takes those of the
    GPU with its chip (``calibration.COLLECTIVE_SAME_AS``), else
    ``calibration.COLLECTIVE_FALLBACK_GPU[kind]``, held to its figures over the other kind of link
    (``_bounded``). ``table`` replaces the shipped measurements (the leave-one-GPU-out check).
    """
    if table is None:
        return _measured_shipped(gpu, kind, path, ranks)
    return _resolve(table, gpu, kind, path, ranks)


@cache
def _measured_shipped(gpu: str | None, kind: str, path: str, ranks: int) -> Measured:
    """``_measured`` on the shipped table, resolved once per (gpu, link kind, path, ranks): pricing asks
    for the same few combinations thousands of times."""
    return _resolve(_table(), gpu, kind, path, ranks)


def _resolve(table: dict[tuple[str, str, str, int], Measured], gpu: str | None, kind: str, path: str,
             ranks: int) -> Measured:
    gpu = cal.COLLECTIVE_SAME_AS.get(gpu or "", gpu)
    measured_here = {g for g, k, _, _ in table if k == kind}
    own = gpu if gpu in measured_here else cal.COLLECTIVE_FALLBACK_GPU[kind]
    if own not in measured_here:
        own = sorted(measured_here)[0]
    m = _pick(table, own, kind, path, ranks)
    nvlink_gpus = {g for g, k, _, _ in table if k == "nvlink"}
    if kind == "pcie" and own != gpu and gpu in nvlink_gpus:
        return _bounded(m, _pick(table, gpu, "nvlink", path, ranks), worse=True)
    if kind == "nvlink" and own != gpu:
        pcie = _resolve(table, gpu, "pcie", path, ranks) if _measured_at(table, "pcie", path, ranks) else None
        if pcie is not None:
            return _bounded(m, pcie, worse=False)
    return m


def _measured_at(table: dict[tuple[str, str, str, int], Measured], kind: str, path: str, ranks: int) -> bool:
    """Whether some GPU has ``path`` measured over ``kind`` at ``ranks`` ranks or more."""
    return any(k == kind and p == path and n >= ranks for _, k, p, n in table)


def _bounded(m: Measured, other: Measured, *, worse: bool) -> Measured:
    """``m`` held to ``other``, constant by constant: never better than it (``worse``) or never worse.

    Over PCIe, a GPU measured only on NVLink is never priced faster than on its own NVLink (the
    same software path over a slower link). Over NVLink, a GPU whose NVLink constants are another
    GPU's is never priced slower than the PCIe figures that describe it (its own, or the PCIe
    fallback's): NVLink GPUs sit on PCIe too, and NCCL picks the faster transport. So the same group
    is never cheaper over PCIe than over NVLink (tests/test_latency_properties.py)."""
    pick_alpha, pick_eff = (max, min) if worse else (min, max)
    eff_8mib = (None if m.bus_efficiency_8mib is None or other.bus_efficiency_8mib is None
                else pick_eff(m.bus_efficiency_8mib, other.bus_efficiency_8mib))
    return Measured(pick_alpha(m.alpha_s, other.alpha_s), pick_eff(m.bus_efficiency, other.bus_efficiency), eff_8mib)


def _pick(table: dict[tuple[str, str, str, int], Measured], gpu: str, kind: str, path: str, ranks: int) -> Measured:
    counts = sorted(n for g, k, p, n in table if g == gpu and k == kind and p == path)
    if not counts:
        raise KeyError(f"no measured {path} all-reduce for {gpu} over {kind}")
    n = next((c for c in counts if c >= ranks), counts[-1])
    return table[(gpu, kind, path, n)]


def kernel_one_shot(message_bytes: float, ranks: int) -> bool:
    """Whether the runtimes' peer-memory kernel runs one-shot (else two-shot) for the message.

    vLLM's ``csrc/custom_all_reduce.cuh`` (``CustomAllreduce::allreduce``; SGLang ships the same
    kernel): one-shot at 2 ranks, below 512 KB at up to 4 ranks and below 256 KB at up to 8;
    two-shot otherwise.

    >>> kernel_one_shot(300e3, 4), kernel_one_shot(300e3, 8), kernel_one_shot(50e6, 2)
    (True, False, True)
    """
    return ranks <= 2 or (ranks <= 4 and message_bytes < 512 * 2**10) or message_bytes < 256 * 2**10


def custom_kernel_bytes(message_bytes: float, ranks: int, one_shot: bool) -> float:
    """Bytes one rank reads from its peers in the runtimes' peer-memory all-reduce.

    One-shot: every rank reads the whole message from each of its ``n - 1`` peers and sums.
    Two-shot: a reduce-scatter then an all-gather through peer memory, ``2 (n - 1) / n`` of it.

    >>> custom_kernel_bytes(1e6, 2, True), custom_kernel_bytes(8e6, 8, False)
    (1000000.0, 14000000.0)
    """
    n = ranks
    return (n - 1) * message_bytes if one_shot else 2 * (n - 1) / n * message_bytes


def _kernel_s(message_bytes: float, ranks: int, link: Link, runtime: str, gpu: str | None) -> float | None:
    """The runtime's own peer-memory kernel, or None where the runtime does not run it for this
    message and group. One-shot costs least for small messages, two-shot for large; the runtimes
    switch where the two cross (on H100 and H200 the measured kernels cost within 1.5 us of each
    other at vLLM's thresholds), so the kernel is priced as the cheaper of the two: never falling
    as the message grows."""
    if runtime not in KERNEL_RUNTIMES or ranks > cal.SINGLE_NODE_MAX_RANKS:
        return None
    if ranks not in cal.KERNEL_ALLREDUCE_RANKS.get(runtime, (ranks,)):
        return None
    if link.kind == "pcie" and ranks > 2:
        return None  # vLLM and SGLang turn their kernel off on PCIe beyond 2 GPUs (no full P2P)
    if link.kind not in ("nvlink", "pcie") or message_bytes > cal.KERNEL_ALLREDUCE_MAX_BYTES[runtime]:
        return None
    times = []
    for algorithm, one_shot in (("one-shot", True), ("two-shot", False)):
        if not one_shot and (ranks <= 2 or runtime == "trtllm"):
            continue  # TensorRT-LLM's AUTO runs no two-shot (see calibration.TRTLLM_ONE_SHOT_MAX_BYTES)
        if runtime == "trtllm" and message_bytes > cal.trtllm_one_shot_max_bytes(ranks):
            continue
        m = _measured(gpu, link.kind, f"{runtime}/{algorithm}", ranks)
        times.append(m.alpha_s + custom_kernel_bytes(message_bytes, ranks, one_shot)
                     / (link.bandwidth_bytes_per_s * m.bus_efficiency))
    return min(times) if times else None


def nccl_allreduce_s(message_bytes: float, ranks: int, link: Link, gpu: str | None = None) -> float:
    """NCCL's all-reduce: the measured small-message latency of its ring at that rank count, the
    link's own latency once per ring step, and ``2 (n - 1) / n x message`` at the measured bus
    efficiency (above 1 where NCCL reduced inside NVSwitches, NVLS).

    Groups whose slowest link is a NIC or the network run NCCL's rings across nodes with the
    constants measured inside a node for the software part (launch, protocol) and the NIC's own
    latency per step; NCCL's double binary tree (``2 x message`` in ``2 log2 n`` steps) is taken
    where it is faster. NVLink groups wider than one baseboard exist only on NVLink Switch
    systems (GB200 NVL72), where NCCL reduces in the switches: each rank sends and receives the
    message once, through one switch hop each way, the hop the 8-rank measurement on an NVSwitch
    baseboard already crossed (so, as inside a node, the link's latency is in alpha).

    A ring over more ranks than were measured (PCIe cards beyond 8, rings across nodes) takes
    the measured fixed latency at 8 ranks plus, per extra rank, what each extra rank added
    between the measured 4 and 8 (``_ring_alpha_per_rank_s``): a ring's fixed latency is its
    ``2 (n - 1)`` steps (L40S over PCIe: 12.2 us at 4 ranks, 23.0 at 8).
    """
    n, mbytes = ranks, message_bytes
    kind = "pcie" if link.kind == "pcie" else "nvlink"
    widest = cal.SINGLE_NODE_MAX_RANKS
    meas = _measured(gpu, kind, "nccl", min(n, widest))
    bw = link.bandwidth_bytes_per_s * meas.efficiency(mbytes)
    steps = 2 * (n - 1)
    if link.kind == "nvlink" and n > widest:
        return meas.alpha_s + mbytes / bw
    ring_alpha_s = meas.alpha_s + max(0, n - widest) * _ring_alpha_per_rank_s(gpu, kind)
    if link.kind in ("nvlink", "pcie", "local"):
        # measured on that kind of link: its latency is in alpha already
        return ring_alpha_s + 2 * (n - 1) / n * mbytes / bw
    ring = ring_alpha_s + steps * link.latency_s + 2 * (n - 1) / n * mbytes / bw
    tree = meas.alpha_s + 2 * math.ceil(math.log2(n)) * link.latency_s + 2 * mbytes / bw
    return min(ring, tree)


def _ring_alpha_per_rank_s(gpu: str | None, kind: str) -> float:
    """What one more rank adds to NCCL's fixed all-reduce latency on ``gpu`` over ``kind``: the
    slope between the measured 4 and 8 ranks (never negative)."""
    widest = cal.SINGLE_NODE_MAX_RANKS
    half = _measured(gpu, kind, "nccl", widest // 2)
    full = _measured(gpu, kind, "nccl", widest)
    return max(0.0, (full.alpha_s - half.alpha_s) / (widest - widest // 2))


def allreduce_s(*, message_bytes: float, ranks: int, link: Link, runtime: str = "vllm",
                gpu: str | None = None) -> float:
    """All-reduce time of ``message_bytes`` over ``ranks`` GPUs, as ``runtime`` runs it.

    vLLM and SGLang run their own peer-memory kernel (one-shot or two-shot, ``kernel_one_shot``)
    for messages up to 8 MiB inside an NVLink domain (and between two PCIe GPUs), NCCL beyond
    (vLLM ``custom_all_reduce.py``: ``max_size`` 8 MiB; SGLang the same). TensorRT-LLM's AUTO
    strategy runs its one-shot kernel below its size thresholds and NCCL above
    (``calibration.trtllm_one_shot_max_bytes``); below them it is priced as the faster of the two. Each path's
    constants are read off NVIDIA's measured op tables for that GPU (``_measured``): a few
    microseconds for the kernels at decode sizes, against 6-25 us for NCCL.

    >>> from topologies.graph import Link
    >>> nv = Link(450e9, 0.0, "nvlink")
    >>> allreduce_s(message_bytes=1e6, ranks=1, link=nv)
    0.0
    >>> small = allreduce_s(message_bytes=16e3, ranks=8, link=nv, gpu="H100-SXM-80GB")
    >>> 2e-6 < small < 8e-6  # a decode-sized message: the kernel's few microseconds
    True
    """
    if ranks <= 1 or message_bytes <= 0:
        return 0.0
    nccl = nccl_allreduce_s(message_bytes, ranks, link, gpu)
    kernel = _kernel_s(message_bytes, ranks, link, runtime, gpu)
    t = nccl if kernel is None else min(kernel, nccl) if runtime == "trtllm" else kernel
    if link.kind == "nvlink" and _borrowed_nvlink(gpu):
        # constants borrowed from another GPU (their kernel paths too) are held to what the same group
        # would cost over PCIe at this bandwidth: the GPUs sit on PCIe as well (vLLM's two-shot kernel
        # of a borrowed A100 table came out 1.5 % slower at 4 ranks and 8 MB than NCCL over PCIe)
        t = min(t, allreduce_s(message_bytes=message_bytes, ranks=ranks,
                               link=Link(link.bandwidth_bytes_per_s, link.latency_s, "pcie"), runtime=runtime, gpu=gpu))
    return t


@cache
def _borrowed_nvlink(gpu: str | None) -> bool:
    """Whether ``gpu`` has no NVLink all-reduce measurements of its own (nor its chip's twin's)."""
    own = cal.COLLECTIVE_SAME_AS.get(gpu or "", gpu)
    return own not in {g for g, k, _, _ in _table() if k == "nvlink"}


def allgather_s(*, message_bytes: float, ranks: int, link: Link) -> float:
    """Ring all-gather of ``message_bytes`` in total (each rank contributes 1/n): each rank
    receives ``(n - 1) / n`` of it in ``n - 1`` steps. A reduce-scatter of the same total
    moves the same bytes in the same steps.

    >>> from topologies.graph import Link
    >>> allgather_s(message_bytes=1e6, ranks=1, link=Link(1e9, 1e-6, "nvlink"))
    0.0
    """
    if ranks <= 1 or message_bytes <= 0:
        return 0.0
    step_latency_s = link.latency_s + cal.COLLECTIVE_STEP_LATENCY_S
    return (cal.COLLECTIVE_BASE_LATENCY_S + (ranks - 1) / ranks * message_bytes / _bw(link)
            + (ranks - 1) * step_latency_s)


def send_s(*, message_bytes: float, link: Link) -> float:
    """One point-to-point send (pipeline stage to the next)."""
    if message_bytes <= 0:
        return 0.0
    return link.latency_s + message_bytes / _bw(link)


def alltoall_s(*, message_bytes: float, ranks: int, link: Link, local_link: Link | None = None,
               local_ranks: int = 0) -> float:
    """All-to-all where each rank sends ``message_bytes`` spread evenly over all ``ranks``
    (its own share stays).

    All ranks send at once, pairwise, so the time is the bytes leaving one rank over its
    link plus two latency steps. Where the group spans several scale-up domains of
    ``local_ranks`` ranks each, ``(local_ranks - 1) / ranks`` of the message goes to peers in
    the same domain over ``local_link`` (NVLink) and ``(ranks - local_ranks) / ranks`` over
    ``link`` (the per-GPU share of the NICs), both at the same time: the slower decides.

    >>> from topologies.graph import Link
    >>> nvl, nic = Link(400e9, 1e-6, "nvlink"), Link(50e9, 5e-6, "nic")
    >>> one = alltoall_s(message_bytes=8e6, ranks=8, link=nvl)
    >>> two = alltoall_s(message_bytes=8e6, ranks=16, link=nic, local_link=nvl, local_ranks=8)
    >>> two > one
    True
    """
    if ranks <= 1 or message_bytes <= 0:
        return 0.0
    if local_link is None or not 0 < local_ranks < ranks:
        return (ranks - 1) / ranks * message_bytes / _bw(link) + 2 * (link.latency_s + cal.COLLECTIVE_STEP_LATENCY_S)
    remote = (ranks - local_ranks) / ranks * message_bytes / _bw(link)
    local = (local_ranks - 1) / ranks * message_bytes / _bw(local_link)
    return max(remote, local) + 2 * (link.latency_s + cal.COLLECTIVE_STEP_LATENCY_S)
