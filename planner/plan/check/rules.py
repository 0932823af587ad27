"""The rules :func:`planner.plan.check.check_plan` runs, and :data:`RULES`, the one ordered tuple that
registers them. Each rule takes the audit and the item its point of the walk (:data:`STAGES`)
hands it, and yields a sentence per problem found; its docstring says what it verifies."""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from costmodels.hardware import get_gpu
from costmodels.strategy import validate_strategy
from planner.plan.check.audit import REL_TOL, Audit, GroupCheck, Priced, RankCheck, ReplicaCheck, Served
from planner.plan.schema import latency_ms, loaded_ttft


def topology_is_the_plans(a: Audit, _: Audit) -> Iterator[str]:
    """The topology loaded by the plan's own name has the content hash the plan recorded."""
    if a.loaded_sha is not None and a.loaded_sha != a.plan.inputs.topology.sha256:
        yield f"topology {a.topo.name!r}: content hash differs from the plan's; pass the topology the plan used"


def stage_gpus_name_each_stage(a: Audit, grp: GroupCheck) -> Iterator[str]:
    """``stage_gpus``, where given, names one GPU type per pipeline stage, the first being the group's."""
    g, st = grp.group, grp.group.strategy
    if g.stage_gpus is not None and (len(g.stage_gpus) != st.pp or g.stage_gpus[0] != g.gpu):
        yield (f"{g.id}: stage_gpus {g.stage_gpus} must name one GPU type per stage (pp={st.pp}), "
               f"the first being gpu={g.gpu}")


def layer_split_covers_the_model(a: Audit, grp: GroupCheck) -> Iterator[str]:
    """The layer split gives every stage at least one layer and all stages together the model's layers."""
    g, st = grp.group, grp.group.strategy
    if sum(st.layer_split) != a.model.layers or len(st.layer_split) != st.pp or min(st.layer_split) < 1:
        yield f"{g.id}: layer split {st.layer_split} does not cover {a.model.layers} layers in {st.pp} stages"


def dp_counts_the_replicas(a: Audit, grp: GroupCheck) -> Iterator[str]:
    """A group places as many replicas as its data-parallel degree."""
    g = grp.group
    if len(g.replicas) != g.strategy.dp:
        yield f"{g.id}: dp={g.strategy.dp} but {len(g.replicas)} replicas placed"


def strategy_is_accepted(a: Audit, grp: GroupCheck) -> Iterator[str]:
    """The cost model (and the runtime, per its rules) accepts the strategy for this model."""
    why = validate_strategy(a.model, grp.strategy)
    if why:
        yield f"{grp.group.id}: {why}"


def replica_has_tp_x_pp_ranks(a: Audit, rep: ReplicaCheck) -> Iterator[str]:
    """A replica has exactly tp x pp ranks."""
    st = rep.grp.group.strategy
    if len(rep.replica.ranks) != st.tp * st.pp:
        yield f"{rep.where}: {len(rep.replica.ranks)} ranks, expected tp x pp = {st.tp * st.pp}"


def rank_is_on_a_gpu(a: Audit, rk: RankCheck) -> Iterator[str]:
    """A rank's node and GPU index name a GPU of the topology."""
    gid = rk.gid
    if gid not in a.topo.graph or a.topo.graph.nodes[gid].get("kind") != "gpu":
        yield f"{rk.where}: no GPU {rk.rank.gpu_index} on node {rk.rank.node!r}"


def rank_gpu_is_available(a: Audit, rk: RankCheck) -> Iterator[str]:
    """A rank's GPU is not marked unavailable in the topology."""
    if not a.topo.graph.nodes[rk.gid]["available"]:
        yield f"{rk.where}: GPU {rk.gid} is marked unavailable"


def rank_gpu_is_its_stage_type(a: Audit, rk: RankCheck) -> Iterator[str]:
    """A rank's GPU is of the GPU type its stage declares."""
    grp, k = rk.rep.grp, rk.rank
    want = grp.gpus[k.stage].name if k.stage < grp.group.strategy.pp else grp.gpu.name
    have = a.topo.graph.nodes[rk.gid]["gpu"]
    if get_gpu(have, custom=a.own).name != want:
        yield f"{rk.where}: GPU {rk.gid} is a {have}, stage {k.stage} is {want}"


def rank_gpu_is_used_once(a: Audit, rk: RankCheck) -> Iterator[str]:
    """No GPU carries two ranks (of any group); records the rank's GPU as used."""
    if rk.gid in a.used:
        yield f"{rk.where}: GPU {rk.gid} already used by {a.used[rk.gid]}"
    a.used[rk.gid] = rk.where


