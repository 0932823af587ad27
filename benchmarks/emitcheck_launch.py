"""Running emitted launch files under recording stand-ins: each script on each of its nodes with
stand-in programs that record what the shell would start (argv, environment, node), the pods of
the Kubernetes manifests, shellcheck, and the stand-in ``libcuda`` the runtimes load.
"""
from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

# -- running the launch files under recording stand-ins ------------------------------------------------

#: Stand-in programs: each appends {"argv", "env", "node"} as one JSON line to $EMITCHECK_LOG and exits 0.
STAND_INS = ("vllm", "python", "python3", "ray", "vllm-router")
_SHIM = """#!{python}
import json, os, sys
keep = ("CUDA_", "VLLM_", "SGLANG_", "NCCL_", "RAY_", "LWS_", "POD_IP", "HF_")
env = {{k: v for k, v in os.environ.items() if k.startswith(keep)}}
with open(os.environ["EMITCHECK_LOG"], "a", encoding="utf-8") as f:
    f.write(json.dumps({{"argv": [os.path.basename(sys.argv[0])] + sys.argv[1:], "env": env,
                        "node": os.environ.get("EMITCHECK_NODE", "")}}) + "\\n")
"""


@dataclass
class Launch:
    """One runtime command as the shell ran it: its file, node, words and environment."""
    file: str
    node: str
    argv: list[str]
    env: dict[str, str]
    group: str | None = None
    replica: int | None = None


def make_shims(work: Path) -> Path:
    shim = work / "shims"
    shim.mkdir(parents=True, exist_ok=True)
    body = _SHIM.format(python=sys.executable)
    for name in STAND_INS:
        p = shim / name
        p.write_text(body, encoding="utf-8")
        p.chmod(0o755)
    return shim


def _run_recorded(cmd: list[str], env_extra: dict[str, str], shim: Path, node: str, cwd: Path) -> list[dict]:
    """Run ``cmd`` with the stand-ins first on PATH; the records they wrote (an error if the script fails)."""
    with tempfile.NamedTemporaryFile("r", suffix=".jsonl", dir=cwd, delete=False) as log:
        path = Path(log.name)
    env = {"PATH": f"{shim}:/usr/bin:/bin", "HOME": str(cwd), "EMITCHECK_LOG": str(path), "EMITCHECK_NODE": node,
           **env_extra}
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=60)
    records = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]
    path.unlink()
    if proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd[:3])} on {node} exited {proc.returncode}: {proc.stderr.strip()[:300]}")
    return records


def _script_nodes(text: str) -> list[str]:
    """The node names a script takes: the list its usage line prints (planner.emit.shell.node_case writes it as
    one quoted word of names separated by spaces, the same names as its ``case`` patterns)."""
    m = re.search(r"""one of: %s \(got: %s\)\\n' "\$0" (.+) "\$NODE" >&2""", text)
    return shlex.split(m[1])[0].split() if m else []


def script_launches(files: dict[str, str], shim: Path, cwd: Path) -> list[Launch]:
    """Every command each ``.sh`` file starts, run once per node it names; DP_HEAD_IP_* (which a
    data-parallel head requires) set to the loopback address."""
    out = []
    for name, text in files.items():
        if not name.endswith(".sh"):
            continue
        path = cwd / name
        path.write_text(text, encoding="utf-8")
        needed = {v: "127.0.0.1" for v in re.findall(r"\b(DP_HEAD_IP_\w+)", text)}
        for node in _script_nodes(text) or [""]:
            for rec in _run_recorded(["bash", str(path), node], needed, shim, node, cwd):
                out.append(Launch(name, node, rec["argv"], rec["env"]))
    return out


def _pod_specs(doc: dict) -> list[tuple[dict, dict, list[str], dict[str, str]]]:
    """(pod template metadata, pod spec, plan nodes it may run on, LWS env) of a Deployment or LeaderWorkerSet."""
    kind, spec = doc.get("kind"), doc.get("spec", {})
    if kind == "Deployment":
        return [(spec["template"]["metadata"], spec["template"]["spec"], _affinity_nodes(spec["template"]["spec"]), {})]
    if kind != "LeaderWorkerSet":
        return []
    lwt = spec["leaderWorkerTemplate"]
    leader, worker = lwt["leaderTemplate"], lwt["workerTemplate"]
    lead_node = _affinity_nodes(leader["spec"])[0]
    base = {"LWS_LEADER_ADDRESS": lead_node, "LWS_GROUP_SIZE": str(lwt["size"])}
    out = [(leader["metadata"], leader["spec"], [lead_node], {**base, "LWS_WORKER_INDEX": "0"})]
    for i, node in enumerate(_affinity_nodes(worker["spec"]), start=1):
        out.append((worker["metadata"], worker["spec"], [node], {**base, "LWS_WORKER_INDEX": str(i)}))
    return out


