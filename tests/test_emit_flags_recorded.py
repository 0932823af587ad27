"""Every flag of every emitted command is one the runtime release's own parser defines (issue 16, CI check).

tests/data/runtime_flags/<package>-<version>.txt holds the flags each release's parser defines, recorded
from the released wheels by benchmarks/record_runtime_flags.py (see there for how). Here a set of plans
(one node, a pipeline across nodes, an uneven split over three nodes, mixed GPU types, MoE with expert
parallelism, attention data parallelism on one node and wide EP across nodes, prefill/decode pools) is
emitted for every target and every recorded release; each command in the files (shell scripts, and the
``sh -c`` scripts of the Kubernetes pods) is split into words as the shell would, and each ``--flag`` of a
runtime's command must be in that release's set. vLLM's SchedulerConfig rule (max_num_batched_tokens >=
max_num_seqs) is checked on every ``vllm serve`` too. TensorRT-LLM's sets (``trtllm-serve`` options, and the
LLM API keys its extra-options YAML may hold) are transcribed from each release's own documentation, which is
rendered from its code (the wheel cannot be downloaded here; see benchmarks/record_runtime_flags.py): every
``trtllm-serve`` flag, under ``mpirun`` too, and every key of every emitted extra-options YAML must be in them.
"""
from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml

from planner import api
from planner.emit import emit
from planner.emit.versions import DEFAULT, SUPPORTED, text
from planner.plan.schema import Plan
from topologies.errors import InputError

from test_emit import PLANS as DENSE, search_plans
from test_emit_attention_dp import PLANS as MOE
from test_emit_ray_order import _three_nodes
from test_emit_versions import _uneven

DATA = Path(__file__).parent / "data" / "runtime_flags"
ROUTERS = {"vllm-router": "vllm-router-0.1.17", "sglang_router.launch_router": "sglang-router-0.3.2"}
RAY = "ray-2.60.0"
#: Programs the launch files run that are no serving runtime.
OTHER_PROGRAMS = {"python3 -c", "sleep", "printf", "exit", "wait", "export", "set", "[", "sh", "true", "echo", ":"}
#: Recorded-set file prefix of each runtime.
PACKAGE = {"vllm": "vllm", "sglang": "sglang", "trtllm": "tensorrt-llm"}
_KEYWORDS = {"until", "do", "done", "if", "then", "fi", "else", "while", "exec", "case", "esac", "in", "!"}


def recorded(name: str) -> set[str]:
    lines = (DATA / f"{name}.txt").read_text(encoding="utf-8").splitlines()
    return {x for x in lines if x and not x.startswith("#")}


def releases(runtime: str) -> list[str]:
    return sorted(p.stem.split("-")[-1] for p in DATA.glob(f"{runtime}-[0-9]*.txt"))


def test_supported_range_is_recorded():
    """The oldest supported release, the default and the newest of every runtime each have a recorded set
    (TensorRT-LLM: its LLM API keys too), so moving the range without recording the new end fails here."""
    for runtime in ("vllm", "sglang", "trtllm"):
        lo, hi = SUPPORTED[runtime]
        assert {text(lo), text(DEFAULT[runtime])} <= set(releases(PACKAGE[runtime])), runtime
    assert {text(v) for v in SUPPORTED["trtllm"]} <= set(releases("tensorrt-llm"))
    assert set(releases("tensorrt-llm")) == {p.stem.split("-")[-1] for p in DATA.glob("tensorrt-llm-api-*.txt")}


# -- splitting the files into commands ------------------------------------------------------------------

def _words(script: str) -> list[list[str]]:
    """The simple commands of a shell script, each as its words (quotes removed, assignments and
    keywords in front dropped); ``;``, ``&``, ``|``, parentheses and line ends separate commands."""
    seps = ";&|()\n"
    text = script.replace("\\\n", " ").replace(">&2", "")  # continuation lines joined; stderr redirects dropped
    lex = shlex.shlex(text, posix=True, punctuation_chars=seps)
    lex.whitespace = " \t\r"  # a line end separates commands: it is one of the punctuation characters
    lex.whitespace_split = True
    commands, cur, in_case = [], [], False
    for tok in lex:
        if tok and not tok.strip(seps):
            if cur[:1] == ["case"]:
                in_case, cur = True, []  # `case WORD in`: no command
            elif cur[:1] == ["esac"]:
                in_case, cur = False, []
            elif in_case and ")" in tok:
                cur = []  # a case pattern, `node0)`
            commands.append(cur)
            cur = []
        else:
            cur.append(tok)
    commands.append(cur)
    out = []
    for c in commands:
        while c and (c[0] in _KEYWORDS or ("=" in c[0] and c[0].split("=")[0].isidentifier())):
            c = c[1:]
        if c:
            out.append(c)
    return out


