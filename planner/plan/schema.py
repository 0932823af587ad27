"""The placement JSON: what runtimes and deployment tools consume.

Pydantic models are the source of truth; ``planner/plan/plan.schema.json`` is generated from
them (``python -m planner.plan.schema``) and shipped, and a test keeps the two in step.
Fields are added, never renamed; ``schema_version`` follows semantic versioning.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema
from pydantic_core import PydanticCustomError

from costmodels.units import round_up
from topologies.schema import LABEL, Label

SCHEMA_VERSION: Final = "1.6.0"
# 1.1.0 added min-cost: prices and costs; 1.2.0 attention data parallelism and expert imbalance;
# 1.3.0 p99 SLOs and p99 metrics; 1.4.0 totals at the planned utilisation beside the capacity;
# 1.5.0 a unified group's TTFT (mean and p99) at its planned utilisation without a rate, as a prefill
# pool's was, and latencies rounded up to the microsecond; 1.6.0 a unified group queues as an open loop
# (costmodels.load.OpenLoop: prompt queue and slot wait at the batch its load sets), in its TTFT and in
# the utilisation a TTFT limit allows, where older plans put an M/D/1 factor over its whole TTFT
READABLE_VERSIONS = ("1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0", "1.5.0", "1.6.0")
SCHEMA_PATH = Path(__file__).with_name("plan.schema.json")


# Text fields reach launch files (comments, file names, shell words), so a plan read back is held
# to what plan-search writes: ids and GPU names ``[A-Za-z0-9._-]`` starting with a letter or digit
# (so never ``..`` or a path), node and topology names the topology file's labels, the generator
# ``plan-search <version>``, and free text on one printable line.

ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
GENERATOR = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}(?: [A-Za-z0-9][A-Za-z0-9._+-]{0,63}){0,3}")
SHA256 = re.compile(r"[A-Za-z0-9._-]{0,128}")


def _matching(pattern: re.Pattern[str], rule: str) -> AfterValidator:
    def check(v: str) -> str:
        if not pattern.fullmatch(v):
            raise PydanticCustomError("bad_text", "{value} is not allowed here: {rule}",
                                      {"value": repr(v)[:80], "rule": rule})
        return v
    return AfterValidator(check)


def _one_line(v: str) -> str:
    if not v.isprintable() or len(v) > 2000:
        raise PydanticCustomError("bad_text", "must be one line of printable text (at most 2,000 characters)", {})
    return v


def _pattern(p: re.Pattern[str]) -> WithJsonSchema:
    return WithJsonSchema({"type": "string", "pattern": f"^{p.pattern}$"})


Id = Annotated[str, _matching(ID, "use 1 to 128 characters from A-Z, a-z, 0-9, '.', '_', '-', starting with a "
                                  "letter or digit"), _pattern(ID)]
Generator = Annotated[str, _matching(GENERATOR, "a program name and up to three words such as its version "
                                                "(letters, digits, '.', '_', '-', '+'), e.g. 'plan-search 0.1.0'"),
                      _pattern(GENERATOR)]
Sha256 = Annotated[str, _matching(SHA256, "a hex digest"), _pattern(SHA256)]
OneLine = Annotated[str, AfterValidator(_one_line), WithJsonSchema({"type": "string", "maxLength": 2000,
                                                                    "pattern": "^[^\\u0000-\\u001f\\u007f]*$"})]
NodeName = Annotated[Label, _pattern(LABEL)]


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # strict JSON has no NaN or Infinity


class ModelRef(_Out):
    name: Id
    source: OneLine
    params: int = Field(description="resident parameters")
    active_params: int = Field(description="parameters one token uses (MoE: routed experts)")
    layers: int
    attention: Literal["MHA", "GQA", "MQA", "MLA"]
    moe_experts: int = 0
    moe_experts_per_token: int = 0


class TopologyRef(_Out):
    name: NodeName
    sha256: Sha256
    gpus_total: int
    gpus_available: int


class Workload(_Out):
    isl: int = Field(ge=1, description="input (prompt) tokens per request")
    osl: int = Field(ge=1, description="output tokens per request")
    qps: float | None = Field(default=None, ge=0, description="target requests per second")


class Slo(_Out):
    ttft_ms: float | None = Field(default=None, gt=0)
    tpot_ms: float | None = Field(default=None, gt=0)
    tpot_p99_ms: float | None = Field(default=None, gt=0, description="p99 TPOT target (--tpot-p99-ms)")
    ttft_p99_ms: float | None = Field(default=None, gt=0, description="p99 TTFT target, queueing at the planned "
                                                                      "load included (--ttft-p99-ms)")


class Inputs(_Out):
    model: ModelRef
    topology: TopologyRef
    workload: Workload
    slo: Slo
    objective: Literal["throughput", "throughput-per-gpu", "min-gpus", "min-cost", "latency"]
    weight_dtype: Id
    kv_dtype: Id
    max_gpus: int | None = None
    allow_cross_domain_tp: bool = False
    runtime: Literal["vllm", "sglang", "trtllm"] = Field(
        default="vllm", description="whose memory and batching defaults the plan was priced with")
    price_per_gpu_hour: dict[Id, float] | None = Field(
        default=None, description="price of one GPU for one hour by node type (topology or --price), when known")
    expert_imbalance: float | None = Field(
        default=None, ge=1, description="MoE: the busiest expert-parallel rank's routed tokens over the mean, as "
                                        "given (--expert-imbalance); null = uniform random routing")


class StrategyOut(_Out):
    tp: int = Field(ge=1)
    pp: int = Field(ge=1)
    dp: int = Field(ge=1, description="replicas of this shape (data parallelism)")
    ep: int = Field(ge=1)
    attention_dp: int = Field(default=1, ge=1, description="attention data parallelism inside each stage (MoE): "
                                                           "tp / attention_dp GPUs per attention group, each "
                                                           "serving its own sequences; 1 = attention over all tp")
    batch_size: int = Field(ge=1, description="max concurrent sequences per replica (max_num_seqs)")
    max_num_batched_tokens: int = Field(ge=1)
    max_model_len: int = Field(ge=1)
    layer_split: list[int] = Field(description="decoder layers per pipeline stage, first stage first")
    weight_dtype: Id
    kv_dtype: Id


class Metrics(_Out):
    ttft_ms: float = Field(description="time to first token, queueing at the planned load included")
    ttft_unloaded_ms: float = Field(description="time to first token with no queue: a prompt reaching an idle replica "
                                                 "(before 1.6.0, a unified group's at its full batch)")
    tpot_ms: float
    output_tokens_per_s: float
    requests_per_s: float
    utilization: float | None = Field(default=None, description="planned load / capacity, when qps is given")
    kv_transfer_ms: float | None = Field(default=None, description="prefill groups: sending one prompt's KV cache "
                                                                   "to the decode pool (included in ttft_ms)")
    tpot_p99_ms: float | None = Field(default=None, description="p99 time per output token from the mix of "
                                                                "decode-only and chunk-carrying steps (not for "
                                                                "prefill groups)")
    ttft_p99_ms: float | None = Field(default=None, description="p99 time to first token: the wait for the running "
                                                                "step at its p99 instead of its mean, queueing at the "
                                                                "planned load included (not for decode groups)")


class MemoryOut(_Out):
    weights: int
    kv_cache: int
    activations: int
    overhead: int
    reserve: int
    total: int
    capacity: int


class LinkOut(_Out):
    kind: Id
    bandwidth_bytes_per_s: float
    latency_s: float


class Rank(_Out):
    rank: int = Field(ge=0, description="global rank in the replica: stage * tp + tp_rank")
    stage: int = Field(ge=0)
    tp_rank: int = Field(ge=0)
    node: NodeName
    gpu_index: int = Field(ge=0)


class Replica(_Out):
    index: int = Field(ge=0)
    ranks: list[Rank]


class ReplicaGroup(_Out):
    id: Id
    role: Literal["unified", "prefill", "decode"] = "unified"
    gpu: Id = Field(description="GPU type (of the first stage when stage_gpus is given)")
    stage_gpus: list[Id] | None = Field(default=None, description="a pipeline across GPU types: the GPU type of "
                                                                   "each stage, first stage first")
    strategy: StrategyOut
    metrics_per_replica: Metrics
    memory_per_gpu_bytes: MemoryOut = Field(description="the most loaded GPU of a replica")
    links: dict[Id, LinkOut] = Field(description="the slowest link each collective uses: tp (all-reduce "
                                                  "group), pp, kv (prefill to decode), ep (MoE all-to-all "
                                                  "under attention DP; ep_local inside one domain when it "
                                                  "spans several)")
    traffic_share: float | None = Field(default=None, ge=0, le=1,
                                        description="share of requests to route to this group (its capacity over "
                                                    "the plan's), split evenly over its replicas")
    replicas: list[Replica]

    @property
    def gpu_label(self) -> str:
        """The GPU type, or the types of a pipeline across types joined by '+', in stage order."""
        return "+".join(dict.fromkeys(self.stage_gpus)) if self.stage_gpus else self.gpu


class Totals(_Out):
    gpus_used: int
    output_tokens_per_s: float = Field(description="served at the planned utilisation (from 1.4.0; the capacity "
                                                   "before): each group at most 90 % busy, less where queueing "
                                                   "would break the TTFT SLO; what the solver maximises")
    output_tokens_per_s_per_gpu: float
    requests_per_s: float = Field(description="at the planned utilisation, as output_tokens_per_s")
    capacity_output_tokens_per_s: float | None = Field(default=None, description="every group fully busy (the "
                                                                                 "sum of its replicas' figures)")
    ttft_ms: float = Field(description="worst over groups")
    tpot_ms: float = Field(description="worst over groups")
    cost_per_hour: float | None = Field(default=None, description="sum of the used GPUs' prices per hour, "
                                                                  "when every used GPU has a price")


class SolverOut(_Out):
    name: Literal["cp-sat"] = "cp-sat"
    status: Literal["OPTIMAL", "FEASIBLE"]
    objective: OneLine
    objective_value: float
    best_bound: float
    gap: float
    candidates_priced: int
    seed: int
    workers: int
    time_limit_s: float
    wall_time_s: float | None = Field(default=None, description="the whole search (pricing, solving, placement); "
                                                                "only with include_timings, as it varies run to run")


class Disaggregation(_Out):
    """Whether the plan splits prefill and decode into separate pools, and why."""

    decision: Literal["unified", "disaggregated", "mixed"]
    reason: OneLine
    alternative: Literal["unified-only", "pools-only", "none"] = Field(
        description="what the plan was compared with; none (from 1.4.0) when the runtime's launch files cannot "
                    "run pools, so they were not considered (the reason says so)")
    alternative_objective_value: float | None = Field(description="the alternative's figure on the objective's "
                                                                  "terms (tokens/s per GPU for throughput-per-gpu, "
                                                                  "worst TPOT ms for latency, else the objective "
                                                                  "value); null when the comparison found no such "
                                                                  "plan (the reason says whether it ran out of time)")


class Plan(_Out):
    schema_version: Literal["1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0", "1.5.0", "1.6.0"] = SCHEMA_VERSION
    generator: Generator
    inputs: Inputs
    replica_groups: list[ReplicaGroup] = Field(min_length=1)
    totals: Totals
    solver: SolverOut
    disaggregation: Disaggregation | None = Field(default=None, description="present when prefill/decode pools "
                                                                            "were considered")
    warnings: list[OneLine] = Field(default_factory=list, max_length=16,
                                    description="what a reader must know before launching (from 1.6.0): a plan "
                                                "the runtime cannot start as placed, kept because no other was "
                                                "found")

    def to_json(self) -> str:
        """Canonical JSON: sorted keys, fixed float formatting, trailing newline; never NaN or
        Infinity (strict JSON parsers refuse them), which the models already refuse."""
        return json.dumps(self.model_dump(mode="json", exclude_none=False), indent=2, sort_keys=True,
                          allow_nan=False) + "\n"


def loaded_ttft(version: str) -> bool:
    """Whether a plan of schema ``version`` gives a unified group's TTFT at its planned utilisation and
    rounds latencies up (from 1.5.0); older plans gave it unloaded without a rate, rounded to nearest."""
    return tuple(int(p) for p in version.split(".")) >= (1, 5, 0)


def open_loop_queue(version: str) -> bool:
    """Whether a plan of schema ``version`` queues a unified group as an open loop
    (:class:`costmodels.load.OpenLoop`, from 1.6.0); older plans put an M/D/1 factor over its TTFT."""
    return tuple(int(p) for p in version.split(".")) >= (1, 6, 0)


def latency_ms(x_s: float) -> float:
    """A latency in ms as plans carry it: rounded up to the microsecond, so a limit set at the printed
    figure (``--tpot-ms 19.996``) keeps the plan, which rounding to nearest below the true 19.9964 broke.
    The 1e-6 guard keeps a figure already on the microsecond from going up by one through float noise."""
    if not math.isfinite(x_s):
        return x_s * 1e3  # refused by the models (no NaN or infinity in a plan)
    return round_up(x_s * 1e3, 3)


def json_schema() -> dict[str, Any]:
    schema = Plan.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://plan-search.dev/schema/plan-{SCHEMA_VERSION}.json"
    return schema


def load_json_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return schema


if __name__ == "__main__":
    SCHEMA_PATH.write_text(json.dumps(json_schema(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {SCHEMA_PATH}")
