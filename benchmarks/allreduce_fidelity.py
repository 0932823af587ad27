"""How well ``costmodels.comm.allreduce_s`` reproduces measured all-reduce latencies.

    python benchmarks/allreduce_fidelity.py [--leave-one-gpu-out] [--json]

Every row of ``benchmarks/data/allreduce_measured.csv`` (NVIDIA's op tables for AIConfigurator:
vLLM, SGLang and TensorRT-LLM kernels in CUDA graphs, and NCCL; A100, H100, H200, B200 over
NVLink, L40S and RTX PRO 6000 over PCIe) between 4 KiB and 256 MiB is priced by the model on a
link of the machine's datasheet bandwidth, and the ratio predicted / measured is summarised by
GPU, path and message-size band: decode steps send 16 KiB - 4 MiB per all-reduce, prefill chunks
4 - 256 MiB. ``--leave-one-gpu-out`` prices each GPU with its own rows removed from the constants
(so it takes its fallback's), which shows how the model does on a GPU it has not seen.
The PCIe rows above 2 ranks are the measured machine's cross-socket paths and are reported apart.
A report, not a test: the exit code is 0 whatever the figures.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from tabulate import tabulate  # noqa: E402

from costmodels import comm  # noqa: E402
from topologies.graph import Link  # noqa: E402

import derive_collectives as dc  # noqa: E402

BANDS = (("decode 16K-4M", 16 * 2**10, 4 * 2**20), ("prefill 4M-256M", 4 * 2**20 + 1, 256 * 2**20))


def table_without(gpu: str | None) -> dict:
    return comm.table_from_rows(r for r in dc.derive() if r["gpu"] != gpu)


def predict(gpu: str, runtime: str, ranks: int, message_bytes: int, table) -> float:
    kind, bw = dc.LINKS[gpu]
    link = Link(bw, 0.0, kind)
    original = comm._table
    comm._table = lambda: table  # price with the given constants
    comm._measured_shipped.cache_clear()  # its cache holds lookups in the shipped table
    try:
        if runtime == "nccl":
            return comm.nccl_allreduce_s(message_bytes, ranks, link, gpu)
        # the measured kernel tables time the runtime's own kernel at every size
        k = comm._kernel_s(message_bytes, ranks, link, runtime, gpu) if message_bytes <= comm.cal.KERNEL_ALLREDUCE_MAX_BYTES[runtime] else None
        return k if k is not None else comm.nccl_allreduce_s(message_bytes, ranks, link, gpu)
    finally:
        comm._table = original
        comm._measured_shipped.cache_clear()


def ratios_by_group(leave_one_gpu_out: bool) -> dict[tuple, list[float]]:
    """(gpu, path, link, band) -> predicted / measured for every measured point in the bands."""
    data = dc.load()
    full = table_without(None)
    out: dict[tuple, list[float]] = defaultdict(list)
    for (gpu, runtime, ranks), points in sorted(data.items()):
        kind, _ = dc.LINKS[gpu]
        table = table_without(gpu) if leave_one_gpu_out else full
        for m, t in points:
            for band, lo, hi in BANDS:
                if lo <= m <= hi:
                    where = f"{kind}" + (" >2 ranks (cross-socket)" if kind == "pcie" and ranks > 2 else "")
                    out[(gpu, runtime, where, band)].append(predict(gpu, runtime, ranks, m, table) / t)
    return out


def summary(ratios: dict[tuple, list[float]]) -> list[dict]:
    """Per band, over every point but the cross-socket PCIe ones: points, MAPE, share within 25 %."""
    out = []
    for band, _, _ in BANDS:
        sel = [r for k, rs in ratios.items() if k[3] == band and "cross-socket" not in k[2] for r in rs]
        out.append({"band": band, "n": len(sel), "mape": round(100 * statistics.mean(abs(r - 1) for r in sel), 1),
                    "within_25pct": round(100 * sum(abs(r - 1) <= 0.25 for r in sel) / len(sel), 1)})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--leave-one-gpu-out", action="store_true", help="the detail table with each GPU held out")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    fitted, held_out = ratios_by_group(False), ratios_by_group(True)
    detail = held_out if args.leave_one_gpu_out else fitted
    rows = []
    for (gpu, runtime, where, band), rs in sorted(detail.items()):
        rows.append({"gpu": gpu, "path": runtime, "link": where, "band": band, "n": len(rs),
                     "mape": round(100 * statistics.mean(abs(r - 1) for r in rs), 1),
                     "median_ratio": round(statistics.median(rs), 2), "min_ratio": round(min(rs), 2),
                     "max_ratio": round(max(rs), 2)})
    sums = {"all_gpus": summary(fitted), "leave_one_gpu_out": summary(held_out)}
    if args.json:
        print(json.dumps({"detail": rows, "summary": sums}, indent=1, sort_keys=True))
        return 0
    mode = "leave-one-GPU-out" if args.leave_one_gpu_out else "constants from every GPU"
    print(f"all-reduce: model / measured ({mode})")
    print(tabulate([list(r.values()) for r in rows],
                   headers=["gpu", "path", "link", "band", "n", "MAPE %", "median", "min", "max"]))
    print()
    print("summary (cross-socket PCIe rows excluded):")
    print(tabulate([[s["band"], s["n"], s["mape"], s["within_25pct"], h["mape"], h["within_25pct"]]
                    for s, h in zip(sums["all_gpus"], sums["leave_one_gpu_out"], strict=True)],
                   headers=["band", "points", "MAPE %", "within 25 %", "leave-one-GPU-out MAPE %",
                            "within 25 %"], floatfmt=".1f"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
