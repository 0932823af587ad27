"""Every efficiency and overhead constant of the cost model, in one place, each with its reason.

Nothing else in ``costmodels/`` holds a tunable number. A constant here is either a
runtime's documented default or a first-order figure with the reasoning beside it;
``benchmarks/fidelity.py`` measures how well the whole set predicts published results.
"""
from __future__ import annotations

from costmodels.units import GIB, MIB, US

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

#: Share of peak dense tensor-core throughput large GEMMs reach. cuBLAS/cuBLASLt reach
#: 70-80 % of dense peak on large Hopper/Ampere GEMMs.
MATMUL_EFFICIENCY_MAX = 0.75

#: GEMM rows (tokens) at which the efficiency reaches half its maximum: below one tile of
#: rows (64-128 on Hopper), tensor cores idle. efficiency(m) = max * m / (m + M_HALF).
MATMUL_M_HALF_TOKENS = 32.0

#: Share of peak HBM bandwidth a streaming read reaches (H100 SXM: about 2.6-2.9 of
#: 3.35 TB/s in copy/STREAM-style tests).
HBM_EFFICIENCY = 0.80

#: Share of peak tensor throughput attention kernels (FlashAttention-2/3) reach.
ATTENTION_EFFICIENCY = 0.50

#: Fixed cost of one engine step on the host and in kernel launches with CUDA graphs:
#: scheduling, sampling, input preparation. Plus a per-layer launch cost.
STEP_OVERHEAD_S = 300 * US
LAYER_OVERHEAD_S = 4 * US

#: Share of link bandwidth NCCL collectives reach ("bus bandwidth" of nccl-tests is
#: typically 75-85 % of the link's per-direction rate on NVLink and InfiniBand).
COLLECTIVE_EFFICIENCY = 0.80

#: Utilisation a replica is planned to run at when a request rate is given and no TTFT
#: target bounds it: queueing delay grows without limit as utilisation nears 1.
MAX_PLANNED_UTILIZATION = 0.90
