"""``evaluate``: score one given strategy (memory, largest batch, TTFT, TPOT, throughput) and,
when asked, the replica under a rate, a concurrency or a finite benchmark run.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from costmodels import calibration as cal
from costmodels.hardware import GPU, get_gpu
from costmodels.load import ClosedLoopMetrics, LoadedMetrics, serve_at_concurrency, serve_at_rate
from costmodels.model_spec import ModelSpec
from costmodels.serving import ReplicaMetrics, evaluate_replica
from costmodels.strategy import Links, Strategy, validate_strategy
from planner.api import check_positive, make_request, model_of, topology_of
from planner.plan.build import link_out, rounded
from planner.price.candidate import Request
from planner.price.cluster import ClusterView, cluster_view
from planner.price.spans import inter_domain_link_fn, replica_spans, wide_span
from topologies.errors import InputError
from topologies.graph import Topology

if TYPE_CHECKING:  # Evaluation.run's type; the simulator itself is imported where evaluate runs it
    from costmodels.benchrun import BenchmarkRun


@dataclass(frozen=True)
class Evaluation:
    gpu: GPU
    strategy: Strategy
    dp: int
    metrics: ReplicaMetrics
    links: Links
    span: str
    available_gpus: int
    reason: str | None  # why it does not fit/place, or None
    loaded: LoadedMetrics | None = None  # at the request rate, when one was given
    closed: ClosedLoopMetrics | None = None  # under a closed loop of clients, when a concurrency was given
    run: BenchmarkRun | None = None  # a finite benchmark of --requests requests at --qps, when asked

    @property
    def fits(self) -> bool:
        return self.reason is None and self.metrics.fits

    def as_dict(self) -> dict:
        m = self.metrics
        gpus = self.strategy.gpus * self.dp
        return {
            "fits": self.fits,
            "reason": self.reason if self.reason else (None if m.fits else "does not fit in GPU memory"),
            "gpu": self.gpu.name,
            "tp": self.strategy.tp, "pp": self.strategy.pp, "dp": self.dp, "ep": self.strategy.ep,
            "attention_dp": self.strategy.attention_dp,
            "span": self.span,
            "weight_dtype": self.strategy.weight_dtype, "kv_dtype": self.strategy.kv_dtype,
            "batch_size": m.batch,
            "max_batch_size": m.max_batch,
            "memory_per_gpu_bytes": m.memory.as_dict(),
            "ttft_ms": rounded(m.ttft_s * 1e3) if math.isfinite(m.ttft_s) else None,
            "tpot_ms": rounded(m.tpot_s * 1e3) if math.isfinite(m.tpot_s) else None,
            "output_tokens_per_s": rounded(m.output_tokens_per_s * self.dp, 1),
            "output_tokens_per_s_per_gpu": rounded(m.output_tokens_per_s * self.dp / gpus, 1),
            "requests_per_s": rounded(m.requests_per_s * self.dp, 4),
            "links": {"tp": link_out(self.links.tp).model_dump(), "pp": link_out(self.links.pp).model_dump(),
                      **({"ep": link_out(self.links.ep).model_dump()} if self.strategy.attention_dp > 1 else {})},
            "at_qps": None if self.loaded is None else {
                "qps": self.loaded.rate_per_s * self.dp if math.isfinite(self.loaded.rate_per_s) else None,
                "utilization": rounded(self.loaded.utilization, 4) if math.isfinite(self.loaded.utilization) else None,
                "batch_in_flight": self.loaded.batch,
                "ttft_ms": rounded(self.loaded.ttft_s * 1e3) if math.isfinite(self.loaded.ttft_s) else None,
                "tpot_ms": rounded(self.loaded.tpot_s * 1e3) if math.isfinite(self.loaded.tpot_s) else None,
                "requests_per_s": rounded(self.loaded.requests_per_s * self.dp, 4),
                "output_tokens_per_s": rounded(self.loaded.output_tokens_per_s * self.dp, 1)},
            "at_concurrency": None if self.closed is None else self._closed_dict(),
            **({"benchmark_run": self._run_dict()} if self.run is not None else {}),
        }

    def _run_dict(self) -> dict:
        """A finite benchmark's averages: per request as one replica sees them, rates summed."""
        r = self.run
        return {"requests": r.requests * self.dp,
                "qps": r.rate_per_s * self.dp if math.isfinite(r.rate_per_s) else None,
                "duration_s": rounded(r.duration_s, 3), "max_in_flight": r.max_in_flight,
                "ttft_ms": rounded(r.ttft_mean_s * 1e3), "ttft_p99_ms": rounded(r.ttft_p99_s * 1e3),
                "itl_ms": rounded(r.itl_mean_s * 1e3), "itl_p50_ms": rounded(r.itl_p50_s * 1e3),
                "itl_p99_ms": rounded(r.itl_p99_s * 1e3), "tpot_ms": rounded(r.tpot_mean_s * 1e3),
                "e2e_ms": rounded(r.e2e_mean_s * 1e3), "requests_per_s": rounded(r.requests_per_s * self.dp, 4),
                "output_tokens_per_s": rounded(r.output_tokens_per_s * self.dp, 1)}

    def _closed_dict(self) -> dict:
        """The closed-loop figures: per request as one replica sees them, rates summed over the replicas."""
        c = self.closed

        def ms(x: float) -> float | None:
            return rounded(x * 1e3) if math.isfinite(x) else None

        return {"concurrency": c.concurrency * self.dp, "batch_in_flight": c.batch,
                "ttft_ms": ms(c.ttft_s), "ttft_p99_ms": ms(c.ttft_p99_s), "tpot_ms": ms(c.tpot_s),
                "itl_p50_ms": ms(c.itl_p50_s), "itl_p99_ms": ms(c.itl_p99_s), "e2e_ms": ms(c.e2e_s),
                "requests_per_s": rounded(c.requests_per_s * self.dp, 4),
                "output_tokens_per_s": rounded(c.output_tokens_per_s * self.dp, 1)}


