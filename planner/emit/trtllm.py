"""TensorRT-LLM launch scripts: ``trtllm-serve`` per replica, plus an extra-options YAML when needed.

Flags checked against TensorRT-LLM 1.x ``trtllm-serve`` (click options of ``serve``), first in
  NVIDIA/TensorRT-LLM tensorrt_llm/commands/serve.py @ 00209af149e7, then in the option lists of the
  1.0.0, 1.1.0, 1.2.0 and 1.2.1 release docs (rendered from each release's serve.py; recorded in
  tests/data/runtime_flags/tensorrt-llm-<version>.txt and checked by tests/test_emit_flags_recorded.py,
  the extra-options YAML's keys against each release's llm_args.py likewise): --host, --port,
  --tp_size, --pp_size, --ep_size, --gpus_per_node, --max_batch_size, --max_num_tokens,
  --max_seq_len, --kv_cache_free_gpu_memory_fraction, --extra_llm_api_options (a YAML merged
  into the LLM API arguments). Every release has these spellings; from 1.2.0 they are aliases of
  --tensor_parallel_size, --pipeline_parallel_size, --moe_expert_parallel_size,
  --free_gpu_memory_fraction and --config, which 1.0 and 1.1 lack.
Multi-node replicas: ``mpirun -H host:n,... -np N trtllm-llmapi-launch trtllm-serve ...``
(tensorrt_llm/llmapi/trtllm-llmapi-launch is in the same repository).
Attention data parallelism (``strategy.attention_dp`` = D > 1, MoE): ``enable_attention_dp: true`` in
the extra-options YAML (LLM API argument ``enable_attention_dp``, tensorrt_llm/llmapi/llm_args.py;
used with ``--tp_size 8 --ep_size 8`` in the docs' example examples/serve/deepseek_r1_reasoning_parser.sh).
It makes every one of the tp ranks its own attention group, so only D == tp is written. Each rank
then schedules its own requests: the PyTorch executor admits up to tp x max_batch_size requests in
all (tensorrt_llm/_torch/pyexecutor/py_executor.py, _fetch_new_requests under enable_attention_dp),
so ``--max_batch_size`` is batch_size // D; ``--max_num_tokens`` is the plan's per-scheduler value.
Multi-node replicas use the mpirun launch above unchanged.
KV cache in FP8: ``kv_cache_config: {dtype: fp8, free_gpu_memory_fraction: F}`` in the YAML. The YAML's
kv_cache_config replaces the whole KvCacheConfig that --kv_cache_free_gpu_memory_fraction built (so
without F there the fraction would fall back to KvCacheConfig's default 0.9); F is the planned fraction.
The script passes the YAML as a path beside the script (``"$(dirname "$0")"/name``), not relative to
the directory it is started from.
Uneven pipeline layer splits: the LLM API argument ``pp_partition`` (layers per pipeline rank,
tensorrt_llm/llmapi/llm_args.py, a prototype field) in the YAML, for the releases that have it
(``--runtime-version`` 1.2 or later, the default; 1.0.0 and 1.1.0 lack it, see planner/emit/versions.py).
Earlier releases split layers their own way (front-loaded), so a plan with another split is refused.
Refused, with the reason: an uneven pipeline layer split the release cannot pin (above),
FP8 weights from a non-FP8 checkpoint (no online FP8 quantization flag in trtllm-serve),
multi-node replicas whose nodes use different GPU indices (one CUDA_VISIBLE_DEVICES per mpirun),
and attention_dp other than 1 or tp (enable_attention_dp has no group size).
"""
from __future__ import annotations

import yaml

from costmodels.memory import front_loaded_split
from planner.emit import (
    ReplicaLayout,
    all_nodes,
    attention_groups,
    csv,
    floor2,
    group_script,
    layouts,
    model_ref,
    needs_fp8_quantization,
    uneven,
)
from planner.emit.router import add_file, check_host, front_files, replica_endpoints
from planner.emit.shell import Sh, continued, sh_assign, sh_comment, sh_word
from planner.emit.versions import DEFAULT, TRTLLM_PP_PARTITION_SINCE, Version, text
from planner.plan.schema import Plan, ReplicaGroup
from topologies.errors import InputError

