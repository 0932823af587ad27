"""Collective and point-to-point communication times over a :class:`topologies.graph.Link`.

The link is what the topology graph reports for the group: its slowest hop's per-direction
bandwidth and that hop's latency. NCCL reaches ``COLLECTIVE_EFFICIENCY`` of it.
"""
from __future__ import annotations

import math

from costmodels import calibration as cal
from topologies.graph import Link


def _bw(link: Link) -> float:
    return link.bandwidth_bytes_per_s * cal.COLLECTIVE_EFFICIENCY


def allreduce_s(*, message_bytes: float, ranks: int, link: Link) -> float:
    """All-reduce time: the faster of a ring and a tree, as NCCL's tuner picks per message size.

    Ring: each rank moves 2(n-1)/n of the message in 2(n-1) latency-bound steps (best for
    large messages). Tree (double binary tree): 2 log2(n) steps, each rank moving the whole
    message up and down (best for small messages at high n). Each step pays the link's
    latency plus NCCL's per-step software latency.

    >>> from topologies.graph import Link
    >>> allreduce_s(message_bytes=1e6, ranks=1, link=Link(1e9, 1e-6, "nvlink"))
    0.0
    """
    if ranks <= 1 or message_bytes <= 0:
        return 0.0
    step_latency_s = link.latency_s + cal.COLLECTIVE_STEP_LATENCY_S
    ring = 2 * (ranks - 1) / ranks * message_bytes / _bw(link) + 2 * (ranks - 1) * step_latency_s
    tree = 2 * message_bytes / _bw(link) + 2 * math.ceil(math.log2(ranks)) * step_latency_s
    return min(ring, tree)


def send_s(*, message_bytes: float, link: Link) -> float:
    """One point-to-point send (pipeline stage to the next)."""
    if message_bytes <= 0:
        return 0.0
    return link.latency_s + message_bytes / _bw(link)


def alltoall_s(*, message_bytes: float, ranks: int, link: Link) -> float:
    """All-to-all where each rank holds ``message_bytes`` and keeps 1/n of it.

    Pairwise exchange: (n-1)/n of the message leaves each rank; the latency is paid once
    per peer group as the sends are issued together.
    """
    if ranks <= 1 or message_bytes <= 0:
        return 0.0
    return (ranks - 1) / ranks * message_bytes / _bw(link) + 2 * (link.latency_s + cal.COLLECTIVE_STEP_LATENCY_S)
