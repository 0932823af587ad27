"""Ray placement groups that reserve every plan replica's GPUs on the plan's own nodes.

Per replica of each replica group: one placement group with one bundle per rank, in rank
order, ``{"GPU": 1, "plan_node_<node>": 0.001}``. Ray places bundles by resources only, so a
bundle is tied to its plan node by a custom resource that only that Ray node has: every Ray
node is started with ``ray start --resources '{"plan_node_<node>": 1000}'`` (``ray-start.sh``
has those lines). ``node:<ip>`` is Ray's own, reserved per node, and names an IP, not a plan
node, hence a name of our own. 0.001 per bundle is the amount Ray's docs give for "force
placement on the node" without using the resource up (``ray.util.current_node_id``); 1000 per
node leaves room for 10^6 bundles. With every bundle pinned, the strategy is secondary:
STRICT_PACK for a one-node replica (it must not span nodes), PACK otherwise.

Bundles ask for no CPU: vLLM's own Ray bundles hold only the accelerator (``{"GPU": 1.0}``,
vllm/executor/ray_utils.py ``initialize_ray_cluster``), whose GPU workers are actors of 0 CPUs,
so a CPU figure would only make a reservation fail on a CPU-poor node. vLLM also accepts a
placement group made beforehand (the current one, or ``ParallelConfig.placement_group``) whose
bundles hold at most one GPU each, as these do. Ray cannot pin a GPU *index* per bundle; the
``CUDA_VISIBLE_DEVICES`` in ``ray-start.sh`` limits each Ray node to the GPUs the plan uses there.

Checked against Ray 2.60.0 (the ``ray`` wheel's source), in APIs present since Ray 2.9:
  ray/util/placement_group.py: ``placement_group(bundles, strategy, name, lifetime)`` (strategies
  PACK|SPREAD|STRICT_PACK|STRICT_SPREAD; lifetime None|"detached"), ``PlacementGroup.wait(timeout_seconds)``,
  ``placement_group_table(pg)["bundles_to_node_id"]`` (bundle index -> node id hex, ray/_private/state.py),
  ``remove_placement_group``, ``get_placement_group(name)``; ``ray.nodes()`` entries ("NodeID", "Alive",
  "Resources");
  ray/scripts/scripts.py ``ray start``: --head, --port, --address, --num-gpus, --resources (a JSON object);
  docs.ray.io "Configuring Ray" (custom resources with ``ray start --resources='{...}'``).
Attention data parallelism (``strategy.attention_dp`` > 1) changes nothing here: a replica is still
one placement group with one pinned bundle per rank in rank order, so attention group k is bundles
k*tp/attention_dp .. (k+1)*tp/attention_dp - 1, and a replica over several nodes is PACK like any
other. The groups only reserve GPUs: the data-parallel launches that ``--target vllm`` and
``sglang`` write for such plans do not run on Ray.
Refused: node names that cannot be both a resource name and a shell word (letters, digits, ``.``,
``_``, ``-``; first a letter or digit).
"""
from __future__ import annotations

import json
import re

from planner.emit import check_node_names, csv, layouts, script
from planner.emit.router import check_host
from planner.emit.shell import Sh, node_case, sh_assign, sh_cmd, sh_comment, sh_var, sh_word
from planner.plan.schema import Plan

RAY_VERSION = "2.60"
MIN_RAY = "2.9"
SOURCE = "ray 2.60.0 ray/util/placement_group.py, ray/scripts/scripts.py (ray start)"
RAY_PORT = 6379
RESOURCE_PREFIX = "plan_node_"
BUNDLE_AMOUNT = 0.001
NODE_AMOUNT = 1000
SPEC_FILE = "ray-placement.json"
START_FILE = "ray-start.sh"
SCRIPT_FILE = "ray_placement.py"
_NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def node_resource(node: str) -> str:
    """The custom Ray resource that stands for one plan node."""
    return RESOURCE_PREFIX + node


def _check_names(plan: Plan) -> None:
    for g in plan.replica_groups:
        check_node_names(g, _NODE_NAME, "cannot name a Ray resource in a `ray start --resources` line; use letters, "
                                        "digits, '.', '_' and '-' (first a letter or digit)")


