"""plan-search beside AIConfigurator 0.12.0 (NVIDIA's configurator): picks, cross-pricing, wall time.

    python benchmarks/peer_compare.py [--json] [--scenario NAME ...]
    python benchmarks/peer_compare.py --published [--json]

For each scenario below, both tools pick an aggregated (unified) TensorRT-LLM plan under the same
TTFT/TPOT limits on the same 8 GPUs and the same precision:
  - plan-search: ``plan-search search --runtime trtllm --disaggregation off --json`` (the installed entry point);
  - the peer: ``aiconfigurator cli default --backend trtllm --serving-mode agg``.
Each pick is then priced by BOTH cost models: ours with ``planner.evaluation.evaluate`` at the peer's
tp/ep/attention-dp/batch and context-token budget, the peer's with ``aiconfigurator cli estimate --estimate-mode agg`` at our
tp/ep/attention-dp/batch and our ``max_num_batched_tokens`` as its context-token budget (the value
``plan-search emit --target trtllm`` launches with as ``--max_num_tokens``; with attention DP the
emitted ``--max_batch_size`` is batch // attention_dp, and that is the per-rank batch priced).
The peer's own pick is priced by the peer as its ``best_config_topn.csv`` reports it.

Printed per scenario: throughput per GPU and TTFT/TPOT of each pick under each model, whether it
meets the limits under each model, the issue-13 target ratio "our pick priced by the peer / the
peer's best" (target >= 0.95 with the limits met under the peer's model) and the wall-time ratio
(peer wall / plan-search wall, each timed end to end as a process, startup included; issue 13 asks
for >= 25x on 8x H100 Llama-3.1-70B). Where the two models price one configuration more than 15 %
apart (TPOT or throughput), the nearest published measurement of the same model family on the same
GPU at the same TP (benchmarks/data/benchmarks.csv, latency.csv; closest ISL/OSL/batch) is printed
beside both predictions. Nothing is fitted.

``--published`` instead prices published closed-loop measurements (a stated number of clients; the
sources in ``PUBLISHED_SETUPS``) with both models: ours as ``benchmarks/fidelity.py`` prices the row
(``serve_at_concurrency``), the peer's ``cli estimate --estimate-mode agg`` at that batch, and prints
each figure beside the measurement and each model's error per metric.

The peer is run, not imported: its executable is ``$AIC_BIN`` (default ``aiconfigurator`` on PATH).
Install it with ``pip install '.[peer]'`` into its own virtual environment (it pulls large
dependencies) and point AIC_BIN at that environment's ``bin/aiconfigurator``. Without it the script
prints how to install it and exits 2. A report, not a test: the exit code is 0 whatever the figures.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from tabulate import tabulate

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))

from benchmarks.peer_published import TPOT_METRICS, TPUT_METRICS, TTFT_METRICS, nearest_published, published_rows  # noqa: E402
from benchmarks.startup import ENTRY, bytecode_cache_environment  # noqa: E402
from costmodels import calibration as cal  # noqa: E402
from costmodels.hardware import get_gpu  # noqa: E402
from costmodels.models import get_model  # noqa: E402
from costmodels.serving import effective_strategy  # noqa: E402
from costmodels.strategy import Strategy  # noqa: E402
from planner import evaluation  # noqa: E402
from topologies.errors import InputError  # noqa: E402

DISAGREE = 0.15  # |ratio - 1| above which the two models are said to disagree on one configuration
TARGET_RATIO = 0.95  # issue 13: our pick, priced by the peer, vs the peer's best
TARGET_SPEEDUP = 25.0  # issue 13: plan-search at least this much faster than the peer's `cli default`
INSTALL_HINT = ("peer_compare.py: aiconfigurator is not runnable; install it into its own venv "
                "(python -m venv aic && aic/bin/pip install '.[peer]') and set AIC_BIN=aic/bin/aiconfigurator")


@dataclass(frozen=True)
class Scenario:
    """One side-by-side question: model, 8 GPUs of one kind, workload, limits and precision."""

    name: str
    model: str  # plan-search built-in model
    aic_model: str  # the peer's HF model path (its bundled config)
    topology: str
    max_gpus: int
    system: str  # the peer's system name
    isl: int
    osl: int
    ttft_ms: float
    tpot_ms: float
    weight_dtype: str  # passed to plan-search; the peer infers the same from the checkpoint
    kv_dtype: str
    gpu: str  # catalog / data-file GPU name
    families: tuple[str, ...]  # model names in the data files, nearest family first


SCENARIOS = (
    Scenario("llama70b-h100-tpot30", "llama-3.1-70b", "meta-llama/Meta-Llama-3.1-70B", "dgx-h100x1", 8,
             "h100_sxm", 2048, 256, 2000, 30, "bf16", "bf16", "H100-SXM-80GB",
             ("Llama-3.1-70B", "Llama-3.3-70B", "Llama-2-70B", "Llama-2-70b")),
    Scenario("llama70b-h100-tpot16", "llama-3.1-70b", "meta-llama/Meta-Llama-3.1-70B", "dgx-h100x1", 8,
             "h100_sxm", 2048, 256, 2000, 16, "bf16", "bf16", "H100-SXM-80GB",
             ("Llama-3.1-70B", "Llama-3.3-70B", "Llama-2-70B", "Llama-2-70b")),
    Scenario("llama70b-h100-tpot10", "llama-3.1-70b", "meta-llama/Meta-Llama-3.1-70B", "dgx-h100x1", 8,
             "h100_sxm", 2048, 256, 2000, 10, "bf16", "bf16", "H100-SXM-80GB",
             ("Llama-3.1-70B", "Llama-3.3-70B", "Llama-2-70B", "Llama-2-70b")),
    Scenario("llama8b-h100-tpot10", "llama-3.1-8b", "meta-llama/Meta-Llama-3.1-8B", "dgx-h100x1", 8,
             "h100_sxm", 2048, 256, 2000, 10, "bf16", "bf16", "H100-SXM-80GB",
             ("Llama-3.1-8B",)),
    Scenario("qwen3-32b-h200-tpot30", "qwen3-32b", "Qwen/Qwen3-32B", "hgx-h200x2", 8,
             "h200_sxm", 2048, 256, 2000, 30, "bf16", "bf16", "H200-SXM-141GB", ("Qwen3-32B",)),
    Scenario("qwen3-235b-fp8-h200-tpot30", "qwen3-235b-a22b", "Qwen/Qwen3-235B-A22B-FP8", "hgx-h200x2", 8,
             "h200_sxm", 2048, 256, 2000, 30, "fp8", "fp8", "H200-SXM-141GB", ("Qwen3-235B-A22B",)),
)


@dataclass
class Config:
    """A unified replica shape in plan-search's terms: tp = GPUs per stage, batch = whole replica."""

    tp: int
    pp: int = 1
    ep: int = 1
    attention_dp: int = 1
    batch: int = 1
    replicas: int = 1
    ctx_tokens: int | None = None  # TensorRT-LLM max_num_tokens (the peer's context-token budget)

    @property
    def gpus(self) -> int:
        return self.tp * self.pp * self.replicas

    def label(self) -> str:
        moe = f" ep{self.ep}" if self.ep > 1 else ""
        adp = f" adp{self.attention_dp}" if self.attention_dp > 1 else ""
        return f"tp{self.tp} pp{self.pp}{moe}{adp} b{self.batch} x{self.replicas}"