DEFAULT_VERSION: Version = DEFAULT["trtllm"]
SOURCE = ("NVIDIA/TensorRT-LLM tensorrt_llm/commands/serve.py and tensorrt_llm/llmapi/llm_args.py as the 1.0.0, 1.1.0, "
          "1.2.0 and 1.2.1 release docs render them")
BASE_PORT = 8000


def _kv_fraction(g: ReplicaGroup) -> str:
    # trtllm-serve gives the KV cache this fraction of the memory left after weights and buffers;
    # the plan's budget for KV is what remains of that after its reserve.
    m = g.memory_per_gpu_bytes
    free = m.capacity - m.weights - m.activations - m.overhead
    return floor2(free - m.reserve, free)


def _pp_partition(g: ReplicaGroup, version: Version) -> list[int] | None:
    """The layer split to pin with ``pp_partition`` (None: the runtime's own split is the plan's); refused
    when the release cannot pin it."""
    split = list(g.strategy.layer_split)
    own = list(front_loaded_split(sum(split), len(split)))
    if not uneven(split) or split == own:
        return None
    if version < TRTLLM_PP_PARTITION_SINCE:
        raise InputError(f"TensorRT-LLM {text(version)} cannot pin the uneven layer split {split} (it splits "
                         f"{own}); write for a release with pp_partition (--runtime-version "
                         f"{text(TRTLLM_PP_PARTITION_SINCE)}), choose another target, or plan with --runtime trtllm",
                         field=f"replica_groups.{g.id}.strategy.layer_split")
    return split


def _extra_yaml(g: ReplicaGroup, version: Version) -> str | None:
    """The extra-options YAML of the group (None when no option is needed): a dumped mapping under
    comments that say what each option is for."""
    d, _ = attention_groups(g)
    options: dict = {}
    notes: list[str] = []
    if d > 1:
        if d != g.strategy.tp:
            raise InputError(f"trtllm-serve's attention data parallelism gives each of the {g.strategy.tp} ranks "
                             f"its own attention (enable_attention_dp has no group size); the plan's attention_dp={d} "
                             "cannot be set", field=f"replica_groups.{g.id}.strategy.attention_dp")
        notes.append("# enable_attention_dp: attention data parallelism, each rank runs attention for its own "
                     "requests (LLM API enable_attention_dp)")
        options["enable_attention_dp"] = True
    split = _pp_partition(g, version)
    if split is not None:
        notes.append("# pp_partition: the plan's layers per pipeline stage (LLM API pp_partition)")
        options["pp_partition"] = split
    kv = g.strategy.kv_dtype
    if kv == "fp8":
        notes.append("# kv_cache_config: KV cache in FP8 (KvCacheConfig.dtype); this mapping replaces the one "
                     "--kv_cache_free_gpu_memory_fraction set, so the planned fraction is repeated here")
        options["kv_cache_config"] = {"dtype": "fp8", "free_gpu_memory_fraction": float(_kv_fraction(g))}
    elif kv not in ("bf16", "fp16"):
        raise InputError(f"trtllm-serve has no KV-cache dtype {kv!r}", field=f"replica_groups.{g.id}.strategy.kv_dtype")
    if not options:
        return None
    return "\n".join(notes) + "\n" + yaml.safe_dump(options, sort_keys=False, default_flow_style=False)


