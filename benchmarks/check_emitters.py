"""Feed every emitted launch command to the runtime's own parser and config validation (issue 16).

For each plan of ``PLANS`` (dense, pipelines across nodes, uneven splits, mixed GPU types, MoE with
expert parallelism, attention data parallelism, wide EP, prefill/decode pools) and each target and
release of ``CASES``, this emits the launch files, runs every shell script (and every Kubernetes
container's ``sh -c`` script) with each node's name under a recording ``PATH`` (stand-ins named
``vllm``, ``python``, ``python3``, ``ray``, ``vllm-router`` that write down their argv and environment
and exit 0, so the shell itself expands every variable and quote), and hands each recorded runtime
command to that runtime's own code in its own virtual environment (benchmarks/emitcheck_worker.py):

  * vLLM 0.11.0 and 0.33.0 (``vllm serve``): ``make_arg_parser`` -> ``parse_args`` ->
    ``AsyncEngineArgs.from_cli_args`` -> ``create_engine_config``, with the model given as a
    config-only folder (the catalog's HF ``config.json`` plus a tokenizer_config.json), and
    ``get_pp_indices`` for the layers each pipeline stage gets;
  * SGLang 0.5.23 (``python -m sglang.launch_server``): ``prepare_server_args`` (its parser) and
    ``ServerArgs.resolve_once`` (its resolution and validation pipeline, as the launcher runs it), with
    ``get_pp_indices`` for the layers per stage; sglang-router 0.3.2 (``launch_router``): its
    ``parse_router_args``, and its backends must be the servers' parsed head nodes and ports; vllm-router
    0.1.17 (``vllm-router``): its ``parse_router_args``, ``_validate_router_args`` and ``Router.from_args``
    (the Rust router's configuration, not started), its workers the vLLM API servers' nodes and ports;
  * Ray 2.60.0 (``ray start``): the click command's own parsing (``make_context``);
  * Kubernetes: every document of every k8s-*.yaml against kubernetes-validate's schemas, the
    LeaderWorkerSet against a schema of its CRD (see emitcheck_k8s.LWS_SCHEMA) whose pod templates
    are validated as core/v1 PodTemplateSpec, the HTTPRoute against one written from the Gateway API
    v1 types (emitcheck_k8s.HTTPROUTE_SCHEMA: field limits, weights, the port a Service backend needs);
  * every shell script (files and the pods' ``sh -c`` scripts) through shellcheck, which must report
    nothing at any level (``--severity=style``).

There is no GPU here. What is stubbed, in the worker process only (benchmarks/emitcheck_worker.py):
  * NVML (``pynvml`` and vLLM's vendored ``vllm.third_party.pynvml``): device count, name, compute
    capability and memory of the plan's GPU for that command (``CAPABILITY`` below; memory = the plan's
    ``memory_per_gpu_bytes.capacity``);
  * torch.cuda's ``is_available``, ``device_count``, ``_device_count_nvml``, ``get_device_capability``,
    ``get_device_properties``, ``get_device_name``, ``mem_get_info`` with the same figures;
  * ``libcuda.so.1``: a stand-in built here with gcc (``stand_in_libcuda``) whose every driver function
    the venv's extensions link against returns CUDA_ERROR_NO_DEVICE, so that vLLM's ``vllm._C`` loads
    (on ``LD_LIBRARY_PATH`` of the worker and of the subprocess vLLM inspects model classes in);
  * ``psutil.virtual_memory().total``: 2 TiB, a DGX H100's system memory (vLLM 0.11 refuses a CPU swap
    space above 70 % of it, and this machine's RAM is not the serving node's).
Nothing else of a runtime is changed. Model folders hold config files only (the catalog's HF
config.json with its ``architectures`` and dtype, and a tokenizer_config.json), so nothing is
downloaded. SGLang 0.5.22+ resolve their arguments in ``ServerArgs.resolve_once`` (not in
``__post_init__``): the worker runs it, as the launcher does, and reads the resolved values.

Semantic check: after parsing, what the runtime's config holds is compared with the plan (not with
the emitted command): tensor, pipeline and data-parallel (attention-DP) sizes, expert parallel on/off
and size, max_num_seqs / max_running_requests, max_num_batched_tokens / chunked prefill size,
gpu_memory_utilization / mem_fraction_static (within 0.01 below the plan's budget), KV cache dtype,
the all2all backend the plan priced (DeepEP where experts span nodes), the layers each pipeline stage
holds, the GPUs each process sees, and ports: no two recorded processes may bind one port on one node.
For SGLang that is every port its own code derives (the HTTP or, on node rank >= 1, health-check port,
the dist-init port, and under attention DP the ZMQ ports ``PortArgs.init_new`` reserves and the
worker-port handshake port; see emitcheck_worker._sglang_ports), for the others the ports their flags
set. Each difference is one mismatch.

Install the runtimes (large: torch and CUDA libraries; not part of the default test run), once:

    python benchmarks/check_emitters.py --install

which makes one virtual environment per release under the work dir (``--work``, default
/tmp/plan-search-emitcheck): ``python -m venv WORK/venv-<name>`` then
``WORK/venv-<name>/bin/pip install <requirement>`` for each entry of ``RUNTIMES``. Then:

    python benchmarks/check_emitters.py [--work DIR] [--only PLAN ...]

Not judged, and said so in the table's note: documents kubernetes-validate has no schema for, other
than the two judged against schemas written from their types (the LeaderWorkerSet and the Gateway
API HTTPRoute of k8s-route.yaml).

It prints the table plan x target x version (commands checked, ok, rejected, mismatches) and exits 1 on
any rejection, mismatch, shellcheck finding or runtime that is not installed (reported in the table
as "not installed", never skipped).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]  # the siblings: emitcheck_*.py

from planner.emit import HF_MODELS, emit  # noqa: E402
from planner.plan.schema import Plan  # noqa: E402
from topologies.errors import InputError  # noqa: E402

from emitcheck_judge import (  # noqa: E402
    Case,
    Job,
    compact_table,
    expected_sglang,
    expected_vllm,
    gpu_stub,
    judge,
    model_dir,
    table,
)
from emitcheck_launch import Launch, k8s_launches, make_shims, script_launches, shellcheck, stand_in_libcuda  # noqa: E402
from emitcheck_plans import PLANS, build_plan  # noqa: E402

WORKER = Path(__file__).resolve().parent / "emitcheck_worker.py"
DEFAULT_WORK = Path("/tmp/plan-search-emitcheck")

#: Virtual environment name -> pip requirements installed into it (``--install``).
RUNTIMES = {
    "vllm-0.11.0": ["vllm==0.11.0"],
    # vLLM 0.33 no longer depends on Ray; its Ray executor (multi-node replicas) needs it, as its image ships it
    "vllm-0.33.0": ["vllm==0.33.0", "ray==2.60.0"],
    "sglang-0.5.23": ["sglang==0.5.23"],
    "sglang-router-0.3.2": ["sglang-router==0.3.2"],
    "vllm-router-0.1.17": ["vllm-router==0.1.17"],
    "ray-2.60.0": ["ray==2.60.0"],
    "kubernetes-validate": ["kubernetes-validate==1.37.0"],
}

#: (target, runtime version given to emit, virtual environment of its serving runtime).
CASES = [("vllm", "0.11.0", "vllm-0.11.0"), ("vllm", "0.33.0", "vllm-0.33.0"), ("sglang", "0.5.23", "sglang-0.5.23"),
         ("k8s", "0.11.0", "vllm-0.11.0"), ("k8s", "0.33.0", "vllm-0.33.0"), ("ray", None, "ray-2.60.0")]

#: Programs of the launch files and the environment that judges them (None: not a runtime command).
def program_env(argv: list[str], serving: str) -> str | None:
    if argv[:2] == ["vllm", "serve"]:
        return serving
    if argv[:2] == ["ray", "start"]:
        return "ray-2.60.0"
    if argv[:3] in (["python", "-m", "sglang.launch_server"], ["python3", "-m", "sglang.launch_server"]):
        return serving
    if argv[:3] in (["python", "-m", "sglang_router.launch_router"], ["python3", "-m", "sglang_router.launch_router"]):
        return "sglang-router-0.3.2"
    if argv[:1] == ["vllm-router"]:
        return "vllm-router-0.1.17"
    return None


# -- one plan x target x release -------------------------------------------------------------------------

K8S_VERSIONS = ["1.30", "1.31", "1.32", "1.33", "1.34", "1.35", "1.36", "1.37"]
KIND_OF_ENV = {"vllm": "vllm", "sglang": "sglang", "sglang-router": "sglang-router", "ray": "ray"}






def _kind(env: str) -> str:
    return "k8s" if env == "kubernetes-validate" else next(k for k in ("sglang-router", "vllm-router", "sglang", "vllm", "ray")
                                                           if env.startswith(k))


def _find_replica(plan: Plan, launch: Launch):
    """The (group, replica) a script's command runs: its file's group, the replica with ranks on the
    command's node on exactly the GPUs of CUDA_VISIBLE_DEVICES (rank order)."""
    gid = launch.group or re.sub(r"^(vllm|sglang)-|\.sh$", "", launch.file)
    g = next((x for x in plan.replica_groups if x.id == gid), None)
    if g is None:
        return None, None
    if launch.replica is not None:
        return g, next((r for r in g.replicas if r.index == launch.replica), None)
    gpus = launch.env.get("CUDA_VISIBLE_DEVICES")
    if gpus is None:  # `vllm serve` of a Ray replica, on its head node: the replica whose rank 0 is there
        heads = [r for r in g.replicas if min(r.ranks, key=lambda k: k.rank).node == launch.node]
        return g, heads[0] if len(heads) == 1 else None
    for r in g.replicas:
        mine = [k.gpu_index for k in sorted(r.ranks, key=lambda k: k.rank) if k.node == launch.node]
        if ",".join(map(str, mine)) == gpus:
            return g, r
    return g, None