def _spec(plan: Plan) -> tuple[dict, dict[str, list[int]]]:
    rows = layouts(plan, 0)
    node_gpus: dict[str, set[int]] = {}
    groups = []
    for g in plan.replica_groups:
        for row in rows[g.id]:
            r = row.replica
            ranks = sorted(r.ranks, key=lambda k: k.rank)
            for k in ranks:
                node_gpus.setdefault(k.node, set()).add(k.gpu_index)
            groups.append({
                "name": f"plan-{g.id}-r{r.index}",
                "replica_group": g.id,
                "replica_index": r.index,
                "strategy": "PACK" if row.multi_node else "STRICT_PACK",
                "ranks": [k.rank for k in ranks],
                "bundles": [{"GPU": 1, node_resource(k.node): BUNDLE_AMOUNT} for k in ranks],
                "bundle_nodes": [k.node for k in ranks],
                "bundle_gpu_indices": [k.gpu_index for k in ranks],
            })
    gpus = {n: sorted(v) for n, v in sorted(node_gpus.items())}
    spec = {
        "generator": f"{plan.generator} `plan-search emit --target ray`",
        "ray": f"Ray {RAY_VERSION} (placement group API of Ray >= {MIN_RAY})",
        "model": plan.inputs.model.name,
        "nodes": {n: {"resource": node_resource(n), "resource_amount": NODE_AMOUNT, "gpu_indices": v}
                  for n, v in gpus.items()},
        "placement_groups": groups,
    }
    return spec, gpus


def _start_script(plan: Plan, gpus: dict[str, list[int]]) -> str:
    nodes = list(gpus)
    head = nodes[0]
    bodies: dict[str, list[str]] = {}
    for n in nodes:
        res = json.dumps({node_resource(n): NODE_AMOUNT})
        cuda = sh_assign("CUDA_VISIBLE_DEVICES", csv(gpus[n]))
        if n == head:
            lines = ["  " + sh_comment(f"Ray head; GPUs {csv(gpus[n])} of the plan"),
                     "  " + sh_cmd([cuda, "ray", "start", "--head", f"--port={RAY_PORT}",
                                    f"--num-gpus={len(gpus[n])}", Sh("--resources=" + sh_word(res))])]
        else:
            address = Sh("--address=" + sh_var("RAY_HEAD_ADDR", "ray_head", f":{RAY_PORT}"))
            lines = ["  " + sh_comment(f"join the Ray cluster headed by {head}; GPUs {csv(gpus[n])} of the plan"),
                     "  " + sh_assign("ray_head", check_host(head, "replica_groups", "ray start --address")),
                     "  " + sh_cmd([cuda, "ray", "start", address, f"--num-gpus={len(gpus[n])}",
                                    Sh("--resources=" + sh_word(res))])]
        bodies[n] = lines
    bodies[head].append(f"  # once every node has joined: python3 {SCRIPT_FILE} {SPEC_FILE}")
    header = [
        "#!/usr/bin/env bash",
        sh_comment(f"Ray {RAY_VERSION} cluster for the plan of {plan.inputs.model.name}: one Ray node per plan node, "
                   f"each carrying the custom resource {RESOURCE_PREFIX}<node> ({NODE_AMOUNT}) that the placement "
                   f"groups in {SPEC_FILE} pin their bundles with"),
        sh_comment(f"generated by {plan.generator} `plan-search emit --target ray`; flags checked in {SOURCE}"),
        "# run on every node with that node's name as the only argument, the head first",
        "set -euo pipefail",
        "export CUDA_DEVICE_ORDER=PCI_BUS_ID  # GPU indices below are nvidia-smi's (PCI bus order), not CUDA's default",
    ]
    return script(header + node_case(nodes, bodies))


