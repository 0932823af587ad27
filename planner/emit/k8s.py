"""Kubernetes manifests: per plan replica, a Deployment (one node) or a LeaderWorkerSet (several).

Runtime: vLLM only (the image ``image(version)`` of planner/emit/vllm.py, for the release
``--runtime-version`` names), with the very commands the vLLM emitter writes (``serve_command``, ``pp_partition_env``, ``ray_wait_command`` there).

A plan pins each replica's ranks to named nodes, and a LeaderWorkerSet has one pod template
for all its groups, so each plan replica becomes its own object with ``replicas: 1``:
  * one node: an apps/v1 Deployment whose pod asks for the node's GPUs of the replica and is
    pinned to that node (strategy Recreate: a surge pod could not get the pinned GPUs);
  * several nodes: a LeaderWorkerSet (leaderworkerset.x-k8s.io/v1) of ``size`` = its nodes; the
    leader pod on the replica's first node runs ``ray start --head``, waits for all GPUs and runs
    ``vllm serve ... --distributed-executor-backend ray``; each worker pod runs
    ``ray start --address=$LWS_LEADER_ADDRESS:6379 --block`` (retried until the head answers), as
    vLLM's LWS guide does through examples/online_serving/multi-node-serving.sh.
    Workers share one template: they are pinned to the set of the other nodes, one per node
    (pod anti-affinity on kubernetes.io/hostname), and must all hold the same number of GPUs.
Pinning is node affinity ``requiredDuringSchedulingIgnoredDuringExecution`` on the node label
``kubernetes.io/hostname`` In [plan node]; plan node names must equal the nodes' hostname labels.
GPU indices are not pinned: the NVIDIA device plugin chooses which of a node's GPUs a pod gets.
One ClusterIP Service per replica group selects the group's serving pods (Deployment pods and
LWS leaders). ``/dev/shm`` is a memory-backed emptyDir, as in vLLM's LWS example; ``HF_TOKEN``
comes from the optional Secret ``hf-token`` (key ``token``) for gated checkpoints.

Schemas checked: kubernetes-sigs/lws api/leaderworkerset/v1/leaderworkerset_types.go
(spec.replicas, spec.leaderWorkerTemplate.{size, restartPolicy (RecreateGroupOnPodRestart),
leaderTemplate, workerTemplate}; env LWS_LEADER_ADDRESS injected into every container);
vLLM docs/deployment/frameworks/lws.md; Kubernetes core/v1 and apps/v1 (PodTemplateSpec,
Deployment, Service), which tests/test_emit.py validates field by field against the
``kubernetes`` Python client's models. ``ray start`` flags: Ray's ray/scripts/scripts.py
(--head, --port, --address, --num-gpus, --block).
Attention data parallelism (``strategy.attention_dp`` > 1): the pods run vLLM's data-parallel launch
that planner/emit/vllm.py writes (flags and sources in its docstring), without Ray:
  * one node: the Deployment's pod runs ``vllm serve ... --data-parallel-size D`` on its GPUs;
  * several nodes: the LeaderWorkerSet leader is the data-parallel head (API server and its local
    engines, ``--data-parallel-address $POD_IP``: vLLM binds its RPC socket to that address, so it is
    the pod's IP from the downward API, status.podIP, not a DNS name); each worker runs ``--headless``
    engines that connect to ``$LWS_LEADER_ADDRESS`` with ``--data-parallel-start-rank`` picked by its
    ``LWS_WORKER_INDEX`` (1 .. size-1; env var injected into every container, LwsWorkerIndex in
    leaderworkerset_types.go); llm-d's wide-EP guide derives its start ranks from LWS_WORKER_INDEX
    the same way (guides/wide-ep-lws/manifests/modelserver/base/decode.yaml, read in a fork of
    llm-d/llm-d). Worker pods are interchangeable among the worker nodes, as above; each holds the
    same number of engines, so any order gives the plan's shape.
Refused: node names that are not hostname label values, group ids that cannot name an object,
multi-node replicas whose worker nodes hold different numbers of GPUs, and what the vLLM emitter
refuses for attention data parallelism.
"""
from __future__ import annotations

