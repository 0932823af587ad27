"""A picture of the frontier: throughput per GPU against latency, the chosen plan marked.

matplotlib is an optional extra (``pip install 'plan-search[plot]'``). The file type follows
the name (``.png`` or ``.svg``); the same frontier gives the same bytes (no dates or random
ids in the file).

Each point is labelled with its row number in the frontier table (``#3``), placed where it
overlaps no other label, marker, the legend or the axes' edge (:func:`place_labels`); the
replica mix of every row is listed under the plot. Frontier points crowd together at the
high-latency end, where full replica mixes written beside each point once overlapped.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from planner.frontier import Frontier, shapes
from planner.outfile import check_target, replace_atomically
from topologies.errors import InputError

FORMATS = (".png", ".svg")
DPI = 110
MARKER_HALF_PX = 6.0  # half the side of the square kept clear around a point (5-point marker, plus a margin)
STAR_HALF_PX = 11.0  # the same around the chosen plan's star (15-point marker)
GAP_PX = 4.0  # between a point's clear square and its label

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in display pixels (y upwards)


def _offsets(w: float, h: float, half: float) -> list[tuple[float, float]]:
    """Where a ``w`` x ``h`` label may sit around a point, as its lower-left corner's offset from the
    point, nearest first: right, above-right, below-right, left, above-left, below-left, above, below,
    then the same a label's height further out."""
    near = half + GAP_PX
    out = []
    for extra in (0.0, h + GAP_PX):
        out += [(near, -h / 2 + extra), (near, near + extra), (near, -near - h - extra),
                (-near - w, -h / 2), (-near - w, near + extra), (-near - w, -near - h - extra),
                (-w / 2, near + extra), (-w / 2, -near - h - extra)]
    return out