_SCRIPT = '''#!/usr/bin/env python3
"""Create the Ray placement groups of a plan-search plan and check where their bundles landed.

Generated by plan-search (GENERATOR below names the version) for Ray {ray} (API of Ray >= {min_ray}).
Usage (on a node of the Ray cluster that ray-start.sh started):
    python3 {script} [{spec}] [--address auto] [--timeout-s 600] [--remove]
The groups are created detached (they outlive this script) under the names in the spec;
--remove removes them again. Exit 0 when every bundle sits on its plan node, 1 otherwise.
"""
import argparse
import json
import os
import sys
import time

import ray
from ray.util.placement_group import (get_placement_group, placement_group, placement_group_table,
                                      remove_placement_group)

GENERATOR = {generator}
RESOURCE_PREFIX = {prefix}


def load_spec(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def create_placement_groups(spec, timeout_s=600.0, lifetime="detached"):
    """Create every group of the spec (in order) and wait until all are placed; returns them in order."""
    pgs = [placement_group(e["bundles"], strategy=e["strategy"], name=e["name"], lifetime=lifetime)
           for e in spec["placement_groups"]]
    deadline = time.monotonic() + timeout_s
    for e, pg in zip(spec["placement_groups"], pgs):
        if not pg.wait(timeout_seconds=max(0.0, deadline - time.monotonic())):
            raise TimeoutError(f"placement group {{e['name']}} not placed within {{timeout_s}} s; "
                               "are all plan nodes in the cluster with their " + RESOURCE_PREFIX + "* resource?")
    return pgs


def plan_node_of_ray_nodes():
    """Ray node id (hex) -> plan node, from the custom resource each node was started with."""
    out = {{}}
    for n in ray.nodes():
        if not n.get("Alive", True):
            continue
        names = [k[len(RESOURCE_PREFIX):] for k in n.get("Resources", {{}}) if k.startswith(RESOURCE_PREFIX)]
        if len(names) == 1:
            out[n["NodeID"]] = names[0]
    return out


def placement_problems(spec, pgs):
    """One line per bundle that is not on the Ray node of its plan node (empty: placement reproduced)."""
    where = plan_node_of_ray_nodes()
    problems = []
    for e, pg in zip(spec["placement_groups"], pgs):
        landed = placement_group_table(pg)["bundles_to_node_id"]
        for i, want in enumerate(e["bundle_nodes"]):
            got = where.get(landed.get(i))
            if got != want:
                problems.append(f"{{e['name']}} bundle {{i}} (rank {{e['ranks'][i]}}): on {{got}}, plan says {{want}}")
    return problems


def main(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description="Create the plan's Ray placement groups.")
    ap.add_argument("spec", nargs="?", default=os.path.join(here, "{spec}"))
    ap.add_argument("--address", default="auto", help="Ray cluster address (default: auto)")
    ap.add_argument("--timeout-s", type=float, default=600.0, help="wait this long for all groups")
    ap.add_argument("--remove", action="store_true", help="remove the spec's groups instead")
    args = ap.parse_args(argv)
    spec = load_spec(args.spec)
    ray.init(address=args.address)
    if args.remove:
        for e in spec["placement_groups"]:
            remove_placement_group(get_placement_group(e["name"]))
        return 0
    pgs = create_placement_groups(spec, args.timeout_s)
    problems = placement_problems(spec, pgs)
    for line in problems:
        print(line, file=sys.stderr)
    for e in spec["placement_groups"]:
        print(f"{{e['name']}}: {{len(e['bundles'])}} bundles on {{', '.join(dict.fromkeys(e['bundle_nodes']))}}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
'''


def emit_ray(plan: Plan, model_path: str | None = None) -> dict[str, str]:
    """Placement-group spec (JSON), the ``ray start`` lines per node, and the script that creates the groups.

    ``model_path`` is accepted for the common emitter signature; placement groups name no checkpoint.
    """
    _check_names(plan)
    spec, gpus = _spec(plan)
    files = {
        SPEC_FILE: json.dumps(spec, indent=2, sort_keys=True) + "\n",
        START_FILE: _start_script(plan, gpus),
        SCRIPT_FILE: _SCRIPT.format(generator=repr(f"{plan.generator} `plan-search emit --target ray`"),
                                    ray=RAY_VERSION, min_ray=MIN_RAY, script=SCRIPT_FILE, spec=SPEC_FILE,
                                    prefix=repr(RESOURCE_PREFIX)),
    }
    return dict(sorted(files.items()))
