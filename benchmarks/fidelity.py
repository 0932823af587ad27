"""Cost-model fidelity: predict published measurements and compare.

    python benchmarks/fidelity.py [--data FILE.csv] [--json] [--holdout-gpu NAME] [--source ID]

Without --data it reads the reference table shipped in benchmarks/data/benchmarks.csv.
"""
# ---------------------------------------------------------------------------------------------
# What this reads
#
# A CSV in the column format of benchmarks/data/benchmarks.csv, one measurement per row:
#   source_id       groups the report ("per source"); also part of the choice-group key
#   model           a catalog model (costmodels.models.get_model normalises "Llama-3.1-70B")
#   precision       FP8 -> weights fp8 / KV fp8; FP16 -> fp16/fp16; BF16 -> bf16/bf16;
#                   FP4 (NVFP4, MXFP4) -> fp4/fp8; INT8 -> int8/fp8; INT4 (W4A16) -> int4/fp8
#   gpu             a catalog GPU or alias (costmodels.hardware.get_gpu: "A100-SXM4-80GB")
#   num_gpus        GPUs behind the measured value (tp x pp x dp)
#   tp, pp, dp, ep  the layout; empty pp/ep mean 1, empty dp means num_gpus / (tp x pp)
#   isl, osl        input and output tokens per request
#   max_batch_or_concurrency
#                   the batch (static batching) or concurrency; empty = the largest batch
#                   that fits, as the cost model defines it (evaluate(batch=None))
#   metric          what `value` measures (below)
#   value           the measurement (> 0)
#   notes           free text; "request_rate_qps=R" (R a number or INF) marks an online-serving
#                   row measured at request rate R; "concurrency=C" is read when the batch
#                   column is empty
# Other columns (source_url_or_repo_path, source_version_or_date) are carried, not used.
#
# How each row is predicted
#
# Every prediction comes from planner.evaluation.evaluate(), the call behind `plan-search evaluate`,
# on a single-node topology built here for the row's GPU (8 GPUs, or num_gpus if larger;
# NVSwitch at the catalog's per-direction NVLink rate; NVLink pairs where the catalog's
# NVLink domain is 2 GPUs (H100 PCIe); PCIe at 25 GB/s where the GPU has no NVLink (L40S);
# several nodes joined by NICs when num_gpus exceeds the NVLink domain). With
#   m   = evaluate(tp, pp, dp, ep, batch, isl, osl, dtypes).metrics   (one replica)
#   cap = m(batch=None).requests_per_s x dp                          (request capacity)
# offline rows (no request rate in notes):
#   total_output_tok_per_s    = m.output_tokens_per_s x dp
#   output_tok_per_s_per_gpu  = m.output_tokens_per_s x dp / num_gpus
#   req_per_s                 = m.requests_per_s x dp
#   total_token_tok_per_s     = m.requests_per_s x dp x (isl + osl)
#   ttft_ms[_mean]            = m.ttft_s x 1000
#   itl_ms[_mean], tpot_ms    = m.tpot_s x 1000
# online rows (request rate q; q = INF means every request sent at once, served = cap):
#   served = min(q, cap);  req_per_s = served;  total_output_tok_per_s = served x osl;
#   total_token_tok_per_s = served x (isl + osl);  per GPU: divided by num_gpus
#   latency from evaluate(..., qps=q).loaded (costmodels.load.serve_at_rate): the in-flight
#   batch b is the least fixed point of Little's law b = q/dp x (TTFT(b) + (osl - 1) TPOT(b));
#   itl_ms_mean  = TPOT(b) x 1000
#   ttft_ms_mean = TTFT(b) with the M/D/1 queueing wait at utilisation q/cap, x 1000
#                  (not modelled at q = INF or q >= cap: the queue has no steady state)
# Rows that cannot be predicted are counted as skipped with their reason, never dropped:
# unknown model / gpu / precision, metric not modelled, layout inconsistent with num_gpus,
# rejected by the cost model (e.g. isl + osl beyond the model's context), and "does not fit
# in memory per cost model" (counted separately too: an accuracy failure, since the
# measurement shows that it ran). A row that cannot be read (free text in a number column, an
# empty ISL/OSL as in variable-length sets, a stray unquoted comma) is set aside the same way,
# its reason naming the column, and never joins a planner-choice group; only a file that is not
# a measurements CSV at all (missing, empty, not UTF-8, missing columns) is refused (exit 2).
#
# Formulas
#   APE  = |pred - meas| / meas                     (absolute percentage error, a fraction)
#   SPE  = pred / meas - 1                          (signed: > 0 over-predicts)
#   MAPE = mean APE; median APE; within_10pct = share of rows with APE <= 0.10; within_25pct
#   likewise. Reported per metric family: throughput (tokens/s, requests/s) and latency (ms).
# Planner choices (throughput metrics only): rows are grouped by (source, model, gpu,
# precision, isl, osl, metric, request rate); a group with two or more layouts (tp, pp, dp,
# ep) ranks its rows by predicted per-GPU throughput (value / num_gpus, or the value itself
# for a per-GPU metric). Rows the cost model cannot price (does not fit, rejected) stay in
# the group but cannot be picked.
#   top1_match  = share of groups where the measured per-GPU throughput of the predicted pick
#                 equals the group's measured best
#   regret      = 1 - measured per-GPU of the predicted pick / measured best per-GPU;
#                 mean_regret and worst_regret over the groups
# In --json output shares and errors are fractions (0.25 = 25 %), keys sorted.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import argparse
import csv
import json
import math
import re
import statistics
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(_ROOT))

