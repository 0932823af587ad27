"""Predicting each measurement with the cost model, through :func:`planner.evaluation.evaluate`
(the call behind ``plan-search evaluate``), on a topology built for the row's set-up.
"""
from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(_ROOT))

from costmodels.benchrun import simulate_benchmark  # noqa: E402
from costmodels.hardware import GPU, get_gpu  # noqa: E402
from costmodels.load import serve_at_concurrency, static_batch, step_mix  # noqa: E402
from costmodels.model_spec import ModelSpec  # noqa: E402
from costmodels.models import get_model  # noqa: E402
from planner.evaluation import Evaluation, evaluate  # noqa: E402
from topologies.errors import InputError  # noqa: E402
from topologies.graph import Topology  # noqa: E402
from topologies.schema import TopologySpec  # noqa: E402

from fidelity_rows import (  # noqa: E402
    DEFAULT_NIC_GBIT_PER_S,
    NOT_FIT,
    PCIE_GBYTE_PER_S,
    PRECISIONS,
    PUBLISHER_GPU_LABELS,
    Row,
    metric_family,
)

# -- predicting -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Result:
    row: Row
    predicted: float | None
    reason: str | None = None  # why it was skipped

    @property
    def family(self) -> str | None:
        return metric_family(self.row.metric)


def _gbyte(x: float) -> float:
    return x / 1e9


