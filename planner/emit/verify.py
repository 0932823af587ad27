"""Re-verify a plan before launch files are written for it.

A plan file can be edited by hand, and a plan built in Python can skip pydantic's validation
(``Plan.model_construct``). Emitters turn it into commands that start processes on GPUs, so
they must not read a plan that does not hold together: a duplicate group id would drop one
group's replicas, a rank on GPU 999 or a replica with fewer ranks than tp x pp would start a
different deployment, a negative layer count would reach a runtime's environment.

* :func:`check_structure` needs no topology and runs on every emit: ids usable as file
  names and unique, every replica with exactly tp x pp ranks numbered 0 .. tp x pp - 1 at
  their (stage, tp_rank), no GPU used twice, a layer split of pp positive entries covering
  the model's layers, at least one replica per group, positive batch and memory figures.
* :func:`check_against_topology` runs the independent :func:`planner.plan.check.check_plan`
  when the plan's topology can be loaded here with the content hash the plan records (a
  built-in name, or a file at the recorded name); otherwise it says nothing.
"""
from __future__ import annotations

import re
from pathlib import Path

from costmodels.units import DTYPES
from planner.emit.shell import safe_text
from topologies.errors import InputError, PlanSearchError

#: Group ids name files (``vllm-<id>.sh``): letters, digits, '.', '_', '-', and not '.' or '..'.
GROUP_ID = re.compile(r"[A-Za-z0-9._-]+")
#: No node of any topology this planner reads holds more GPUs (topologies/schema.py: gpus_per_node <= 1024).
MAX_GPUS_PER_NODE = 1024


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _positive(v) -> bool:
    return _int(v) and v >= 1


def _refuse(message: str, field: str, source: str | None) -> None:
    raise InputError(f"inconsistent plan: {message}", source=source, field=field)


def check_group_ids(plan, source: str | None = None) -> None:
    """Each group id a plain file-name part (``[A-Za-z0-9._-]+``, not ``.`` or ``..``), used once (case aside)."""
    seen: dict[str, int] = {}
    for i, g in enumerate(plan.replica_groups):
        gid = g.id
        if not isinstance(gid, str) or not GROUP_ID.fullmatch(gid) or gid in (".", ".."):
            _refuse(f"group id {gid!r} must be letters, digits, '.', '_' and '-' (not '.' or '..'): it names "
                    "the launch files", f"replica_groups.{i}.id", source)
        # file names: ids that differ only in case would overwrite each other on a case-insensitive
        # file system (macOS, Windows)
        if gid.casefold() in seen:
            _refuse(f"group id {gid!r} is also the id of replica_groups.{seen[gid.casefold()]} (ids name files, "
                    "compared without case)", f"replica_groups.{i}.id", source)
        seen[gid.casefold()] = i


def _check_strategy(g, where: str, layers, context, source: str | None) -> None:
    s = g.strategy
    for name in ("tp", "pp", "ep", "dp", "attention_dp", "batch_size", "max_num_batched_tokens", "max_model_len"):
        v = getattr(s, name, None)
        if not _positive(v):
            _refuse(f"{name} must be a positive integer, not {v!r}", f"{where}.strategy.{name}", source)
    if _positive(context) and s.max_model_len != context:  # the context the plan was priced at (plan/build.py)
        _refuse(f"max_model_len {s.max_model_len} is not the workload's isl + osl = {context}, the context the plan "
                "was priced at", f"{where}.strategy.max_model_len", source)
    for name in ("weight_dtype", "kv_dtype"):
        v = getattr(s, name, None)
        if v not in DTYPES:
            _refuse(f"{name} {safe_text(repr(v))} is none of {', '.join(DTYPES)}", f"{where}.strategy.{name}", source)
    split = s.layer_split
    if (not isinstance(split, list) or len(split) != s.pp or not all(_positive(x) for x in split)
            or (_positive(layers) and sum(split) != layers)):
        want = f" summing to the model's {layers} layers" if _positive(layers) else ""
        _refuse(f"layer split {split!r} must be {s.pp} positive layer counts (one per pipeline stage){want}",
                f"{where}.strategy.layer_split", source)
    m = g.memory_per_gpu_bytes
    if not _positive(m.capacity):
        _refuse(f"GPU memory capacity must be a positive number of bytes, not {m.capacity!r}",
                f"{where}.memory_per_gpu_bytes.capacity", source)
    for name in ("weights", "kv_cache", "activations", "overhead", "reserve", "total"):
        v = getattr(m, name, None)
        if not _int(v) or v < 0:
            _refuse(f"{name} must be a number of bytes (0 or more), not {v!r}",
                    f"{where}.memory_per_gpu_bytes.{name}", source)


