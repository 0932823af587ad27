"""Collective and point-to-point communication times over a :class:`topologies.graph.Link`.

The link is what the topology graph reports for the group: its slowest hop's per-direction
bandwidth and that hop's latency. NCCL and the runtimes' own all-reduce kernels reach
``COLLECTIVE_EFFICIENCY`` of it.
"""
from __future__ import annotations

import math

from costmodels import calibration as cal
from topologies.graph import Link


def _bw(link: Link) -> float:
    return link.bandwidth_bytes_per_s * cal.COLLECTIVE_EFFICIENCY


def allreduce_s(*, message_bytes: float, ranks: int, link: Link) -> float:
    """All-reduce time, by the algorithm the serving runtime and NCCL pick for the message.

    Inside one NVLink domain (``link.kind == "nvlink"``), small messages go to the runtime's
    own peer-to-peer **one-shot** kernel: after one cross-GPU barrier every rank reads the
    whole message from each of its ``n - 1`` peers and sums it (``(n - 1) x message`` over
    the link, one latency step). It is used up to
    :func:`costmodels.calibration.one_shot_allreduce_max_bytes` (TensorRT-LLM's AUTO
    strategy: 16 MB at 2 ranks, 1 MB at up to 4, 500 kB at 8). Larger messages go to NCCL,
    which inside a node runs **rings**: ``2 (n - 1) / n x message`` in ``2 (n - 1)``
    latency-bound steps, in whichever of its LL, LL128 and Simple protocols is fastest for
    the size (``NCCL_RING_PROTOCOLS``). NCCL builds no trees inside a node (its double binary trees span
    nodes; inside a node they are chains: NVIDIA/nccl issues #211 and #671), so the
    **tree**, ``2 x message`` in ``2 log2(n)`` steps, is a choice only for groups whose
    slowest link leaves the NVLink domain. NVLink groups of more than
    ``SINGLE_NODE_MAX_RANKS`` GPUs (no NVSwitch baseboard holds more) exist only on NVLink
    Switch systems such as GB200 NVL72, where NCCL reduces in the switches (NVLS): one
    message each way per rank in two steps, whatever the group size.

    Every collective pays ``COLLECTIVE_BASE_LATENCY_S`` (launch and rank synchronisation)
    and, per step, the link's latency plus ``COLLECTIVE_STEP_LATENCY_S``: NCCL's own tuning
    model prices an algorithm as ``baseLat + steps x hwLat`` (``src/graph/tuning.cc``).

    This is why TP=8 loses to TP=4 at large decode batches on NVSwitch nodes: past 500 kB
    (about 30 tokens of a 8192-wide model) every one of its all-reduces is a 14-step NCCL
    ring, where TP=4 pays 6 steps, or one while its messages stay under 1 MB.

    >>> from topologies.graph import Link
    >>> allreduce_s(message_bytes=1e6, ranks=1, link=Link(1e9, 1e-6, "nvlink"))
    0.0
    """
    if ranks <= 1 or message_bytes <= 0:
        return 0.0
    n, m, bw = ranks, message_bytes, _bw(link)
    step_latency_s = link.latency_s + cal.COLLECTIVE_STEP_LATENCY_S
    # NCCL runs the ring in the protocol that is fastest for the size: LL and LL128 trade
    # bandwidth for shorter steps (calibration.NCCL_RING_PROTOCOLS).
    ring = min(2 * (n - 1) / n * m / (bw * bw_share) + 2 * (n - 1) * step_latency_s * lat_share
               for bw_share, lat_share in cal.NCCL_RING_PROTOCOLS)
    if link.kind == "nvlink" and m <= cal.one_shot_allreduce_max_bytes(n):
        return cal.COLLECTIVE_BASE_LATENCY_S + (n - 1) * m / bw + step_latency_s
    if link.kind == "nvlink" and n <= cal.SINGLE_NODE_MAX_RANKS:
        return cal.COLLECTIVE_BASE_LATENCY_S + ring
    if link.kind == "nvlink":
        # An NVLink group wider than a baseboard exists only on NVLink Switch systems (GB200
        # NVL72), whose switches reduce in the network (NVLink SHARP; NCCL's NVLS algorithm):
        # each rank sends its message once and receives the sum once, in two phases.
        return cal.COLLECTIVE_BASE_LATENCY_S + m / bw + 2 * step_latency_s
    tree = 2 * m / bw + 2 * math.ceil(math.log2(n)) * step_latency_s
    return cal.COLLECTIVE_BASE_LATENCY_S + min(ring, tree)


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