def _k8s_scripts(text: str) -> list[str]:
    out = []

    def walk(x):
        if isinstance(x, dict):
            if "containers" in x:
                for c in x["containers"]:
                    argv = list(c.get("command", [])) + list(c.get("args", []))
                    out.append(argv[2] if argv[:2] == ["sh", "-c"] else shlex.join(argv))
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)
    for doc in yaml.safe_load_all(text):
        walk(doc)
    return out


def commands(files: dict[str, str]) -> list[list[str]]:
    out = []
    for name, body in files.items():
        if name.endswith(".sh"):
            out += _words(body)
        elif name.startswith("k8s-") and name.endswith(".yaml"):
            for script in _k8s_scripts(body):
                out += _words(script)
    return out


def runtime_argv(argv: list[str]) -> list[str]:
    """The runtime's own command: under ``mpirun ... trtllm-llmapi-launch``, the ``trtllm-serve`` words."""
    if argv[0] == "mpirun" and "trtllm-serve" in argv:
        return argv[argv.index("trtllm-serve"):]
    return argv


def flag_set(argv: list[str], runtime: str, version: str) -> str | None:
    """The recorded set a command's flags belong to, None for a program with none (``OTHER_PROGRAMS``)."""
    argv = runtime_argv(argv)
    prog = " ".join(argv[:2])
    if argv[0] == "trtllm-serve":
        return f"tensorrt-llm-{version}"
    if prog == "vllm serve":
        return f"vllm-{version}"
    if prog == "ray start":
        return RAY
    if argv[0] == "vllm-router":
        return ROUTERS["vllm-router"]
    module = argv[2] if argv[0] in ("python", "python3") and argv[1:2] == ["-m"] else None
    if module == "sglang.launch_server":
        return f"sglang-{version}"
    if module in ROUTERS:
        return ROUTERS[module]
    if argv[0] in OTHER_PROGRAMS or prog in OTHER_PROGRAMS:
        return None
    raise AssertionError(f"a command of an unknown program in a {runtime} launch file: {shlex.join(argv)[:200]}")


def unknown_flags(files: dict[str, str], runtime: str, version: str, sets: dict[str, set[str]]) -> list[str]:
    """``set: flag`` for each flag of an emitted runtime command that is not in that release's set."""
    bad = []
    for argv in commands(files):
        which = flag_set(argv, runtime, version)
        if which is None:
            continue
        for w in runtime_argv(argv)[1:]:
            if w.startswith("--") and w.split("=")[0] not in sets[which]:
                bad.append(f"{which}: {w.split('=')[0]}")
    return bad


def unknown_llm_api_keys(files: dict[str, str], keys: set[str]) -> list[str]:
    """Each key of an emitted TensorRT-LLM extra-options YAML (``kv_cache_config.<field>`` one level down)
    that the release's LLM API does not define (its argument models refuse unknown keys)."""
    bad = []
    for name, body in files.items():
        if name.startswith("trtllm-") and name.endswith("-extra.yaml"):
            for key, value in (yaml.safe_load(body) or {}).items():
                inner = [f"{key}.{k}" for k in value] if key == "kv_cache_config" else []
                bad += [f"{name}: {k}" for k in [key, *inner] if k not in keys]
    return bad


def scheduler_violations(files: dict[str, str]) -> list[str]:
    out = []
    for argv in commands(files):
        if argv[:2] == ["vllm", "serve"]:
            seqs = int(argv[argv.index("--max-num-seqs") + 1])
            tokens = int(argv[argv.index("--max-num-batched-tokens") + 1])
            if tokens < seqs:
                out.append(f"--max-num-batched-tokens {tokens} < --max-num-seqs {seqs}")
    return out


# -- the plans ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def plans() -> dict[str, Plan]:
    trtllm = {"trt-70b-fp8kv": dict(topology="dgx-h100x2", model="llama-3.1-70b", tpot_ms=50, runtime="trtllm",
                                    kv_dtype="fp8"),
              "trt-405b-2-nodes": dict(topology="dgx-h100x2-rdma200", model="llama-3.1-405b", runtime="trtllm"),
              "trt-8b-many": dict(topology="dgx-h100x2", model="llama-3.1-8b", tpot_ms=20, runtime="trtllm")}
    out = search_plans({**DENSE, **trtllm, **{k: MOE[k] for k in ("ds-x4", "ds-x4-adp2", "mix-x1", "qwen-x1",
                                                                  "ds-x4-adp1", "ds-x4-sglang", "mix-x1-trtllm")}})
    out["trt-405b-uneven"] = _uneven(out["llama405b-dgx-h100x2-rdma200"])
    out["mixed-gpus"] = search_plans({"m": dict(topology="mixed-h100x2-a100x2", model="llama-3.1-405b")})["m"]
    out["uneven-3-nodes"] = _three_nodes(out["llama405b-dgx-h100x2-rdma200"])
    pools = api.search(topology="dgx-h100x2", model="llama-3.1-70b", isl=8192, osl=256, tpot_ms=40, runtime="sglang",
                       disaggregation="only",
                       time_limit_s=10.0, workers=1, seed=0)
    out["pools"] = Plan.model_validate_json(pools.to_json())
    assert {g.role for g in out["pools"].replica_groups} == {"prefill", "decode"}
    return out