import re

from planner.emit import (
    ReplicaLayout,
    attention_groups,
    check_node_names,
    layouts,
    model_ref,
    needs_fp8_quantization,
    shape_text,
)
from planner.emit.router import weights
from planner.emit.shell import Sh, argv_of, continued, sh_cmd, sh_comment, sh_var
from planner.emit.versions import Version, text
from planner.emit.vllm import (
    DEFAULT_VERSION,
    DP_RPC_PORT,
    RAY_PORT,
    DataParallel,
    all2all_env,
    check_scheduler,
    dp_node_ranks,
    image,
    pp_partition_env,
    ray_wait_command,
    serve_command,
)
from planner.emit.yaml_text import yaml_dump
from planner.plan.schema import Plan, ReplicaGroup
from topologies.errors import InputError

LWS_API = "leaderworkerset.x-k8s.io/v1"
LWS_SOURCE = "kubernetes-sigs/lws api/leaderworkerset/v1/leaderworkerset_types.go"
PORT = 8000
GPU_RESOURCE = "nvidia.com/gpu"
HOSTNAME_LABEL = "kubernetes.io/hostname"
LABEL = "plan-search"  # label prefix: plan-search/group, plan-search/replica, plan-search/role
_LABEL_VALUE = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?")


def _check_names(plan: Plan) -> None:
    for g in plan.replica_groups:
        if not _DNS_LABEL.fullmatch(g.id):
            raise InputError(f"group id {g.id!r} cannot name Kubernetes objects; use at most 40 lowercase letters, "
                             "digits and '-'", field=f"replica_groups.{g.id}.id")
        if g.id == "route" and len(plan.replica_groups) > 1:
            raise InputError("group id 'route' would overwrite the traffic route's file k8s-route.yaml; rename the "
                             "group", field=f"replica_groups.{g.id}.id")
        check_node_names(g, _LABEL_VALUE, "is not a Kubernetes hostname label value (at most 63 letters, digits, "
                                          "'-', '_', '.'), so no node affinity can pin it")


def _labels(g: ReplicaGroup, replica: int, role: str | None = None) -> dict[str, str]:
    """Labels of an object (no role) or of a pod (role ``leader``: serves HTTP; ``worker``: Ray worker only)."""
    out = {"app.kubernetes.io/name": "vllm", f"{LABEL}/group": g.id, f"{LABEL}/replica": str(replica)}
    if role:
        out[f"{LABEL}/role"] = role
    return out


def _node_affinity(nodes: list[str]) -> dict:
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": HOSTNAME_LABEL, "operator": "In", "values": list(nodes)}]}]}}}


def _env(g: ReplicaGroup, version: Version) -> list[dict]:
    env = [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token",
                                                                "optional": True}}}]
    env += [{"name": k, "value": v} for k, v in pp_partition_env(g).items()]
    multi_node = any(len({k.node for k in r.ranks}) > 1 for r in g.replicas)
    env += [{"name": k, "value": v} for k, v in all2all_env(g, multi_node, version).items()]
    return env


def _container(name: str, g: ReplicaGroup, gpus: int, command: list[str], serving: bool, version: Version,
               pod_ip: bool = False) -> dict:
    env = _env(g, version)
    if pod_ip:  # the pod's own IP address, for a socket that vLLM binds
        env.append({"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}})
    c: dict = {"name": name, "image": image(version), "command": command, "env": env}
    if serving:
        c["ports"] = [{"name": "http", "containerPort": PORT}]
        c["readinessProbe"] = {"tcpSocket": {"port": PORT}, "initialDelaySeconds": 15, "periodSeconds": 10}
    n = str(gpus)
    c["resources"] = {"limits": {GPU_RESOURCE: n}, "requests": {GPU_RESOURCE: n}}
    c["volumeMounts"] = [{"name": "dshm", "mountPath": "/dev/shm"}]
    return c


def _pod(labels: dict[str, str], container: dict, affinity: dict) -> dict:
    return {"metadata": {"labels": labels},
            "spec": {"affinity": affinity, "containers": [container],
                     "volumes": [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "15Gi"}}]}}