def rank_is_numbered_by_position(a: Audit, rk: RankCheck) -> Iterator[str]:
    """A rank is numbered ``stage * tp + tp_rank``, with its stage and tp_rank within the strategy."""
    k, st = rk.rank, rk.rep.grp.group.strategy
    if k.rank != k.stage * st.tp + k.tp_rank or k.stage >= st.pp or k.tp_rank >= st.tp:
        yield f"{rk.where}: inconsistent with stage {k.stage}, tp_rank {k.tp_rank}"


def replica_fills_every_position(a: Audit, rep: ReplicaCheck) -> Iterator[str]:
    """Every (stage, tp_rank) position of a replica holds a rank."""
    if any("" in s for s in rep.stages):
        yield f"{rep.where}: some (stage, tp_rank) positions are missing"


def tp_groups_stay_in_a_domain(a: Audit, rep: ReplicaCheck) -> Iterator[str]:
    """Each stage's TP group (each attention group, under attention DP) is inside one scale-up domain,
    unless the plan allows otherwise."""
    st, at = rep.grp.group.strategy, rep.grp.strategy.attention_tp
    for s_i, s in enumerate(rep.stages):
        for a_i in range(0, len(s), at):
            doms = {a.topo.domain_of(x) for x in s[a_i:a_i + at]}
            if len(doms) > 1 and not a.plan.inputs.allow_cross_domain_tp:
                what = "TP group" if at == st.tp else f"attention group {a_i // at}"
                yield f"{rep.where} stage {s_i}: {what} spans domains {sorted(doms)}"


def prefill_has_a_decode_group(a: Audit, grp: GroupCheck) -> Iterator[str]:
    """A prefill group has some decode group to send its KV cache to."""
    if grp.group.role == "prefill" and not a.decode_firsts:
        yield f"{grp.group.id}: a prefill group but no decode group to send the KV cache to"


def kv_transfer_is_as_reported(a: Audit, p: Priced) -> Iterator[str]:
    """A prefill group's reported KV transfer time matches the one recomputed on the slowest path to a
    decode replica."""
    g = p.grp.group
    if g.role != "prefill":
        return
    got = g.metrics_per_replica.kv_transfer_ms
    if got is None or not math.isclose(got, p.xfer_s * 1e3, rel_tol=REL_TOL, abs_tol=0.0051):
        yield f"{g.id}: reported kv_transfer_ms {got} but recomputed {p.xfer_s * 1e3:.3f}"


def batch_fits(a: Audit, p: Priced) -> Iterator[str]:
    """A unified or decode group's batch fits its memory."""
    g = p.grp.group
    if g.role != "prefill" and not p.m.fits:
        yield f"{g.id}: batch {g.strategy.batch_size} does not fit (max {p.m.max_batch})"


def memory_fits_every_stage(a: Audit, p: Priced) -> Iterator[str]:
    """Every stage's GPU holds its weights, KV cache and activations at the plan's batch and context."""
    for i, mem in enumerate(p.mems):
        if not mem.fits:
            yield (f"{p.grp.group.id} stage {i}: memory {mem.total / 2**30:.2f} GiB exceeds {p.grp.gpus[i].name}'s "
                   f"{mem.capacity / 2**30:.2f} GiB")


def pools_come_in_pairs(a: Audit, _: Audit) -> Iterator[str]:
    """A disaggregated plan has both prefill and decode capacity."""
    if (a.cap["prefill"] > 0) != (a.cap["decode"] > 0):
        yield "a disaggregated plan needs both prefill and decode groups"


def tpot_within_slo(a: Audit, s: Served) -> Iterator[str]:
    """A unified or decode group's TPOT is within the SLO."""
    g, slo = s.grp.group, a.plan.inputs.slo
    if g.role != "prefill" and slo.tpot_ms is not None and s.m.tpot_s * 1e3 > slo.tpot_ms * (1 + 1e-9):
        yield f"{g.id}: TPOT {s.m.tpot_s * 1e3:.2f} ms exceeds the SLO of {slo.tpot_ms} ms"


def ttft_within_slo(a: Audit, s: Served) -> Iterator[str]:
    """A unified or prefill group's TTFT, at its share of the traffic, is within the SLO."""
    g, slo = s.grp.group, a.plan.inputs.slo
    if g.role != "decode" and slo.ttft_ms is not None and s.ttft_s * 1e3 > slo.ttft_ms * (1 + 1e-9):
        yield f"{g.id}: TTFT {s.ttft_s * 1e3:.2f} ms exceeds the SLO of {slo.ttft_ms} ms"