def _overlaps(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def place_labels(anchors: Sequence[tuple[float, float]], sizes: Sequence[tuple[float, float]],
                 bounds: Box, obstacles: Sequence[Box] = (), halves: Sequence[float] | None = None
                 ) -> list[tuple[float, float] | None]:
    """For each label (in order), the offset of its lower-left corner from its anchor, or None when
    every candidate place would overlap an earlier label, a point's clear square, an obstacle or
    leave ``bounds``. Greedy and deterministic; a label left out is never drawn over another."""
    halves = list(halves) if halves is not None else [MARKER_HALF_PX] * len(anchors)
    taken: list[Box] = list(obstacles) + [(x - hf, y - hf, x + hf, y + hf)
                                          for (x, y), hf in zip(anchors, halves, strict=True)]
    out: list[tuple[float, float] | None] = []
    for (x, y), (w, h), hf in zip(anchors, sizes, halves, strict=True):
        chosen = None
        for dx, dy in _offsets(w, h, hf):
            box = (x + dx, y + dy, x + dx + w, y + dy + h)
            inside = bounds[0] <= box[0] and box[2] <= bounds[2] and bounds[1] <= box[1] and box[3] <= bounds[3]
            if inside and not any(_overlaps(box, t) for t in taken):
                chosen = (dx, dy)
                taken.append(box)
                break
        out.append(chosen)
    return out


def _key_lines(front: Frontier) -> list[str]:
    """The key under the plot: each row's replica mix, without the GPU name when the whole frontier
    runs on one GPU type (the heading names it then)."""
    gpus = sorted({g.gpu_label for p in front.plans for g in p.replica_groups})
    one = gpus[0] if len(gpus) == 1 else None
    head = "replica mix of each row of the frontier table" + (f" (all on {one})" if one else "") + ":"
    return [head] + [f"#{i}  {shapes(p).replace(one + ' ', '') if one else shapes(p)}"
                     for i, p in enumerate(front.plans)]


def plot_frontier(front: Frontier, path: str) -> list[Box | None]:
    """Write the frontier plot to ``path`` (atomically: a temp file renamed when complete).

    Returns each point's label box in display pixels as drawn (None: left out for want of room)."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise InputError(f"unknown plot format {suffix or '(none)'!r}; name the file .png or .svg", source=path)
    check_target(path, flag="--plot")
    try:
        import matplotlib
    except ImportError:
        raise InputError("plotting needs matplotlib: pip install 'plan-search[plot]'", source="--plot") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with matplotlib.rc_context({"svg.hashsalt": "plan-search", "svg.fonttype": "none", "font.size": 9}):
        fig, ax = _draw(plt, front)
        try:
            boxes = _label_points(fig, ax, front)
            metadata = {"Date": None} if suffix == ".svg" else {"Software": None}
            replace_atomically(path, lambda tmp: fig.savefig(tmp, format=suffix[1:], metadata=metadata),
                               flag="--plot")
        finally:
            plt.close(fig)
    return boxes


def _draw(plt, front: Frontier):
    """The points, the chosen star, axes, legend and the key of replica mixes under the plot."""
    n = len(front.plans)
    key_in = 0.125 * (n + 1) + 0.1  # inches for the key: a heading and one 6.5-point line per plan
    fig = plt.figure(figsize=(7.5, 4.4 + key_in), dpi=DPI)
    ax = fig.add_axes((0.1, (key_in + 0.55) / (4.4 + key_in), 0.86, 3.5 / (4.4 + key_in)))
    xs = [front.latency_ms(p) for p in front.plans]
    ys = [p.totals.output_tokens_per_s_per_gpu for p in front.plans]
    ax.plot(xs, ys, "-o", color="#3b6ea5", markersize=5, linewidth=1.2, label="non-dominated plans")
    c = front.chosen
    ax.plot([xs[c]], [ys[c]], "*", color="#c0392b", markersize=15,
            label="chosen plan" + (" (dominated)" if front.chosen_dominated else ""))
    head = front.plans[c].inputs
    ax.set_xlabel(("TPOT" if front.axis == "tpot" else "TTFT") + " (ms)")
    ax.set_ylabel("output tokens/s per GPU")
    ax.set_title(f"{head.model.name} on {head.topology.name}: isl={head.workload.isl} osl={head.workload.osl}",
                 fontsize=9)
    ax.margins(x=0.15, y=0.12)
    ax.grid(True, linewidth=0.4, alpha=0.6)
    ax.legend(loc="lower right", fontsize=8)
    fig.text(0.02, (key_in - 0.02) / (4.4 + key_in), "\n".join(_key_lines(front)), fontsize=6.5, va="top", ha="left",
             family="monospace", color="#444444")
    return fig, ax


def _label_points(fig, ax, front: Frontier) -> list[Box | None]:
    """Label each point ``#i`` where :func:`place_labels` finds room; returns the drawn boxes."""
    fig.canvas.draw()  # fixes the layout, so data -> pixel transforms and text sizes are final
    renderer = fig.canvas.get_renderer()
    pts = [ax.transData.transform((front.latency_ms(p), p.totals.output_tokens_per_s_per_gpu))
           for p in front.plans]
    style = dict(fontsize=7, color="#333333", ha="left", va="bottom")
    sizes = []
    for i in range(len(front.plans)):
        t = fig.text(0, 0, f"#{i}", **style)
        e = t.get_window_extent(renderer)
        sizes.append((e.width, e.height))
        t.remove()
    a = ax.get_window_extent(renderer)
    legend = ax.get_legend().get_window_extent(renderer)
    halves = [STAR_HALF_PX if i == front.chosen else MARKER_HALF_PX for i in range(len(pts))]
    offsets = place_labels([(float(x), float(y)) for x, y in pts], sizes, (a.x0, a.y0, a.x1, a.y1),
                           [(legend.x0, legend.y0, legend.x1, legend.y1)], halves)
    texts = []
    for i, (p, off) in enumerate(zip(front.plans, offsets, strict=True)):
        texts.append(None if off is None else ax.annotate(
            f"#{i}", (front.latency_ms(p), p.totals.output_tokens_per_s_per_gpu), xytext=off,
            textcoords="offset pixels", **style))
    fig.canvas.draw()
    out: list[Box | None] = []
    for t in texts:
        if t is None:
            out.append(None)
        else:
            e = t.get_window_extent(renderer)
            out.append((float(e.x0), float(e.y0), float(e.x1), float(e.y1)))
    return out
