"""Every efficiency and overhead constant of the cost model, in one place, each with its reason.

Nothing else in ``costmodels/`` holds a tunable number. A constant here is a runtime's
documented default, a figure read off a measurement (the collectives: see
``costmodels/data/collectives.csv`` and the constants below it), or a figure FITTED to
published measurements, marked ``[fitted]``. ``python benchmarks/calibrate.py`` fits those
jointly (Powell's method, mean |log error| per metric family plus the spread of errors inside
each layout group) on the rows of ``benchmarks/data/benchmarks.csv`` and
``benchmarks/data/latency.csv`` the model can price, except the sources in
``calibrate.FIT_EXCLUDED_SOURCES`` (each with its reason), within physically plausible bounds.
Where a fit sits on its bound, the bound is the reason (it says so). ``benchmarks/fidelity.py``
measures the result; ``calibrate.py --holdout-gpus --holdout-sources`` refits without each GPU
type or source to show how the model does on data it was not fitted to (README figures).
"""
from __future__ import annotations

from costmodels.units import GIB, MIB, MS, US

#: Share of GPU memory the runtime may claim. vLLM's ``--gpu-memory-utilization``
#: defaults to 0.9; TensorRT-LLM's ``kv_cache_free_gpu_memory_fraction`` defaults to 0.9
#: of what is free after weights. The rest is the "utilisation reserve".
GPU_MEMORY_UTILIZATION = 0.90

#: Memory the runtime holds outside weights, KV and activations: CUDA context and
#: cuBLAS/cuDNN workspaces (about 0.5-0.6 GiB on Hopper), CUDA graphs for decode batch
#: sizes (vLLM logs 0.3-1 GiB), allocator fragmentation. First-order figure.
RUNTIME_OVERHEAD_BYTES = 1.5 * GIB

#: NCCL communicator buffers per process when it talks to peers (NCCL_BUFFSIZE is 4 MiB
#: per channel and peer; tens of channels on NVSwitch systems).
NCCL_BUFFER_BYTES = 256 * MIB

#: Default token budget of one scheduler step (vLLM's ``max_num_batched_tokens`` under
#: chunked prefill is 8192 for online serving in V1; TensorRT-LLM's ``max_num_tokens``
#: defaults to 8192).
DEFAULT_MAX_NUM_BATCHED_TOKENS = 8192

#: Default cap on concurrent sequences (TensorRT-LLM ``max_batch_size`` default 2048 in
#: trtllm-serve; vLLM ``max_num_seqs`` 256 for online use; trtllm-bench raises it to the
#: KV-cache limit). The planner searches batch sizes up to this cap.
MAX_BATCH_SIZE = 2048

#: The next three price GEMMs only where no measured table covers the GPU and format
#: (``costmodels.dense_gemm`` prices dense projections and the LM head from measured GEMM latencies
#: on A100, H100, H200, L40S, B200, GB200, B300, GB300 and RTX PRO 6000): other GPUs (GH200, A10,
#: MI300X, ...), weight-only INT4/INT8, MLA projections and the analytic expert GEMMs.
#: [fitted] Share of peak dense tensor-core throughput large 16-bit GEMMs reach
#: (bounds 0.30-0.90; cuBLAS reaches 70-80 % of dense peak on large Hopper/Ampere GEMMs).
MATMUL_EFFICIENCY_MAX = 0.7495

#: [fitted, near its upper bound 1.0] Share of the 16-bit GEMM efficiency reached when GEMMs run in
#: FP8/INT8/FP4 (bounds 0.40-1.00): the doubled tensor rate meets the same SM data paths, scaling
#: and epilogues, so a smaller share of the datasheet peak is reached. Near its bound since the
#: measured tables took over the FP8 and FP4 GEMMs they cover.
LOW_PRECISION_MATMUL_EFFICIENCY = 0.9596

#: [fitted] GEMM rows (tokens) at which the efficiency reaches half its maximum (bounds
#: 1-512): below one tile of rows (64-128 on Hopper) tensor cores idle.
#: efficiency(m) = max * m / (m + M_HALF).
MATMUL_M_HALF_TOKENS = 93.41