def ttft_is_as_reported(a: Audit, s: Served) -> Iterator[str]:
    """A prefill or unified group's reported TTFT is exactly the recomputed one, as plans round it (up, to
    the microsecond: :func:`planner.plan.schema.latency_ms`). Unified groups were not compared: a TTFT
    edited down to 10 ms passed the checks."""
    g = s.grp.group
    want = latency_ms(s.ttft_s) if loaded_ttft(a.plan.schema_version) else float(round(s.ttft_s * 1e3, 3))
    if g.role != "decode" and g.metrics_per_replica.ttft_ms != want:
        yield f"{g.id}: reported ttft_ms {g.metrics_per_replica.ttft_ms} but recomputed {want}"


def p99_within_slo_and_as_reported(a: Audit, s: Served) -> Iterator[str]:
    """p99 TPOT (not for prefill groups) and p99 TTFT (not for decode groups) within their SLOs,
    and the reported p99 figures, where the plan has them (plans before schema 1.3.0 have
    none), matching the recomputation."""
    g, slo = s.grp.group, a.plan.inputs.slo
    figures = (("tpot_p99_ms", "TPOT p99", s.tail.tpot_p99_s, slo.tpot_p99_ms, g.role != "prefill"),
               ("ttft_p99_ms", "TTFT p99", s.tail.ttft_p99_s(s.ttft_s), slo.ttft_p99_ms, g.role != "decode"))
    for key, what, value_s, limit_ms, applies in figures:
        if not applies:
            continue
        if limit_ms is not None and value_s * 1e3 > limit_ms * (1 + 1e-9):
            yield f"{g.id}: {what} {value_s * 1e3:.2f} ms exceeds the SLO of {limit_ms} ms"
        got = getattr(g.metrics_per_replica, key)
        if got is not None and not math.isclose(got, value_s * 1e3, rel_tol=REL_TOL, abs_tol=0.0051):
            yield f"{g.id}: reported {key} {got} but recomputed {value_s * 1e3:.3f}"


def figures_are_as_reported(a: Audit, s: Served) -> Iterator[str]:
    """A group's reported TPOT, output tokens/s and memory per GPU (its total, and the capacity and
    reserve the launch files derive the runtimes' memory fractions from) match the recomputation (to 0.1)."""
    g, m = s.grp.group, s.m
    for name, got, want in (("tpot_ms", g.metrics_per_replica.tpot_ms, m.tpot_s * 1e3),
                            ("output_tokens_per_s", g.metrics_per_replica.output_tokens_per_s,
                             m.output_tokens_per_s),
                            ("memory total", g.memory_per_gpu_bytes.total, m.memory.total),
                            ("memory capacity", g.memory_per_gpu_bytes.capacity, m.memory.capacity),
                            ("memory reserve", g.memory_per_gpu_bytes.reserve, m.memory.reserve)):
        if not math.isclose(got, want, rel_tol=REL_TOL, abs_tol=0.051):  # plans round to 0.1
            yield f"{g.id}: reported {name} {got} but recomputed {want:.3f}"


def traffic_shares_are_as_reported(a: Audit, _: Audit) -> Iterator[str]:
    """Each group's reported traffic share is its share of the plan's capacity (planner.plan.build.build_plan)."""
    for s in a.served:
        g = s.grp.group
        if g.traffic_share is not None and not math.isclose(g.traffic_share, s.share, rel_tol=1e-3, abs_tol=1e-5):
            yield f"{g.id}: traffic_share {g.traffic_share} but its capacity is {s.share:.6f} of the plan's"


def worst_ttft_is_as_reported(a: Audit, _: Audit) -> Iterator[str]:
    """The totals' TTFT is the worst group's (decode groups have none of their own)."""
    worst = max((s.grp.group.metrics_per_replica.ttft_ms for s in a.served if s.grp.group.role != "decode"),
                default=None)
    if worst is not None and a.plan.totals.ttft_ms != worst:
        yield f"totals: reported worst TTFT {a.plan.totals.ttft_ms} ms but the worst group's is {worst} ms"


def capacity_covers_the_rate(a: Audit, _: Audit) -> Iterator[str]:
    """The planned capacity is at least the requested rate."""
    if a.util is not None and a.util > 1:
        yield f"planned capacity {a.capacity_rps:.3f} requests/s is below the requested {a.plan.inputs.workload.qps}"


