"""Running a sweep: resolving each topology and model once, one ``search`` per row, in this
process, in local worker processes or as Ray tasks; rows come back in grid order.
"""
from __future__ import annotations

import itertools
import os
import signal
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from planner.sweep.spec import RESULT_COLUMNS, STATUSES, Sweep
from topologies.errors import InfeasibleError, InputError, PlanSearchError, SolveTimeout

RAY_LOCAL_OBJECT_STORE_BYTES = 80 * 1024 * 1024  # rows are small; Ray's minimum is 75 MiB


# -- resolving topologies and models (once, in the driver) ----------------------------------------

def _topology_path(value: str, folder: Path) -> Path | None:
    """The file a topology value names (relative to the sweep's folder), or None for a built-in name.

    Mirrors :func:`topologies.load.load_topology`: a value with a ``/`` or a YAML/JSON suffix is a path.
    """
    if "/" not in value and not value.endswith((".yaml", ".yml", ".json")):
        return None
    p = Path(value).expanduser()
    return p if p.is_absolute() else folder / p


def _model_path(value: str, folder: Path) -> Path | None:
    from costmodels.models import builtin_model_names, normalize_model_name

    if normalize_model_name(value) in builtin_model_names():
        return None
    p = Path(value).expanduser()
    if p.is_absolute():
        return p
    q = folder / p
    return q if q.exists() or value.endswith(".json") else None


@dataclass(frozen=True)
class _TopologyPayload:
    """What a worker needs to rebuild a topology without reading any file."""

    spec: Any  # topologies.schema.TopologySpec
    sha256: str
    source: str


def resolve_topology(value: str, folder: Path) -> _TopologyPayload:
    from topologies.load import load_topology

    path = _topology_path(value, folder)
    spec, sha = load_topology(path if path is not None else value)
    return _TopologyPayload(spec=spec, sha256=sha, source=value)


def resolve_model(value: str, folder: Path):
    from planner.api import model_of  # as search resolves it (a config.json in "." is named after the folder)

    path = _model_path(value, folder)
    return model_of(path if path is not None else value)


# -- running one row -----------------------------------------------------------------------------

_TOPOLOGY_CACHE: dict[tuple[str, str], Any] = {}


def _topology(payload: _TopologyPayload):
    from topologies.graph import Topology

    key = (payload.sha256, payload.source)
    topo = _TOPOLOGY_CACHE.get(key)
    if topo is None:
        if len(_TOPOLOGY_CACHE) >= 32:
            _TOPOLOGY_CACHE.clear()
        topo = _TOPOLOGY_CACHE[key] = Topology(payload.spec, payload.sha256, source=payload.source)
    return topo


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def replica_groups_summary(plan) -> str:
    """``H100-SXM-80GB tp=2 pp=2 batch=105 x4``, one per replica group, joined by ``; ``; a pool's
    groups name their role (``H100-SXM-80GB decode tp=4 pp=1 batch=355 x2``)."""
    parts = []
    for g in plan.replica_groups:
        s = g.strategy
        role = "" if g.role == "unified" else f" {g.role}"
        ep = (f" ep={s.ep}" if s.ep > 1 else "") + (f" attention_dp={s.attention_dp}" if s.attention_dp > 1 else "")
        parts.append(f"{g.gpu_label}{role} tp={s.tp} pp={s.pp}{ep} batch={s.batch_size} x{s.dp}")
    return "; ".join(parts)


def _empty_result(status: str, message: str) -> dict[str, Any]:
    row: dict[str, Any] = {k: None for k in RESULT_COLUMNS}
    row["status"], row["message"] = status, message
    return row


def plan_result(plan) -> dict[str, Any]:
    """The result columns of an ok row."""
    t = plan.totals
    return {"status": "ok", "message": None, "gpus_used": t.gpus_used, "output_tokens_per_s": t.output_tokens_per_s,
            "output_tokens_per_s_per_gpu": t.output_tokens_per_s_per_gpu, "requests_per_s": t.requests_per_s,
            "plan_ttft_ms": t.ttft_ms, "plan_tpot_ms": t.tpot_ms, "replica_groups": replica_groups_summary(plan),
            "cost_per_hour": t.cost_per_hour,
            "solver_status": plan.solver.status, "solver_gap": plan.solver.gap}