#: [fitted] Share of peak HBM bandwidth a streaming read reaches (bounds 0.50-0.92; H100
#: SXM copy/STREAM-style tests reach about 2.6-2.9 of 3.35 TB/s).
HBM_EFFICIENCY = 0.8310

#: [measured, not fitted] Share of peak tensor throughput prompt (prefill) attention reaches, for
#: GPUs with no measured attention table (costmodels.attention_tables prices the rest from theirs):
#: the median over the shipped prompt tables (9 GPUs x 3 runtimes, BF16, head size 128, 8 query
#: heads and 1 KV head per GPU) at four serving shapes (8 and 1 prompts of 2,048 tokens, 1 of
#: 8,192, 32 of 512). The tables range from 0.08 (one 2,048-token prompt on GB200 under
#: TensorRT-LLM) to 0.63 (one 8,192-token prompt on H100 under vLLM). Once a constant fitted to
#: throughput tables (0.75, on its bound, then 0.27); with the tables covering almost every
#: measured row it was no longer identified, so it is now read from them.
ATTENTION_EFFICIENCY = 0.29

#: [measured, not fitted] Share of peak tensor throughput a compute-bound decode attention kernel
#: reaches: FlashMLA (DeepSeek's MLA decode kernel) measured up to 660 TFLOPS on H800 SXM5, whose dense
#: BF16 peak is 989 TFLOPS (FlashMLA README, performance update 2025-04-22). MLA decode is
#: compute-bound (about 2 FLOPs per byte per query head); GQA decode is bandwidth-bound, so this
#: figure rarely decides its time.
DECODE_ATTENTION_EFFICIENCY = 660 / 989

#: [fitted] Fixed cost of one engine step: scheduling, sampling, input preparation, kernel
#: launches (bounds 10 us-3 ms per step, 0.1-20 us per layer). 1.0 ms per step is more than
#: CUDA-graph launches alone: it carries TensorRT-LLM's per-iteration scheduling and sampling. The
#: per-layer figure carries the small kernels no table prices (norms, residual adds, rotary,
#: activation); it sat on its 20 us bound until attention was priced from measured kernels.
#: The per-step figure is host work: an engine that overlaps it with the GPU's step
#: (``Strategy.overlaps_host``) pays only what exceeds the GPU's work. It is fitted mostly on
#: measurements of engines that did not overlap (the fit prices each source's engine as it ran,
#: ``benchmarks/fidelity_rows.engine_overlaps_host``); the per-layer figure is GPU work, and
#: ``SEQUENCE_OVERHEAD_S`` host work charged either way.
STEP_OVERHEAD_S = 1021 * US
LAYER_OVERHEAD_S = 15.41 * US

#: [fitted] Host work per running sequence per engine step that the GPU waits for (bounds
#: 0-20 us): the scheduler's per-request bookkeeping each iteration (token appends, stop checks,
#: sampling parameters, input preparation), which grows with the batch. vLLM measured it as the
#: reason large batches lost throughput before its v0.6 multi-step and asynchronous output
#: processing (vLLM blog, "vLLM v0.6.0: 2.7x Throughput Improvement", 2024-09: CPU overheads of
#: scheduling and output processing, both per request); TensorRT-LLM's batch manager does the same
#: work in C++ per request and iteration. Not measurable from kernel tables, hence fitted.
SEQUENCE_OVERHEAD_S = 9.839 * US

#: [fitted] Share of the dense GEMM efficiency grouped (MoE expert)
#: GEMMs reach (bounds 0.10-1.00): experts' GEMMs are many small ones launched together, with routing,
#: permutation and un-permutation around them.
MOE_GEMM_EFFICIENCY = 0.7994

#: [fitted] Fixed cost of one request's first token beyond its prompt's compute inside the
#: engine (bounds 10 us-20 ms): scheduling it into a step, first sampling.
PREFILL_REQUEST_OVERHEAD_S = 235.9 * US

#: [fitted, online-serving rows] What a client sees on top of the engine's TTFT in online
#: serving (bounds 10 us-50 ms): the HTTP front end, tokenisation, detokenisation and
#: streaming of the first token.
ONLINE_REQUEST_OVERHEAD_S = 6.605 * MS

