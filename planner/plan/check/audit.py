"""What the rules of :mod:`planner.plan.check` look at: the audit of one plan (its topology and model, and
what the walk has established so far) and the items each point of the walk hands a rule."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from costmodels.model_spec import ModelSpec
from costmodels.strategy import Strategy
from planner.plan.schema import Plan
from topologies.graph import Topology, gpu_id

#: Reported and recomputed metrics may differ by rounding only.
REL_TOL = 1e-3


@dataclass
class CheckReport:
    """What :func:`planner.plan.check.check_plan` found: one sentence per problem, none when the plan holds."""

    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def __bool__(self) -> bool:
        return self.ok


@dataclass
class Audit:
    """The plan under check, what it runs on, and what the walk has established so far."""

    plan: Plan
    topo: Topology
    model: ModelSpec
    own: dict  # the topology's user-defined GPU types
    loaded_sha: str | None  # the hash of the topology loaded by the plan's own name, else None
    report: CheckReport = field(default_factory=CheckReport)
    used: dict[str, str] = field(default_factory=dict)  # GPU id -> the rank placed on it
    firsts: dict[str, list[list[str]]] = field(default_factory=dict)  # group id -> each replica's first stage
    placed: list[GroupCheck] = field(default_factory=list)  # groups whose placement was checked through
    served: list[Served] = field(default_factory=list)  # groups priced, in order
    cap: dict[str, float] = field(default_factory=lambda: {"unified": 0.0, "prefill": 0.0, "decode": 0.0})
    capacity_rps: float = 0.0
    util: float | None = None  # the plan's rate over its capacity

    @property
    def decode_firsts(self) -> list[list[str]]:
        """The first-stage GPUs of every decode replica: where a prefill replica may send its KV cache."""
        return [f for g in self.plan.replica_groups if g.role == "decode" for f in self.firsts.get(g.id, [])]


@dataclass
class GroupCheck:
    """One replica group: its GPU type, then its GPU per stage, strategy and measured links."""

    group: Any  # planner.plan.schema.ReplicaGroup
    gpu: Any  # the group's GPU spec
    inputs: Any  # the plan's inputs (runtime, expert imbalance)
    gpus: list = field(default_factory=list)  # one GPU spec per stage, set once stage_gpus is checked
    links: list = field(default_factory=list)  # the links of each replica laid out

    @cached_property
    def strategy(self) -> Strategy:
        """The cost model's form of the plan's strategy, built when a rule first asks for it."""
        st = self.group.strategy
        return Strategy(tp=st.tp, pp=st.pp, ep=st.ep, weight_dtype=st.weight_dtype, kv_dtype=st.kv_dtype,
                        layer_split=tuple(st.layer_split), max_num_batched_tokens=st.max_num_batched_tokens,
                        runtime=self.inputs.runtime, attention_dp=st.attention_dp,
                        expert_imbalance=self.inputs.expert_imbalance)


@dataclass
class ReplicaCheck:
    """One replica of a group, and its GPU ids by (stage, tp_rank) as its ranks are checked."""

    grp: GroupCheck
    replica: Any  # planner.plan.schema.Replica
    stages: list[list[str]] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{self.grp.group.id} replica {self.replica.index}"


@dataclass
class RankCheck:
    """One rank of a replica."""

    rep: ReplicaCheck
    rank: Any  # planner.plan.schema.Rank

    @property
    def gid(self) -> str:
        return gpu_id(self.rank.node, self.rank.gpu_index)

    @property
    def where(self) -> str:
        return f"{self.rep.where} rank {self.rank.rank}"


@dataclass
class Priced:
    """A placed group's recomputed figures: its metrics, memory per stage and KV transfer (prefill)."""

    grp: GroupCheck
    m: Any  # costmodels.serving.ReplicaMetrics
    mems: list
    xfer_s: float


@dataclass
class Served:
    """A priced group with its share of the plan's traffic and its TTFT and tail at that load."""

    grp: GroupCheck
    m: Any
    tail: Any  # costmodels.load.TailLatency, at the group's utilisation once shared
    weight: float  # requests/s x planned utilisation: how the plan splits each kind's traffic
    share: float = 0.0
    ttft_s: float = 0.0
    loop: Any = None  # costmodels.load.OpenLoop of a unified group (plans from schema 1.6.0), else None

