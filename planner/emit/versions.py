"""Runtime releases the emitters write for (``plan-search emit --runtime-version``).

A launch file is written for one release of its runtime: flags and environment variables come and
go between releases, and a flag one release lacks makes it refuse the command, while a variable a
later release dropped is silently ignored (the plan would not run as priced). Each runtime has the
range of releases whose parsers were read for the flags the emitter writes, and a default, the
newest one checked; the release gates below say where the written form changes.

Sources (the released wheels' own code, read with ``pip download <pkg>==<version> --no-deps``):
  * vLLM 0.11.0, 0.11.1, 0.11.2, 0.12.0 .. 0.16.0 and 0.33.0: ``--all2all-backend`` is first in
    vllm/engine/arg_utils.py of 0.11.1 (absent in 0.11.0); ``VLLM_ALL2ALL_BACKEND`` is read by
    vllm/envs.py up to 0.15.x (deprecated from 0.11.1 in vllm/config/parallel.py) and gone in 0.16.0.
    The Ray executor's node order (planner/emit/ray_order.py), read in 0.11.0, 0.12.0, 0.15.0, 0.20.0,
    0.20.2, 0.21.0 .. 0.25.0 and 0.33.0: ``VLLM_USE_RAY_V2_EXECUTOR_BACKEND`` defaults to 0 in 0.20.2 and
    to 1 from 0.21.0 (vllm/envs.py), switching from ordering nodes by (workers, IP) to by Ray node id.
  * SGLang 0.5.15, 0.5.19, 0.5.21, 0.5.22, 0.5.23 (every ServerArgs field the emitter writes is in
    each; the ports each server binds are the same rules in each, see planner/emit/sglang.py):
    ``--attn-dp-size`` (ServerArgs field
    ``attn_dp_size``, sglang/srt/arg_groups/fields/parallel.py) is first a flag in 0.5.22, where
    ``--enable-dp-attention`` becomes a deprecated spelling of it (sglang/srt/server_args.py).
  * TensorRT-LLM 1.0.0, 1.1.0, 1.2.0 and 1.2.1, read in each release's own documentation (PyPI's
    tensorrt-llm is a source stub and NVIDIA's wheel index is not reachable from here), which is
    rendered from the release's code: the ``trtllm-serve serve`` options (sphinx-click) and
    tensorrt_llm/llmapi/llm_args.py (Sphinx viewcode), as recorded in tests/data/runtime_flags/. Every
    flag the emitter writes is in all four; the LLM API argument ``pp_partition`` (layers per pipeline
    rank, NVIDIA/TensorRT-LLM pull request #9003) is in 1.2.0 and 1.2.1 and in neither 1.0.0 nor 1.1.0.
"""
from __future__ import annotations

import re

from topologies.errors import InputError

Version = tuple[int, int, int]

#: Runtime of each target that starts one (the Kubernetes pods run vLLM); Ray placement has none.
RUNTIME_OF_TARGET = {"vllm": "vllm", "k8s": "vllm", "sglang": "sglang", "trtllm": "trtllm"}

#: Per runtime: (oldest release supported, default = newest checked release).
SUPPORTED: dict[str, tuple[Version, Version]] = {
    "vllm": ((0, 11, 0), (0, 33, 0)),
    "sglang": ((0, 5, 15), (0, 5, 23)),
    "trtllm": ((1, 0, 0), (1, 2, 1)),
}
DEFAULT: dict[str, Version] = {"vllm": (0, 33, 0), "sglang": (0, 5, 23), "trtllm": (1, 2, 1)}

#: vLLM: ``--all2all-backend`` from this release on; ``VLLM_ALL2ALL_BACKEND`` before it.
VLLM_ALL2ALL_FLAG_SINCE: Version = (0, 11, 1)
#: vLLM: the Ray executor orders a replica's nodes by Ray node id from this release on, by (workers, IP) before.
VLLM_RAY_NODE_ID_ORDER_SINCE: Version = (0, 21, 0)
#: vLLM: the Ray executor runs asynchronous scheduling from this release on: ``RayExecutorV2``, its Ray
#: executor from 0.21.0, "Async scheduling is enabled, inherited from MultiprocExecutor"
#: (vllm/v1/executor/ray_executor_v2.py; vllm-project/vllm PR #36836). The Ray executor before it refuses
#: ``--async-scheduling``: "Currently, async scheduling only supports `mp`, `uni` or `external_launcher`
#: distributed executor backend" (``EngineArgs.create_engine_config``, vllm/engine/arg_utils.py, 0.11).
VLLM_RAY_ASYNC_SCHEDULING_SINCE: Version = (0, 21, 0)
#: SGLang: ``--attn-dp-size D`` from this release on; ``--dp-size D --enable-dp-attention`` before it.
SGLANG_ATTN_DP_SIZE_SINCE: Version = (0, 5, 22)
#: TensorRT-LLM: ``pp_partition`` in the extra-options YAML from this release on (see the module doc).
TRTLLM_PP_PARTITION_SINCE: Version = (1, 2, 0)

_VERSION = re.compile(r"(\d{1,4})\.(\d{1,4})(?:\.(\d{1,4}))?")


def text(v: Version) -> str:
    return ".".join(str(x) for x in v)


def resolve(target: str, given: str | None) -> Version | None:
    """The release to write ``target``'s files for: ``given`` (``MAJOR.MINOR[.PATCH]``) checked against
    the supported range, or the runtime's default; None for a target that starts no runtime (ray)."""
    runtime = RUNTIME_OF_TARGET.get(target)
    if runtime is None:
        if given is not None:
            raise InputError(f"the {target} target starts no serving runtime, so it takes no runtime version",
                             source="--runtime-version")
        return None
    if given is None:
        return DEFAULT[runtime]
    m = _VERSION.fullmatch(str(given).strip())
    if m is None:
        raise InputError(f"{given!r} is not a release number (MAJOR.MINOR or MAJOR.MINOR.PATCH, e.g. "
                         f"{text(DEFAULT[runtime])})", source="--runtime-version")
    v = (int(m[1]), int(m[2]), int(m[3] or 0))
    lo, hi = SUPPORTED[runtime]
    if not lo <= v <= hi:
        raise InputError(f"{runtime} {text(v)} is outside the releases this plan-search writes for "
                         f"({text(lo)} to {text(hi)})", source="--runtime-version")
    return v


def help_text() -> str:
    """The supported range and default of each runtime, for ``--runtime-version``'s help."""
    return "; ".join(f"{r}: {text(lo)} to {text(hi)}, default {text(DEFAULT[r])}" for r, (lo, hi) in SUPPORTED.items())