#: Share of link bandwidth NCCL's ring collectives other than the all-reduce (all-gather,
#: reduce-scatter, all-to-all, pipeline sends) reach: NCCL's measured all-reduce bus efficiency
#: at 8 ranks where no in-switch reduction helps it, A100 SXM 0.717 and B200 0.730
#: (costmodels/data/collectives.csv, from NVIDIA's op tables; H100/H200 reach 0.96-0.99 there
#: only through NVLS, which all-gathers and sends do not use). Measured, not fitted.
COLLECTIVE_EFFICIENCY = 0.72

#: Latency of one ring step of those collectives: NCCL's measured small-message all-reduce
#: latency grows by (alpha(8) - alpha(2)) / 12 per added ring step: 0.78 us (H100), 0.97 us
#: (A100), 1.26 us (B200) (costmodels/data/collectives.csv); the middle figure. Measured, not fitted.
COLLECTIVE_STEP_LATENCY_S = 0.97 * US

#: Fixed cost of each of those collectives: NCCL's measured 2-rank all-reduce latency less its
#: two ring steps, 4.7 us (H100), 8.1 us (A100), 7.7 us (B200); the middle figure. Measured.
COLLECTIVE_BASE_LATENCY_S = 7.7 * US

#: Most GPUs one node's NVLink joins (an NVSwitch baseboard: DGX/HGX A100, H100, H200, B200);
#: a larger NVLink group spans the trays of an NVLink Switch system (GB200 NVL72, 4 per tray).
SINGLE_NODE_MAX_RANKS = 8


#: Utilisation a replica is planned to run at when a request rate is given and no TTFT
#: target bounds it: queueing delay grows without limit as utilisation nears 1.
MAX_PLANNED_UTILIZATION = 0.90


# -- runtimes ------------------------------------------------------------------------------------
# How each serving runtime sizes its KV cache and caps its batch, by default. These are the
# runtimes' documented or coded defaults, not fitted numbers.

from dataclasses import dataclass  # noqa: E402


@dataclass(frozen=True)
class RuntimeProfile:
    name: str
    #: "total": the runtime claims ``memory_fraction`` of the GPU and the KV cache gets what
    #: weights, activations and overhead leave (vLLM ``--gpu-memory-utilization``, SGLang
    #: ``--mem-fraction-static``). "free": the KV cache gets ``memory_fraction`` of what is
    #: still free after them (TensorRT-LLM ``kv_cache_free_gpu_memory_fraction``).
    kv_rule: str
    memory_fraction: float
    #: Largest batch the runtime's default configuration schedules, per pipeline stage.
    max_batch: int
    #: Whether KV of sliding-window layers is capped at the window when memory is allocated.
    sliding_window_kv: bool
    #: Whether the current release, by default, prepares step n+1 on the host (scheduling, input
    #: preparation, output and stop-criteria processing) while the GPU runs step n, so that host
    #: work costs the step nothing while the GPU work is longer (``costmodels.compute.stage_step_time``).
    overlaps_host: bool = True


