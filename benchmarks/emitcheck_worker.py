"""The runtime side of benchmarks/check_emitters.py: run inside one runtime's virtual environment.

Usage: WORK/venv-<name>/bin/python benchmarks/emitcheck_worker.py KIND < jobs.json > results.json

KIND is vllm, sglang, sglang-router, vllm-router, ray or k8s. Each job is {"id", "argv", "env", "gpu", "model_dir"}
(``gpu``: {"name", "capability": [major, minor], "memory_bytes", "count"}; k8s jobs: {"id", "doc",
"versions"}). For each job this prints {"id": ..., "status": "ok"|"rejected", "error": ..., "config":
{...}}: the values the runtime's own parsing and validation ended up with, under the names
check_emitters.py compares with the plan. Only the standard library is imported at module level: the
runtime is imported by the function of its KIND, in the venv that has it.

Stubs (the GPU is not there): ``fake_gpu`` (NVML and torch.cuda queries), ``fake_host_memory`` (vLLM's
swap-space check), and the stand-in libcuda that check_emitters.py puts on LD_LIBRARY_PATH; nothing else
of a runtime is changed (see the docstring of check_emitters.py).
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import traceback
import types

from emitcheck_k8s import k8s_job  # a sibling: this file's folder is on sys.path when run as a script

# -- the stand-in GPU -----------------------------------------------------------------------------------

class _Nvml:
    """What a ``pynvml`` module answers about ``count`` GPUs of one type (name, capability, memory)."""

    def __init__(self, gpu: dict):
        self.gpu = gpu

    def install(self, module) -> None:
        g = self.gpu
        mem = types.SimpleNamespace(total=g["memory_bytes"], free=g["memory_bytes"], used=0)
        stubs = {
            "nvmlInit": lambda *a: None, "nvmlShutdown": lambda *a: None,
            "nvmlDeviceGetCount": lambda: g["count"],
            "nvmlDeviceGetHandleByIndex": lambda i: i,
            "nvmlDeviceGetCudaComputeCapability": lambda h: tuple(g["capability"]),
            "nvmlDeviceGetName": lambda h: g["name"],
            "nvmlDeviceGetMemoryInfo": lambda h: mem,
            "nvmlDeviceGetUUID": lambda h: f"GPU-00000000-0000-0000-0000-{int(h):012d}",
            "nvmlDeviceGetP2PStatus": lambda a, b, c: 0,
            "nvmlSystemGetCudaDriverVersion": lambda: 13000,
            "nvmlSystemGetCudaDriverVersion_v2": lambda: 13000,
            "nvmlSystemGetDriverVersion": lambda: "580.00",
            "nvmlDeviceGetTopologyCommonAncestor": lambda a, b: 10,
        }
        for name, fn in stubs.items():
            setattr(module, name, fn)


def fake_gpu(gpu: dict) -> None:
    """Make this process see ``gpu["count"]`` GPUs of the plan's type: NVML (``pynvml``, which vLLM and
    SGLang ask first) and the torch.cuda queries the config code makes (availability, count, capability,
    properties, free memory). No kernel can run; the config code runs none."""
    with contextlib.suppress(ImportError):
        import pynvml
        _Nvml(gpu).install(pynvml)
    import torch

    props = types.SimpleNamespace(name=gpu["name"], major=gpu["capability"][0], minor=gpu["capability"][1],
                                  total_memory=gpu["memory_bytes"], multi_processor_count=132,
                                  gcnArchName="", uuid="GPU-0", L2_cache_size=50 << 20)
    torch.cuda.is_available = lambda: True
    torch.cuda.device_count = lambda: gpu["count"]
    torch.cuda.get_device_capability = lambda device=None: tuple(gpu["capability"])
    torch.cuda.get_device_properties = lambda device=None: props
    torch.cuda.get_device_name = lambda device=None: gpu["name"]
    torch.cuda.mem_get_info = lambda device=None: (gpu["memory_bytes"], gpu["memory_bytes"])
    torch.cuda.current_device = lambda: 0
    torch.cuda.is_bf16_supported = lambda *a, **k: gpu["capability"][0] >= 8
    torch.cuda._device_count_nvml = lambda: gpu["count"]
    torch._C._cuda_getDeviceCount = lambda: gpu["count"]


#: System memory of the stand-in node: a DGX H100's 2 TiB (NVIDIA DGX H100 datasheet). vLLM 0.11 refuses a
#: CPU swap space (4 GiB per GPU by default) above 70 % of it, so the checking machine's own RAM must not count.
HOST_MEMORY_BYTES = 2 << 40


def fake_host_memory() -> None:
    import psutil

    real = psutil.virtual_memory
    psutil.virtual_memory = lambda: real()._replace(total=HOST_MEMORY_BYTES, available=HOST_MEMORY_BYTES)


def _stub_missing_extension(name: str) -> None:
    """Put an empty module for a compiled extension that cannot be loaded without a CUDA driver."""
    try:
        __import__(name)
    except ImportError:
        sys.modules[name] = types.ModuleType(name)


def set_env(env: dict) -> None:
    """The recorded process environment (VLLM_*, SGLANG_*, CUDA_*) for this job, nothing else carried over."""
    for k in [k for k in os.environ if k.startswith(("VLLM_", "SGLANG_"))]:
        del os.environ[k]
    os.environ.update(env)


def _replace_model(argv: list[str], flag_or_pos, model_dir: str) -> list[str]:
    out = list(argv)
    if isinstance(flag_or_pos, int):
        out[flag_or_pos] = model_dir
    else:
        out[out.index(flag_or_pos) + 1] = model_dir
    return out


# -- vLLM -----------------------------------------------------------------------------------------------

def _vllm_parser():
    """``vllm serve``'s own parser, built the way the ``vllm`` command builds it (its serve subcommand)."""
    try:
        from vllm.utils.argparse_utils import FlexibleArgumentParser
    except ImportError:  # 0.11
        from vllm.utils import FlexibleArgumentParser
    from vllm.entrypoints.cli.serve import ServeSubcommand

    top = FlexibleArgumentParser(prog="vllm")
    subparsers = top.add_subparsers(dest="subparser")
    ServeSubcommand().subparser_init(subparsers)
    return top