def _sh(lines: list[str]) -> list[str]:
    """A container command that runs ``lines`` (each built with planner.emit's quoting helpers) in ``sh``."""
    return ["sh", "-c", "\n".join(lines) + "\n"]


def _deployment(g: ReplicaGroup, row: ReplicaLayout, name: str, model: str, quant: bool,
                version: Version) -> tuple[str, dict]:
    r = row.replica
    gpus = row.gpus[row.head]
    labels = _labels(g, r.index, "leader")
    cmd = argv_of(serve_command(model, g, quant, PORT, ray=False, version=version))
    doc = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": _labels(g, r.index)},
        "spec": {"replicas": 1, "strategy": {"type": "Recreate"}, "selector": {"matchLabels": labels},
                 "template": _pod(labels, _container("vllm", g, len(gpus), cmd, serving=True, version=version),
                                  _node_affinity([row.head]))},
    }
    d, at = attention_groups(g)
    dp_note = f"; {d} vLLM data-parallel engines of {at} GPU(s) in it" if d > 1 else ""
    why = sh_comment(f"replica {r.index} of {g.id}: one node ({row.head}, plan GPUs {', '.join(map(str, gpus))}); "
                     f"a Deployment of one pod pinned to that node{dp_note}")
    return why, doc


def _leader_worker_set(g: ReplicaGroup, row: ReplicaLayout, name: str, model: str, quant: bool,
                       version: Version) -> tuple[str, dict]:
    r = row.replica
    workers = row.nodes[1:]
    counts = {n: len(row.gpus[n]) for n in workers}
    if len(set(counts.values())) != 1:
        raise InputError("a LeaderWorkerSet has one worker template, so its worker nodes must hold the same number "
                         f"of GPUs; replica {r.index} has {', '.join(f'{n}: {c}' for n, c in counts.items())}",
                         field=f"replica_groups.{g.id}.replicas.{r.index}.ranks")
    world = sum(len(v) for v in row.gpus.values())
    head_gpus = len(row.gpus[row.head])
    worker_gpus = counts[workers[0]]
    d, at = attention_groups(g)
    if d > 1:
        leader_cmd, worker_cmd = _dp_commands(g, row, model, quant, version)
    else:
        serve = serve_command(model, g, quant, PORT, ray=True, version=version)
        serve[0] = ("exec", *serve[0])
        leader_cmd = _sh(["set -e", sh_cmd(["ray", "start", "--head", f"--port={RAY_PORT}", f"--num-gpus={head_gpus}"]),
                          ray_wait_command(world), *continued(serve, indent="")])
        address = Sh("--address=" + sh_var("LWS_LEADER_ADDRESS", suffix=f":{RAY_PORT}"))
        worker_cmd = _sh([f"until {sh_cmd(['ray', 'start', address, f'--num-gpus={worker_gpus}', '--block'])}; "
                          "do sleep 5; done"])
    worker_labels = _labels(g, r.index, "worker")
    worker_affinity = _node_affinity(workers)
    if len(workers) > 1:  # one worker per node of the set
        worker_affinity["podAntiAffinity"] = {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": worker_labels}, "topologyKey": HOSTNAME_LABEL}]}
    doc = {
        "apiVersion": LWS_API, "kind": "LeaderWorkerSet",
        "metadata": {"name": name, "labels": _labels(g, r.index)},
        "spec": {
            "replicas": 1,
            "leaderWorkerTemplate": {
                "size": len(row.nodes),
                "restartPolicy": "RecreateGroupOnPodRestart",
                "leaderTemplate": _pod(_labels(g, r.index, "leader"),
                                       _container("vllm-leader", g, head_gpus, leader_cmd, serving=True,
                                                  version=version, pod_ip=d > 1),
                                       _node_affinity([row.head])),
                "workerTemplate": _pod(worker_labels,
                                       _container("vllm-worker", g, worker_gpus, worker_cmd, serving=False,
                                                  version=version),
                                       worker_affinity),
            },
        },
    }
    where = ", ".join(f"{n}: {len(row.gpus[n])} GPUs" for n in row.nodes)
    roles = (("vLLM data-parallel head: API server and engines", f"headless engines, tensor-parallel {at} each")
             if d > 1 else ("Ray head, vllm serve", "Ray workers"))
    why = "\n".join([
        sh_comment(f"replica {r.index} of {g.id}: {len(row.nodes)} nodes ({where}); one LeaderWorkerSet per plan "
                   "replica"),
        "# (replicas: 1) because a plan pins each replica to its own nodes and an LWS has one template for all",
        sh_comment(f"its groups; leader pinned to {row.head} ({roles[0]}), "
                   + (f"worker to {workers[0]}" if len(workers) == 1 else
                      f"workers to {', '.join(workers)}, one per node") + f" ({roles[1]})")])
    return why, doc


def _dp_commands(g: ReplicaGroup, row: ReplicaLayout, model: str, quant: bool,
                 version: Version) -> tuple[list[str], list[str]]:
    """Leader and worker commands of vLLM's multi-node data-parallel launch (attention_dp > 1, no Ray)."""
    per_node = dp_node_ranks(g, row)
    head_local = per_node[0][2]
    leader = serve_command(model, g, quant, PORT, ray=False, dp=DataParallel(
        local=head_local, address=sh_var("POD_IP"), rpc_port=DP_RPC_PORT), version=version)
    leader[0] = ("exec", *leader[0])
    # workers share one template; LWS_WORKER_INDEX (1 .. size-1) picks each one's first DP rank
    worker_local = per_node[1][2]
    starts = [start for _, start, _ in per_node[1:]]
    pick = ['case "$LWS_WORKER_INDEX" in']
    pick += [f"{int(w)}) START={int(start)} ;;" for w, start in enumerate(starts, 1)]
    pick += ['*) echo "unexpected LWS_WORKER_INDEX=$LWS_WORKER_INDEX" >&2; exit 1 ;;', "esac"]
    worker = serve_command(model, g, quant, PORT, ray=False, dp=DataParallel(
        local=worker_local, start=sh_var("START"), address=sh_var("LWS_LEADER_ADDRESS"), rpc_port=DP_RPC_PORT,
        headless=True), version=version)
    worker[0] = ("exec", *worker[0])
    return (_sh(["set -e", *continued(leader, indent="")]),
            _sh(["set -e", *pick, *continued(worker, indent="")]))


def _service(g: ReplicaGroup) -> tuple[str, dict]:
    doc = {"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": f"vllm-{g.id}", "labels": {"app.kubernetes.io/name": "vllm", f"{LABEL}/group": g.id}},
           "spec": {"type": "ClusterIP",
                    "selector": {f"{LABEL}/group": g.id, f"{LABEL}/role": "leader"},
                    "ports": [{"name": "http", "port": PORT, "targetPort": PORT, "protocol": "TCP"}]}}
    return sh_comment(f"the OpenAI-compatible endpoint of group {g.id}: every replica's serving pod, port {PORT}"), doc