# Host overlap, each runtime's current release (RuntimeProfile.overlaps_host):
#   - vLLM: asynchronous scheduling, an opt-in ``--async-scheduling`` from PR #19970 (2025-06), the
#     default since PR #27614 (vllm-project/vllm issue #27679, "Async Scheduling Plan"); the vLLM
#     emitter writes the flag for every replica priced with it, so the older releases it writes for
#     run it too;
#   - SGLang: the overlap ("zero-overhead") batch scheduler, on by default since v0.4 (LMSYS blog
#     2024-12-04; ``--disable-overlap-schedule`` turns it off);
#   - TensorRT-LLM: the PyTorch backend's overlap scheduler, "Enabled by default" (docs, features/
#     overlap-scheduler; ``disable_overlap_scheduler``), the default backend since v1.0.
# Not under a pipeline (:func:`overlaps_host`): TensorRT-LLM's ``PyExecutor`` runs
# ``_executor_loop_pp`` when pp_size > 1 and its overlap loop only otherwise; SGLang's
# ``event_loop_pp`` is "a non-overlap scheduler loop for pipeline parallelism"; vLLM's asynchronous
# scheduling took pipelines only in PR #32359 (2026-01, "with constraints"), was turned off for them
# before it (PR #31998), and is refused under its Ray executor with a pipeline, which the vLLM
# emitter uses for a pipeline across nodes. The C++ executor of the TensorRT-engine releases (v0.x) did
# not overlap, nor did the engines most of the published measurements ran:
# ``benchmarks/fidelity_rows.Row.host_overlap`` says which did.
RUNTIMES: dict[str, RuntimeProfile] = {
    # vLLM: gpu_memory_utilization 0.9; the V1 hybrid KV allocator keeps only the window for
    # sliding-window layers. The planner sets --max-num-seqs itself, so the cap is ours.
    "vllm": RuntimeProfile("vllm", kv_rule="total", memory_fraction=GPU_MEMORY_UTILIZATION, max_batch=MAX_BATCH_SIZE,
                           sliding_window_kv=True),
    # SGLang: --mem-fraction-static around 0.88 on 80 GB GPUs (server_args picks it by GPU memory).
    "sglang": RuntimeProfile("sglang", kv_rule="total", memory_fraction=0.88, max_batch=MAX_BATCH_SIZE,
                             sliding_window_kv=True),
    # TensorRT-LLM: kv_cache_free_gpu_memory_fraction 0.9 of free memory; trtllm-bench caps the
    # batch at 4096 / pp (tensorrt_llm/bench/build/tuning.py, finetune_setting) and allocates full
    # attention windows unless max_attention_window is set.
    "trtllm": RuntimeProfile("trtllm", kv_rule="free", memory_fraction=0.90, max_batch=4096, sliding_window_kv=False),
}


def overlaps_host(runtime: str, *, pp: int, release: bool | None = None) -> bool:
    """Whether a replica of ``runtime`` with ``pp`` pipeline stages hides its host work behind the
    GPU (the notes above): the release overlaps (``release``; None: the current release's default,
    ``RuntimeProfile.overlaps_host``) and the replica has no pipeline. The one rule the cost model
    (``Strategy.overlaps_host``) and the launch files (the vLLM emitter's ``--async-scheduling``) share.

    >>> overlaps_host("trtllm", pp=1), overlaps_host("vllm", pp=2), overlaps_host("sglang", pp=1, release=False)
    (True, False, False)
    """
    return (RUNTIMES[runtime].overlaps_host if release is None else release) and pp == 1