def _serve(model: str, g: ReplicaGroup, port: int, extra: str | None, gpus_per_node: int | None) -> list[tuple]:
    s = g.strategy
    cmd: list[tuple] = [("trtllm-serve", model), ("--host", "0.0.0.0"), ("--port", port),
                        ("--tp_size", s.tp), ("--pp_size", s.pp)]
    if s.ep > 1:
        cmd.append(("--ep_size", s.ep))
    if gpus_per_node is not None:
        cmd.append(("--gpus_per_node", gpus_per_node))
    d, _ = attention_groups(g)
    cmd += [("--max_batch_size", max(1, s.batch_size // d)), ("--max_num_tokens", s.max_num_batched_tokens),
            ("--max_seq_len", s.max_model_len), ("--kv_cache_free_gpu_memory_fraction", _kv_fraction(g))]
    if extra:  # a file beside the script, wherever the script is started from
        cmd.append(("--extra_llm_api_options", Sh('"$(dirname "$0")"/' + sh_word(extra))))
    return cmd


def _group_files(plan: Plan, g: ReplicaGroup, rows: list[ReplicaLayout], model: str,
                 version: Version) -> dict[str, str]:
    yaml_text = _extra_yaml(g, version)
    yaml_name = f"trtllm-{g.id}-extra.yaml" if yaml_text else None
    nodes = all_nodes(rows)
    bodies: dict[str, list[str]] = {n: [] for n in nodes}
    for row in rows:
        r = row.replica
        if not row.multi_node:
            gpus = csv(row.gpus[row.head])
            bodies[row.head].append("  " + sh_comment(f"replica {r.index}: GPUs {gpus}, port {row.port}"))
            cmd = _serve(model, g, row.port, yaml_name, None)
            cmd[0] = (sh_assign("CUDA_VISIBLE_DEVICES", gpus), *cmd[0])
            bodies[row.head].extend(continued(cmd, background=True))
            continue
        if g.strategy.attention_dp > 1:
            raise InputError(f"replica {r.index} runs attention data parallelism over {len(row.nodes)} nodes; its "
                             "experts' exchange across nodes (TensorRT-LLM's wide-EP all-to-all) is not written by "
                             "this emitter: plan with --runtime vllm or sglang",
                             field=f"replica_groups.{g.id}.replicas.{r.index}.ranks")
        lists = {tuple(v) for v in row.gpus.values()}
        if len(lists) != 1:
            raise InputError(f"replica {r.index} uses different GPU indices on its nodes; one mpirun launch takes one "
                             "CUDA_VISIBLE_DEVICES", field=f"replica_groups.{g.id}.replicas.{r.index}.ranks")
        gpus = list(lists.pop())
        world = len(gpus) * len(row.nodes)
        field = f"replica_groups.{g.id}.replicas.{r.index}.ranks"
        hosts = ",".join(f"{check_host(n, field, 'mpirun -H')}:{len(gpus)}" for n in row.nodes)
        bodies[row.head].append("  " + sh_comment(f"replica {r.index}: {len(row.nodes)} nodes "
                                                  f"({', '.join(row.nodes)}), GPUs {csv(gpus)} on each, port "
                                                  f"{row.port}; launched from here over MPI"))
        cmd = _serve(model, g, row.port, yaml_name, len(gpus))
        cmd[0] = (sh_assign("CUDA_VISIBLE_DEVICES", csv(gpus)), "mpirun", "-H", hosts, "-np", world,
                  "-x", "CUDA_VISIBLE_DEVICES", "-x", "CUDA_DEVICE_ORDER", "trtllm-llmapi-launch", *cmd[0])
        bodies[row.head].extend(continued(cmd, background=True))
        for n in row.nodes[1:]:
            bodies[n].append("  " + sh_comment(f"replica {r.index}: started over MPI from {row.head}; nothing to run "
                                               "here"))
            bodies[n].append("  :")
    files = {f"trtllm-{g.id}.sh": group_script(plan, g, runtime="TensorRT-LLM", version=text(version),
                                               target="trtllm", source=SOURCE, replicas=len(rows), nodes=nodes,
                                               bodies=bodies)}
    if yaml_name:
        files[yaml_name] = yaml_text
    return files


def emit_trtllm(plan: Plan, model_path: str | None = None, version: Version = DEFAULT_VERSION) -> dict[str, str]:
    model, ckpt = model_ref(plan, model_path)
    rows = layouts(plan, BASE_PORT)
    files: dict[str, str] = {}
    for g in plan.replica_groups:
        if needs_fp8_quantization(g, ckpt, "trtllm-serve"):
            raise InputError("trtllm-serve does not quantize weights to FP8 on load; give an FP8 checkpoint with "
                             "--model-path", field=f"replica_groups.{g.id}.strategy.weight_dtype")
        files.update(_group_files(plan, g, rows[g.id], model, version))
    for name, text_ in front_files(plan, replica_endpoints(plan, rows), "trtllm").items():
        add_file(files, name, text_)  # no router of its own for unified replicas: nginx / Envoy
    return dict(sorted(files.items()))