from costmodels.benchrun import simulate_benchmark  # noqa: E402
from costmodels.hardware import GPU, get_gpu  # noqa: E402
from costmodels.load import serve_at_concurrency, static_batch, step_mix  # noqa: E402
from costmodels.models import get_model  # noqa: E402
from planner.evaluation import Evaluation, evaluate  # noqa: E402
from topologies.errors import InputError  # noqa: E402
from topologies.graph import Topology  # noqa: E402
from topologies.schema import TopologySpec  # noqa: E402

#: The reference table shipped with the project (sources in benchmarks/data/SOURCES.md); the default --data.
REFERENCE_CSV = _ROOT / "benchmarks" / "data" / "benchmarks.csv"
#: The published latency measurements (benchmarks/data/latency-SOURCES.md), read beside the reference table.
LATENCY_CSV = _ROOT / "benchmarks" / "data" / "latency.csv"
DEFAULT_DATA = (REFERENCE_CSV, LATENCY_CSV)

REQUIRED_COLUMNS = ("source_id", "model", "precision", "gpu", "num_gpus", "tp", "pp", "dp", "ep", "isl",
                    "osl", "max_batch_or_concurrency", "metric", "value")
OPTIONAL_COLUMNS = ("notes",)
INT_REQUIRED = ("num_gpus", "tp", "isl", "osl")
INT_OPTIONAL = ("pp", "dp", "ep", "max_batch_or_concurrency")

#: precision label -> (weight dtype, KV-cache dtype)
PRECISIONS: dict[str, tuple[str, str]] = {
    "FP8": ("fp8", "fp8"),
    "FP16": ("fp16", "fp16"),
    "BF16": ("bf16", "bf16"),
    "FP4": ("fp4", "fp8"), "NVFP4": ("fp4", "fp8"), "MXFP4": ("fp4", "fp8"),
    "INT8": ("int8", "fp8"), "W8A8": ("int8", "fp8"),
    "INT4": ("int4", "fp8"), "W4A16": ("int4", "fp8"), "INT4-AWQ": ("int4", "fp8"),
}

THROUGHPUT_METRICS = ("total_output_tok_per_s", "output_tok_per_s_per_gpu", "req_per_s", "total_token_tok_per_s")
PER_GPU_METRICS = ("output_tok_per_s_per_gpu",)
LATENCY_METRICS = ("ttft_ms", "ttft_ms_mean", "ttft_ms_p50", "ttft_ms_p99", "itl_ms", "itl_ms_mean", "itl_ms_p50",
                   "itl_ms_p99", "tpot_ms", "tpot_ms_mean", "e2e_latency_ms_mean")
#: How the latency figures are reported apart: time to first token, time between tokens, whole request.
LATENCY_KINDS = ("ttft", "tpot", "e2e")
FAMILIES = ("throughput", "latency")

NOT_FIT = "does not fit in memory per cost model"
#: Publishers' own GPU labels: LMDeploy's "A100-80G" ("(x8) A100-80G" nodes; SXM or PCIe not stated,
#: taken as SXM4, the 8-GPU server part).
PUBLISHER_GPU_LABELS = {"A100-80G": "A100-SXM4-80GB"}
PCIE_GBYTE_PER_S = 25.0  # achieved GPU-to-GPU copy rate over PCIe switches (as topologies/builtin/pcie-l40sx1)
DEFAULT_NIC_GBIT_PER_S = 400.0  # for multi-node harness topologies when the catalog has no NIC figure