def _serving_job(case: Case, launch: Launch, env: str, work: Path) -> Job:
    plan = case.plan
    g, r = _find_replica(plan, launch)
    job = Job(case, env, _kind(env), {"argv": launch.argv, "env": launch.env}, launch=launch)
    if g is None or r is None:
        case.problems.append(f"{launch.file} on {launch.node}: GPUs {launch.env.get('CUDA_VISIBLE_DEVICES')!r} "
                             "are no plan replica's")
        g = g or plan.replica_groups[0]
    nodes = {k.node for k in r.ranks} if r else {launch.node}
    count = sum(1 for k in r.ranks if k.node == launch.node) if r else 1
    job.payload.update(gpu={**gpu_stub(g), "count": max(count, 1)}, model_dir=str(model_dir(work, plan.inputs.model.name)),
                       layers=sum(g.strategy.layer_split))
    ckpt = HF_MODELS.get(plan.inputs.model.name, (None, None))[1]
    job.want = (expected_vllm if job.kind == "vllm" else expected_sglang)(g, len(nodes) > 1, ckpt)
    return job


def _ray_want(plan: Plan, node: str) -> dict:
    gpus = {(k.node, k.gpu_index) for g in plan.replica_groups for r in g.replicas for k in r.ranks}
    return {"num_gpus": sum(1 for n, _ in gpus if n == node)}