def harness_topology_spec(gpu: GPU, num_gpus: int) -> dict:
    """A topology dict for ``num_gpus`` (at least 8) GPUs of ``gpu``: see the header comment."""
    n = max(8, num_gpus)
    domain = max(gpu.nvlink_domain_gpus, 1)
    name = f"fidelity-{gpu.name.lower()}-{n}"  # topology names are lowercase labels
    base = {"name": name, "description": "built by benchmarks/fidelity.py"}
    if gpu.nvlink_bytes_per_s and domain >= 2 and domain != 2 and domain < n:
        # several NVLink domains joined by a network (e.g. 16 H100 = 2 nodes of 8)
        nodes = -(-n // domain)
        nic = gpu.nic_gbit_per_s or DEFAULT_NIC_GBIT_PER_S
        return {**base, "node_types": {"n": {
            "gpu": gpu.name, "gpus_per_node": domain,
            "fabric": {"kind": "nvswitch", "nvlink_bandwidth_gbyte_per_s": _gbyte(gpu.nvlink_bytes_per_s)},
            "nics": {"count": domain, "bandwidth_gbit_per_s": nic}}},
            "node_groups": [{"prefix": "node", "count": nodes, "type": "n"}],
            "network": {"kind": "single-switch"}}
    if gpu.nvlink_bytes_per_s and domain >= n:
        fabric = {"kind": "nvswitch", "nvlink_bandwidth_gbyte_per_s": _gbyte(gpu.nvlink_bytes_per_s)}
    elif gpu.nvlink_bytes_per_s and domain == 2:
        fabric = {"kind": "nvlink-pairs", "nvlink_bandwidth_gbyte_per_s": _gbyte(gpu.nvlink_bytes_per_s),
                  "pairs": [[i, i + 1] for i in range(0, n - 1, 2)],
                  "pcie_bandwidth_gbyte_per_s": PCIE_GBYTE_PER_S}
    else:  # no NVLink between GPUs (L40S; GH200's NVLink is to its CPU): PCIe
        fabric = {"kind": "pcie", "pcie_bandwidth_gbyte_per_s": PCIE_GBYTE_PER_S, "pcie_latency_us": 3.0}
    return {**base, "node_types": {"n": {"gpu": gpu.name, "gpus_per_node": n, "fabric": fabric}},
            "nodes": [{"name": "node0", "type": "n"}], "network": {"kind": "none"}}


#: Sources whose documented MoE launch runs expert parallelism over the TP group with attention
#: data parallelism, where a row does not state its EP degree: TensorRT-LLM's v1.0 perf overview
#: ("For MoE models: trtllm-bench --tp $tp_size --pp $pp_size --ep $ep_size ... with
#: enable_attention_dp: true" in llm_options.yml, section "Running the Benchmark"). The page's file nests
#: that key inside cuda_graph_config, whose model (CudaGraphConfig, extra="forbid") would refuse it, so
#: the file as printed cannot have made the rows; the documented intent is taken (README, MoE tables).
MOE_DEP_SOURCES = frozenset({"TRTLLM_PERF_v1.0"})

#: Requests each ISL/OSL run of TensorRT-LLM's perf-overview throughput tables sent, all queued at
#: once (``trtllm-bench throughput`` on a dataset of that many requests): the "$num_requests" table
#: of docs/source/performance/perf-overview.md, the same at the v0.17 (258c7540) and v1.0
#: (00f37686) commits the rows cite, v1.0 adding 1000/2000. A run of fewer requests than the engine
#: can hold never reaches the batch a steady state would, and every run ends in a drain.
_PERF_OVERVIEW_REQUESTS = {(128, 128): 30000, (128, 2048): 3000, (128, 4096): 1500, (2048, 128): 3000,
                           (2048, 2048): 1500, (5000, 500): 1500, (1000, 1000): 3000, (500, 2000): 3000,
                           (20000, 2000): 1000, (1000, 2000): 1500}
OFFLINE_REQUESTS: dict[str, dict[tuple[int, int], int]] = {
    "TRTLLM_PERF_v0.17": _PERF_OVERVIEW_REQUESTS, "TRTLLM_PERF_v1.0": _PERF_OVERVIEW_REQUESTS}


def offline_requests(row: Row) -> int | None:
    """How many requests an offline (maximum-throughput) row's run sent, where its source says."""
    return OFFLINE_REQUESTS.get(row.source_id, {}).get((row.isl, row.osl))


class Predictor:
    """Predicts rows with ``planner.evaluation.evaluate``; caches topologies and evaluations."""

    def __init__(self) -> None:
        self._topos: dict[tuple[str, int], Topology] = {}
        self._evals: dict[tuple, Evaluation | str] = {}
        self.evaluate_calls = 0

    def topology(self, gpu: GPU, num_gpus: int) -> Topology:
        key = (gpu.name, max(8, num_gpus))
        if key not in self._topos:
            self._topos[key] = Topology(TopologySpec.model_validate(harness_topology_spec(gpu, num_gpus)))
        return self._topos[key]

    def evaluate(self, *, model: str, gpu: GPU, num_gpus: int, dtypes: tuple[str, str], tp: int, pp: int,
                 dp: int, ep: int, batch: int | None, isl: int, osl: int, runtime: str,
                 qps: float | None = None, attention_dp: int = 1, host_overlap: bool | None = None) -> Evaluation | str:
        """The Evaluation, or the cost model's reason for rejecting the input (a string)."""
        key = (model, gpu.name, max(8, num_gpus), dtypes, tp, pp, dp, ep, batch, isl, osl, runtime, qps, attention_dp,
               host_overlap)
        if key not in self._evals:
            self.evaluate_calls += 1
            try:
                self._evals[key] = evaluate(topology=self.topology(gpu, num_gpus), model=model, tp=tp, pp=pp,
                                            dp=dp, ep=ep, batch=batch, isl=isl, osl=osl, weight_dtype=dtypes[0],
                                            kv_dtype=dtypes[1], gpu=gpu.name, runtime=runtime, qps=qps,
                                            attention_dp=attention_dp, host_overlap=host_overlap)
            except InputError as e:  # one reason per cause, not per shape: drop the token count
                self._evals[key] = "rejected by cost model: " + re.sub(
                    r"isl \+ osl = \d+ tokens exceeds", "isl + osl exceeds", str(e))
        return self._evals[key]

    def predict(self, row: Row) -> Result:
        """The cost model's figure for one row, or the reason it has none."""
        setup = self._setup(row)
        if isinstance(setup, Result):
            return setup
        spec, common = setup
        rate = row.request_rate
        if row.static or (rate is not None and math.isinf(rate) and row.batch is not None):
            return self._fixed_load(row, spec, common)
        online = rate is not None
        ev = self.evaluate(batch=None if online else row.concurrency, **common)
        if isinstance(ev, str):
            return Result(row, None, ev)
        if ev.reason is not None:
            return Result(row, None, f"cannot place on harness topology: {ev.reason}")
        if not ev.metrics.fits:
            return Result(row, None, NOT_FIT)
        if not online:
            offline = offline_requests(row) if row.concurrency is None else None
            if offline is not None:
                return self._finite_run(row, spec, ev, math.inf, requests=offline, served_online=False)
            return self._at_batch(row, spec, ev, common["dp"])
        if row.requests is not None:
            return self._finite_run(row, spec, ev, rate, requests=row.requests)
        return self._at_rate(row, spec, common, rate)

    def _setup(self, row: Row) -> tuple[ModelSpec, dict] | Result:
        """The row's model and the evaluate() arguments of its set-up, or why it cannot be priced."""
        fam = metric_family(row.metric)
        if fam is None:
            return Result(row, None, f"metric not modelled: {row.metric}")
        try:
            spec = get_model(row.model)
        except (InputError, OSError, ValueError):
            return Result(row, None, f"unknown model {row.model}")
        try:
            gpu = get_gpu(PUBLISHER_GPU_LABELS.get(row.gpu, row.gpu))
        except InputError:
            return Result(row, None, f"unknown gpu {row.gpu}")
        dtypes = PRECISIONS.get(row.precision.strip().upper())
        if dtypes is None:
            return Result(row, None, f"unknown precision {row.precision}")
        pp, ep = row.pp or 1, row.ep or 1
        adp = 1
        if spec.is_moe and row.ep is None and row.source_id in MOE_DEP_SOURCES:
            ep = adp = row.tp  # the source's documented MoE launch: --ep, enable_attention_dp
        if row.dp is not None:
            dp = row.dp
            if row.tp * pp * dp != row.num_gpus:
                return Result(row, None, "layout inconsistent: tp x pp x dp != num_gpus")
        else:
            if row.num_gpus % (row.tp * pp):
                return Result(row, None, "layout inconsistent: tp x pp does not divide num_gpus")
            dp = row.num_gpus // (row.tp * pp)
        return spec, dict(model=spec.name, gpu=gpu, num_gpus=row.num_gpus, dtypes=dtypes, tp=row.tp, pp=pp, dp=dp,
                          ep=ep, isl=row.isl, osl=row.osl, runtime=row.runtime, attention_dp=adp,
                          host_overlap=row.host_overlap)

    def _at_batch(self, row: Row, spec: ModelSpec, ev: Evaluation, dp: int) -> Result:
        """A row measured at a fixed batch (closed loop, or a stated batch)."""
        m, gpus, metric = ev.metrics, row.num_gpus, row.metric
        per = {"total_output_tok_per_s": m.output_tokens_per_s * dp,
               "output_tok_per_s_per_gpu": m.output_tokens_per_s * dp / gpus,
               "req_per_s": m.requests_per_s * dp,
               "total_token_tok_per_s": m.requests_per_s * dp * (row.isl + row.osl)}
        if metric in per:
            return _finite(row, per[metric])
        if metric.startswith("ttft"):
            return _finite(row, m.ttft_s * 1e3)
        if metric.startswith("e2e"):
            return _finite(row, (m.ttft_s + max(row.osl - 1, 0) * m.tpot_s) * 1e3)
        if metric.endswith(("_p50", "_p99")):
            mix = step_mix(spec, ev.gpu, ev.strategy, isl=row.isl, osl=row.osl, batch=m.batch, links=ev.links)
            return _finite(row, mix.percentile_s(0.5 if metric.endswith("_p50") else 0.99) * 1e3)
        return _finite(row, m.tpot_s * 1e3)  # itl / tpot

    def _at_rate(self, row: Row, spec: ModelSpec, common: dict, rate: float) -> Result:
        """Online serving at request rate ``rate``: the same library call with qps, which gives the
        in-flight batch the rate sustains, TPOT there, and TTFT with queueing."""
        loaded = self.evaluate(batch=None, qps=rate, **common)
        if isinstance(loaded, str):
            return Result(row, None, loaded)
        lm, metric = loaded.loaded, row.metric
        served = lm.requests_per_s * common["dp"]
        per = {"total_output_tok_per_s": served * row.osl, "output_tok_per_s_per_gpu": served * row.osl / row.num_gpus,
               "req_per_s": served, "total_token_tok_per_s": served * (row.isl + row.osl)}
        if metric in per:
            return _finite(row, per[metric])
        if metric.startswith("ttft") and not math.isfinite(lm.ttft_s):
            why = "request_rate=INF" if math.isinf(rate) else "request rate at or above predicted capacity"
            return Result(row, None, f"metric not modelled: {metric} at {why} (queue has no steady state)")
        if metric.startswith("ttft"):
            return _finite(row, lm.ttft_s * 1e3)
        if metric.startswith("e2e"):
            return _finite(row, (lm.ttft_s + max(row.osl - 1, 0) * lm.tpot_s) * 1e3)
        if metric.endswith(("_p50", "_p99")):
            mix = step_mix(spec, loaded.gpu, loaded.strategy, isl=row.isl, osl=row.osl, batch=lm.batch,
                           links=loaded.links)
            return _finite(row, mix.percentile_s(0.5 if metric.endswith("_p50") else 0.99) * 1e3)
        return _finite(row, lm.tpot_s * 1e3)

    def _finite_run(self, row: Row, spec, ev: Evaluation, rate: float, *, requests: int,
                    served_online: bool = True) -> Result:
        """A row from a run of a stated number of requests (online at ``rate``, or offline, all
        queued at once): run that benchmark (``costmodels.benchrun``) on each of the dp replicas,
        which share the requests evenly."""
        dp = max(1, row.layout[2])
        n = max(1, math.ceil(requests / dp))
        key = ("run", row.model, row.gpu, row.precision, row.layout, row.isl, row.osl, n, rate, row.runtime,
               row.host_overlap, served_online)
        if key not in self._evals:
            self._evals[key] = simulate_benchmark(spec, ev.gpu, ev.strategy, isl=row.isl, osl=row.osl, requests=n,
                                                  rate_per_s=rate / dp, links=ev.links, online=served_online)
        run = self._evals[key]
        per = {"total_output_tok_per_s": run.output_tokens_per_s * dp,
               "output_tok_per_s_per_gpu": run.output_tokens_per_s * dp / row.num_gpus,
               "req_per_s": run.requests_per_s * dp,
               "total_token_tok_per_s": run.requests_per_s * dp * (row.isl + row.osl),
               "ttft_ms": run.ttft_mean_s * 1e3, "ttft_ms_mean": run.ttft_mean_s * 1e3,
               "ttft_ms_p99": run.ttft_p99_s * 1e3, "itl_ms": run.itl_mean_s * 1e3,
               "itl_ms_mean": run.itl_mean_s * 1e3, "itl_ms_p50": run.itl_p50_s * 1e3,
               "itl_ms_p99": run.itl_p99_s * 1e3, "tpot_ms": run.tpot_mean_s * 1e3,
               "tpot_ms_mean": run.tpot_mean_s * 1e3, "e2e_latency_ms_mean": run.e2e_mean_s * 1e3}
        if row.metric not in per:
            return Result(row, None, f"metric not modelled: {row.metric}")
        return _finite(row, per[row.metric])

    def _fixed_load(self, row: Row, spec, common: dict) -> Result:
        """A static batch of ``batch`` requests, or a closed loop of ``concurrency`` clients."""
        ev = self.evaluate(batch=None, **common)  # links, strategy and the largest batch
        if isinstance(ev, str):
            return Result(row, None, ev)
        if ev.reason is not None:
            return Result(row, None, f"cannot place on harness topology: {ev.reason}")
        n = row.concurrency or 1
        dp, metric = common["dp"], row.metric
        if row.static:
            key = ("static", row.model, row.gpu, common["dtypes"], row.layout, row.isl, row.osl, n, row.runtime,
                   row.host_overlap)
            if key not in self._evals:
                self._evals[key] = static_batch(spec, ev.gpu, ev.strategy, isl=row.isl, osl=row.osl, batch=n,
                                                links=ev.links)
            st = self._evals[key]
            if not st.fits:
                return Result(row, None, NOT_FIT)
            figures = {"ttft": st.ttft_s, "ttft_p99": st.ttft_s, "tpot": st.tpot_s, "itl_p50": st.tpot_s,
                       "itl_p99": st.tpot_s, "e2e": st.e2e_s, "req": st.requests_per_s,
                       "tok": st.output_tokens_per_s}
        else:
            key = ("closed", row.model, row.gpu, common["dtypes"], row.layout, row.isl, row.osl, n, row.runtime,
                   row.host_overlap)
            if key not in self._evals:
                self._evals[key] = serve_at_concurrency(spec, ev.gpu, ev.strategy, isl=row.isl, osl=row.osl,
                                                        concurrency=max(1, math.ceil(n / dp)), links=ev.links)
            cl = self._evals[key]
            if cl.batch < 1:
                return Result(row, None, NOT_FIT)
            figures = {"ttft": cl.ttft_s, "ttft_p99": cl.ttft_p99_s, "tpot": cl.tpot_s, "itl_p50": cl.itl_p50_s,
                       "itl_p99": cl.itl_p99_s, "e2e": cl.e2e_s, "req": cl.requests_per_s,
                       "tok": cl.output_tokens_per_s}
        per = {"total_output_tok_per_s": figures["tok"] * dp, "output_tok_per_s_per_gpu": figures["tok"] * dp / row.num_gpus,
               "req_per_s": figures["req"] * dp, "total_token_tok_per_s": figures["req"] * dp * (row.isl + row.osl),
               "ttft_ms": figures["ttft"] * 1e3, "ttft_ms_mean": figures["ttft"] * 1e3,
               "ttft_ms_p50": figures["ttft"] * 1e3, "ttft_ms_p99": figures["ttft_p99"] * 1e3,
               "itl_ms": figures["tpot"] * 1e3, "itl_ms_mean": figures["tpot"] * 1e3, "tpot_ms": figures["tpot"] * 1e3,
               "tpot_ms_mean": figures["tpot"] * 1e3, "itl_ms_p50": figures["itl_p50"] * 1e3,
               "itl_ms_p99": figures["itl_p99"] * 1e3, "e2e_latency_ms_mean": figures["e2e"] * 1e3}
        return _finite(row, per[metric])


def _finite(row: Row, value: float) -> Result:
    if not math.isfinite(value) or value <= 0:
        return Result(row, None, "cost model returned a non-finite or zero prediction")
    return Result(row, value)