_RATE_RE = re.compile(r"request_rate(?:_qps)?\s*[=:]\s*(inf|[0-9]*\.?[0-9]+)", re.IGNORECASE)
_CONC_RE = re.compile(r"concurrency\s*[=:]\s*([0-9]+)", re.IGNORECASE)
#: "500 requests" in the set-up column: the benchmark sent a fixed number of requests.
_REQUESTS_RE = re.compile(r"\b([0-9]{1,7}) requests\b", re.IGNORECASE)


def latency_kind(metric: str) -> str | None:
    """``ttft``, ``tpot`` (ITL and TPOT alike) or ``e2e`` for a latency metric, else None."""
    if metric not in LATENCY_METRICS:
        return None
    if metric.startswith("ttft"):
        return "ttft"
    return "e2e" if metric.startswith("e2e") else "tpot"


_STATIC_RE = re.compile(r"static batch|static engine|static benchmark|processed together|no in-flight", re.IGNORECASE)
_RUNTIME_NOTES = (("tensorrt-llm", "trtllm"), ("trt-llm", "trtllm"), ("trtllm", "trtllm"), ("sglang", "sglang"),
                  ("vllm", "vllm"))


def metric_family(metric: str) -> str | None:
    if metric in THROUGHPUT_METRICS:
        return "throughput"
    if metric in LATENCY_METRICS:
        return "latency"
    return None


# -- reading --------------------------------------------------------------------------------------

class CsvError(Exception):
    """A bad input file; the message is the single line printed to stderr."""


