"""A picture of the frontier: throughput per GPU against latency, the chosen plan marked.

matplotlib is an optional extra (``pip install 'plan-search[plot]'``). The file type follows
the name (``.png`` or ``.svg``); the same frontier gives the same bytes (no dates or random
ids in the file).
"""
from __future__ import annotations

from pathlib import Path

from planner.frontier import Frontier, shapes
from planner.outfile import check_target, replace_atomically
from topologies.errors import InputError

FORMATS = (".png", ".svg")


def plot_frontier(front: Frontier, path: str) -> None:
    """Write the frontier plot to ``path`` (atomically: a temp file renamed when complete)."""
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
        fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=110)
        xs = [front.latency_ms(p) for p in front.plans]
        ys = [p.totals.output_tokens_per_s_per_gpu for p in front.plans]
        ax.plot(xs, ys, "-o", color="#3b6ea5", markersize=5, linewidth=1.2, label="non-dominated plans")
        for i, p in enumerate(front.plans):
            ax.annotate(shapes(p).replace(" + ", "\n"), (xs[i], ys[i]), textcoords="offset points", xytext=(6, -10),
                        fontsize=6.5, color="#444444")
        c = front.chosen
        ax.plot([xs[c]], [ys[c]], "*", color="#c0392b", markersize=15,
                label="chosen plan" + (" (dominated)" if front.chosen_dominated else ""))
        name = front.plans[c].inputs
        ax.set_xlabel(("TPOT" if front.axis == "tpot" else "TTFT") + " (ms)")
        ax.set_ylabel("output tokens/s per GPU")
        ax.set_title(f"{name.model.name} on {name.topology.name}: isl={name.workload.isl} osl={name.workload.osl}",
                     fontsize=9)
        ax.margins(x=0.15, y=0.08)
        ax.grid(True, linewidth=0.4, alpha=0.6)
        ax.legend(loc="lower right", fontsize=8)
        fig.tight_layout()
        metadata = {"Date": None} if suffix == ".svg" else {"Software": None}
        try:
            replace_atomically(path, lambda tmp: fig.savefig(tmp, format=suffix[1:], metadata=metadata),
                               flag="--plot")
        finally:
            plt.close(fig)