@dataclass
class Price:
    """One model's figures for one configuration (None where it could not price it)."""

    tok_s_gpu: float | None = None
    ttft_ms: float | None = None
    tpot_ms: float | None = None
    error: str | None = None

    def meets(self, sc: Scenario) -> bool | None:
        if self.tpot_ms is None or self.ttft_ms is None:
            return None
        return self.ttft_ms <= sc.ttft_ms and self.tpot_ms <= sc.tpot_ms


@dataclass
class Pick:
    """A tool's chosen plan (groups of replicas) with its wall time, or why there is none."""

    configs: list[Config] = field(default_factory=list)
    wall_s: float = 0.0
    search_s: float | None = None  # the peer's own "All experiments completed in" figure
    own: Price | None = None  # the picking tool's figures for its own pick
    note: str | None = None


# --------------------------------------------------------------------------------------- running


def _run(cmd: list[str], timeout_s: float = 900, env: dict[str, str] | None = None) -> tuple[int, str, str, float]:
    """Run a command from the checkout; return (exit code, stdout, stderr, wall seconds)."""
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s, env=env)
    return p.returncode, p.stdout, p.stderr, time.perf_counter() - t0


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and "eprecat" not in ln and "sys.exit" not in ln]
    return lines[-1][:200] if lines else "(no output)"