@dataclass(frozen=True)
class Row:
    line: int  # line number in the file (header = 1)
    source_id: str
    model: str
    precision: str
    gpu: str
    num_gpus: int
    tp: int
    pp: int | None
    dp: int | None
    ep: int | None
    isl: int
    osl: int
    batch: int | None
    metric: str
    value: float
    notes: str = ""
    problem: str = ""  # why the row cannot be read (then it is set aside, never priced)
    setup: str = ""  # the source_version_or_date column: what was run, how

    @property
    def requests(self) -> int | None:
        """How many requests the benchmark run sent, where the set-up or the notes say."""
        m = _REQUESTS_RE.search(self.setup) or _REQUESTS_RE.search(self.notes)
        return int(m.group(1)) if m and int(m.group(1)) > 0 else None

    @property
    def request_rate(self) -> float | None:
        """Request rate from the notes (``math.inf`` for INF), or None for an offline row."""
        m = _RATE_RE.search(self.notes)
        if not m:
            return None
        return math.inf if m.group(1).lower() == "inf" else float(m.group(1))

    @property
    def concurrency(self) -> int | None:
        if self.batch is not None:
            return self.batch
        m = _CONC_RE.search(self.notes)
        return int(m.group(1)) if m and int(m.group(1)) > 0 else None

    @property
    def static(self) -> bool:
        """A static batch (no in-flight batching): the notes say so."""
        return bool(_STATIC_RE.search(self.notes))

    @property
    def runtime(self) -> str:
        """The runtime the notes name (a source may hold several), else the source id's."""
        low = self.notes.lower()
        for word, runtime in _RUNTIME_NOTES:
            if word in low:
                return runtime
        return runtime_of_source(self.source_id)

    @property
    def layout(self) -> tuple[int, int, int, int]:
        pp = self.pp or 1
        return (self.tp, pp, self.dp or max(self.num_gpus // (self.tp * pp), 1), self.ep or 1)


class RowProblem(ValueError):
    """One row that cannot be read; the message is the reason it is set aside."""


def _parse_int(text: str, *, col: str, required: bool) -> int | None:
    """A positive whole number, or None for an empty optional cell; raises :class:`RowProblem`."""
    t = text.strip()
    if not t:
        if required:
            raise RowProblem(f"column {col!r} is empty")
        return None
    try:
        f = float(t)
    except ValueError:
        f = math.nan
    if not math.isfinite(f) or f != int(f) or f < 1:
        raise RowProblem(f"column {col!r} is not a positive integer: {t!r}")
    return int(f)


def _lenient_int(text: str) -> int:
    """The cell as a whole number if it is one, else 0: the placeholder of a set-aside row."""
    try:
        return _parse_int(text, col="", required=True) or 0
    except RowProblem:
        return 0


def _parse_row(get: dict[str, str], line: int) -> Row:
    """One record as a :class:`Row`; raises :class:`RowProblem` naming the first unreadable cell."""
    for c in ("source_id", "model", "precision", "gpu", "metric"):
        if not get[c]:
            raise RowProblem(f"column {c!r} is empty")
    ints = {c: _parse_int(get[c], col=c, required=True) for c in INT_REQUIRED}
    opts = {c: _parse_int(get[c], col=c, required=False) for c in INT_OPTIONAL}
    try:
        value = float(get["value"])
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise RowProblem(f"column 'value' is not a positive number: {get['value']!r}")
    return Row(line=line, source_id=get["source_id"], model=get["model"], precision=get["precision"],
               gpu=get["gpu"], num_gpus=ints["num_gpus"], tp=ints["tp"], pp=opts["pp"], dp=opts["dp"],
               ep=opts["ep"], isl=ints["isl"], osl=ints["osl"], batch=opts["max_batch_or_concurrency"],
               metric=get["metric"], value=value, notes=get.get("notes", ""),
               setup=get.get("source_version_or_date", ""))


def _set_aside_row(get: dict[str, str], line: int, problem: str) -> Row:
    """A row that is counted but never priced: its text cells as written, 0 / NaN where unreadable.

    Why not refuse the file: published sets mix priceable rows with ones that are not (variable
    ISL/OSL in MLPerf sets, free text in a number column); one such row must not hide the rest.
    """
    return Row(line=line, source_id=get.get("source_id", ""), model=get.get("model", ""),
               precision=get.get("precision", ""), gpu=get.get("gpu", ""),
               num_gpus=_lenient_int(get.get("num_gpus", "")), tp=_lenient_int(get.get("tp", "")),
               pp=None, dp=None, ep=None, isl=_lenient_int(get.get("isl", "")),
               osl=_lenient_int(get.get("osl", "")), batch=None, metric=get.get("metric", ""),
               value=math.nan, notes=get.get("notes", ""), problem=problem)


def read_rows(path: str | Path) -> list[Row]:
    """Read a measurements CSV. A file that is not a measurements CSV raises :class:`CsvError` with a
    one-line message; a row that cannot be read is kept with its ``problem`` set (scored as skipped)."""
    p = str(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = reader.fieldnames
            if not header:
                raise CsvError(f"{p}: empty file; fix: write a header line with the columns "
                               f"{', '.join(REQUIRED_COLUMNS)}")
            header = [h.strip() for h in header]
            reader.fieldnames = header
            missing = [c for c in REQUIRED_COLUMNS if c not in header]
            if missing:
                raise CsvError(f"{p}: line 1: missing column{'s' if len(missing) > 1 else ''} "
                               f"{', '.join(missing)}; fix: add {'them' if len(missing) > 1 else 'it'} to the "
                               f"header (columns as in benchmarks.csv: {', '.join(REQUIRED_COLUMNS)})")
            rows = []
            for rec in reader:
                line = reader.line_num
                extra = rec.pop(None, None)
                get = {k: (v or "").strip() for k, v in rec.items()}
                if extra is None and all(not v for v in get.values()):
                    continue  # blank line
                if extra is not None:
                    rows.append(_set_aside_row(get, line, f"more fields than the {len(header)} header "
                                                          f"columns (unquoted comma?)"))
                    continue
                try:
                    rows.append(_parse_row(get, line))
                except RowProblem as e:
                    rows.append(_set_aside_row(get, line, str(e)))
            return rows
    except FileNotFoundError:
        raise CsvError(f"{p}: no such file; fix: pass --data with the path of a measurements CSV") from None
    except IsADirectoryError:
        raise CsvError(f"{p}: is a directory; fix: pass --data with the path of a CSV file") from None
    except UnicodeDecodeError as e:
        raise CsvError(f"{p}: not UTF-8 text (byte {e.start}); fix: save the file as UTF-8 CSV") from None
    except csv.Error as e:
        raise CsvError(f"{p}: not a readable CSV ({e}); fix: check quoting") from None


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
#: enable_attention_dp: true" in llm_options.yml, section "Running the Benchmark").
MOE_DEP_SOURCES = frozenset({"TRTLLM_PERF_v1.0"})


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
                 qps: float | None = None, attention_dp: int = 1) -> Evaluation | str:
        """The Evaluation, or the cost model's reason for rejecting the input (a string)."""
        key = (model, gpu.name, max(8, num_gpus), dtypes, tp, pp, dp, ep, batch, isl, osl, runtime, qps, attention_dp)
        if key not in self._evals:
            self.evaluate_calls += 1
            try:
                self._evals[key] = evaluate(topology=self.topology(gpu, num_gpus), model=model, tp=tp, pp=pp,
                                            dp=dp, ep=ep, batch=batch, isl=isl, osl=osl, weight_dtype=dtypes[0],
                                            kv_dtype=dtypes[1], gpu=gpu.name, runtime=runtime, qps=qps,
                                            attention_dp=attention_dp)
            except InputError as e:  # one reason per cause, not per shape: drop the token count
                self._evals[key] = "rejected by cost model: " + re.sub(
                    r"isl \+ osl = \d+ tokens exceeds", "isl + osl exceeds", str(e))
        return self._evals[key]

    def predict(self, row: Row) -> Result:
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
        common = dict(model=spec.name, gpu=gpu, num_gpus=row.num_gpus, dtypes=dtypes, tp=row.tp, pp=pp, dp=dp,
                      ep=ep, isl=row.isl, osl=row.osl, runtime=row.runtime, attention_dp=adp)

        rate = row.request_rate
        if row.static or (rate is not None and math.isinf(rate) and row.batch is not None):
            return self._fixed_load(row, spec, common)
        online = rate is not None
        batch = None if online else row.concurrency
        ev = self.evaluate(batch=batch, **common)
        if isinstance(ev, str):
            return Result(row, None, ev)
        if ev.reason is not None:
            return Result(row, None, f"cannot place on harness topology: {ev.reason}")
        if not ev.metrics.fits:
            return Result(row, None, NOT_FIT)
        m = ev.metrics
        gpus = row.num_gpus
        metric = row.metric
        if not online:
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

        if row.requests is not None:
            return self._finite_run(row, spec, ev, rate)
        # online serving at request rate `rate`: the same library call with qps, which gives the
        # in-flight batch the rate sustains, TPOT there, and TTFT with queueing
        loaded = self.evaluate(batch=None, qps=rate, **common)
        if isinstance(loaded, str):
            return Result(row, None, loaded)
        lm = loaded.loaded
        served = lm.requests_per_s * dp
        per = {"total_output_tok_per_s": served * row.osl, "output_tok_per_s_per_gpu": served * row.osl / gpus,
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

    def _finite_run(self, row: Row, spec, ev: Evaluation, rate: float) -> Result:
        """An online row from a run of a stated number of requests: run that benchmark
        (``costmodels.benchrun``) on each of the dp replicas, which share the requests evenly."""
        dp = max(1, row.layout[2])
        n = max(1, math.ceil(row.requests / dp))
        key = ("run", row.model, row.gpu, row.precision, row.layout, row.isl, row.osl, n, rate, row.runtime)
        if key not in self._evals:
            self._evals[key] = simulate_benchmark(spec, ev.gpu, ev.strategy, isl=row.isl, osl=row.osl, requests=n,
                                                  rate_per_s=rate / dp, links=ev.links)
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
            key = ("static", row.model, row.gpu, common["dtypes"], row.layout, row.isl, row.osl, n, row.runtime)
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
            key = ("closed", row.model, row.gpu, common["dtypes"], row.layout, row.isl, row.osl, n, row.runtime)
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


def runtime_of_source(source_id: str) -> str:
    """Which runtime's memory and batching defaults a source measured with, from its id prefix.

    >>> runtime_of_source("TRTLLM_PERF_v0.17"), runtime_of_source("HAND_A")
    ('trtllm', 'vllm')
    """
    sid = source_id.upper()
    for prefix, runtime in (("TRTLLM", "trtllm"), ("TENSORRT", "trtllm"), ("SGLANG", "sglang"), ("VLLM", "vllm")):
        if sid.startswith(prefix):
            return runtime
    return "vllm"


def _finite(row: Row, value: float) -> Result:
    if not math.isfinite(value) or value <= 0:
        return Result(row, None, "cost model returned a non-finite or zero prediction")
    return Result(row, value)


# -- aggregation (pure functions of (predicted, measured) pairs) --------------------------------

def ape(predicted: float, measured: float) -> float:
    """Absolute percentage error as a fraction: |pred - meas| / meas."""
    return abs(predicted - measured) / measured


def ape_stats(pairs: Iterable[tuple[float, float]]) -> dict:
    """Error statistics over (predicted, measured) pairs; None where there are no pairs."""
    pairs = list(pairs)
    if not pairs:
        return {"n": 0, "mape": None, "median_ape": None, "within_10pct": None, "within_25pct": None,
                "median_signed_pe": None}
    errs = [ape(p, m) for p, m in pairs]
    signed = [p / m - 1 for p, m in pairs]
    return {"n": len(pairs), "mape": statistics.fmean(errs), "median_ape": statistics.median(errs),
            "within_10pct": sum(e <= 0.10 + 1e-12 for e in errs) / len(errs),
            "within_25pct": sum(e <= 0.25 + 1e-12 for e in errs) / len(errs),
            "median_signed_pe": statistics.median(signed)}


@dataclass(frozen=True)
class Candidate:
    """One measured layout of a choice group."""

    layout: tuple
    predicted: float | None  # predicted per-GPU throughput; None: the cost model cannot price it
    measured: float  # measured per-GPU throughput
    label: str = ""


def choice_stats(groups: Mapping[tuple, Sequence[Candidate]]) -> dict:
    """Top-1 match and regret of the layout the cost model would pick, per group.

    Groups with fewer than two distinct layouts, or where no layout is priced, are not scored.
    """
    scored = []
    for key in sorted(groups, key=lambda k: tuple(str(x) for x in k)):
        cands = groups[key]
        if len({c.layout for c in cands}) < 2:
            continue
        priced = [c for c in cands if c.predicted is not None]
        if not priced:
            continue
        pick = max(priced, key=lambda c: (c.predicted, tuple(-x for x in c.layout)))
        best = max(cands, key=lambda c: (c.measured, tuple(-x for x in c.layout)))
        regret = max(0.0, 1 - pick.measured / best.measured)
        scored.append({"group": list(key), "predicted_pick": pick.label or str(pick.layout),
                       "measured_best": best.label or str(best.layout), "regret": regret,
                       "top1": pick.measured >= best.measured * (1 - 1e-12),
                       "layouts": len({c.layout for c in cands}), "unpriced": len(cands) - len(priced)})
    if not scored:
        return {"groups": 0, "top1_match": None, "mean_regret": None, "worst_regret": None, "details": []}
    return {"groups": len(scored), "top1_match": sum(s["top1"] for s in scored) / len(scored),
            "mean_regret": statistics.fmean(s["regret"] for s in scored),
            "worst_regret": max(s["regret"] for s in scored), "details": scored}


def per_gpu(row: Row, value: float) -> float:
    return value if row.metric in PER_GPU_METRICS else value / row.num_gpus


_UNRANKABLE = ("unknown ", "metric not modelled", "layout inconsistent")


def choice_groups(results: Iterable[Result]) -> dict[tuple, list[Candidate]]:
    """Throughput rows grouped by (source, model, gpu, precision, isl, osl, metric, request rate)."""
    groups: dict[tuple, list[Candidate]] = defaultdict(list)
    for r in results:
        row = r.row
        if r.family != "throughput" or row.problem or (r.reason and r.reason.startswith(_UNRANKABLE)):
            continue
        rate = row.request_rate
        load = "offline" if rate is None else f"rate={rate:g}"
        if row.static or (rate is not None and math.isinf(rate) and row.batch is not None):
            load += f" batch/concurrency={row.batch}"  # the same load on every layout of the group
        key = (row.source_id, row.model, row.gpu, row.precision, row.isl, row.osl, row.metric, load, row.runtime)
        tp, pp, dp, ep = row.layout
        label = f"tp{tp} pp{pp} dp{dp}" + (f" ep{ep}" if ep > 1 else "") + \
            (f" b{row.batch}" if row.batch else "")
        groups[key].append(Candidate(layout=row.layout,
                                     predicted=per_gpu(row, r.predicted) if r.predicted is not None else None,
                                     measured=per_gpu(row, row.value), label=label))
    return groups


def summarize(results: Sequence[Result]) -> dict:
    """The figures of one set of rows: counts, skip reasons, errors per family, planner choices."""
    predicted = [r for r in results if r.predicted is not None]
    skipped = [r for r in results if r.predicted is None]
    fams = {f: ape_stats((r.predicted, r.row.value) for r in predicted if r.family == f) for f in FAMILIES}
    overall = ape_stats((r.predicted, r.row.value) for r in predicted)
    choices = choice_stats(choice_groups(results))
    metrics = sorted({r.row.metric for r in results})
    return {
        "rows": len(results), "rows_predicted": len(predicted), "rows_skipped": len(skipped),
        "rows_not_fitting": sum(r.reason == NOT_FIT for r in skipped),
        "skipped_reasons": dict(Counter(r.reason for r in skipped)),
        "mape": overall["mape"], "median_ape": overall["median_ape"],
        "within_10pct": overall["within_10pct"], "within_25pct": overall["within_25pct"],
        "median_signed_pe": overall["median_signed_pe"],
        "throughput": fams["throughput"], "latency": fams["latency"],
        "latency_by_kind": {k: ape_stats((r.predicted, r.row.value) for r in predicted
                                         if latency_kind(r.row.metric) == k) for k in LATENCY_KINDS},
        "groups": choices["groups"], "top1_match": choices["top1_match"],
        "mean_regret": choices["mean_regret"], "worst_regret": choices["worst_regret"],
        "choice_details": choices["details"],
        "per_metric": {m: {**ape_stats((r.predicted, r.row.value) for r in predicted if r.row.metric == m),
                           "skipped": sum(1 for r in skipped if r.row.metric == m)} for m in metrics},
    }


def _predict_safely(pred: Predictor, row: Row) -> Result:
    """A row the cost model trips over is skipped with the error as its reason, not dropped."""
    if row.problem:
        return Result(row, None, row.problem)
    try:
        return pred.predict(row)
    except Exception as e:  # noqa: BLE001 - any CSV row must end up counted
        return Result(row, None, f"cost model error: {e.__class__.__name__}: {e}")


def _canonical_gpu(name: str) -> str:
    try:
        return get_gpu(name).name
    except InputError:
        return re.sub(r"[^a-z0-9]", "", name.lower())


def read_all(paths: str | Path | Sequence[str | Path]) -> list[Row]:
    """The rows of one CSV or of several, in order."""
    if isinstance(paths, (str, Path)):
        return read_rows(paths)
    return [r for p in paths for r in read_rows(p)]


def run(path: str | Path | Sequence[str | Path], *, holdout_gpu: str | None = None, source: str | None = None,
        predictor: Predictor | None = None, exclude_sources: Sequence[str] = ()) -> dict:
    """Read, filter, predict and summarise. Raises :class:`CsvError` on bad input."""
    rows = read_all(path)
    unknown = sorted(set(exclude_sources) - {r.source_id for r in rows})
    if unknown:
        raise CsvError(f"{path}: --exclude-source {unknown[0]!r} matches no row; fix: use one of: "
                       + ", ".join(sorted({r.source_id for r in rows})))
    selected = [r for r in rows if r.source_id not in exclude_sources]
    if holdout_gpu is not None:
        want = _canonical_gpu(holdout_gpu)
        selected = [r for r in selected if _canonical_gpu(r.gpu) == want]
        if not selected:
            have = ", ".join(sorted({r.gpu for r in rows}))
            raise CsvError(f"{path}: --holdout-gpu {holdout_gpu!r} matches no row; fix: use one of: {have}")
    if source is not None:
        sel = [r for r in selected if r.source_id == source]
        if not sel:
            have = ", ".join(sorted({r.source_id for r in rows}))
            raise CsvError(f"{path}: --source {source!r} matches no row; fix: use one of: {have}")
        selected = sel
    pred = predictor or Predictor()
    results = [_predict_safely(pred, r) for r in selected]
    report = summarize(results)
    by_source: dict[str, list[Result]] = defaultdict(list)
    by_gpu: dict[str, list[Result]] = defaultdict(list)
    for r in results:
        by_source[r.row.source_id].append(r)
        by_gpu[_canonical_gpu(r.row.gpu)].append(r)
    report["per_source"] = {s: summarize(v) for s, v in sorted(by_source.items())}
    report["per_gpu"] = {g: {f: ape_stats((r.predicted, r.row.value) for r in v
                                          if r.predicted is not None and r.family == f) for f in FAMILIES}
                         for g, v in sorted(by_gpu.items())}
    report["data"] = str(path) if isinstance(path, (str, Path)) else " + ".join(str(p) for p in path)
    report["rows_in_file"] = len(rows)
    report["rows_outside_filter"] = len(rows) - len(selected)
    report["filters"] = {"holdout_gpu": holdout_gpu, "source": source,
                         "exclude_source": ", ".join(exclude_sources) or None}
    report["evaluate_calls"] = pred.evaluate_calls
    return report


# -- output ---------------------------------------------------------------------------------------

def _round(obj):
    if isinstance(obj, float):
        return round(obj, 6) if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _round(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_round(v) for v in obj]
    return obj


def to_json(report: dict) -> str:
    return json.dumps(_round(report), sort_keys=True, indent=2)


def _pct(x: float | None, signed: bool = False) -> str:
    if x is None:
        return "-"
    return f"{x * 100:+.1f}%" if signed else f"{x * 100:.1f}%"


def _stats_line(label: str, s: dict, width: int = 26) -> str:
    return (f"  {label:<{width}} {s['n']:>5}  {_pct(s['mape']):>7}  {_pct(s['median_ape']):>7}  "
            f"{_pct(s['within_10pct']):>7}  {_pct(s['within_25pct']):>7}  {_pct(s['median_signed_pe'], True):>8}")


def _stats_header(label: str, width: int = 26) -> str:
    return f"  {label:<{width}} {'rows':>5}  {'MAPE':>7}  {'medAPE':>7}  {'<=10%':>7}  {'<=25%':>7}  {'med.SPE':>8}"


def _block(title: str, s: dict, *, show_metrics: bool) -> list[str]:
    out = [f"== {title} ==",
           f"rows {s['rows']}: predicted {s['rows_predicted']}, skipped {s['rows_skipped']} "
           f"(of which do not fit in memory per cost model: {s['rows_not_fitting']})"]
    for reason, n in sorted(s["skipped_reasons"].items(), key=lambda kv: (-kv[1], kv[0])):
        out.append(f"  skipped {n:>4}  {reason}")
    out.append(_stats_header("family"))
    for f in FAMILIES:
        out.append(_stats_line(f, s[f]))
        if f == "latency":
            for k in LATENCY_KINDS:
                if s["latency_by_kind"][k]["n"]:
                    out.append(_stats_line(f"  latency {k}", s["latency_by_kind"][k]))
    if show_metrics:
        out.append(_stats_header("metric"))
        for m, ms in s["per_metric"].items():
            out.append(_stats_line(m, ms) + (f"  (+{ms['skipped']} skipped)" if ms["skipped"] else ""))
    if s["groups"]:
        out.append(f"  planner choices: {s['groups']} groups with 2+ layouts, top-1 match "
                   f"{_pct(s['top1_match'])}, mean regret {_pct(s['mean_regret'])}, worst regret "
                   f"{_pct(s['worst_regret'])}")
    else:
        out.append("  planner choices: no group with 2+ layouts to rank")
    return out


def to_text(report: dict) -> str:
    f = report["filters"]
    filt = ", ".join(f"{k.replace('_', '-')} {v}" for k, v in f.items() if v) or "none"
    out = [f"fidelity of the cost model on {report['data']}: {report['rows_in_file']} rows in file, "
           f"filters: {filt} ({report['rows_outside_filter']} rows outside the filter)",
           "APE = |pred - meas| / meas; med.SPE = median of pred/meas - 1 (> 0: the model over-predicts)",
           ""]
    out += _block("overall", report, show_metrics=False)
    out.append(_stats_header("gpu"))
    for g, fams in report["per_gpu"].items():
        for fam in FAMILIES:
            if fams[fam]["n"]:
                out.append(_stats_line(f"{g} {fam}", fams[fam]))
    for sid, s in report["per_source"].items():
        out.append("")
        out += _block(f"source {sid}", s, show_metrics=True)
        bad = sorted((d for d in s["choice_details"] if not d["top1"]), key=lambda d: -d["regret"])
        for d in bad:
            g = d["group"]
            out.append(f"    miss: {g[1]} {g[2]} {g[3]} isl {g[4]} osl {g[5]} {g[7]}: picks {d['predicted_pick']}, "
                       f"measured best {d['measured_best']}, regret {_pct(d['regret'])}"
                       + (f" ({d['unpriced']} layouts unpriced)" if d["unpriced"] else ""))
    return "\n".join(out) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="fidelity.py", description=__doc__.strip().splitlines()[0])
    ap.add_argument("--data", nargs="+", default=[str(p) for p in DEFAULT_DATA],
                    help="measurement CSVs (columns as benchmarks/data/benchmarks.csv)  [default: "
                         "benchmarks/data/benchmarks.csv and benchmarks/data/latency.csv]")
    ap.add_argument("--json", action="store_true", help="print one JSON object (sorted keys)")
    ap.add_argument("--holdout-gpu", metavar="NAME", help="report only the rows of this GPU")
    ap.add_argument("--source", metavar="ID", help="report only the rows of this source_id")
    ap.add_argument("--exclude-source", metavar="ID", action="append", default=[],
                    help="leave out the rows of this source_id (repeatable)")
    ap.add_argument("--timing", action="store_true", help="print the wall time to stderr")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    try:
        report = run(args.data, holdout_gpu=args.holdout_gpu, source=args.source,
                     exclude_sources=args.exclude_source)
    except CsvError as e:
        print(f"fidelity: {e}", file=sys.stderr)
        return 2
    sys.stdout.write(to_json(report) + "\n" if args.json else to_text(report))
    if args.timing:
        print(f"fidelity: {report['rows']} rows in {time.perf_counter() - t0:.2f} s "
              f"({report['evaluate_calls']} evaluate calls)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