def _vllm_validate(args) -> None:
    for mod in ("vllm.entrypoints.openai.cli_args", "vllm.entrypoints.common.cli_args"):
        with contextlib.suppress(ImportError, AttributeError):
            __import__(mod, fromlist=["x"]).validate_parsed_serve_args(args)
            return


def _vllm_config(argv: list[str]):
    """(parsed args, VllmConfig) of ``vllm serve ...``, as ServeSubcommand.cmd and run_headless get there."""
    import vllm
    from vllm.usage.usage_lib import UsageContext

    args = _vllm_parser().parse_args(["serve", *argv[2:]])
    if getattr(args, "model_tag", None) is not None:
        args.model = args.model_tag
    if args.headless:
        args.api_server_count = 0
    _vllm_validate(args)
    engine_args = vllm.AsyncEngineArgs.from_cli_args(args)
    try:
        config = engine_args.create_engine_config(usage_context=UsageContext.OPENAI_API_SERVER, headless=args.headless)
    except TypeError:  # a release whose create_engine_config has no headless argument
        config = engine_args.create_engine_config(usage_context=UsageContext.OPENAI_API_SERVER)
    return args, config


def _vllm_all2all(pc) -> str | None:
    if hasattr(pc, "all2all_backend"):
        return str(getattr(pc.all2all_backend, "value", pc.all2all_backend))
    import vllm.envs as envs  # 0.11: the environment variable is the setting
    return envs.VLLM_ALL2ALL_BACKEND


def _pp_layers(get_pp_indices, layers: int, pp: int) -> list[int]:
    out = []
    for rank in range(pp):
        start, end = get_pp_indices(layers, rank, pp)
        out.append(end - start)
    return out


def vllm_job(job: dict) -> dict:
    from vllm.distributed.utils import get_pp_indices

    args, config = _vllm_config(_replace_model(job["argv"], 2, job["model_dir"]))
    pc, sc, cc, mc = config.parallel_config, config.scheduler_config, config.cache_config, config.model_config
    return {
        "tp": pc.tensor_parallel_size, "pp": pc.pipeline_parallel_size, "dp": pc.data_parallel_size,
        "dp_local": pc.data_parallel_size_local, "dp_start_rank": getattr(pc, "data_parallel_rank", None),
        "ep": bool(pc.enable_expert_parallel), "max_num_seqs": sc.max_num_seqs,
        "max_num_batched_tokens": sc.max_num_batched_tokens, "max_model_len": mc.max_model_len,
        "gpu_memory_utilization": cc.gpu_memory_utilization, "kv_cache_dtype": str(cc.cache_dtype),
        "all2all_backend": _vllm_all2all(pc), "quantization": mc.quantization,
        "executor": str(pc.distributed_executor_backend), "headless": bool(args.headless),
        "port": None if args.headless else args.port,
        "dp_rpc_port": pc.data_parallel_rpc_port if pc.data_parallel_size > 1 else None,
        "pp_layers": _pp_layers(get_pp_indices, mc.hf_text_config.num_hidden_layers, pc.pipeline_parallel_size),
    }


