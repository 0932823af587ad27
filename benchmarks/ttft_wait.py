"""The steady-state TTFT formula beside the step-by-step benchmark simulation.

    python benchmarks/ttft_wait.py
    python benchmarks/ttft_wait.py --load

For a few dense set-ups on H100 under TensorRT-LLM, :func:`costmodels.benchrun.simulate_benchmark`
runs 800 Poisson requests at a rate, step by step; the steady-state formula
(:func:`costmodels.serving.evaluate_replica`) is priced at the batch the simulation held on
average (Little's law: rate x mean end-to-end latency). Both leave out the HTTP front end's
overhead. The formula has no queueing (the planner adds it with a rate), so it sits below the
simulation as load grows; rows where the simulated batch reached the most the KV cache holds
(requests then queue for a slot, which the formula leaves to the planner's rate model) are marked.

``--load`` compares the queueing models instead: for 12 set-ups (dense and MoE, four GPUs, the three
runtimes, 128- to 16,384-token prompts) at 30-95 % of the capacity at the largest batch, the mean
TTFT of 4,000 simulated Poisson requests beside three closed forms, each with the HTTP front end:
``OpenLoop`` (what ``evaluate --qps`` and plans from schema 1.6.0 give: TTFT at the batch Little's
law gives, the M/D/1 prompt queue and the M/D/c wait for a slot), the M/D/1 factor over the TTFT at
that operating point (``evaluate --qps`` before), and the M/D/1 factor over the TTFT at the largest
batch (plans before 1.6.0). It prints each row and the mean absolute error of each against the
simulation. A report, not a test.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from costmodels import calibration as cal  # noqa: E402
from costmodels.benchrun import simulate_benchmark  # noqa: E402
from costmodels.hardware import gpu_catalog  # noqa: E402
from costmodels.load import OpenLoop, ttft_under_load_s  # noqa: E402
from costmodels.models import get_model  # noqa: E402
from costmodels.serving import evaluate_replica  # noqa: E402
from costmodels.strategy import Links, Strategy  # noqa: E402
from topologies.graph import Link  # noqa: E402

#: NVLink 4 of a DGX H100: 450 GB/s each way per GPU (NVIDIA H100 datasheet), 1 us.
NVLINK = Link(450e9, 1e-6, "nvlink")
SETUPS = [("llama-3.1-70b", 4, 467, 256), ("llama-3.1-70b", 4, 2048, 256), ("llama-3.1-8b", 1, 1024, 128),
          ("llama-3.1-70b", 8, 4096, 512)]
RATES_PER_S = (1, 3, 6, 10)


#: (model, GPU, TP, runtime, prompt tokens, output tokens) for ``--load``.
LOAD_SETUPS = [("llama-3.1-8b", "H100-SXM-80GB", 1, "vllm", 2048, 256),
               ("llama-3.1-8b", "H100-SXM-80GB", 1, "trtllm", 512, 512),
               ("llama-3.1-70b", "H100-SXM-80GB", 4, "trtllm", 1024, 256),
               ("llama-3.1-70b", "H100-SXM-80GB", 8, "vllm", 2048, 256),
               ("qwen3-32b", "H200-SXM-141GB", 2, "trtllm", 2048, 256),
               ("llama-3.1-8b", "L40S-48GB", 1, "vllm", 1024, 1024),
               ("mixtral-8x7b", "H100-SXM-80GB", 2, "vllm", 1024, 512),
               ("llama-3.1-70b", "A100-SXM4-80GB", 8, "vllm", 4096, 128),
               ("llama-3.1-8b", "A100-SXM4-80GB", 1, "vllm", 128, 2048),
               ("llama-3.1-70b", "H100-SXM-80GB", 4, "vllm", 8192, 256),
               ("llama-3.1-8b", "H100-SXM-80GB", 1, "sglang", 4096, 512),
               ("qwen3-32b", "H100-SXM-80GB", 4, "vllm", 16384, 512)]
LOADS = (0.3, 0.5, 0.7, 0.8, 0.9, 0.95)


def whole_batch_at(loop: OpenLoop, rate: float) -> int:
    """The least whole batch that sustains ``rate`` (Little's law), as ``evaluate --qps`` took it before."""
    lo, hi = 1, loop.slots
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if rate <= loop.rate_of(mid) else (mid + 1, hi)
    return lo


def load_report() -> None:
    catalog = gpu_catalog()
    links = Links(tp=NVLINK, ep=NVLINK)
    front = cal.ONLINE_REQUEST_OVERHEAD_S
    errors: dict[str, list[float]] = {"open loop": [], "M/D/1 at the operating point": [], "M/D/1 at the full batch": []}
    print("set-up                                          load  sim TTFT ms  open loop  M/D/1 op. point  M/D/1 full batch")
    for name, gpu_name, tp, runtime, isl, osl in LOAD_SETUPS:
        model, gpu = get_model(name), catalog[gpu_name]
        s = Strategy(tp=tp, weight_dtype="bf16", kv_dtype="bf16", runtime=runtime)
        full = evaluate_replica(model, gpu, s, isl=isl, osl=osl, links=links)
        loop = OpenLoop(model, gpu, s, isl=isl, osl=osl, capacity=full, links=links)
        for u in LOADS:
            rate = u * full.requests_per_s
            sim = simulate_benchmark(model, gpu, s, isl=isl, osl=osl, requests=4000, rate_per_s=rate,
                                     links=links).ttft_mean_s
            at = loop.metrics(whole_batch_at(loop, rate))
            figures = {"open loop": loop.ttft_s(rate) + front,
                       "M/D/1 at the operating point": ttft_under_load_s(ttft_s=at.ttft_s, utilization=u) + front,
                       "M/D/1 at the full batch": ttft_under_load_s(ttft_s=full.ttft_s, utilization=u) + front}
            for k, v in figures.items():
                errors[k].append(abs(v / sim - 1))
            shown = "  ".join(f"{v * 1e3:>{w}.0f}" for v, w in zip(figures.values(), (9, 15, 16), strict=True))
            print(f"{f'{name} {gpu_name} tp{tp} {runtime} {isl}/{osl}':<46}{u:>6.2f}  {sim * 1e3:>11.0f}  {shown}")
    print()
    for k, v in errors.items():
        print(f"{k:<30} mean |error| against the simulation {100 * sum(v) / len(v):5.1f} %  worst {100 * max(v):5.0f} %"
              f"  ({len(v)} points)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--load", action="store_true", help="compare the queueing models at 30-95 %% of capacity")
    if ap.parse_args().load:
        load_report()
        return
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