def _check_replicas(g, where: str, used: dict, source: str | None) -> None:
    s = g.strategy
    if not isinstance(g.replicas, list) or not g.replicas:
        _refuse("a replica group needs at least one replica", f"{where}.replicas", source)
    n = s.tp * s.pp
    indices: set = set()
    for j, r in enumerate(g.replicas):
        rw = f"{where}.replicas.{j}"
        if not _int(r.index) or r.index < 0 or r.index in indices:
            _refuse(f"replica index {r.index!r} must be a distinct integer of 0 or more", f"{rw}.index", source)
        indices.add(r.index)
        if not isinstance(r.ranks, list) or len(r.ranks) != n:
            got = len(r.ranks) if isinstance(r.ranks, list) else r.ranks
            _refuse(f"{got!r} ranks, but tp x pp = {s.tp} x {s.pp} = {n}", f"{rw}.ranks", source)
        if sorted(k.rank if _int(k.rank) else -1 for k in r.ranks) != list(range(n)):
            _refuse(f"ranks must be numbered 0 .. {n - 1}, once each", f"{rw}.ranks", source)
        for i, k in enumerate(r.ranks):
            kw = f"{rw}.ranks.{i}"
            if (k.stage, k.tp_rank) != (k.rank // s.tp, k.rank % s.tp):
                _refuse(f"rank {k.rank} is stage {k.rank // s.tp}, tp_rank {k.rank % s.tp} (rank = stage x tp + "
                        f"tp_rank), not stage {k.stage!r}, tp_rank {k.tp_rank!r}", kw, source)
            if not isinstance(k.node, str) or not k.node:
                _refuse(f"node must be a non-empty name, not {k.node!r}", f"{kw}.node", source)
            if not _int(k.gpu_index) or not 0 <= k.gpu_index < MAX_GPUS_PER_NODE:
                _refuse(f"gpu_index {k.gpu_index!r} is not a GPU of a node (0 .. {MAX_GPUS_PER_NODE - 1})",
                        f"{kw}.gpu_index", source)
            key = (k.node, k.gpu_index)
            if key in used:
                _refuse(f"GPU {k.gpu_index} of node {k.node!r} is also used by {used[key]}", f"{kw}.gpu_index",
                        source)
            used[key] = kw


def check_structure(plan, source: str | None = None) -> None:
    """Refuse, in one :class:`InputError` naming the field, a plan whose structure does not hold
    together (see the module docstring). Reads attributes only, so it also guards plans built
    without validation."""
    groups = plan.replica_groups
    if not isinstance(groups, list) or not groups:
        _refuse("a plan needs at least one replica group", "replica_groups", source)
    check_group_ids(plan, source)
    inputs = getattr(plan, "inputs", None)
    layers = getattr(getattr(inputs, "model", None), "layers", None)
    workload = getattr(inputs, "workload", None)
    isl, osl = getattr(workload, "isl", None), getattr(workload, "osl", None)
    context = isl + osl if _positive(isl) and _positive(osl) else None
    used: dict = {}
    for i, g in enumerate(groups):
        where = f"replica_groups.{i}"
        _check_strategy(g, where, layers, context, source)
        _check_replicas(g, where, used, source)


def _loadable_topology(plan):
    """The plan's topology as a ``Topology`` when it loads here with the plan's content hash, else None."""
    from topologies.graph import Topology
    from topologies.load import builtin_topology_names, load_topology

    ref = plan.inputs.topology.name
    if not isinstance(ref, str) or not (ref in builtin_topology_names() or Path(ref).is_file()):
        return None
    try:
        spec, sha = load_topology(ref)
    except PlanSearchError:
        return None
    return Topology(spec, sha, source=ref) if sha == plan.inputs.topology.sha256 else None


def check_against_topology(plan, source: str | None = None) -> None:
    """Run :func:`planner.plan.check.check_plan` when the plan's topology and model load here (see the
    module docstring) and refuse the plan, in one line, on any problem it finds."""
    from costmodels.models import get_model
    from planner.emit.shell import safe_text
    from planner.plan.check import check_plan

    topo = _loadable_topology(plan)
    if topo is None:
        return
    try:
        model = get_model(plan.inputs.model.name)
    except PlanSearchError:
        return
    try:
        problems = check_plan(plan, topology=topo, model=model).problems
    except InputError as e:
        problems = [str(e)]
    if problems:
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise InputError(f"the plan does not hold on its topology {topo.name!r}: {safe_text(problems[0])}{more}; "
                         "plan again with `plan-search search`", source=source)