def vllm_setup(gpu: dict) -> None:
    os.environ.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1",
                       "DO_NOT_TRACK": "1"})
    for mod in ("vllm.third_party.pynvml", "pynvml"):
        with contextlib.suppress(ImportError):
            _Nvml(gpu).install(__import__(mod, fromlist=["x"]))
    fake_gpu(gpu)
    fake_host_memory()
    _stub_missing_extension("vllm._C")


# -- SGLang and its router ------------------------------------------------------------------------------

def sglang_job(job: dict) -> dict:
    """``python -m sglang.launch_server ...`` through ``prepare_server_args``: SGLang's parser, then
    ``ServerArgs(...)`` whose ``__post_init__`` resolves and checks the arguments."""
    from sglang.srt.server_args import prepare_server_args

    args = prepare_server_args(_replace_model(job["argv"], "--model-path", job["model_dir"])[3:])
    a = _sglang_resolved(args)
    attn_dp = getattr(a, "attn_dp_size", None) or (a.dp_size if a.enable_dp_attention else 1)
    return {
        "tp": a.tp_size, "pp": a.pp_size, "dp": attn_dp, "ep": a.ep_size,
        "max_running_requests": a.max_running_requests, "chunked_prefill_size": a.chunked_prefill_size,
        "max_prefill_tokens": a.max_prefill_tokens, "max_model_len": a.context_length,
        "mem_fraction_static": a.mem_fraction_static, "kv_cache_dtype": a.kv_cache_dtype,
        "all2all_backend": str(a.moe_a2a_backend), "quantization": a.quantization, "port": a.port,
        "disaggregation_mode": a.disaggregation_mode, "bootstrap_port": a.disaggregation_bootstrap_port,
        "nnodes": a.nnodes, "node_rank": a.node_rank, "dist_init_addr": a.dist_init_addr,
        "pp_layers": _sglang_pp_layers(a.pp_size, job.get("layers")),
        "bound_ports": _sglang_ports(args, a),
    }


def _sglang_ports(args, a) -> list[list]:
    """[name, port] of every TCP port this process binds (or needs free) on its own node, as SGLang
    0.5.23 derives them from its arguments:

    * ``--port``: the HTTP server of node rank 0, and on node rank >= 1 the stand-in health-check server
      (``Engine._launch_subprocesses`` -> ``launch_dummy_health_check_server(host, port)``);
    * node rank 0 with ``--dist-init-addr``: its port (torch.distributed's TCPStore);
    * node rank 0 of a prefill server: the disaggregation bootstrap port;
    * node rank 0 under attention DP: every port ``PortArgs.init_new`` checks with
      ``wait_port_available`` before the ZMQ sockets bind them (base = dist-init port + 1, or
      ``--port + ZMQ_TCP_PORT_DELTA`` + 1 on one node without ``--dist-init-addr``), and the worker-port
      handshake socket ``DataParallelController._broadcast_worker_ports`` binds at
      ``--port`` (or the dist-init port) ``+ DP_ATTENTION_HANDSHAKE_PORT_DELTA``.
    ``init_new`` runs with its probes replaced by a recorder (nothing is bound here); the NCCL port it
    would pick from the free ports below the ephemeral range is random, so it is not reported."""
    out = [["port" if a.node_rank == 0 else "health-check port", a.port]]
    if a.node_rank != 0:
        return out
    if a.dist_init_addr:
        out.append(["dist-init port", int(a.dist_init_addr.rsplit(":", 1)[1])])
    if a.disaggregation_mode == "prefill":
        out.append(["bootstrap port", a.disaggregation_bootstrap_port])
    attn_dp = getattr(a, "attn_dp_size", None) or (a.dp_size if a.enable_dp_attention else 1)
    if attn_dp > 1:
        out += _sglang_port_args_ports(args)
        out.append(["dp handshake port", _sglang_handshake_port(a)])
    return out


def _sglang_port_args_ports(args) -> list[list]:
    """The ports ``PortArgs.init_new(args)`` waits to be free (and then binds), recorded, not probed."""
    import sglang.srt.server_args as sa

    seen: list[list] = []
    probes = (sa.wait_port_available, sa.get_free_port_below_ephemeral)
    sa.wait_port_available = lambda port, name, *rest, **kw: seen.append([name, port])
    sa.get_free_port_below_ephemeral = lambda *rest, **kw: None
    try:
        sa.PortArgs.init_new(args)
    finally:
        sa.wait_port_available, sa.get_free_port_below_ephemeral = probes
    return [[name, int(port)] for name, port in seen if name != "nccl_port"]