CASES = [(t, v) for t, rt in (("vllm", "vllm"), ("k8s", "vllm"), ("sglang", "sglang"), ("trtllm", "tensorrt-llm"))
         for v in releases(rt)]


@pytest.mark.parametrize("target,version", CASES)
def test_every_emitted_flag_is_in_the_recorded_set(plans, target, version):
    runtime = "vllm" if target == "k8s" else target
    sets = {n: recorded(n) for n in (f"{PACKAGE[runtime]}-{version}", RAY, *ROUTERS.values())}
    api = recorded(f"tensorrt-llm-api-{version}") if runtime == "trtllm" else set()
    checked = 0
    for name, plan in plans.items():
        try:
            files = emit(plan, target, runtime_version=version)
        except InputError as e:  # a plan the target cannot express is refused in one line, nothing written
            assert "\n" not in str(e)
            continue
        assert unknown_flags(files, runtime, version, sets) == [], name
        assert unknown_llm_api_keys(files, api) == [], name
        assert scheduler_violations(files) == [], name
        checked += sum(flag_set(c, runtime, version) is not None for c in commands(files))
    assert checked >= 20, f"only {checked} runtime commands checked"


def test_the_check_fails_on_a_drift(plans):
    """A flag a release lacks is reported: vLLM 0.11.0 has no --all2all-backend (the 0.33.0 files of a wide-EP
    plan use it), SGLang 0.5.15 has no --attn-dp-size, and a set missing one flag flags it."""
    sets = {n: recorded(n) for n in ("vllm-0.11.0", RAY, *ROUTERS.values())}
    files = emit(plans["ds-x4"], "vllm", runtime_version="0.33.0")
    assert "vllm-0.11.0: --all2all-backend" in unknown_flags(files, "vllm", "0.11.0", sets)
    sg = {n: recorded(n) for n in ("sglang-0.5.15", RAY, *ROUTERS.values())}
    files = emit(plans["mix-x1"], "sglang", runtime_version="0.5.23")
    assert "sglang-0.5.15: --attn-dp-size" in unknown_flags(files, "sglang", "0.5.15", sg)
    files = emit(plans["llama405b-dgx-h100x2-rdma200"], "vllm", runtime_version="0.11.0")
    sets["vllm-0.11.0"] = sets["vllm-0.11.0"] - {"--pipeline-parallel-size"}
    assert "vllm-0.11.0: --pipeline-parallel-size" in unknown_flags(files, "vllm", "0.11.0", sets)
    sets[RAY] = sets[RAY] - {"--num-gpus"}
    assert f"{RAY}: --num-gpus" in unknown_flags(files, "vllm", "0.11.0", sets)


def test_the_trtllm_check_fails_on_a_drift(plans):
    """TensorRT-LLM 1.0.0's LLM API has no pp_partition (the 1.2 files of an uneven split use it), and a
    trtllm-serve flag, under mpirun too, missing from a set is reported."""
    files = emit(plans["trt-405b-uneven"], "trtllm", runtime_version="1.2.1")
    assert unknown_llm_api_keys(files, recorded("tensorrt-llm-api-1.2.1")) == []
    assert unknown_llm_api_keys(files, recorded("tensorrt-llm-api-1.0.0")) == ["trtllm-g0-extra.yaml: pp_partition"]
    files = emit(plans["trt-70b-fp8kv"], "trtllm", runtime_version="1.0.0")
    api = recorded("tensorrt-llm-api-1.0.0") - {"kv_cache_config.free_gpu_memory_fraction"}
    assert unknown_llm_api_keys(files, api) == ["trtllm-g0-extra.yaml: kv_cache_config.free_gpu_memory_fraction"]
    files = emit(plans["trt-405b-2-nodes"], "trtllm", runtime_version="1.0.0")
    assert any(c[0] == "mpirun" for c in commands(files))
    sets = {"tensorrt-llm-1.0.0": recorded("tensorrt-llm-1.0.0") - {"--pp_size"}}
    assert "tensorrt-llm-1.0.0: --pp_size" in unknown_flags(files, "trtllm", "1.0.0", sets)


def test_scheduler_rule_check_can_fail():
    files = {"x.sh": "vllm serve m --max-num-seqs 2435 --max-num-batched-tokens 2048 --port 8000 &\n"}
    assert scheduler_violations(files) == ["--max-num-batched-tokens 2048 < --max-num-seqs 2435"]


def test_command_splitting():
    script = ('X=1 Y="a b" vllm serve m \\\n    --port 8000 &\nuntil python3 -c \'import a\nb\'; do sleep 5; done\n'
              '# --not-a-flag\nray start --address="${A:-$b}:6379" --num-gpus=4\n')
    assert _words(script) == [["vllm", "serve", "m", "--port", "8000"], ["python3", "-c", "import a\nb"],
                              ["sleep", "5"], ["ray", "start", "--address=${A:-$b}:6379", "--num-gpus=4"]]
