"""vLLM launch scripts: ``vllm serve`` per replica, Ray for replicas that span nodes.

Flags checked against vLLM 0.11 (the ``vllm serve`` parser):
  vllm-project/vllm vllm/engine/arg_utils.py @ 99d7eb5d6a51 (EngineArgs.add_cli_args; its
  deprecation notices target v0.12.0): --tensor-parallel-size, --pipeline-parallel-size,
  --max-num-seqs, --max-model-len, --max-num-batched-tokens, --gpu-memory-utilization,
  --kv-cache-dtype (CacheDType: auto|bfloat16|fp8|...), --quantization, --enable-expert-parallel,
  --distributed-executor-backend (ray|mp|...);
  vllm/entrypoints/openai/cli_args.py (FrontendArgs): --port;
  vllm/envs.py: VLLM_PP_LAYER_PARTITION (comma-separated layers per stage, read by get_pp_indices).
Multi-node: the Ray cluster launch vLLM documents (docs "Parallelism and Scaling",
examples/online_serving/multi-node-serving.sh): ``ray start --head --port`` on the first node,
``ray start --address`` on the others, then ``vllm serve ... --distributed-executor-backend ray``
on the first node.
The command builders here (``serve_command``, ``pp_partition_env``, ``ray_wait_command``) are shared
with the Kubernetes emitter (planner/emit/k8s.py), which runs the same commands in pods of
``VLLM_IMAGE``, the vLLM OpenAI-server image of the version named above.
"""
from __future__ import annotations

from planner.emit import (ReplicaLayout, all_nodes, continued, csv, floor2, group_script, kv_cache_flag,
                          layouts, model_ref, needs_fp8_quantization, uneven)
from planner.schema import Plan, ReplicaGroup
from topologies.errors import InputError

VLLM_VERSION = "0.11"
VLLM_IMAGE = "vllm/vllm-openai:v0.11.0"  # Docker Hub image of the release VLLM_VERSION names
SOURCE = "vllm-project/vllm vllm/engine/arg_utils.py @ 99d7eb5d6a51, vllm/entrypoints/openai/cli_args.py"
BASE_PORT = 8000
RAY_PORT = 6379


def serve_command(model: str, g: ReplicaGroup, quant: bool, port: int, ray: bool) -> list[str]:
    """``vllm serve`` for one replica of the group: the program, then one flag (with its value) per item."""
    s, m = g.strategy, g.memory_per_gpu_bytes
    cmd = [f"vllm serve {model}",
           f"--tensor-parallel-size {s.tp}",
           f"--pipeline-parallel-size {s.pp}",
           f"--max-num-seqs {s.batch_size}",
           f"--max-model-len {s.max_model_len}",
           f"--max-num-batched-tokens {s.max_num_batched_tokens}",
           f"--gpu-memory-utilization {floor2(m.capacity - m.reserve, m.capacity)}",
           f"--kv-cache-dtype {kv_cache_flag(g, fp8='fp8', runtime='vLLM')}"]
    if quant:
        cmd.append("--quantization fp8")
    if s.ep > 1:
        if s.ep != s.tp:
            raise InputError(f"vLLM's expert-parallel size is the tensor-parallel size ({s.tp}); the plan's ep={s.ep} "
                             "cannot be set", field=f"replica_groups.{g.id}.strategy.ep")
        cmd.append("--enable-expert-parallel")
    if ray:
        cmd.append("--distributed-executor-backend ray")
    cmd.append(f"--port {port}")
    return cmd


def pp_partition_env(g: ReplicaGroup) -> dict[str, str]:
    """The environment that pins an uneven pipeline layer split (empty when the split is even)."""
    split = g.strategy.layer_split
    return {"VLLM_PP_LAYER_PARTITION": csv(split)} if uneven(split) else {}


def ray_wait_command(world: int) -> str:
    """Shell loop that waits until the Ray cluster reports ``world`` GPUs."""
    return (f"until python3 -c 'import ray, sys; ray.init(address=\"auto\"); "
            f"sys.exit(ray.cluster_resources().get(\"GPU\", 0) < {world})'; do sleep 5; done")


def _group_script(plan: Plan, g: ReplicaGroup, rows: list[ReplicaLayout], model: str, quant: bool) -> str:
    pp_env = "".join(f"{k}={v} " for k, v in pp_partition_env(g).items())
    nodes = all_nodes(rows)
    bodies: dict[str, list[str]] = {n: [] for n in nodes}
    for i, row in enumerate(rows):
        r = row.replica
        if not row.multi_node:
            gpus = csv(row.gpus[row.head])
            bodies[row.head].append(f"  # replica {r.index}: GPUs {gpus}, port {row.port}")
            cmd = serve_command(model, g, quant, row.port, ray=False)
            cmd[0] = f"CUDA_VISIBLE_DEVICES={gpus} {pp_env}{cmd[0]}"
            cmd[-1] += " &"
            bodies[row.head].extend(continued(cmd))
            continue
        ray_port = RAY_PORT + i
        world = sum(len(v) for v in row.gpus.values())
        where = ", ".join(f"{n} GPUs {csv(row.gpus[n])}" for n in row.nodes)
        head = row.head
        b = bodies[head]
        b.append(f"  # replica {r.index}: {len(row.nodes)} nodes ({where}); Ray head here, port {row.port}")
        b.append(f"  CUDA_VISIBLE_DEVICES={csv(row.gpus[head])} {pp_env}ray start --head --port={ray_port} "
                 f"--num-gpus={len(row.gpus[head])}")
        b.append(f"  # now run this script on {', '.join(row.nodes[1:])}; wait until the cluster has all {world} GPUs:")
        b.append(f"  {ray_wait_command(world)}")
        cmd = serve_command(model, g, quant, row.port, ray=True)
        cmd[0] = f"{pp_env}{cmd[0]}"
        cmd[-1] += " &"
        b.extend(continued(cmd))
        for n in row.nodes[1:]:
            bodies[n].append(f"  # replica {r.index}: join the Ray cluster headed by {head}")
            bodies[n].append(f"  CUDA_VISIBLE_DEVICES={csv(row.gpus[n])} {pp_env}ray start "
                             f"--address=${{RAY_HEAD_ADDR:-{head}}}:{ray_port} --num-gpus={len(row.gpus[n])}")
    return group_script(plan, g, runtime="vLLM", version=VLLM_VERSION, target="vllm", source=SOURCE,
                        replicas=len(rows), nodes=nodes, bodies=bodies)


def emit_vllm(plan: Plan, model_path: str | None = None) -> dict[str, str]:
    model, ckpt = model_ref(plan, model_path)
    rows = layouts(plan, BASE_PORT)
    files = {}
    for g in plan.replica_groups:
        quant = needs_fp8_quantization(g, ckpt, "vLLM")
        files[f"vllm-{g.id}.sh"] = _group_script(plan, g, rows[g.id], model, quant)
    return dict(sorted(files.items()))
