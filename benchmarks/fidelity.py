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
if str(Path(__file__).resolve().parent) not in sys.path:  # its siblings, when loaded by path
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from costmodels.hardware import get_gpu  # noqa: E402
from topologies.errors import InputError  # noqa: E402

from fidelity_predict import Predictor, Result  # noqa: E402
from fidelity_rows import (  # noqa: E402
    DEFAULT_DATA,
    FAMILIES,
    LATENCY_KINDS,
    NOT_FIT,
    PER_GPU_METRICS,
    CsvError,
    Row,
    latency_kind,
    read_rows,
)

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
