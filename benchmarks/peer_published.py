"""The published measurements ``peer_compare.py`` holds the two models against: both data files'
rows (``benchmarks/data/benchmarks.csv`` and ``latency.csv``), the concurrency each ran at (stated,
or from Little's law on the run's own figures), and the nearest row to a configuration.
"""
from __future__ import annotations

import csv
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks.fidelity_rows import engine_overlaps_host

if TYPE_CHECKING:  # the configurations and scenarios peer_compare.py compares
    from benchmarks.peer_compare import Config, Scenario

DATA = Path(__file__).resolve().parent / "data"

TPOT_METRICS = ("tpot_ms_mean", "itl_ms_mean", "itl_ms_p50")


TPUT_METRICS = ("output_tok_per_s_per_gpu", "total_output_tok_per_s")


TTFT_METRICS = ("ttft_ms_mean", "ttft_ms", "ttft_ms_p50")


def published_rows() -> list[dict]:
    """Both data files' rows, each with the concurrency it ran at when that can be known (see below)."""
    rows = []
    for name in ("benchmarks.csv", "latency.csv"):
        with (DATA / name).open() as f:
            rows += [dict(r, file=name) for r in csv.DictReader(f)]
    _add_littles_law_concurrency(rows)
    return rows


def _run_key(r: dict) -> tuple:
    rate = re.search(r"request_rate_qps=(\S+)", r["notes"])
    return (r["source_id"], r["model"], r["precision"], r["gpu"], r["tp"], r["isl"], r["osl"], rate and rate.group(1))


def _add_littles_law_concurrency(rows: list[dict]) -> None:
    """Rows measured at a request rate state no batch; their mean concurrency is requests/s x mean
    end-to-end latency (TTFT + (OSL - 1) x ITL) of the same run (Little's law on published figures)."""
    runs: dict[tuple, dict[str, float]] = {}
    for r in rows:
        runs.setdefault(_run_key(r), {})[r["metric"]] = float(r["value"])
    for r in rows:
        m = runs[_run_key(r)]
        r["concurrency"] = int(r["max_batch_or_concurrency"]) if r["max_batch_or_concurrency"].isdigit() else None
        if r["concurrency"] is None and {"req_per_s", "ttft_ms_mean", "itl_ms_mean"} <= m.keys():
            e2e_s = (m["ttft_ms_mean"] + (int(r["osl"]) - 1) * m["itl_ms_mean"]) / 1e3
            r["concurrency"] = max(1, round(m["req_per_s"] * e2e_s))
            r["concurrency_from"] = "Little's law"


def _distance(r: dict, sc: Scenario, c: Config) -> float:
    """How far a measurement's set-up is from the configuration: log ratios of ISL, OSL, batch and TP,
    and penalties for a farther model family, another precision, or an unknown batch."""
    d = abs(math.log(max(int(r["isl"]), 1) / sc.isl)) + abs(math.log(max(int(r["osl"]), 1) / sc.osl))
    d += 2.0 * abs(math.log2(int(r["tp"]) / c.tp))
    d += 0.5 * sc.families.index(r["model"])
    d += 0.0 if r["precision"].lower() == sc.weight_dtype.lower() else 0.5
    d += abs(math.log(r["concurrency"] / c.batch)) if r["concurrency"] else 1.0
    return d


def nearest_published(rows: list[dict], sc: Scenario, c: Config, metrics: tuple[str, ...]) -> dict | None:
    """The closest measurement of one of ``metrics`` for the same model family and GPU (another TP
    only when no row has this one; the row's TP is shown), or None. Throughput is given per GPU."""
    cands = [r for r in rows if r["model"] in sc.families and r["gpu"] == sc.gpu and r["metric"] in metrics
             and r["tp"].isdigit() and r["pp"] in ("", "1")]
    if not cands:
        return None
    r = min(cands, key=lambda r: (_distance(r, sc, c), r["source_id"], r["isl"], r["osl"], r["notes"]))
    value = float(r["value"])
    if r["metric"] == "total_output_tok_per_s":
        value /= int(r["num_gpus"] or r["tp"])
    return {"source": r["source_id"], "file": r["file"], "model": r["model"], "precision": r["precision"],
            "tp": int(r["tp"]), "isl": int(r["isl"]), "osl": int(r["osl"]), "concurrency": r["concurrency"],
            "concurrency_from": r.get("concurrency_from", "stated" if r["concurrency"] else None),
            "metric": r["metric"] + ("/GPU" if r["metric"] == "total_output_tok_per_s" else ""),
            "value": round(value, 2), "notes": r["notes"][:160], "host_overlap": engine_overlaps_host(r["notes"])}
