"""What pricing works with: the request (:class:`Request`), a priced replica shape
(:class:`Candidate`) and the books of one pricing pass (:class:`Pricing`: every candidate, the
shapes rejected and why, the fastest step any shape reached, for the solver and its messages).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from costmodels import calibration as cal
from costmodels.batch import BatchChoice, choose_batch
from costmodels.hardware import GPU
from costmodels.model_spec import ModelSpec
from costmodels.serving import ReplicaMetrics
from costmodels.strategy import GPUs, Links, Strategy

#: where a replica's GPUs sit, in the words reports use (the spans of this module's docstring)
SPAN_WORDS = {
    "intra": "inside one scale-up domain",
    "inter": "one pipeline stage per scale-up domain",
    "cross": "tensor parallelism across scale-up domains",
    "hetero": "a pipeline across GPU types",
    "wide": "wide expert parallelism across scale-up domains",
}


@dataclass(frozen=True)
class Candidate:
    index: int
    gpu: str
    strategy: Strategy
    span: str  # intra | inter | cross
    batch: int
    metrics: ReplicaMetrics
    links: Links
    unit_gpus: int  # GPUs one placement unit takes
    units_per_replica: int
    units_per_stage: int  # span 'cross': whole domains per stage; otherwise 1
    classes: tuple[tuple, ...]  # signatures of the domain classes a unit may go to
    usable_requests_per_s: float  # capacity at the highest utilisation the TTFT SLO allows
    stage_gpus: tuple[str, ...] = ()  # span 'hetero': the GPU type of each stage (else all `gpu`)
    role: str = "unified"  # unified | prefill | decode (a disaggregated deployment's two pools)
    kv_transfer_s: float = 0.0  # prefill: sending one prompt's KV cache to the decode pool (in its TTFT)

    @property
    def gpus(self) -> int:
        return self.strategy.gpus

    @property
    def hetero(self) -> bool:
        return bool(self.stage_gpus)

    def units_by_gpu(self) -> dict[str, int]:
        """Units per replica on each GPU type (a pipeline across types needs some of each)."""
        if not self.stage_gpus:
            return {self.gpu: self.units_per_replica}
        out: dict[str, int] = {}
        for g in self.stage_gpus:
            out[g] = out.get(g, 0) + 1
        return out

    def label(self) -> str:
        """The shape in words, e.g. ``H100-SXM-80GB decode tp=4 pp=1 batch=355, inside one scale-up domain``."""
        s = self.strategy
        ep = (f" ep={s.ep}" if s.ep > 1 else "") + (f" attention_dp={s.attention_dp}" if s.attention_dp > 1 else "")
        gpu = "+".join(dict.fromkeys(self.stage_gpus)) if self.stage_gpus else self.gpu
        role = "" if self.role == "unified" else f" {self.role}"
        return f"{gpu}{role} tp={s.tp} pp={s.pp}{ep} batch={self.batch}, {SPAN_WORDS.get(self.span, self.span)}"


@dataclass(frozen=True)
class Request:
    """What the solver is asked (the library's normalised form of the CLI flags)."""

    isl: int
    osl: int
    qps: float | None = None
    ttft_s: float | None = None
    tpot_s: float | None = None
    objective: str = "throughput"
    tpot_p99_s: float | None = None  # p99 TPOT (costmodels.load.tail_latency)
    ttft_p99_s: float | None = None  # p99 TTFT, queueing at the planned load included
    weight_dtype: str = "bf16"
    kv_dtype: str = "bf16"
    max_gpus: int | None = None
    allow_cross_domain_tp: bool = False
    max_num_batched_tokens: int = cal.DEFAULT_MAX_NUM_BATCHED_TOKENS
    runtime: str = "vllm"
    tp: int | None = None  # pin a degree (None: search)
    pp: int | None = None
    ep: int | None = None
    attention_dp: int | None = None
    expert_imbalance: float | None = None  # Strategy.expert_imbalance (None: uniform random routing)
    batch: int | None = None
    prices: tuple[tuple[str, float], ...] = ()  # (node type, price per GPU-hour), for min-cost
    disaggregation: str = "auto"  # off | auto (the solver decides) | only (prefill and decode pools only)
    pools_note: str | None = None  # why pools were not considered though the user left them to the search

    def price_of(self, node_type: str) -> float | None:
        return dict(self.prices).get(node_type)


@dataclass
class Pricing:
    """The books of one pricing pass: the candidates, the shapes rejected and why, and the fastest
    TPOT and TTFT (mean and p99) any shape reached, with its label, for the infeasibility messages."""

    candidates: list[Candidate]
    priced: int
    rejected: dict[str, int]  # reason -> shapes rejected for it (for infeasibility messages)
    best_tpot_s: float = math.inf
    best_tpot_label: str = ""
    best_ttft_s: float = math.inf
    best_ttft_label: str = ""
    best_tpot_p99_s: float = math.inf
    best_tpot_p99_label: str = ""
    best_ttft_p99_s: float = math.inf
    best_ttft_p99_label: str = ""
    smallest_weights_label: str = ""
    fits_anywhere: bool = False

    def choose_batch(self, model: ModelSpec, gpu: GPUs, s: Strategy, req: Request, links: Links,
                     role: str = "unified") -> BatchChoice:
        """:func:`costmodels.batch.choose_batch` for this shape, its rejections and fastest figures
        entered in these books (the infeasibility messages and the frontier read them)."""
        choice = choose_batch(model, gpu, s, req, links, role)  # the module function, not this method
        for why in choice.rejected:
            self.rejected[why] = self.rejected.get(why, 0) + 1
        self.fits_anywhere = self.fits_anywhere or choice.fits
        name = gpu.name if isinstance(gpu, GPU) else "+".join(dict.fromkeys(g.name for g in gpu))
        for metric, (value_s, b) in choice.fastest.items():
            if value_s < getattr(self, f"best_{metric}_s"):
                setattr(self, f"best_{metric}_s", value_s)
                setattr(self, f"best_{metric}_label", f"{name} tp={s.tp} pp={s.pp} batch {b}")
        return choice

    def add_replica(self, model: ModelSpec, gpu_types: GPUs, s: Strategy, req: Request, links: Links,
                    role: str = "unified", **where: Any) -> int:
        """Price a unified or decode-only replica of this shape at its best batch and, when one meets
        the SLOs, add it as a candidate placed as ``where`` says (:class:`Candidate`'s GPU, span and
        unit fields); the replica evaluations it took."""
        choice = self.choose_batch(model, gpu_types, s, req, links, role)
        if choice.best is not None:
            self.candidates.append(Candidate(index=len(self.candidates), strategy=s, batch=choice.best.batch,
                                             metrics=choice.best, links=links, role=role,
                                             usable_requests_per_s=choice.usable_requests_per_s, **where))
        return choice.priced
