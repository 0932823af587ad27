"""Reading the fidelity harness's measurement tables (``benchmarks/data/benchmarks.csv`` and
``latency.csv``): the columns, their checks, and the rows the cost model cannot price set aside
with the reason. The format is described in ``fidelity.py``'s header.
"""
from __future__ import annotations

import csv
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(_ROOT))


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
_SGLANG_VERSION_RE = re.compile(r"sglang[\s=v]*(\d+)\.(\d+)")  # "SGLang 0.4.3", "SGLang v0.4", "sglang==0.5"
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
    def host_overlap(self) -> bool:
        """Whether the measured engine overlapped its host work with the GPU (:func:`engine_overlaps_host`)."""
        return engine_overlaps_host(self.notes)

    @property
    def layout(self) -> tuple[int, int, int, int]:
        pp = self.pp or 1
        return (self.tp, pp, self.dp or max(self.num_gpus // (self.tp * pp), 1), self.ep or 1)


def engine_overlaps_host(notes: str) -> bool:
    """Whether a measurement's engine overlapped its host work with the GPU's step
    (``costmodels.calibration.RuntimeProfile.overlaps_host``), from what its notes name: the
    TensorRT-LLM PyTorch backend (its overlap scheduler is on by default) or SGLang 0.4 and later
    (its overlap scheduler, on by default since v0.4). Every other source ran an engine that did
    not: TensorRT-LLM's TensorRT-engine releases (NIM for LLMs 1.x served from them until the
    PyTorch backend became its default in 1.15.0, 2026-05), vLLM before asynchronous scheduling,
    LMDeploy.

    >>> engine_overlaps_host("trtllm-bench (PyTorch backend)"), engine_overlaps_host("SGLang 0.3.6")
    (True, False)
    >>> engine_overlaps_host("SGLang v0.4"), engine_overlaps_host("sglang==0.5.2"), engine_overlaps_host("vLLM 0.7")
    (True, True, False)
    """
    low = notes.lower()
    if "pytorch backend" in low:
        return True
    m = _SGLANG_VERSION_RE.search(low)
    return bool(m) and (int(m.group(1)), int(m.group(2))) >= (0, 4)


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