def run_point(args: dict[str, Any], topology, model) -> dict[str, Any]:
    """One ``search`` for one row's request; returns the result columns, never raises
    (except ``KeyboardInterrupt``). ``topology`` is a resolved payload, Topology or name."""
    from planner import api

    kwargs = {k: v for k, v in args.items() if k not in ("topology", "model")}
    for k in ("weight_dtype", "kv_dtype"):
        if kwargs.get(k) == "auto":
            kwargs[k] = None
    try:
        if isinstance(topology, _TopologyPayload):  # inside the try: a topology that parses but cannot
            topology = _topology(topology)          # be built fails its own rows, not the sweep
        plan = api.search(topology=topology, model=model, workers=1, **kwargs)
    except SolveTimeout as e:
        return _empty_result("timeout", _first_line(str(e)))
    except InfeasibleError as e:
        return _empty_result("infeasible", _first_line(str(e)))
    except InputError as e:
        return _empty_result("bad-input", _first_line(str(e)))
    except PlanSearchError as e:
        return _empty_result("bad-input" if e.exit_code == 2 else "infeasible", _first_line(str(e)))
    except Exception as e:  # a bug in one row must not lose the others; the row says what happened
        return _empty_result("error", _first_line(f"{type(e).__name__}: {e}"))
    return plan_result(plan)


# Local worker processes get the resolved topologies and models once, at start.
_WORKER_TABLES: dict[str, dict] = {}


def _worker_init(topologies: dict, models: dict) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C belongs to the parent, which stops the pool
    _WORKER_TABLES["topologies"] = topologies
    _WORKER_TABLES["models"] = models


