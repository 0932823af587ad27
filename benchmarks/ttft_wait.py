"""The steady-state TTFT formula beside the step-by-step benchmark simulation.

    python benchmarks/ttft_wait.py

For a few dense set-ups on H100 under TensorRT-LLM, :func:`costmodels.benchrun.simulate_benchmark`
runs 800 Poisson requests at a rate, step by step; the steady-state formula
(:func:`costmodels.serving.evaluate_replica`) is priced at the batch the simulation held on
average (Little's law: rate x mean end-to-end latency). Both leave out the HTTP front end's
overhead. The formula has no queueing (the planner adds it with a rate), so it sits below the
simulation as load grows; rows where the simulated batch reached the most the KV cache holds
(requests then queue for a slot, which the formula leaves to the planner's rate model) are marked.
A report, not a test.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from costmodels.benchrun import simulate_benchmark  # noqa: E402
from costmodels.hardware import gpu_catalog  # noqa: E402
from costmodels.models import get_model  # noqa: E402
from costmodels.serving import evaluate_replica  # noqa: E402
from costmodels.strategy import Links, Strategy  # noqa: E402
from topologies.graph import Link  # noqa: E402

#: NVLink 4 of a DGX H100: 450 GB/s each way per GPU (NVIDIA H100 datasheet), 1 us.
NVLINK = Link(450e9, 1e-6, "nvlink")
SETUPS = [("llama-3.1-70b", 4, 467, 256), ("llama-3.1-70b", 4, 2048, 256), ("llama-3.1-8b", 1, 1024, 128),
          ("llama-3.1-70b", 8, 4096, 512)]
RATES_PER_S = (1, 3, 6, 10)


def main() -> None:
    gpu = gpu_catalog()["H100-SXM-80GB"]
    links = Links(tp=NVLINK, ep=NVLINK)
    print("set-up                          rate/s  in flight  sim TTFT ms  formula TTFT ms  ratio  sim TPOT ms  "
          "formula TPOT ms")
    for name, tp, isl, osl in SETUPS:
        model = get_model(name)
        s = Strategy(tp=tp, weight_dtype="bf16", kv_dtype="bf16", runtime="trtllm")
        for rate in RATES_PER_S:
            run = simulate_benchmark(model, gpu, s, links=links, isl=isl, osl=osl, requests=800, rate_per_s=rate,
                                     online=False)
            in_flight = rate * run.e2e_mean_s
            ev = evaluate_replica(model, gpu, s, isl=isl, osl=osl, batch=max(1, round(in_flight)), links=links)
            saturated = " (KV cache full: requests queued for a slot)" if run.max_in_flight >= ev.max_batch else ""
            print(f"{name + f' tp{tp} {isl}/{osl}':<32}{rate:>6}  {in_flight:>9.1f}  {run.ttft_mean_s * 1e3:>11.1f}  "
                  f"{ev.ttft_s * 1e3:>15.1f}  {ev.ttft_s / run.ttft_mean_s:>5.2f}  {run.tpot_mean_s * 1e3:>11.2f}  "
                  f"{ev.tpot_s * 1e3:>15.2f}{saturated}")


if __name__ == "__main__":
    main()