def gpus_within_max(a: Audit, _: Audit) -> Iterator[str]:
    """The plan uses no more GPUs than ``max_gpus``."""
    if a.plan.inputs.max_gpus is not None and len(a.used) > a.plan.inputs.max_gpus:
        yield f"{len(a.used)} GPUs used, more than max_gpus={a.plan.inputs.max_gpus}"


def cost_is_as_reported(a: Audit, _: Audit) -> Iterator[str]:
    """``totals.cost_per_hour``, where given, is the price of the GPUs placed, each priced by its node type."""
    plan = a.plan
    if plan.totals.cost_per_hour is None:
        return
    prices = plan.inputs.price_per_gpu_hour or {}
    node_type = {n.name: n.type for n in a.topo.spec.all_nodes()}
    types = [node_type[k.node] for g in plan.replica_groups for r in g.replicas for k in r.ranks
             if k.node in node_type]
    missing = sorted({t for t in types if t not in prices})
    if missing:
        yield f"totals.cost_per_hour is given but node types {missing} have no price in inputs.price_per_gpu_hour"
    elif not math.isclose(plan.totals.cost_per_hour, sum(prices[t] for t in types), rel_tol=1e-6, abs_tol=1e-4):
        yield (f"totals.cost_per_hour is {plan.totals.cost_per_hour} but the used GPUs cost "
               f"{sum(prices[t] for t in types):.4f} per hour")


def gpus_used_is_as_reported(a: Audit, _: Audit) -> Iterator[str]:
    """``totals.gpus_used`` counts the GPUs placed."""
    if len(a.used) != a.plan.totals.gpus_used:
        yield f"totals.gpus_used is {a.plan.totals.gpus_used} but {len(a.used)} GPUs are placed"


# -- the registry ---------------------------------------------------------------------------------

#: The points of the walk, in order, and what a rule registered at each is handed: "plan" (the audit,
#: before anything), "group" (a GroupCheck: its declaration), "strategy" (a GroupCheck with its GPU per
#: stage), "replica" (a ReplicaCheck, before its ranks), "rank" (a RankCheck), "layout" (a ReplicaCheck
#: with its ranks in place), "placed" (a GroupCheck laid out, before pricing), "priced" (Priced),
#: "pools" (the audit, every group priced), "served" (Served: a group at its share of the traffic),
#: "totals" (the audit, at the end).
STAGES = ("plan", "group", "strategy", "replica", "rank", "layout", "placed", "priced", "pools", "served",
          "totals")


@dataclass(frozen=True)
class Rule:
    """A rule of :data:`RULES`: where in the walk it runs, the function that yields its problems, and
    whether a problem it finds stops the later rules on the same item (and what the item contains)."""

    at: str
    verify: Callable[[Audit, Any], Iterable[str]]
    stops: bool = False

    def __post_init__(self) -> None:
        assert self.at in STAGES, f"{self.verify.__name__}: unknown stage {self.at!r}"


#: Every rule, in the order its problems are listed for one item.
RULES: tuple[Rule, ...] = (
    Rule("plan", topology_is_the_plans),
    Rule("group", stage_gpus_name_each_stage, stops=True),
    Rule("strategy", layer_split_covers_the_model, stops=True),
    Rule("strategy", dp_counts_the_replicas),
    Rule("strategy", strategy_is_accepted, stops=True),
    Rule("replica", replica_has_tp_x_pp_ranks, stops=True),
    Rule("rank", rank_is_on_a_gpu, stops=True),
    Rule("rank", rank_gpu_is_available),
    Rule("rank", rank_gpu_is_its_stage_type),
    Rule("rank", rank_gpu_is_used_once),
    Rule("rank", rank_is_numbered_by_position, stops=True),
    Rule("layout", replica_fills_every_position, stops=True),
    Rule("layout", tp_groups_stay_in_a_domain),
    Rule("placed", prefill_has_a_decode_group, stops=True),
    Rule("priced", kv_transfer_is_as_reported),
    Rule("priced", batch_fits),
    Rule("priced", memory_fits_every_stage),
    Rule("pools", pools_come_in_pairs),
    Rule("served", tpot_within_slo),
    Rule("served", ttft_within_slo),
    Rule("served", p99_within_slo_and_as_reported),
    Rule("served", ttft_is_as_reported),
    Rule("served", figures_are_as_reported),
    Rule("totals", traffic_shares_are_as_reported),
    Rule("totals", worst_ttft_is_as_reported),
    Rule("totals", capacity_covers_the_rate),
    Rule("totals", gpus_within_max),
    Rule("totals", cost_is_as_reported),
    Rule("totals", gpus_used_is_as_reported),
)