def trtllm_bench_max_num_tokens(*, max_batch: int, isl: int, osl: int) -> int:
    """The token budget per step trtllm-bench builds with for a batch and ISL/OSL.

    Its tuning heuristic: the batch's prompt and generation tokens per step,
    ``batch x (1 + isl / osl)``, capped at 32768, rounded up to 256/512/1024 steps, at
    least 2048.

    >>> trtllm_bench_max_num_tokens(max_batch=512, isl=128, osl=128)
    2048
    >>> trtllm_bench_max_num_tokens(max_batch=3000, isl=1000, osl=1000)
    6144
    """
    raw = min(max_batch * (1 + isl / max(osl, 1)), 32768)
    step = 256 if raw < 4096 else 512 if raw < 8192 else 1024
    return max(2048, int(step * -(-raw // step)))


# -- all-reduce paths (costmodels/comm.py) ---------------------------------------------------------
# The measured constants of each path (fixed latency, share of the link) are in
# costmodels/data/collectives.csv, read off NVIDIA's op tables by benchmarks/derive_collectives.py.

#: Largest message (bytes) each runtime sends through its own peer-memory all-reduce kernel; NCCL
#: above. vLLM: ``CustomAllreduce(max_size=8192 * 1024)`` (vllm/distributed/device_communicators/
#: custom_all_reduce.py); SGLang: the same default in its copy of that file; TensorRT-LLM: its IPC
#: workspace, 16 MB for 2+ ranks (``AllReduceStrategy.AUTO`` falls back to NCCL above it).
KERNEL_ALLREDUCE_MAX_BYTES = {"vllm": 8 * 2**20, "sglang": 8 * 2**20, "trtllm": 16e6}

#: Group sizes vLLM and SGLang start their peer-memory kernel for; any other size runs NCCL
#: (``CustomAllreduce._SUPPORTED_WORLD_SIZES = [2, 4, 6, 8]`` in vLLM's custom_all_reduce.py and
#: in SGLang's copy: the kernel is disabled with a warning at 3, 5 or 7 GPUs).
KERNEL_ALLREDUCE_RANKS = {"vllm": (2, 4, 6, 8), "sglang": (2, 4, 6, 8)}

def trtllm_one_shot_max_bytes(ranks: int) -> float:
    """Largest all-reduce TensorRT-LLM's AUTO strategy sends through its one-shot kernel; NCCL
    above. ``AllreducePlugin::selectImplementation``: within the 16 MB IPC workspace at 2 ranks,
    below 1 MB at up to 4 ranks, below 500 kB at up to 8; its two-shot kernel is off in AUTO
    (the code's "temporary measure" for nvbug 4718747; NVIDIA/TensorRT-LLM issue #2575, 2024-12:
    "twoshot algorithm has been disabled currently"). This is the behaviour of the releases the
    reference measurements ran (v0.14 - v0.17).

    >>> trtllm_one_shot_max_bytes(2), trtllm_one_shot_max_bytes(8), trtllm_one_shot_max_bytes(16)
    (16000000.0, 500000.0, 0.0)
    """
    if ranks <= 2:
        return 16e6
    if ranks <= 4:
        return 1e6
    if ranks <= 8:
        return 5e5
    return 0.0


#: GPUs measured for each link kind stand in for GPUs that were not: the same chip where there is
#: one (``COLLECTIVE_SAME_AS``), else the measured GPU of that link kind whose small-message latency
#: is among the highest, so that an unmeasured GPU is not priced optimistically. A100 SXM: NCCL
#: 10 / 14.5 / 22.6 us at 2 / 4 / 8 ranks against H100's 6.2 / 9.5 / 15.6; L40S: the PCIe table.
COLLECTIVE_FALLBACK_GPU = {"nvlink": "A100-SXM4-80GB", "pcie": "L40S-48GB"}

#: Unmeasured GPUs built on a measured one's chip and NVLink generation (or, over PCIe, its chip and
#: board). GH200: the H100 GPU with 18 NVLink 4 links (NVIDIA GH200 datasheet); H100 PCIe / NVL: H100
#: chip, NVLink 4 bridges between pairs; H800 and H20: the H100 chip on an HGX baseboard with NVLink 4
#: (fewer links on H800); H200 NVL: the H200 chip, NVLink 4 bridges; GB200, B300, GB300: Blackwell
#: GPUs on NVLink 5 (NVIDIA GB200 / GB300 NVL72 and HGX B300 datasheets); A100 40GB and A100 PCIe: the
#: A100 chip on NVLink 3 (NVSwitch or bridges); RTX PRO 6000 Workstation: the Server Edition's GB202
#: chip on PCIe Gen5 (costmodels/data/gpus.csv). Every other GPU takes ``COLLECTIVE_FALLBACK_GPU`` for
#: the kind of link its group runs over: PCIe cards (A10, L4, L40, RTX 4090, T4, P40, ...) the PCIe
#: table, NVLink-bridged cards (RTX A6000, A30), V100 and AMD's xGMI parts the NVLink one.
COLLECTIVE_SAME_AS = {"GH200-480GB": "H100-SXM-80GB", "H100-PCIe-80GB": "H100-SXM-80GB",
                      "H100-NVL-94GB": "H100-SXM-80GB", "H800-SXM-80GB": "H100-SXM-80GB",
                      "H20-96GB": "H100-SXM-80GB", "H200-NVL-141GB": "H200-SXM-141GB",
                      "GB200-186GB": "B200-180GB", "B300-288GB": "B200-180GB", "GB300-288GB": "B200-180GB",
                      "A100-SXM4-40GB": "A100-SXM4-80GB", "A100-PCIe-40GB": "A100-SXM4-80GB",
                      "A100-PCIe-80GB": "A100-SXM4-80GB",
                      "RTX-PRO-6000-Blackwell-Workstation": "RTX-PRO-6000-Blackwell-Server"}