def _affinity_nodes(pod: dict) -> list[str]:
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    return [v for t in terms for e in t["matchExpressions"] if e["key"] == "kubernetes.io/hostname"
            for v in e["values"]]


def container_scripts(files: dict[str, str]) -> list[tuple[str, dict, str, dict[str, str], str]]:
    """(file, pod metadata, node, environment, script) of every container of every k8s-*.yaml pod
    (a worker template once per worker node, with the LWS_* variables LWS injects)."""
    import yaml

    out = []
    for name, text in files.items():
        if not (name.startswith("k8s-") and name.endswith(".yaml")):
            continue
        for doc in yaml.safe_load_all(text):
            for meta, pod, nodes, lws in _pod_specs(doc or {}):
                for c in pod["containers"]:
                    argv = list(c.get("command", [])) + list(c.get("args", []))
                    script = argv[2] if argv[:2] == ["sh", "-c"] else shlex.join(argv)
                    env = {e["name"]: e["value"] for e in c.get("env", []) if "value" in e}
                    env.update({"POD_IP": "127.0.0.1", "HF_TOKEN": "", **lws})
                    out += [(name, meta, n, env, script) for n in nodes]
    return out


def k8s_launches(files: dict[str, str], shim: Path, cwd: Path) -> list[Launch]:
    """Every command the pods' ``sh -c`` scripts run (under ``sh``, as the container does)."""
    out = []
    for name, meta, node, env, script in container_scripts(files):
        labels = meta.get("labels", {})
        for rec in _run_recorded(["sh", "-c", script], env, shim, node, cwd):
            launch = Launch(name, node, rec["argv"], rec["env"], labels.get("plan-search/group"))
            launch.replica = int(labels["plan-search/replica"]) if "plan-search/replica" in labels else None
            out.append(launch)
    return out


def shellcheck(files: dict[str, str], cwd: Path) -> list[str]:
    """shellcheck's findings (any level) on every script: the ``.sh`` files and the pods' ``sh -c`` scripts."""
    scripts = [(n, t, "bash") for n, t in files.items() if n.endswith(".sh")]
    scripts += [(f"{n} ({node})", s, "sh") for n, _, node, _, s in container_scripts(files)]
    out = []
    for label, text, shell in dict.fromkeys(scripts):
        path = cwd / "sc.sh"
        path.write_text(text, encoding="utf-8")
        proc = subprocess.run(["shellcheck", "--severity=style", "--format=gcc", f"--shell={shell}", str(path)],
                              capture_output=True, text=True)
        out += [f"{label}: {line.split(':', 3)[-1].strip()}" for line in proc.stdout.splitlines()]
    return out




# -- the stand-in libcuda ----------------------------------------------------------------------------------

def _driver_symbols(venv: Path) -> list[str]:
    """The CUDA driver functions (``cu*``) the venv's compiled extensions link against."""
    names = {"cuInit", "cuDriverGetVersion", "cuDeviceGetCount", "cuDeviceGet", "cuGetProcAddress",
             "cuGetProcAddress_v2", "cuGetErrorString", "cuGetErrorName"}
    for so in venv.glob("lib/python3*/site-packages/**/*.so"):
        proc = subprocess.run(["nm", "-D", "--undefined-only", str(so)], capture_output=True, text=True)
        names.update(m[1] for m in re.finditer(r"\bU (cu[A-Z]\w*)", proc.stdout))
    return sorted(names)


def stand_in_libcuda(work: Path, venv: Path) -> Path:
    """A folder holding a ``libcuda.so.1`` whose every function the venv's extensions need returns
    CUDA_ERROR_NO_DEVICE (100): their modules load (vLLM's ``vllm._C`` needs the driver library to
    load at all), and anything that would touch a GPU fails instead of running."""
    d = work / f"libcuda-{venv.name}"
    lib = d / "libcuda.so.1"
    if lib.exists():
        return d
    d.mkdir(parents=True, exist_ok=True)
    src = d / "libcuda.c"
    src.write_text("".join(f"int {n}(void) {{ return 100; }}\n" for n in _driver_symbols(venv)), encoding="utf-8")
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(lib), str(src), "-Wl,-soname,libcuda.so.1"], check=True)
    (d / "libcuda.so").unlink(missing_ok=True)
    (d / "libcuda.so").symlink_to("libcuda.so.1")
    return d