def evaluate(*, topology: str | Path | Topology, model: str | Path | ModelSpec, tp: int, pp: int = 1, dp: int = 1,
             ep: int = 1, batch: int | None = None, isl: int = 1024, osl: int = 256, weight_dtype: str | None = None,
             kv_dtype: str | None = None, gpu: str | None = None, runtime: str = "vllm",
             max_num_batched_tokens: int = cal.DEFAULT_MAX_NUM_BATCHED_TOKENS,
             allow_cross_domain_tp: bool = False, qps: float | None = None, attention_dp: int = 1,
             expert_imbalance: float | None = None, concurrency: int | None = None,
             requests: int | None = None, host_overlap: bool | None = None) -> Evaluation:
    """Score one given strategy on the topology's links. Without ``batch``: the largest that fits.

    With ``qps`` (spread evenly over the ``dp`` replicas) it also predicts the replicas at
    that load: the batch in flight, TPOT, and TTFT with queueing (``Evaluation.loaded``).
    With ``concurrency`` (closed-loop clients, spread evenly over the replicas) it predicts
    them as a closed-loop benchmark measures them (``Evaluation.closed``,
    :func:`costmodels.load.serve_at_concurrency`): TTFT mean and p99, TPOT, ITL p50 and
    p99, end-to-end latency and throughput. ``qps`` and ``concurrency`` exclude each other.
    With ``requests`` and ``qps`` (``math.inf``: all sent at once) it also runs that finite
    benchmark step by step (``Evaluation.run``, :func:`costmodels.benchrun.simulate_benchmark`),
    which is what a published online-serving table measured, queue build-up and drain included.
    ``host_overlap`` (``Strategy.host_overlap``): False prices an engine that does not overlap its
    host work with the GPU (older releases); None, the runtime's current default.
    """
    _check_concurrency(concurrency, qps=qps, batch=batch, dp=dp)
    _check_requests(requests, qps=qps, batch=batch, dp=dp)
    topo = topology_of(topology)
    spec = model_of(model)
    # Scoring a given strategy prices it even past the model's trained context, as runtimes
    # let a user do (search refuses such a request).
    req = make_request(spec, isl=isl, osl=osl, weight_dtype=weight_dtype, kv_dtype=kv_dtype, tp=tp, pp=pp, ep=ep,
                       batch=batch, runtime=runtime, check_context=False,
                       allow_cross_domain_tp=allow_cross_domain_tp, attention_dp=attention_dp,
                       expert_imbalance=expert_imbalance)
    check_positive(dp, "--dp", allow_none=False, integer=True)
    s = Strategy(tp=tp, pp=pp, ep=ep, weight_dtype=req.weight_dtype, kv_dtype=req.kv_dtype,
                 max_num_batched_tokens=max_num_batched_tokens, runtime=req.runtime, attention_dp=attention_dp,
                 expert_imbalance=req.expert_imbalance, host_overlap=host_overlap)
    why = validate_strategy(spec, s)
    if why:
        raise InputError(why, source="--tp/--pp/--ep/--attention-dp")
    view = cluster_view(topo)
    gpu_name, span, links, free, reason = _where(topo, view, gpu, s, req, dp=dp)
    m = evaluate_replica(spec, view.gpu_of_type[gpu_name], s, isl=isl, osl=osl, batch=batch, links=links)
    loaded = None
    if qps is not None:
        if not math.isfinite(qps) and qps > 0:
            qps = math.inf
        elif qps < 0 or not qps == qps:
            raise InputError(f"must be a non-negative number, got {qps!r}", source="--qps")
        # the replica at its batch limit (--batch is max_num_seqs; without it, the largest that fits)
        loaded = serve_at_rate(spec, view.gpu_of_type[gpu_name], s, isl=isl, osl=osl, rate_per_s=qps / dp,
                               links=links, capacity=m)
    closed = None
    if concurrency is not None:
        closed = serve_at_concurrency(spec, view.gpu_of_type[gpu_name], s, isl=isl, osl=osl,
                                      concurrency=concurrency // dp, links=links)
    run = None
    if requests is not None and m.max_batch >= 1:
        from costmodels.benchrun import simulate_benchmark

        run = simulate_benchmark(spec, view.gpu_of_type[gpu_name], s, isl=isl, osl=osl, requests=requests // dp,
                                 rate_per_s=qps / dp, links=links)
    return Evaluation(gpu=view.gpu_of_type[gpu_name], strategy=s, dp=dp, metrics=m, links=links, span=span,
                      available_gpus=free, reason=reason, loaded=loaded, closed=closed, run=run)



def _where(topo: Topology, view: ClusterView, gpu: str | None, s: Strategy, req: Request, *,
           dp: int) -> tuple[str, str, Links, int, str | None]:
    """Where the given strategy runs: its GPU type (``gpu``, else the most numerous free type),
    span and links, the free GPUs of that type, and why it cannot run there (None if it can)."""
    tp, pp, attention_dp = s.tp, s.pp, s.attention_dp
    types = sorted({k.gpu for k in view.classes}, key=lambda g: (-view.free_by_type.get(g, 0), g))
    gpu_name = get_gpu(gpu, source="--gpu", custom=view.gpu_of_type).name if gpu else types[0]
    if gpu_name not in view.free_by_type:
        raise InputError(f"topology {topo.name!r} has no free {gpu_name}", source="--gpu")
    classes = [k for k in view.classes if k.gpu == gpu_name]
    spans = list(replica_spans(view, classes, tp, pp, req, inter_domain_link_fn(topo, view, classes)))
    wide = wide_span(view, classes, tp, s.attention_tp) if not spans and attention_dp > 1 and pp == 1 else None
    reason = None
    if spans:
        span, *_, links = spans[0]
        if attention_dp > 1:
            links = replace(links, ep=links.tp)
    elif wide is not None:
        span, links = "wide", wide[2]
    else:
        span, links = "none", Links()
        reason = (f"tp={tp} does not fit in one NVLink domain of this topology; pass "
                  f"--allow-cross-domain-tp to price it over the network") if tp > max(k.free for k in classes) \
            else f"tp={tp} x pp={pp} needs more free {gpu_name} GPUs than the topology has"
    free = view.free_by_type[gpu_name]
    if reason is None and tp * pp * dp > free:
        reason = f"tp x pp x dp = {tp * pp * dp} GPUs but the topology has {free} free {gpu_name}"
    return gpu_name, span, links, free, reason


#: Largest --requests a finite benchmark is run with: the run is stepped one engine step at a
#: time, and a million requests keeps it within seconds at the batches that matter.
MAX_BENCHMARK_REQUESTS = 1_000_000


def _check_requests(requests, *, qps, batch, dp) -> None:
    """Refuse a finite benchmark ``evaluate`` cannot run: not a positive integer, no rate to
    send at, a pinned batch (the run sets its own), or not spread evenly over the replicas."""
    if requests is None:
        return
    check_positive(requests, "--requests", integer=True)
    if requests > MAX_BENCHMARK_REQUESTS:
        raise InputError(f"{requests} requests is more than {MAX_BENCHMARK_REQUESTS:,}; give fewer",
                         source="--requests")
    if qps is None or qps <= 0:
        raise InputError("a benchmark run sends its requests at a rate: add --qps (inf: all at once)",
                         source="--requests")
    if batch is not None:
        raise InputError("the run admits requests as the KV cache allows; drop --batch", source="--requests")
    if isinstance(dp, int) and dp >= 1 and requests % dp:
        raise InputError(f"{requests} requests do not spread evenly over --dp {dp} replicas; give a multiple "
                         f"of {dp}", source="--requests")


def _check_concurrency(concurrency, *, qps, batch, dp) -> None:
    """Refuse a concurrency ``evaluate`` cannot price: not a positive integer, given with a rate
    (a closed loop sets its own rate), with a pinned batch (the clients in flight are the
    batch), or not spread evenly over the replicas."""
    if concurrency is None:
        return
    check_positive(concurrency, "--concurrency", integer=True)
    if qps is not None:
        raise InputError("give --concurrency (a closed loop of clients) or --qps (an open-loop rate), not both",
                         source="--concurrency")
    if batch is not None:
        raise InputError("the clients in flight are the batch (up to the largest that fits); drop --batch",
                         source="--concurrency")
    if isinstance(dp, int) and dp >= 1 and concurrency % dp:
        raise InputError(f"{concurrency} clients do not spread evenly over --dp {dp} replicas; give a multiple of "
                         f"{dp}", source="--concurrency")