def _group_file(plan: Plan, g: ReplicaGroup, rows: list[ReplicaLayout], model: str, quant: bool,
                version: Version) -> str:
    docs = [_service(g)]
    for row in rows:
        name = f"vllm-{g.id}-r{row.replica.index}"
        make = _leader_worker_set if row.multi_node else _deployment
        docs.append(make(g, row, name, model, quant, version))
    header = [
        sh_comment(f"Kubernetes manifests for plan group {g.id} ({g.role}, {g.gpu_label}): {plan.inputs.model.name}, "
                   f"{shape_text(g)}, {len(rows)} replica(s)"),
        sh_comment(f"generated by {plan.generator} `plan-search emit --target k8s`; runtime vLLM {text(version)} only "
                   f"(image {image(version)}); LeaderWorkerSet schema: {LWS_SOURCE}"),
        "# each plan replica is pinned by node affinity on kubernetes.io/hostname to the plan's node names (which must",
        "# be the nodes' hostname labels); the device plugin, not the plan, picks GPU indices within a node",
        "# multi-node replicas need the LeaderWorkerSet controller; gated models need Secret hf-token (key token)",
    ]
    parts = []
    for why, doc in docs:
        parts.append(f"{why}\n{yaml_dump(doc)}")
    return "\n".join(header) + "\n---\n" + "---\n".join(parts)