def aic_runnable(aic_bin: str | None) -> bool:
    """The peer's executable exists and answers ``--help`` (what the rest of the script relies on)."""
    if not aic_bin:
        return False
    try:
        return subprocess.run([aic_bin, "cli", "--help"], capture_output=True, timeout=120).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _ps_common(sc: Scenario) -> list[str]:
    return ["-m", sc.model, "-t", sc.topology, "--runtime", "trtllm", "--weight-dtype", sc.weight_dtype,
            "--kv-dtype", sc.kv_dtype, "--isl", str(sc.isl), "--osl", str(sc.osl)]


def ps_search(sc: Scenario) -> Pick:
    """plan-search's unified pick for the scenario, timed as one process of the installed program.

    The process runs the ``plan-search`` entry point (``planner.entry:main``) with its byte code cached,
    as ``pip install`` leaves a package (and as the peer runs from its own installed environment): a
    checkout run with ``python -m planner.cli``, or under ``PYTHONDONTWRITEBYTECODE``, compiles every
    module from source on each run, which no installed ``plan-search`` does. One untimed run fills the
    cache first; ``benchmarks/startup.py`` times its commands the same way.
    """
    cmd = [sys.executable, "-c", ENTRY, "search", *_ps_common(sc), "--ttft-ms", str(sc.ttft_ms),
           "--tpot-ms", str(sc.tpot_ms), "--max-gpus", str(sc.max_gpus), "--disaggregation", "off", "--json", "-q"]
    with tempfile.TemporaryDirectory(prefix="peer_compare_pycache_") as tmp:
        env = bytecode_cache_environment(tmp)
        _run(cmd, env=env)
        rc, out, err, wall = _run(cmd, env=env)
    if rc != 0:
        return Pick(wall_s=wall, note=_last_line(err))
    plan = json.loads(out)
    configs = []
    for g in plan["replica_groups"]:
        s = g["strategy"]
        configs.append(Config(tp=s["tp"], pp=s["pp"], ep=s["ep"], attention_dp=s["attention_dp"],
                              batch=s["batch_size"], replicas=len(g["replicas"]), ctx_tokens=s["max_num_batched_tokens"]))
    t = plan["totals"]
    own = Price(tok_s_gpu=t["output_tokens_per_s_per_gpu"], ttft_ms=t["ttft_ms"], tpot_ms=t["tpot_ms"])
    return Pick(configs=configs, wall_s=wall, own=own)


def ps_evaluate(sc: Scenario, c: Config, *, host_overlap: bool | None = None) -> Price:
    """Our model's figures for one configuration, its token budget included (planner.evaluation.evaluate);
    ``host_overlap=False`` prices an engine release that does not overlap host work with the GPU.

    The budget equal to the default (8,192) means "the runtime's own default" to the cost model,
    which then prices trtllm-bench's derived budget; an explicit 8,192 is priced as 8,193 to keep it.
    """
    budget = c.ctx_tokens or cal.DEFAULT_MAX_NUM_BATCHED_TOKENS
    if budget == cal.DEFAULT_MAX_NUM_BATCHED_TOKENS and c.ctx_tokens:
        budget += 1
    try:
        r = evaluation.evaluate(topology=sc.topology, model=sc.model, tp=c.tp, pp=c.pp, ep=c.ep, attention_dp=c.attention_dp,
                         batch=c.batch, isl=sc.isl, osl=sc.osl, weight_dtype=sc.weight_dtype, kv_dtype=sc.kv_dtype,
                         runtime="trtllm", max_num_batched_tokens=budget, host_overlap=host_overlap).as_dict()
    except InputError as e:
        return Price(error=str(e))
    if not r["fits"]:
        return Price(error=f"does not fit: {r['reason'] or 'memory'}")
    return Price(tok_s_gpu=r["output_tokens_per_s_per_gpu"], ttft_ms=r["ttft_ms"], tpot_ms=r["tpot_ms"])