def _worker_point(index: int, args: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    return index, run_point(args, _WORKER_TABLES["topologies"][args["topology"]],
                            _WORKER_TABLES["models"][args["model"]])


def _ray_point(args: dict[str, Any], topology: _TopologyPayload, model) -> dict[str, Any]:
    return run_point(args, topology, model)


def request_cells(point: dict[str, Any]) -> dict[str, Any]:
    """A row's request as table cells: prices as the ``--price`` flags write them, sorted by GPU."""
    prices = point.get("price_per_gpu_hour")
    if prices is None:
        return dict(point)
    return {**point, "price_per_gpu_hour": " ".join(f"{k}={v!r}" for k, v in sorted(prices.items()))}


# -- running a sweep -----------------------------------------------------------------------------

@dataclass
class SweepResult:
    sweep: Sweep
    rows: list[dict[str, Any]]  # one per point, grid order, every column of COLUMNS
    wall_time_s: float
    backend: str  # e.g. "2 local processes", "Ray at auto"

    def counts(self) -> dict[str, int]:
        c = {s: 0 for s in STATUSES}
        for r in self.rows:
            c[r["status"]] += 1
        return c


Progress = Callable[[int, int, dict[str, int]], None]


def cpu_count() -> int:
    """The CPUs this process may run on (not the machine's, where a container or affinity limits it)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def require_ray():
    """Import Ray, or refuse in one line naming the fix."""
    try:
        import ray
    except ImportError:
        raise InputError("--ray-address needs Ray: pip install 'plan-search[ray]'") from None
    return ray


def run_sweep(sweep: Sweep, *, jobs: int | None = None, ray_address: str | None = None,
              progress: Progress | None = None) -> SweepResult:
    """Run every row of ``sweep``: in this process (``jobs=1``), in ``jobs`` local processes
    (default: one per CPU), or as Ray tasks when ``ray_address`` is given (``auto``,
    ``ray://HOST:PORT``, ``HOST:PORT``, or ``local`` to start a local instance of ``jobs`` CPUs)."""
    t0 = time.perf_counter()
    if ray_address is not None:
        ray = require_ray()
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise InputError(f"must be a positive integer, got {jobs!r}", source="--jobs")
    n = len(sweep.points)
    results: list[dict[str, Any] | None] = [None] * n
    counts = {s: 0 for s in STATUSES}

    def finish(i: int, result: dict[str, Any]) -> None:
        results[i] = result
        counts[result["status"]] += 1
        if progress is not None:
            progress(sum(counts.values()), n, dict(counts))

    # Resolve each distinct topology and model once; a bad one makes its rows bad-input.
    topologies: dict[str, Any] = {}
    models: dict[str, Any] = {}
    for table, key, resolve in ((topologies, "topology", resolve_topology), (models, "model", resolve_model)):
        for p in sweep.points:
            v = p[key]
            if v not in table:
                try:
                    table[v] = resolve(v, sweep.folder)
                except PlanSearchError as e:
                    table[v] = e
    pending: list[int] = []
    for i, p in enumerate(sweep.points):
        bad = next((x for x in (topologies[p["topology"]], models[p["model"]]) if isinstance(x, PlanSearchError)), None)
        if bad is not None:
            finish(i, _empty_result("bad-input", _first_line(str(bad))))
        else:
            pending.append(i)
    ok_topologies = {k: v for k, v in topologies.items() if not isinstance(v, PlanSearchError)}
    ok_models = {k: v for k, v in models.items() if not isinstance(v, PlanSearchError)}

    if ray_address is not None:
        backend = _run_ray(ray, ray_address, jobs, sweep, pending, ok_topologies, ok_models, finish)
    else:
        jobs = jobs or cpu_count()
        workers = max(1, min(jobs, len(pending)))
        if workers == 1:
            backend = "1 process"
            for i in pending:
                p = sweep.points[i]
                finish(i, run_point(p, ok_topologies[p["topology"]], ok_models[p["model"]]))
        else:
            backend = f"{workers} local processes"
            _run_local(workers, sweep, pending, ok_topologies, ok_models, finish)
    rows = [{"index": i, **request_cells(sweep.points[i]), **results[i]} for i in range(n)]  # type: ignore[dict-item]
    return SweepResult(sweep=sweep, rows=rows, wall_time_s=time.perf_counter() - t0, backend=backend)


@contextmanager
def _sigint_ignored(active: bool = True):
    """Ignore Ctrl-C while starting worker processes, so that they start ignoring it (a
    disposition a new process inherits) and only this process sees it: it then stops them."""
    if not active or threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def _run_local(workers: int, sweep: Sweep, pending: list[int], topologies: dict, models: dict,
               finish: Callable[[int, dict], None]) -> None:
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    # spawn, not fork: the parent may hold CP-SAT or Ray threads, which fork does not copy safely.
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_worker_init, initargs=(topologies, models))
    todo = iter(pending)
    in_flight: dict[Any, int] = {}
    window = workers * 4
    first = True
    try:
        while True:
            with _sigint_ignored(first):  # the first submit starts the workers: they inherit SIG_IGN
                for i in itertools.islice(todo, window - len(in_flight)):
                    try:
                        in_flight[pool.submit(_worker_point, i, sweep.points[i])] = i
                    except BrokenProcessPool as e:  # a worker died: the pool takes no more work
                        finish(i, _empty_result("error", _first_line(f"worker process died: {e}")))
            first = False
            if not in_flight:
                break
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for f in done:
                i = in_flight.pop(f)
                e = f.exception()
                if isinstance(e, BrokenProcessPool):  # the worker process died (e.g. killed for memory)
                    finish(i, _empty_result("error", _first_line(f"worker process died: {type(e).__name__}: {e}")))
                elif e is not None:  # the row raised (run_point returns its errors; this is a bug)
                    finish(i, _empty_result("error", _first_line(f"{type(e).__name__}: {e}")))
                else:
                    finish(*f.result())
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        terminate = getattr(pool, "terminate_workers", None)  # Python 3.14+
        if terminate is not None:
            terminate()
        else:
            for proc in list((getattr(pool, "_processes", None) or {}).values()):
                proc.terminate()
        raise
    pool.shutdown(wait=True)


def _run_ray(ray, address: str, jobs: int | None, sweep: Sweep, pending: list[int], topologies: dict,
             models: dict, finish: Callable[[int, dict], None]) -> str:
    import logging

    started = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False}
        if address == "local":
            kwargs.update(num_cpus=jobs or cpu_count(), include_dashboard=False,
                          object_store_memory=RAY_LOCAL_OBJECT_STORE_BYTES)
        try:
            ray.init(address=address, **kwargs)
        except Exception as e:  # ConnectionError, ValueError, RuntimeError: Ray's words, in one line
            raise InputError(f"cannot start or reach Ray: {_first_line(str(e)) or type(e).__name__}",
                             source=f"--ray-address {address}") from None
        started = True
    try:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        window = min(max(2, 2 * (jobs or cpus)), 10_000)  # tasks in flight: enough to keep every CPU busy
        task = ray.remote(num_cpus=1)(_ray_point)
        used_t = {sweep.points[i]["topology"] for i in pending}
        used_m = {sweep.points[i]["model"] for i in pending}
        t_refs = {k: ray.put(v) for k, v in topologies.items() if k in used_t}
        m_refs = {k: ray.put(v) for k, v in models.items() if k in used_m}
        todo = iter(pending)
        in_flight: dict[Any, int] = {}
        while True:
            for i in itertools.islice(todo, window - len(in_flight)):
                p = sweep.points[i]
                in_flight[task.remote(p, t_refs[p["topology"]], m_refs[p["model"]])] = i
            if not in_flight:
                break
            refs = list(in_flight)
            ray.wait(refs, num_returns=1)  # block for one, then take every one that is ready
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
            for ref in ready:
                i = in_flight.pop(ref)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayError as e:  # the task's worker died or was lost
                    result = _empty_result("error", _first_line(f"{type(e).__name__}: {e}"))
                finish(i, result)
    finally:
        if started:  # a connection this sweep made (a cluster it started, it stops)
            ray.shutdown()
    return f"Ray at {address} ({cpus} CPUs)"