def collect(case: Case, files: dict[str, str], work: Path, shim: Path) -> None:
    """Record every command of ``files`` and make a job of each runtime command and manifest document."""
    import yaml

    tmp = Path(tempfile.mkdtemp(dir=work))
    launches = script_launches(files, shim, tmp) + k8s_launches(files, shim, tmp)
    case.shellcheck = shellcheck(files, tmp)
    shutil.rmtree(tmp)
    for launch in launches:
        env = program_env(launch.argv, case.serving_env)
        if env is None:
            continue
        kind = _kind(env)
        if kind in ("vllm", "sglang"):
            case.jobs.append(_serving_job(case, launch, env, work))
        else:
            want = _ray_want(case.plan, launch.node) if kind == "ray" and case.target == "ray" else {}
            case.jobs.append(Job(case, env, kind, {"argv": launch.argv, "env": launch.env}, want, launch))
    for name, text in files.items():
        if name.startswith("k8s-") and name.endswith(".yaml"):
            for doc in yaml.safe_load_all(text):
                if doc:
                    case.jobs.append(Job(case, "kubernetes-validate", "k8s", {"doc": doc, "versions": K8S_VERSIONS}))


def build_case(plan_name: str, plan: Plan, target: str, version: str | None, env: str, work: Path,
               shim: Path) -> Case:
    case = Case(plan_name, plan, target, version, env)
    try:
        files = emit(plan, target, runtime_version=version)
    except InputError as e:
        case.refused = str(e)
        return case
    collect(case, files, work, shim)
    return case


# -- running the jobs in the runtimes' environments ----------------------------------------------------------

def venv_python(work: Path, env: str) -> Path:
    return work / f"venv-{env}" / "bin" / "python"