def our_budget(sc: Scenario, c: Config) -> int:
    """The token budget plan-search launches TensorRT-LLM with for this shape: trtllm-bench's, derived
    from the largest batch that fits (``costmodels.serving.effective_strategy``)."""
    s = Strategy(tp=c.tp, pp=c.pp, ep=c.ep, attention_dp=c.attention_dp, weight_dtype=sc.weight_dtype,
                 kv_dtype=sc.kv_dtype, runtime="trtllm")
    return effective_strategy(get_model(sc.model), get_gpu(sc.gpu), s, isl=sc.isl, osl=sc.osl).max_num_batched_tokens


def _aic_shape(c: Config, *, moe: bool) -> list[str]:
    """Our shape in the peer's flags: attention tp x dp = expert tp x ep = GPUs per stage; bs per dp rank.
    For an MoE model the expert split is always given (the peer needs it even without EP)."""
    args = ["--tp", str(c.tp // c.attention_dp), "--pp", str(c.pp), "--batch-size", str(max(1, c.batch // c.attention_dp))]
    if c.attention_dp > 1:
        args += ["--dp", str(c.attention_dp)]
    if moe or c.ep > 1 or c.attention_dp > 1:
        args += ["--moe-tp-size", str(c.tp // c.ep), "--moe-ep-size", str(c.ep)]
    if c.ctx_tokens:
        args += ["--ctx-tokens", str(c.ctx_tokens)]
    return args


_EST = {"ttft_ms": r"^\s*TTFT:\s*([\d.,]+)\s*ms", "tpot_ms": r"^\s*TPOT:\s*([\d.,]+)\s*ms",
        "tok_s_gpu": r"^\s*tokens/s/gpu:\s*([\d.,]+)"}


def aic_estimate(aic_bin: str, sc: Scenario, c: Config, extra: tuple[str, ...] = ()) -> Price:
    """The peer's figures for one configuration (``cli estimate --estimate-mode agg``); ``extra``: more
    of its flags (the quantisation modes of a checkpoint it would read as 16-bit)."""
    cmd = [aic_bin, "cli", "estimate", "--model-path", sc.aic_model, "--system", sc.system, "--backend", "trtllm",
           "--estimate-mode", "agg", "--isl", str(sc.isl), "--osl", str(sc.osl), *_aic_shape(c, moe=get_model(sc.model).is_moe),
           *extra]
    rc, out, err, _ = _run(cmd)
    found = {k: re.search(rx, out, re.M) for k, rx in _EST.items()}
    if rc != 0 or not all(found.values()):
        return Price(error=_last_line(err or out))
    return Price(**{k: float(m.group(1).replace(",", "")) for k, m in found.items()})


def aic_default(aic_bin: str, sc: Scenario) -> Pick:
    """The peer's best aggregated pick (first row of its best_config_topn.csv), timed as one process."""
    with tempfile.TemporaryDirectory(prefix="peer_compare_") as tmp:
        cmd = [aic_bin, "cli", "default", "--model-path", sc.aic_model, "--total-gpus", str(sc.max_gpus),
               "--system", sc.system, "--isl", str(sc.isl), "--osl", str(sc.osl), "--ttft", str(sc.ttft_ms),
               "--tpot", str(sc.tpot_ms), "--backend", "trtllm", "--serving-mode", "agg", "--save-dir", tmp]
        rc, out, err, wall = _run(cmd)
        m = re.search(r"All experiments completed in ([\d.]+) seconds", out + err)
        search_s = float(m.group(1)) if m else None
        rows = [r for f in sorted(Path(tmp).rglob("agg/best_config_topn.csv")) for r in csv.DictReader(f.open())]
    if rc != 0 or not rows:
        return Pick(wall_s=wall, search_s=search_s, note="no configuration meets the limits" if rc == 0 else _last_line(err))
    r = rows[0]
    per_worker = int(r["num_total_gpus"])
    dp = int(r["dp"])
    c = Config(tp=int(r["tp"]) * dp, pp=int(r["pp"]), ep=int(r["moe_ep"]), attention_dp=dp, batch=int(r["global_bs"]),
               replicas=sc.max_gpus // per_worker, ctx_tokens=int(r["ctx_tokens"]))
    own = Price(tok_s_gpu=float(r["tokens/s/gpu"]), ttft_ms=float(r["ttft"]), tpot_ms=float(r["tpot"]))
    prec = f"gemm {r['gemm']}, kv {r['kvcache']}"
    return Pick(configs=[c], wall_s=wall, search_s=search_s, own=own, note=prec)


def combine(prices: list[Price], configs: list[Config]) -> Price:
    """One plan's figures from its groups: throughput per GPU over all its GPUs, the worst TTFT and TPOT."""
    bad = [p.error for p in prices if p.error]
    if bad:
        return Price(error=bad[0])
    gpus = sum(c.gpus for c in configs)
    return Price(tok_s_gpu=sum(p.tok_s_gpu * c.gpus for p, c in zip(prices, configs, strict=True)) / gpus,
                 ttft_ms=max(p.ttft_ms for p in prices), tpot_ms=max(p.tpot_ms for p in prices))


def disagreements(rows: list[dict], sc: Scenario, who: str, c: Config, ours: Price, peer: Price) -> list[dict]:
    """Where our model and the peer's price the same configuration > 15 % apart (TPOT, throughput,
    and TTFT): both figures and the nearest published measurement of that quantity."""
    out = []
    if ours.error or peer.error:
        return out
    for what, a, b, metrics in (("TPOT ms", ours.tpot_ms, peer.tpot_ms, TPOT_METRICS),
                                ("tok/s/GPU", ours.tok_s_gpu, peer.tok_s_gpu, TPUT_METRICS),
                                ("TTFT ms", ours.ttft_ms, peer.ttft_ms, TTFT_METRICS)):
        ratio = a / b if b else math.inf
        if abs(ratio - 1) > DISAGREE:
            out.append({"scenario": sc.name, "pick": who, "config": c.label(), "quantity": what,
                        "ours": a, "peer": b, "ours_over_peer": round(ratio, 3),
                        "published": nearest_published(rows, sc, c, metrics)})
    return out


_FIELD = {"TPOT ms": "tpot_ms", "tok/s/GPU": "tok_s_gpu", "TTFT ms": "ttft_ms"}
TRTLLM_DEFAULT_MAX_NUM_TOKENS = 8192  # trtllm-serve's --max_num_tokens default


def price_published(aic_bin: str, sc: Scenario, found: list[dict]) -> None:
    """Price the set-up of each nearest published row with both models, so the measurement can be
    compared with predictions of the very configuration it measured. Only rows of the scenario's own
    model and precision with a known concurrency (stated, or by Little's law) are priced; the
    concurrency is the batch, the token budget trtllm-serve's default, and our model prices the
    engine the row ran (whether it overlapped host work, ``published.host_overlap``). Adds
    ``published.priced``."""
    cache: dict[tuple, tuple[Price, Price]] = {}
    for d in found:
        p = d["published"]
        if not p or not p["concurrency"] or p["model"] != sc.families[0] or p["precision"].lower() != sc.weight_dtype:
            continue
        key = (p["tp"], p["isl"], p["osl"], p["concurrency"], p["host_overlap"])
        if key not in cache:
            at = replace(sc, isl=p["isl"], osl=p["osl"])
            c = Config(tp=p["tp"], batch=p["concurrency"], ctx_tokens=TRTLLM_DEFAULT_MAX_NUM_TOKENS)
            cache[key] = (ps_evaluate(at, c, host_overlap=p["host_overlap"]), aic_estimate(aic_bin, at, c))
        ours, peer = cache[key]
        f = _FIELD[d["quantity"]]
        p["priced"] = {"ours": getattr(ours, f), "peer": getattr(peer, f)}


# ---------------------------------------------------------------------------------------- report


def compare(aic_bin: str, sc: Scenario, rows: list[dict]) -> dict:
    """Both picks, each priced by both models, the target ratio, wall times and disagreements."""
    ours, theirs = ps_search(sc), aic_default(aic_bin, sc)
    ours_by_peer = combine([aic_estimate(aic_bin, sc, c) for c in ours.configs], ours.configs) if ours.configs else None
    theirs_by_ours = combine([ps_evaluate(sc, c) for c in theirs.configs], theirs.configs) if theirs.configs else None
    ratio = None
    if ours_by_peer and theirs.own and ours_by_peer.tok_s_gpu is not None:
        ratio = ours_by_peer.tok_s_gpu / theirs.own.tok_s_gpu
    found = []
    if len(ours.configs) == 1 and ours_by_peer:
        found += disagreements(rows, sc, "plan-search", ours.configs[0], ours.own, ours_by_peer)
    if theirs.configs and theirs_by_ours:
        found += disagreements(rows, sc, "peer", theirs.configs[0], theirs_by_ours, theirs.own)
    price_published(aic_bin, sc, found)
    # the peer's pick at the token budget plan-search launches TensorRT-LLM with for that batch, by both models:
    # the peer's TPOT depends on the budget (it counts n - 3 of the n prompt-carrying steps in it), ours barely
    same = [replace(c, ctx_tokens=our_budget(sc, c)) for c in theirs.configs]
    theirs_same_budget = {"ctx_tokens": [c.ctx_tokens for c in same],
                          "by_peer": asdict(combine([aic_estimate(aic_bin, sc, c) for c in same], same)) if same else None,
                          "by_ours": asdict(combine([ps_evaluate(sc, c) for c in same], same)) if same else None}
    return {
        "scenario": asdict(sc),
        "plan_search": {"pick": [asdict(c) for c in ours.configs], "note": ours.note, "wall_s": round(ours.wall_s, 2),
                        "by_ours": ours.own and asdict(ours.own), "by_peer": ours_by_peer and asdict(ours_by_peer)},
        "peer": {"pick": [asdict(c) for c in theirs.configs], "note": theirs.note, "wall_s": round(theirs.wall_s, 2),
                 "search_s": theirs.search_s, "by_peer": theirs.own and asdict(theirs.own),
                 "by_ours": theirs_by_ours and asdict(theirs_by_ours), "at_our_budget": theirs_same_budget},
        "meets": {"ours_by_ours": ours.own and ours.own.meets(sc), "ours_by_peer": ours_by_peer and ours_by_peer.meets(sc),
                  "peer_by_peer": theirs.own and theirs.own.meets(sc), "peer_by_ours": theirs_by_ours and theirs_by_ours.meets(sc)},
        "ours_by_peer_over_peer_best": ratio and round(ratio, 3),
        "target_met": bool(ratio is not None and ratio >= TARGET_RATIO and ours_by_peer.meets(sc)),
        "wall_ratio_peer_over_ours": round(theirs.wall_s / ours.wall_s, 1) if ours.wall_s else None,
        "disagreements": found,
    }


def _fmt(p: dict | None, sc: dict) -> str:
    if not p:
        return "-"
    if p.get("error"):
        return f"n/a: {p['error'][:60]}"
    ok = p["ttft_ms"] <= sc["ttft_ms"] and p["tpot_ms"] <= sc["tpot_ms"]
    return f"{p['tok_s_gpu']:.1f}; {p['ttft_ms']:.0f} / {p['tpot_ms']:.2f} {'ok' if ok else 'MISSES'}"


def _picks(side: dict) -> str:
    return ", ".join(Config(**c).label() for c in side["pick"]) or f"none ({(side['note'] or '')[:70]})"


def print_report(results: list[dict]) -> None:
    """The human-readable tables: picks and cross-pricing, then the disagreements."""
    head = ["scenario", "tool", "pick (b = batch/replica, xN replicas)", "our model: tok/s/GPU; TTFT / TPOT ms",
            "peer model: tok/s/GPU; TTFT / TPOT ms", "wall s"]
    body = []
    for r in results:
        sc, ps, pe = r["scenario"], r["plan_search"], r["peer"]
        body.append([sc["name"], "plan-search", _picks(ps), _fmt(ps["by_ours"], sc), _fmt(ps["by_peer"], sc), ps["wall_s"]])
        search = f" (search {pe['search_s']:.1f})" if pe["search_s"] else ""
        body.append(["", "AIC 0.12.0", _picks(pe), _fmt(pe["by_ours"], sc), _fmt(pe["by_peer"], sc), f"{pe['wall_s']}{search}"])
    print(tabulate(body, head, tablefmt="github", disable_numparse=True))
    print()
    summ = [[r["scenario"]["name"], f"TTFT<={r['scenario']['ttft_ms']:g} TPOT<={r['scenario']['tpot_ms']:g}",
             f"{r['scenario']['weight_dtype']}/{r['scenario']['kv_dtype']} ({r['peer']['note'] or '-'})",
             r["ours_by_peer_over_peer_best"] if r["ours_by_peer_over_peer_best"] is not None else "-",
             "yes" if r["target_met"] else "no", r["wall_ratio_peer_over_ours"]] for r in results]
    print(tabulate(summ, ["scenario", "limits ms", "weights/KV (peer's modes)", "ours by peer / peer best",
                          f">= {TARGET_RATIO} and meets", "wall AIC / plan-search"], tablefmt="github", disable_numparse=True))
    print()
    same = [[r["scenario"]["name"], _picks(r["peer"]), ", ".join(str(c.get("ctx_tokens")) for c in r["peer"]["pick"]),
             _fmt(r["peer"]["by_peer"], r["scenario"]), ", ".join(map(str, r["peer"]["at_our_budget"]["ctx_tokens"])),
             _fmt(r["peer"]["at_our_budget"]["by_peer"], r["scenario"]), _fmt(r["peer"]["at_our_budget"]["by_ours"], r["scenario"])]
            for r in results if r["peer"]["pick"]]
    print("The peer's pick at its own token budget and at the one plan-search launches TensorRT-LLM with for that batch:")
    print(tabulate(same, ["scenario", "peer's pick", "its budget", "peer model there", "our budget",
                          "peer model at ours", "our model at ours"], tablefmt="github", disable_numparse=True))
    found = [d for r in results for d in r["disagreements"]]
    print()
    if not found:
        print("The two models price every compared configuration within 15 % of each other.")
        return
    rows = []
    for d in found:
        p = d["published"]
        conc = "?" if not p or not p["concurrency"] else (
            f"~{p['concurrency']}" if p["concurrency_from"] == "Little's law" else str(p["concurrency"]))
        pub = (f"{p['value']:g} {p['metric']} ({p['source']}: {p['model']} {p['precision']} tp{p['tp']} "
               f"{p['isl']}/{p['osl']} conc {conc})") if p else "no published row (same family and GPU)"
        if p and p.get("priced") and None not in p["priced"].values():
            pub += f"; that set-up priced: ours {p['priced']['ours']:.4g}, peer {p['priced']['peer']:.4g}"
        rows.append([d["scenario"], d["pick"], d["config"], d["quantity"], f"{d['ours']:.2f}", f"{d['peer']:.2f}",
                     d["ours_over_peer"], pub])
    print(f"Configurations the two models price more than {DISAGREE:.0%} apart, with the nearest published measurement "
          "(conc ~N: concurrency by Little's law from the run's req/s, TTFT and ITL):")
    print(tabulate(rows, ["scenario", "pick", "config", "quantity", "ours", "peer", "ours/peer", "nearest published"],
                   tablefmt="github", disable_numparse=True))


#: Published closed-loop sources both models can price, by source id: the peer's checkpoint for the
#: row's model (same architecture), its system for the row's GPU, and its flags for the row's precision
#: (FP8 weights and KV cache; the checkpoint itself is 16-bit).
PUBLISHED_SETUPS = {
    "NIM_LLAMA33_70B_H100_V180": ("meta-llama/Meta-Llama-3.1-70B", "h100_sxm",
                                  ("--gemm-quant-mode", "fp8", "--kvcache-quant-mode", "fp8")),
}
_PUBLISHED_METRICS = {"ttft_ms_mean": "ttft_ms", "itl_ms_mean": "tpot_ms", "total_output_tok_per_s": "tok_s_gpu"}


def published_closed_loop(aic_bin: str) -> list[dict]:
    """Every row of a ``PUBLISHED_SETUPS`` source with a stated concurrency, priced by both models."""
    from benchmarks.fidelity_predict import Predictor
    from benchmarks.fidelity_rows import read_rows

    ours, peer_cache, out = Predictor(), {}, []
    for row in read_rows(ROOT / "benchmarks" / "data" / "latency.csv"):
        if (row.source_id not in PUBLISHED_SETUPS or row.metric not in _PUBLISHED_METRICS or not row.concurrency
                or (row.dp or 1) != 1):  # one replica: its clients are the peer's batch
            continue
        checkpoint, system, flags = PUBLISHED_SETUPS[row.source_id]
        key = (row.source_id, row.isl, row.osl, row.tp, row.concurrency)
        if key not in peer_cache:
            sc = Scenario(row.source_id, row.model.lower(), checkpoint, "", row.num_gpus, system, row.isl, row.osl,
                          0, 0, "", "", row.gpu, (row.model,))
            peer_cache[key] = aic_estimate(aic_bin, sc, Config(tp=row.tp, batch=row.concurrency), flags)
        peer = peer_cache[key]
        value = getattr(peer, _PUBLISHED_METRICS[row.metric])
        if value is not None and row.metric == "total_output_tok_per_s":
            value *= row.num_gpus
        out.append({"source": row.source_id, "model": row.model, "precision": row.precision, "tp": row.tp,
                    "isl": row.isl, "osl": row.osl, "concurrency": row.concurrency, "metric": row.metric,
                    "measured": row.value, "ours": ours.predict(row).predicted, "peer": value, "peer_error": peer.error})
    return out


def print_published(found: list[dict]) -> None:
    """Each measurement beside both predictions, then each model's MAPE per metric over the rows both price."""
    def cell(pred: float | None, meas: float) -> str:
        return "-" if pred is None else f"{pred:.4g} ({pred / meas - 1:+.0%})"
    body = [[f["source"], f"{f['model']} {f['precision']} tp{f['tp']}", f"{f['isl']}/{f['osl']}", f["concurrency"],
             f["metric"], f"{f['measured']:g}", cell(f["ours"], f["measured"]), cell(f["peer"], f["measured"])]
            for f in found]
    print(tabulate(body, ["source", "set-up", "isl/osl", "clients", "metric", "measured", "ours", "peer"],
                   tablefmt="github", disable_numparse=True))
    print()
    summary = []
    for metric in _PUBLISHED_METRICS:
        both = [f for f in found if f["metric"] == metric and f["ours"] is not None and f["peer"] is not None]
        if both:
            mape = [sum(abs(f[who] - f["measured"]) / f["measured"] for f in both) / len(both) for who in ("ours", "peer")]
            summary.append([metric, len(both), f"{mape[0]:.1%}", f"{mape[1]:.1%}"])
    print(tabulate(summary, ["metric", "rows both price", "MAPE ours", "MAPE peer"], tablefmt="github",
                   disable_numparse=True))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="peer_compare.py", description=__doc__.strip().splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    ap.add_argument("--scenario", action="append", choices=[s.name for s in SCENARIOS],
                    help="run only this scenario (repeatable; default: all)")
    ap.add_argument("--published", action="store_true",
                    help="price the published closed-loop measurements of PUBLISHED_SETUPS with both models instead")
    args = ap.parse_args(argv)
    aic_bin = os.environ.get("AIC_BIN") or shutil.which("aiconfigurator")
    if not aic_runnable(aic_bin):
        print(INSTALL_HINT, file=sys.stderr)
        return 2
    if args.published:
        found = published_closed_loop(aic_bin)
        if args.json:
            print(json.dumps({"published": found}, indent=2, sort_keys=True))
        else:
            print_published(found)
        return 0
    rows = published_rows()
    chosen = [s for s in SCENARIOS if not args.scenario or s.name in args.scenario]
    results = [compare(aic_bin, sc, rows) for sc in chosen]
    if args.json:
        print(json.dumps({"aic_bin": "AIC_BIN" if os.environ.get("AIC_BIN") else "aiconfigurator",
                          "target_ratio": TARGET_RATIO, "target_speedup": TARGET_SPEEDUP, "scenarios": results},
                         indent=2, sort_keys=True))
    else:
        print_report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
