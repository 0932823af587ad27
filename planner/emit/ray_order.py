"""Which node runs which pipeline stage when vLLM runs a replica over Ray (issue 16, item 7).

vLLM, not the launch file, decides the order of a Ray replica's nodes, and ``vllm serve`` takes no option
that sets it. Its rank k is the k-th worker of its own ordering (tensor rank fastest, so stage s is ranks
s*tp .. (s+1)*tp - 1), and the ordering puts the node ``vllm serve`` runs on (the Ray head here) first,
then the other nodes by a key that depends on the release (read in the wheels' own code):

  * up to 0.20.x, the Ray executor ``RayDistributedExecutor`` (vllm/executor/ray_distributed_executor.py
    in 0.11.0, vllm/v1/executor/ray_executor.py from 0.12.0; ``sort_by_driver_then_worker_ip``): nodes
    with fewer workers first, then by IP address as text (so 10.0.0.10 sorts before 10.0.0.9);
    ``VLLM_RAY_BUNDLE_INDICES`` picks bundles but the workers are re-sorted after;
  * from 0.21.0, ``RayExecutorV2`` (vllm/v1/executor/ray_executor_v2.py; ``VLLM_USE_RAY_V2_EXECUTOR_BACKEND``
    defaults to 1 in vllm/envs.py from 0.21.0, 0 in 0.20.2; the only Ray executor in 0.33.0): nodes by
    Ray node id (``get_bundles_sorted_by_node`` in vllm/v1/executor/ray_utils.py), a random hex id Ray
    gives a node when it starts. It honours ``VLLM_RAY_BUNDLE_INDICES`` as the rank order, but only for a
    placement group handed to the engine in Python (``ParallelConfig.placement_group`` or the caller's
    own group), which ``vllm serve`` cannot be given.

With two nodes the order is fixed (head first). From three on, the emitter says in the launch file that
vLLM decides; when the plan's stages are alike (one GPU type, an even layer split, the same number of
GPUs on each node) any order runs the plan as priced and that is all. Otherwise the head checks, once
the Ray cluster is complete and before ``vllm serve``, that the order vLLM will use is the plan's, and
stops (exit 1, one line naming both orders) when it is not: a stage on other GPUs than planned can run
out of memory or miss the latency the plan priced. For that check every Ray node of the replica carries
the custom resource ``plan_node_<node>`` (as ``--target ray`` does), which names its plan node.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

from planner.emit import ReplicaLayout, check_node_names, uneven
from planner.emit.shell import Sh, sh_cmd, sh_word
from planner.emit.versions import VLLM_RAY_NODE_ID_ORDER_SINCE, Version, text
from planner.plan.schema import ReplicaGroup

RESOURCE_PREFIX = "plan_node_"  # the same custom resource --target ray starts its nodes with
_NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")

#: Run on the head after the cluster is complete: argv = rule ("ip" | "node-id"), the plan's order as JSON
#: ([[node, GPUs], ...] in rank order), the release. The keys are vLLM's own (see the module doc).
CHECK_CODE = """import json, sys, ray
rule, want, release = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
ray.init(address="auto")
here = ray.get_runtime_context().get_node_id()
nodes = []
for n in ray.nodes():
    names = [k[len("plan_node_"):] for k in n["Resources"] if k.startswith("plan_node_")]
    if n["Alive"] and n["Resources"].get("GPU"):
        nodes.append((names[0] if names else "?", n["NodeID"], n["NodeManagerAddress"], int(n["Resources"]["GPU"])))
if rule == "ip":
    nodes.sort(key=lambda t: (t[1] != here, t[3], t[2]))
else:
    nodes.sort(key=lambda t: (t[1] != here, t[1]))
got = [[t[0], t[3]] for t in nodes]
if got != want:
    show = lambda xs: ", ".join(f"{a} ({b} GPUs)" for a, b in xs)
    print(f"vLLM {release} will give the ranks of this replica to {show(got)} in that order; the stages "
          f"of the plan need {show(want)}: not starting (vLLM takes no node order on its command line)", file=sys.stderr)
    sys.exit(1)
"""


def rank_runs(row: ReplicaLayout) -> list[list]:
    """The replica's nodes in rank order as [node, consecutive ranks there] runs (a node whose ranks are
    not consecutive appears twice, which no vLLM ordering gives)."""
    runs: list[list] = []
    for k in sorted(row.replica.ranks, key=lambda k: k.rank):
        if runs and runs[-1][0] == k.node:
            runs[-1][1] += 1
        else:
            runs.append([k.node, 1])
    return runs


def stages_alike(g: ReplicaGroup, runs: list[list]) -> bool:
    """True when every node of the replica could run any other's ranks as priced: one GPU type, an even
    layer split and the same number of ranks on each node."""
    one_type = g.stage_gpus is None or len(set(g.stage_gpus)) == 1
    return one_type and not uneven(g.strategy.layer_split) and len({n for _, n in runs}) == 1


@dataclass(frozen=True)
class NodeOrder:
    """What a Ray replica's launch says and checks about vLLM's node order."""
    comments: list[str]
    check: tuple | None  # (rule, plan order JSON, release) for CHECK_CODE; None: nothing to check

    def resources(self, node: str) -> list[Sh]:
        """``--resources`` naming the plan node on its ``ray start`` (only where the order is checked)."""
        if self.check is None:
            return []
        return [Sh("--resources=" + sh_word(json.dumps({RESOURCE_PREFIX + node: 1})))]

    def check_lines(self) -> list[str]:
        if self.check is None:
            return []
        return [sh_cmd(["python3", "-c", CHECK_CODE, *self.check])]


def node_order(g: ReplicaGroup, row: ReplicaLayout, version: Version) -> NodeOrder:
    """The comments and the check of one replica over Ray (see the module doc)."""
    if len(row.nodes) < 3:
        return NodeOrder([], None)
    runs = rank_runs(row)
    plan = ", ".join(f"{n} ({c} GPUs)" for n, c in runs)
    if version >= VLLM_RAY_NODE_ID_ORDER_SINCE:
        rule, key = "node-id", "by Ray node id (random per `ray start`)"
    else:
        rule, key = "ip", "fewest GPUs first, then by IP address as text"
    comments = [f"node order: vLLM {text(version)}, not this file, gives ranks to nodes: this one first, then "
                f"the others {key}; the plan's order is {plan}"]
    if stages_alike(g, runs):
        comments.append("the stages are alike here (one GPU type, even layer split, same GPUs per node), so any "
                        "order runs the plan as priced")
        return NodeOrder(comments, None)
    check_node_names(g, _NODE_NAME, "cannot name a Ray resource for the node-order check; use letters, digits, "
                                    "'.', '_' and '-' (first a letter or digit)")
    comments.append("the stages differ here, so the line before `vllm serve` stops when vLLM's order is not the "
                    "plan's (each node carries the Ray resource plan_node_<node> for it)")
    return NodeOrder(comments, (rule, json.dumps(runs, separators=(",", ":")), text(version)))