def installed(work: Path, env: str) -> bool:
    """The venv exists and imports its runtime (checked once per run by the caller)."""
    module = {"vllm": "vllm", "sglang": "sglang", "sglang-router": "sglang_router", "vllm-router": "vllm_router",
              "ray": "ray",
              "k8s": "kubernetes_validate"}[_kind(env)]
    py = venv_python(work, env)
    return py.exists() and subprocess.run([str(py), "-c", f"import importlib.util as u, sys; "
                                           f"sys.exit(u.find_spec({module!r}) is None)"]).returncode == 0


def run_batch(work: Path, env: str, jobs: list[Job]) -> None:
    """Run ``jobs`` (one environment, one GPU type) in one worker process; fill in each job's result."""
    payload = [{"id": i, **j.payload} for i, j in enumerate(jobs)]
    venv = work / f"venv-{env}"
    extra = {}
    if _kind(env) in ("vllm", "sglang"):
        extra["LD_LIBRARY_PATH"] = str(stand_in_libcuda(work, venv))
    proc = subprocess.run([str(venv_python(work, env)), str(WORKER), _kind(env)], input=json.dumps(payload),
                          capture_output=True, text=True, env={**os.environ, **extra}, cwd=work, timeout=3600)
    lines = proc.stdout.strip().splitlines()
    try:
        results = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        results = [{"id": i, "status": "rejected", "error": f"worker failed: {tail[0][:300]}"} for i in range(len(jobs))]
    for r in results:
        jobs[r["id"]].result = r


def run_all(work: Path, cases: list[Case]) -> dict[str, bool]:
    """Every job of every case, batched per (environment, GPU type); returns which environments are installed."""
    batches: dict[tuple[str, str], list[Job]] = {}
    for case in cases:
        for j in case.jobs:
            batches.setdefault((j.env, json.dumps(j.payload.get("gpu"), sort_keys=True)), []).append(j)
    ok = {env: installed(work, env) for env in {e for e, _ in batches}}
    for (env, _), jobs in sorted(batches.items(), key=lambda kv: kv[0]):
        if ok[env]:
            print(f"  {env}: {len(jobs)} commands ...", file=sys.stderr, flush=True)
            run_batch(work, env, jobs)
    return ok


# -- command line ---------------------------------------------------------------------------------------------

def install(work: Path, names: list[str]) -> int:
    """``python -m venv`` and ``pip install`` each runtime of ``RUNTIMES`` (an existing venv is kept)."""
    failed = 0
    for name in names:
        venv = work / f"venv-{name}"
        if not venv.exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        proc = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *RUNTIMES[name]])
        print(f"{name}: {'installed' if proc.returncode == 0 else 'FAILED to install'}")
        failed += proc.returncode != 0
    return 1 if failed else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=DEFAULT_WORK, help="folder of the venvs (default %(default)s)")
    ap.add_argument("--install", nargs="*", metavar="NAME", help=f"install runtimes (default all: {', '.join(RUNTIMES)})")
    ap.add_argument("--only", nargs="*", metavar="PLAN", help="check only these plans")
    ap.add_argument("--target", nargs="*", choices=sorted({t for t, _, _ in CASES}), help="check only these targets")
    ap.add_argument("--compact", action="store_true", help="one line per plan (a Markdown table)")
    ap.add_argument("--details", action="store_true", help="print each rejection, mismatch and finding")
    args = ap.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    if args.install is not None:
        return install(args.work, args.install or list(RUNTIMES))
    shim = make_shims(args.work)
    cases = []
    for name in args.only or list(PLANS):
        print(f"plan {name} ...", file=sys.stderr, flush=True)
        plan = build_plan(name)
        for target, version, env in CASES:
            if args.target and target not in args.target:
                continue
            cases.append(build_case(name, plan, target, version, env, args.work, shim))
    installed_envs = run_all(args.work, cases)
    rows = [judge(c, installed_envs) for c in cases]
    print(compact_table(rows) if args.compact else table(rows))
    bad = [r for r in rows if r.rejected or r.mismatches or r.shellcheck]
    total = sum(r.checked for r in rows)
    print(f"\n{len(rows)} plan x target x version cases, {total} commands and documents checked; "
          f"{len(bad)} case(s) with a rejection, mismatch or shellcheck finding")
    if args.details or bad:
        for r in rows:
            for d in r.details:
                print(f"{r.plan} {r.target} {r.version}: {d}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
