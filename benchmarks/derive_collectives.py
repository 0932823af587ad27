"""Derive the all-reduce constants of ``costmodels/data/collectives.csv`` from measured op tables.

    python benchmarks/derive_collectives.py            # print the table and check the shipped file
    python benchmarks/derive_collectives.py --write    # rewrite costmodels/data/collectives.csv

Input: ``benchmarks/data/allreduce_measured.csv``, bf16 all-reduce latencies measured by NVIDIA
for AIConfigurator (aiconfigurator-core 0.12.0, ``systems/data/<system>/comm/<runtime>/<version>/``:
``custom_allreduce_perf.parquet`` for the runtimes' own kernels timed inside CUDA graphs, and
``nccl_perf.parquet`` for NCCL), one row per (GPU, runtime, ranks, message size). The figures are
measurements, copied as published; ``message_bytes`` is the table's element count x 2 (bf16).

Each constant is read off the measurements by a fixed rule, not tuned against serving results:

* ``alpha_us`` (runtime kernel or NCCL, per rank count): the median latency of messages of at most
  4 KiB, where the time is all latency (launch, cross-GPU flags, protocol steps).
* ``bus_efficiency`` and ``bus_efficiency_8mib`` (NCCL, per rank count; PCIe: from 2 ranks): NCCL's
  bus bandwidth, ``2 (n - 1) / n x bytes / (time - alpha)``, over the link's per-direction bandwidth:
  the median over messages of 64-256 MiB (long prompt chunks), and at 8 MiB, where vLLM and SGLang
  hand all-reduces to NCCL. NCCL reaches its bandwidth only on large messages (its pipeline fills
  more channels); ``costmodels.comm`` ramps between the two, log-linearly in the size. Above 1
  means NCCL reduced inside the NVSwitches (NVLS) and moved less than a ring would.
* runtime kernels: ``one-shot`` (every rank reads ``(n - 1) x message`` from its peers) takes
  ``alpha_us`` as above and its share of the link as the median over its sizes from 64 KiB of
  ``bytes read / (time - alpha) / link``; ``two-shot`` (``2 (n - 1) / n x message``, two phases)
  takes both from a least-squares line through its sizes up to 8 MiB (its alpha at least the
  one-shot's). Which sizes ran which kernel follows vLLM's thresholds (``costmodels.comm.kernel_one_shot``);
  TensorRT-LLM's tables are read the same way.

The link bandwidths are the datasheet figures the topology files use: NVLink per direction from
``costmodels/data/gpus.csv``; PCIe per direction as each PCIe GPU's datasheet states its slot (the
measured PCIe tables give bandwidth at 2 ranks only: their wider groups cross CPU sockets, which
the topology prices by its own slowest link; their latency is taken at every rank count).
"""
from __future__ import annotations

import argparse
import csv
import io
import statistics
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MEASURED = ROOT / "benchmarks" / "data" / "allreduce_measured.csv"
OUT = ROOT / "costmodels" / "data" / "collectives.csv"

#: Per-direction link bandwidth (bytes/s) of the machines measured, and its kind.
#: NVLink: costmodels/data/gpus.csv (datasheets). PCIe: L40S "PCIe Gen4 x16 64GB/s bidirectional"
#: (NVIDIA L40S datasheet); RTX PRO 6000 Blackwell Server Edition "PCIe Gen5 x16 128 GB/s
#: bidirectional" (NVIDIA RTX PRO 6000 Blackwell Server Edition datasheet).
LINKS: dict[str, tuple[str, float]] = {
    "A100-SXM4-80GB": ("nvlink", 300e9),
    "H100-SXM-80GB": ("nvlink", 450e9),
    "H200-SXM-141GB": ("nvlink", 450e9),
    "B200-180GB": ("nvlink", 900e9),
    "L40S-48GB": ("pcie", 32e9),
    "RTX-PRO-6000-Blackwell-Server": ("pcie", 64e9),
}
SMALL_BYTES = 4096
NCCL_SMALL = (8 * 2**20, 8 * 2**20)
NCCL_LARGE = (64 * 2**20, 256 * 2**20)
ONE_SHOT_FROM_BYTES = 64 * 2**10
KERNEL_MAX_BYTES = 8 * 2**20


def load(path: Path = MEASURED) -> dict[tuple[str, str, int], list[tuple[int, float]]]:
    """(gpu, runtime, ranks) -> [(message bytes, latency s)] sorted by size."""
    out: dict[tuple[str, str, int], list[tuple[int, float]]] = defaultdict(list)
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            out[(row["gpu"], row["runtime"], int(row["ranks"]))].append(
                (int(row["message_bytes"]), float(row["latency_us"]) * 1e-6))
    return {k: sorted(v) for k, v in out.items()}