#: Gateway API (gateway.networking.k8s.io/v1, standard channel): an HTTPRoute splits requests over
#: backendRefs by their integer ``weight`` (0-1,000,000). The Gateway it attaches to is the cluster's.
GATEWAY_NAME = "plan-gateway"
#: One HTTPRoute rule takes at most 16 backendRefs (kubernetes-sigs/gateway-api apis/v1
#: httproute_types.go, HTTPRouteRule.BackendRefs: kubebuilder MaxItems=16); the API server refuses more.
HTTPROUTE_MAX_BACKENDS = 16


def _route_file(plan: Plan) -> str | None:
    """An HTTPRoute over the groups' Services weighted by their traffic_share (each Service spreads its
    share evenly over the group's replicas, as the plan does), or None for a single group."""
    groups = [g for g in plan.replica_groups if g.role == "unified"]
    if len(groups) < 2:
        return None
    if len(groups) > HTTPROUTE_MAX_BACKENDS:
        raise InputError(f"the plan has {len(groups)} replica groups, and a Gateway API HTTPRoute rule weights at most "
                         f"{HTTPROUTE_MAX_BACKENDS} backends; emit --target vllm for its Envoy or nginx front end, "
                         "which takes any number", field="replica_groups")
    by_capacity = any(g.traffic_share is None for g in groups)
    shares = [g.metrics_per_replica.requests_per_s * len(g.replicas) if by_capacity else g.traffic_share
              for g in groups]
    doc = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
           "metadata": {"name": "plan-route", "labels": {"app.kubernetes.io/name": "vllm"}},
           "spec": {"parentRefs": [{"name": GATEWAY_NAME}],
                    "rules": [{"backendRefs": [{"name": f"vllm-{g.id}", "port": PORT, "weight": w}
                                               for g, w in zip(groups, weights(shares), strict=True)]}]}}
    header = [sh_comment(f"Gateway API HTTPRoute splitting requests over the plan's {len(groups)} groups by their "
                         f"traffic_share; attach it to your Gateway (named {GATEWAY_NAME} here)"),
              sh_comment(f"generated by {plan.generator} `plan-search emit --target k8s`")]
    return "\n".join(header) + "\n---\n" + yaml_dump(doc)


def emit_k8s(plan: Plan, model_path: str | None = None, version: Version = DEFAULT_VERSION) -> dict[str, str]:
    _check_names(plan)
    model, ckpt = model_ref(plan, model_path)
    rows = layouts(plan, PORT)
    files = {}
    for g in plan.replica_groups:
        check_scheduler(plan, g)
        quant = needs_fp8_quantization(g, ckpt, "vLLM")
        files[f"k8s-{g.id}.yaml"] = _group_file(plan, g, rows[g.id], model, quant, version)
    route = _route_file(plan)
    if route is not None:
        files["k8s-route.yaml"] = route
    return dict(sorted(files.items()))