def _sglang_handshake_port(a) -> int:
    from sglang.srt.server_args import DP_ATTENTION_HANDSHAKE_PORT_DELTA

    base = int(a.dist_init_addr.rsplit(":", 1)[1]) if a.dist_init_addr else a.port
    return base + DP_ATTENTION_HANDSHAKE_PORT_DELTA


def _sglang_resolved(args):
    """The arguments as the launcher resolves them: from 0.5.22 ``ServerArgs.__post_init__`` leaves them
    raw and ``resolve_once`` runs the resolution and validation pipeline (sglang/srt/arg_groups/pipeline.py),
    whose decisions (e.g. chunked_prefill_size // attn_dp_size) are read through ``resolved_view``."""
    if not hasattr(args, "resolve_once"):
        return args  # releases that resolve in __post_init__
    args.resolve_once()
    from sglang.srt.arg_groups.model_override_base import resolved_view
    return resolved_view(args)


def _sglang_pp_layers(pp: int, layers: int | None) -> list[int] | None:
    if not layers:
        return None
    from sglang.srt.distributed.utils import get_pp_indices
    return _pp_layers(get_pp_indices, layers, pp)


def sglang_setup(gpu: dict) -> None:
    os.environ.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    fake_gpu(gpu)


def router_job(job: dict) -> dict:
    """``python -m sglang_router.launch_router ...`` through the router's own ``parse_router_args``."""
    from sglang_router.launch_router import parse_router_args

    r = parse_router_args(job["argv"][3:])
    return {"pd": bool(r.pd_disaggregation), "prefill": [list(x) for x in (r.prefill_urls or [])],
            "decode": list(r.decode_urls or []), "workers": list(r.worker_urls or []), "port": r.port,
            "prometheus_port": r.prometheus_port, "policy": r.policy}


def vllm_router_job(job: dict) -> dict:
    """``vllm-router ...`` (vllm-project/router) as its console script runs it: ``parse_router_args`` (its
    parser and ``RouterArgs.from_cli_args``), ``_validate_router_args`` and ``Router.from_args``, which
    builds the Rust router's configuration (its own checks of URLs and policies) without starting it."""
    import copy

    from vllm_router.launch_router import parse_router_args
    from vllm_router.router import Router

    r = parse_router_args(job["argv"][1:])
    r._validate_router_args()
    Router.from_args(copy.deepcopy(r))  # from_args rewrites the fields it is given
    return {"pd": bool(r.vllm_pd_disaggregation), "prefill": [list(x) for x in (r.prefill_urls or [])],
            "decode": list(r.decode_urls or []), "workers": list(r.worker_urls or []), "port": r.port,
            "prometheus_port": r.prometheus_port, "policy": r.policy}


# -- Ray ------------------------------------------------------------------------------------------------

def ray_job(job: dict) -> dict:
    """``ray start ...`` through Ray's own click command (``make_context`` parses and type-checks every
    option; nothing is started)."""
    from ray.scripts.scripts import start

    ctx = start.make_context("ray start", list(job["argv"][2:]))
    p = ctx.params
    address = p.get("address")
    return {"head": bool(p.get("head")), "port": p.get("port") if p.get("head") else None,
            "address_port": int(address.rsplit(":", 1)[1]) if address else None,
            "num_gpus": p.get("num_gpus"), "resources": json.loads(p.get("resources") or "{}")}


# -- the loop -------------------------------------------------------------------------------------------

KINDS = {"vllm": (vllm_setup, vllm_job), "sglang": (sglang_setup, sglang_job),
         "sglang-router": (None, router_job), "vllm-router": (None, vllm_router_job),
         "ray": (None, ray_job), "k8s": (None, k8s_job)}


def run_job(fn, job: dict) -> dict:
    """``fn(job)`` with the job's environment; a raised error is the runtime refusing the command."""
    set_env(job.get("env", {}))
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            config = fn(job)
        return {"id": job["id"], "status": "ok", "config": config}
    except BaseException as e:  # noqa: BLE001 - argparse exits with SystemExit on a bad flag
        if isinstance(e, KeyboardInterrupt):
            raise
        tail = traceback.format_exception_only(type(e), e)[-1].strip()
        return {"id": job["id"], "status": "rejected", "error": (tail + " " + out.getvalue()[-300:]).strip()}


def main() -> int:
    kind = sys.argv[1]
    jobs = json.load(sys.stdin)
    setup, fn = KINDS[kind]
    if setup and jobs:
        setup(jobs[0]["gpu"])
    results = [run_job(fn, job) for job in jobs]
    sys.stdout.write("\n" + json.dumps(results) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