def alpha_s(points: list[tuple[int, float]]) -> float:
    return statistics.median(t for m, t in points if m <= SMALL_BYTES)


def nccl_bus_efficiency(points: list[tuple[int, float]], ranks: int, link_bytes_per_s: float,
                        window: tuple[int, int]) -> float:
    lo, hi = window
    alpha = alpha_s(points)
    return statistics.median(2 * (ranks - 1) / ranks * m / (t - alpha) / link_bytes_per_s
                             for m, t in points if lo <= m <= hi and t > alpha)


def one_shot_fit(points: list[tuple[int, float]], ranks: int, link_bytes_per_s: float,
                 alpha: float) -> float:
    """The one-shot kernel's share of the link: median over its sizes from 64 KiB."""
    from costmodels.comm import kernel_one_shot

    shares = [(ranks - 1) * m / (t - alpha) / link_bytes_per_s for m, t in points
              if ONE_SHOT_FROM_BYTES <= m <= KERNEL_MAX_BYTES and kernel_one_shot(m, ranks) and t > alpha]
    return statistics.median(shares)


def two_shot_fit(points: list[tuple[int, float]], ranks: int, link_bytes_per_s: float) -> tuple[float, float]:
    """The two-shot kernel's (alpha s, share of the link): a least-squares line through its sizes up
    to 8 MiB, time = alpha + 2 (n - 1) / n x message / (link x share)."""
    from costmodels.comm import kernel_one_shot

    pts = [(2 * (ranks - 1) / ranks * m / link_bytes_per_s, t) for m, t in points
           if not kernel_one_shot(m, ranks) and m <= KERNEL_MAX_BYTES]
    n = len(pts)
    mx, my = sum(x for x, _ in pts) / n, sum(y for _, y in pts) / n
    slope = sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)
    return my - slope * mx, 1 / slope


def derive(path: Path = MEASURED) -> list[dict[str, str]]:
    data = load(path)
    rows = []

    def row(gpu, kind, runtime, algorithm, ranks, alpha, eff, eff_8mib=None):
        version = sorted(set(_versions(path, gpu, runtime)))
        rows.append({"gpu": gpu, "link": kind, "runtime": runtime, "algorithm": algorithm, "ranks": str(ranks),
                     "alpha_us": f"{alpha * 1e6:.2f}", "bus_efficiency": f"{eff:.3f}",
                     "bus_efficiency_8mib": "" if eff_8mib is None else f"{eff_8mib:.3f}",
                     "source": f"aiconfigurator-core 0.12.0 measured {runtime} {'/'.join(version)} all-reduce "
                               f"on {gpu} (benchmarks/data/allreduce_measured.csv; "
                               "rule: benchmarks/derive_collectives.py)"})

    for (gpu, runtime, ranks), points in sorted(data.items()):
        kind, link = LINKS[gpu]
        a = alpha_s(points)
        if runtime == "nccl":
            # bandwidth from 2 ranks over PCIe: wider PCIe groups here cross CPU sockets, which the
            # topology prices by its own slowest link; latency at every rank count
            pts, n = (data[(gpu, runtime, 2)], 2) if kind == "pcie" else (points, ranks)
            row(gpu, kind, runtime, "ring", ranks, a, nccl_bus_efficiency(pts, n, link, NCCL_LARGE),
                nccl_bus_efficiency(pts, n, link, NCCL_SMALL))
            continue
        if kind == "pcie" and ranks > 2:
            continue  # vLLM and SGLang run no peer-memory kernel over PCIe beyond 2 GPUs
        row(gpu, kind, runtime, "one-shot", ranks, a, one_shot_fit(points, ranks, link, a))
        if ranks > 2:
            a2, eff2 = two_shot_fit(points, ranks, link)
            row(gpu, kind, runtime, "two-shot", ranks, max(a2, a), eff2)
    return rows


def _versions(path: Path, gpu: str, runtime: str):
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            if row["gpu"] == gpu and row["runtime"] == runtime:
                yield row["version"]


def render(rows: list[dict[str, str]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--write", action="store_true", help="rewrite costmodels/data/collectives.csv")
    args = ap.parse_args()
    text = render(derive())
    if args.write:
        OUT.write_text(text)
        print(f"wrote {OUT.relative_to(ROOT)}")
        return 0
    print(text, end="")
    same = OUT.exists() and OUT.read_text() == text
    print(f"\nshipped {OUT.relative_to(ROOT)} {'matches' if same else 'DIFFERS from'} the derivation")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
