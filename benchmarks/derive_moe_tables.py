"""Derive costmodels/data/moe_measured.csv from AIConfigurator's measured MoE tables.

    python benchmarks/derive_moe_tables.py [--write]

AIConfigurator (PyPI ``aiconfigurator``; the ``peer`` extra) ships measured latencies of
whole MoE layers (routing, permutation, both expert GEMMs, finalize) per GPU system, runtime
version, weight format, expert shape, expert TP and EP split and token count. This keeps
TensorRT-LLM's tables (1.3.0rc20), balanced routing, the CUTLASS path (TensorRT-LLM's default
``moe_config.backend``; ``moe_torch_flow`` where a format has no CUTLASS rows), BF16, FP8 and
NVFP4, for the expert shapes of the catalog's MoE models, and prints the CSV (``--write``
replaces the shipped file). Each row comes from the table
``systems/data/<system>/moe/trtllm/1.3.0rc20/moe_perf.parquet`` of the aiconfigurator-core
0.12.0 wheel (``SYSTEMS`` maps the system to the catalog GPU), kernel source
``moe_torch_flow_<kernel>``. Needs ``aiconfigurator`` and pandas with a parquet engine.
"""
from __future__ import annotations

import json
import sys
from importlib import resources
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import aic_tables  # noqa: E402
from aic_tables import FORMATS, SYSTEMS  # noqa: E402

VERSION = "1.3.0rc20"
KERNELS = ("moe_torch_flow_cutlass", "moe_torch_flow")  # preferred first
#: Token counts kept (of the table's 27): log-spaced, enough for log-log interpolation, where
#: the measured curves are smooth between these points.
TOKENS = (1, 4, 16, 64, 256, 1024, 2048, 4096, 8192, 16384)
#: Largest expert split kept: moe_tp x moe_ep at most this many GPUs.
MAX_SPLIT_GPUS = 64
OUT = Path(__file__).resolve().parents[1] / "costmodels" / "data" / "moe_measured.csv"
HEADER = ["gpu", "runtime", "dtype", "hidden", "inter", "topk", "experts", "moe_tp", "moe_ep", "tokens",
          "latency_ms", "kernel"]


def catalog_shapes() -> set[tuple[int, int, int, int]]:
    """(hidden, expert intermediate, experts per token, experts) of every catalog MoE config."""
    out = set()
    for f in (resources.files("costmodels") / "data" / "models").iterdir():
        c = json.loads(f.read_text(encoding="utf-8"))
        experts = c.get("num_local_experts") or c.get("n_routed_experts") or c.get("num_experts")
        inter = c.get("moe_intermediate_size") or (c.get("intermediate_size") if experts else None)
        topk = c.get("num_experts_per_tok") or c.get("experts_per_token")
        if experts and inter and topk:
            out.add((int(c["hidden_size"]), int(inter), int(topk), int(experts)))
    return out


def rows(data_root: Path) -> list[list]:
    import pandas as pd  # the peer's own dependency

    shapes = catalog_shapes()
    out = []
    for system, gpu in sorted(SYSTEMS.items()):
        f = data_root / system / "moe" / "trtllm" / VERSION / "moe_perf.parquet"
        if not f.exists():
            continue
        d = pd.read_parquet(f)
        d = d[(d.distribution == "balanced") & d.moe_dtype.isin(list(FORMATS)) & d.num_tokens.isin(TOKENS)
              & (d.moe_tp_size * d.moe_ep_size <= MAX_SPLIT_GPUS)]
        d = d[[(h, i, k, e) in shapes
               for h, i, k, e in zip(d.hidden_size, d.inter_size, d.topk, d.num_experts, strict=True)]]
        keys = ["moe_dtype", "hidden_size", "inter_size", "topk", "num_experts", "moe_tp_size", "moe_ep_size"]
        for key, part in sorted(d.groupby(keys), key=lambda kv: kv[0]):
            kernel = next((k for k in KERNELS if (part.kernel_source == k).any()), None)
            if kernel is None:
                continue
            part = part[part.kernel_source == kernel].groupby("num_tokens", as_index=False).latency.min()
            for t, lat in zip(part.num_tokens, part.latency, strict=True):
                out.append([gpu, "trtllm", FORMATS[key[0]], *map(int, key[1:]), int(t), round(float(lat), 5),
                            kernel.removeprefix("moe_torch_flow").lstrip("_") or "torch_flow"])
    return out


def main(argv: list[str] | None = None) -> int:
    return aic_tables.run(__doc__, OUT, HEADER, rows, argv)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
