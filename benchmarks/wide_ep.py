"""The cost model's wide expert parallelism against a published large-scale deployment.

    python benchmarks/wide_ep.py

There is no wide-EP row in the fidelity data, so this is the one outside check of the
all-to-all and attention-DP model: DeepSeek-V3 served by SGLang on 12 nodes of 8 H100 GPUs
(one 400 Gb/s InfiniBand NIC per GPU), with prefill and decode on separate nodes, as the
SGLang team published it (LMSYS blog "Deploying DeepSeek with PD Disaggregation and
Large-scale Expert Parallelism on 96 H100 GPUs", 2025-05-05, lmsys.org/blog/2025-05-05-large-scale-ep):

* prefill: 4 nodes, EP32 with DP attention, 2,000-token prompts: 52.3k input tokens/s per node;
* decode: 9 nodes, EP72 with DP attention: 22.3k output tokens/s per node, 2,000-token inputs.

Their deployment used DeepEP's kernels, two-batch overlap (the all-to-alls of one
micro-batch hidden behind the other's compute) and EPLB (redundant experts: 288 for EP72).
The model has none of these: its all-to-all is pairwise, priced on the NICs with the
collective efficiency fitted on NVLink all-reduces, and not overlapped. EP72 does not divide
256 experts without redundant copies, so decode is priced at EP64 on 8 nodes (the nearest
layout the planner makes) at the largest batch that fits. A report, not a test: the figures
are printed with their ratio, whatever they are.
"""
from __future__ import annotations

import sys
from pathlib import Path

from tabulate import tabulate

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout, like the other benchmarks
    sys.path.insert(0, str(ROOT))

from costmodels.models import get_model  # noqa: E402
from costmodels.prefill import evaluate_prefill  # noqa: E402
from costmodels.serving import evaluate_replica  # noqa: E402
from costmodels.strategy import Strategy  # noqa: E402
from planner.price.cluster import cluster_view  # noqa: E402
from planner.price.spans import wide_span  # noqa: E402
from topologies.graph import Topology  # noqa: E402
from topologies.synth import synthetic_fleet  # noqa: E402

PUBLISHED_PREFILL_INPUT_TOK_PER_S_PER_NODE = 52_300  # LMSYS 2025-05-05, 4 prefill nodes, EP32
PUBLISHED_DECODE_OUTPUT_TOK_PER_S_PER_NODE = 22_300  # LMSYS 2025-05-05, 9 decode nodes, EP72
ISL = 2000


def main() -> None:
    # 16 nodes of 8 H100 with 8 NICs of 400 Gb/s each (synthetic_fleet's H100 nodes)
    topo = Topology(synthetic_fleet(gpus=128, gpu_types=("H100-SXM-80GB",)), "0" * 64)
    view = cluster_view(topo)
    model = get_model("deepseek-v3")
    gpu = view.gpu_of_type["H100-SXM-80GB"]
    rows = []

    tp, nodes = 32, 4
    _, _, links = wide_span(view, view.classes, tp, 1)
    s = Strategy(tp=tp, ep=tp, attention_dp=tp, weight_dtype="fp8", runtime="sglang")
    p = evaluate_prefill(model, gpu, s, isl=ISL, links=links)
    predicted = p.requests_per_s * ISL / nodes
    rows.append(["prefill input tok/s per node", "EP32 attention-DP32, 4 nodes", f"{predicted:,.0f}",
                 f"{PUBLISHED_PREFILL_INPUT_TOK_PER_S_PER_NODE:,}", f"{predicted / PUBLISHED_PREFILL_INPUT_TOK_PER_S_PER_NODE:.2f}"])

    tp, nodes = 64, 8
    _, _, links = wide_span(view, view.classes, tp, 1)
    s = Strategy(tp=tp, ep=tp, attention_dp=tp, weight_dtype="fp8", runtime="sglang")
    d = evaluate_replica(model, gpu, s, isl=ISL, osl=100, links=links, role="decode")
    predicted = d.output_tokens_per_s / nodes
    rows.append(["decode output tok/s per node", f"EP64 attention-DP64, 8 nodes, batch {d.batch} "
                 f"(TPOT {d.tpot_s * 1e3:.0f} ms)", f"{predicted:,.0f}",
                 f"{PUBLISHED_DECODE_OUTPUT_TOK_PER_S_PER_NODE:,} (EP72)",
                 f"{predicted / PUBLISHED_DECODE_OUTPUT_TOK_PER_S_PER_NODE:.2f}"])
    print("DeepSeek-V3 FP8 on H100 nodes, 2,000-token prompts: cost model against LMSYS's SGLang deployment")
    print(tabulate(rows, headers=["figure", "layout priced", "predicted", "published", "predicted / published"],
                   tablefmt="github"))


if __name__ == "__main__":
    main()
