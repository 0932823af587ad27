"""No text from a plan or the command line runs as code in an emitted launch file.

A corpus of payloads (command substitution, backticks, line breaks, quotes, ``;``, ``&&``,
``|``, a YAML document, Python triple quotes, a backslash, ``${IFS}``, Unicode format
characters, terminal escapes, other control characters, a glob) goes into every text field
that reaches an emitter (node names, group id, GPU label, generator, model name, topology name,
``--model-path``) of real plans built by the planner and then edited without validation, for
every target. Each emitted file is then used as it would be:

* shell scripts run under ``bash`` with stub programs first in PATH (each records its argv),
  once per plan node with that node's name; no payload may run (its marker file must not
  appear), and a value (the model path, a node name) must reach the program as one intact
  argument;
* ``ray_placement.py`` parses to the same syntax tree as for a plain plan (the payload only in
  string constants) and runs against a stub ``ray`` module;
* Kubernetes YAML loads to the same documents, keys and shapes as for a plain plan, and each
  container's ``sh -c`` script runs under ``sh`` with the same stubs.

Refusing is allowed where a name becomes a file name (group ids) or a name the target cannot
write (node names for Ray resources and Kubernetes labels). ``shellcheck --severity=style``
must report nothing on every emitted script, plain or hostile; with CI=true a missing
shellcheck fails the test instead of skipping it.
"""
from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from planner import api
from planner.emit import emit
from planner.emit.router import Endpoint, ends_in_number, safe_host
from planner.emit.vllm import head_ip_var
from planner.emit.yaml_text import plain_safe, yaml_dump
from planner.plan.schema import Plan
from topologies.errors import InputError

MARK = "MARKPATH"
PAYLOADS = {
    "command-substitution": "$(touch MARKPATH)",
    "backticks": "`touch MARKPATH`",
    "newline": "n0\ntouch MARKPATH\n",
    "carriage-return": "n0\rtouch MARKPATH",
    "single-quote": "n0'; touch MARKPATH; '",
    "double-quote": 'n0"; touch MARKPATH; "',
    "semicolon": "n0; touch MARKPATH",
    "and": "n0 && touch MARKPATH",
    "pipe": "n0 | touch MARKPATH",
    "yaml-document": "n0\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: evil\n# MARKPATH\n",
    "python-triple-double": 'n0"""\nimport os; os.system("touch MARKPATH")\n"""',
    "python-triple-single": "n0'''\nimport os; os.system('touch MARKPATH')\n'''",
    "backslash": "n0\\\ntouch MARKPATH",
    "ifs": "${IFS}touch${IFS}MARKPATH",
    "unicode": "n0\u202e$(touch MARKPATH)\u200b\u00e9",
    "terminal-escapes": "\x1b]0;x\x07$(touch MARKPATH)\x1b[2J",
    "control-characters": "n0\x01\x02\x7f\x08$(touch MARKPATH)",
    "glob": "*$(touch MARKPATH)",
    "flag": "--port=1; touch MARKPATH",
    "yaml-number": "08",  # valid names that YAML readers other than PyYAML would read as a number or a boolean
    "yaml-boolean": "y",
}
FIELDS = ["node", "id", "gpu", "generator", "model_name", "topology_name", "model_path"]
STUBS = ["vllm", "vllm-router", "python", "python3", "ray", "trtllm-serve", "trtllm-llmapi-launch", "mpirun", "nvidia-smi", "curl",
         "sleep", "sglang"]
END = "--end-of-argv--"

SEARCHES = {
    "unified": dict(topology="dgx-h100x2", model="llama-3.1-70b", tpot_ms=50, disaggregation="off"),
    "multi": dict(topology="dgx-h100x2-rdma200", model="llama-3.1-405b", disaggregation="off"),
    "pools": dict(topology="dgx-h100x2", model="llama-3.1-70b", isl=8192, osl=256, tpot_ms=40, runtime="sglang"),
    "dp": dict(topology="dgx-h100x4", model="deepseek-v3", isl=2048, osl=512, disaggregation="off"),
}
# (plan, target, whether the renamed node reaches a program as (part of) an argument)
COMBOS = [("unified", "vllm", False), ("unified", "sglang", False), ("unified-even", "trtllm", False),
          ("unified", "ray", True), ("unified", "k8s", False),
          ("multi", "vllm", True), ("multi", "sglang", True), ("multi", "ray", True), ("multi", "k8s", False),
          ("trtllm-multi", "trtllm", True), ("pools", "sglang", True), ("pools", "ray", True),
          ("dp", "vllm", False), ("dp", "sglang", True), ("dp", "k8s", False)]


@pytest.fixture(scope="module")
def plans() -> dict[str, Plan]:
    return build_plans()


def build_plans() -> dict[str, Plan]:
    """The plans of SEARCHES (and two trtllm variants), read back as a plan file would be
    (benchmarks/robustness.py builds its hostile plans from the same)."""
    out = {}
    for name, kw in SEARCHES.items():
        p = api.search(**kw, time_limit_s=10.0, workers=1, seed=0)
        out[name] = Plan.model_validate(json.loads(p.to_json()))
    assert any(g.role == "prefill" for g in out["pools"].replica_groups)
    assert any(len({k.node for k in r.ranks}) > 1 for g in out["dp"].replica_groups for r in g.replicas)
    out["unified-even"] = _even_split(out["unified"])
    out["trtllm-multi"] = _two_node(out["unified-even"])
    return out


def _even_split(plan: Plan) -> Plan:
    """The plan with an even (front-loaded) layer split, which trtllm-serve applies by itself."""
    g = plan.replica_groups[0]
    layers, pp = sum(g.strategy.layer_split), g.strategy.pp
    split = [layers // pp + (1 if i < layers % pp else 0) for i in range(pp)]
    return _first_group(plan, strategy=g.strategy.model_copy(update={"layer_split": split}))


def _two_node(plan: Plan) -> Plan:
    """The first replica of the plan's group spread evenly over dgx0 and dgx1 (one mpirun launch)."""
    g = plan.replica_groups[0]
    r0 = g.replicas[0]
    half = len(r0.ranks) // 2
    ranks = [k.model_copy(update={"node": "dgx1" if k.rank >= half else "dgx0", "gpu_index": k.rank % half})
             for k in r0.ranks]
    return _first_group(plan, replicas=[r0.model_copy(update={"ranks": ranks})])


# -- putting a payload into a field (no validation: a hand-edited plan) ----------------------------

def _rename_node(plan: Plan, new: str) -> Plan:
    old = plan.replica_groups[0].replicas[0].ranks[0].node
    groups = [g.model_copy(update={"replicas": [r.model_copy(update={"ranks": [
        k.model_copy(update={"node": new}) if k.node == old else k for k in r.ranks]}) for r in g.replicas]})
        for g in plan.replica_groups]
    return plan.model_copy(update={"replica_groups": groups})


def _first_group(plan: Plan, **update) -> Plan:
    g = plan.replica_groups[0].model_copy(update=update)
    return plan.model_copy(update={"replica_groups": [g, *plan.replica_groups[1:]]})


def _inputs(plan: Plan, part: str, **update) -> Plan:
    sub = getattr(plan.inputs, part).model_copy(update=update)
    return plan.model_copy(update={"inputs": plan.inputs.model_copy(update={part: sub})})


def _with_payload(plan: Plan, field: str, payload: str) -> tuple[Plan, str | None]:
    """(the plan with ``payload`` in ``field``, the --model-path to emit with)."""
    if field == "node":
        return _rename_node(plan, payload), None
    if field == "id":
        return _first_group(plan, id=payload), None
    if field == "gpu":
        return _first_group(plan, gpu=payload, stage_gpus=None), None
    if field == "generator":
        return plan.model_copy(update={"generator": payload}), None
    if field == "model_name":
        return _inputs(plan, "model", name=payload), "org/checkpoint"
    if field == "topology_name":
        return _inputs(plan, "topology", name=payload), None
    return plan, payload


def _plain_twin(plan: Plan, field: str, payload: str) -> tuple[Plan, str | None]:
    """What the emitted files are compared with: the same edit with harmless text, or with the payload itself
    when it is a plain name (an id names files, a node name is a host in the load balancers' directives)."""
    return _with_payload(plan, field, payload if re.fullmatch(r"[A-Za-z0-9._-]+", payload) else "plain0")


def _fronted(plan: Plan) -> bool:
    """Whether the runtime targets write a load balancer or router for the plan (more than one endpoint, or
    SGLang's PD router in front of pools), whose hosts are node names held to host-name syntax
    (planner/emit/router.py)."""
    unified = sum(len(g.replicas) for g in plan.replica_groups if g.role == "unified")
    return unified > 1 or any(g.role != "unified" for g in plan.replica_groups)


def _refusal_allowed(field: str, target: str, plan: Plan, payload: str) -> bool:
    return (field == "id" or (field == "node" and (target in ("ray", "k8s") or _fronted(plan)))
            or (field == "model_path" and payload.startswith("-"))  # the runtime would read it as an option
            or (field == "node" and ends_in_number(payload)))  # a resolver would read it as an address


def _nginx_directives(text: str) -> str:
    """An nginx file without its comments (plan text may reach those only)."""
    return "\n".join(line.split("#", 1)[0].rstrip() for line in text.splitlines())


# -- running what was emitted ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def stub_bin(tmp_path_factory) -> Path:
    return write_stub_bin(tmp_path_factory.mktemp("stub-bin"))


def write_stub_bin(d: Path) -> Path:
    """Programs the launch files call, written into ``d``: each appends its name and argv
    (NUL-separated) to $STUB_LOG."""
    for name in STUBS:
        p = d / name
        p.write_text(f"#!/bin/bash\n{{ printf '%s\\0' \"${{0##*/}}\" \"$@\" '{END}'; }} >> \"$STUB_LOG\"\nexit 0\n")
        p.chmod(0o755)
    return d


@pytest.fixture(scope="module")
def stub_ray(tmp_path_factory) -> Path:
    return write_stub_ray(tmp_path_factory.mktemp("stub-ray"))


def write_stub_ray(d: Path) -> Path:
    """A ``ray`` package, written into ``d``, that records the calls ray_placement.py makes ($RAY_STUB_LOG)."""
    (d / "ray" / "util").mkdir(parents=True)
    (d / "ray" / "__init__.py").write_text(
        "import json, os\n"
        "def _log(*a):\n    open(os.environ['RAY_STUB_LOG'], 'a').write(json.dumps(a) + '\\n')\n"
        "def init(**kw):\n    _log('init')\n"
        "def nodes():\n    return []\n")
    (d / "ray" / "util" / "__init__.py").write_text("")
    (d / "ray" / "util" / "placement_group.py").write_text(
        "from ray import _log\n"
        "class _PG:\n    def wait(self, timeout_seconds=None):\n        return True\n"
        "def placement_group(bundles, strategy=None, name=None, lifetime=None):\n"
        "    _log('placement_group', name)\n    return _PG()\n"
        "def placement_group_table(pg):\n    return {'bundles_to_node_id': {}}\n"
        "def get_placement_group(name):\n    return _PG()\n"
        "def remove_placement_group(pg):\n    pass\n")
    return d


def _env(stub_bin: Path, log: Path, plan: Plan) -> dict[str, str]:
    env = {"PATH": f"{stub_bin}:/usr/bin:/bin", "STUB_LOG": str(log), "HOME": str(log.parent), "LANG": "C.UTF-8",
           "LWS_LEADER_ADDRESS": "10.0.0.1", "LWS_WORKER_INDEX": "1", "POD_IP": "10.0.0.2"}
    for n in _nodes(plan):
        env[head_ip_var(n, _nodes(plan))] = "10.0.0.3"
    return env


def _nodes(plan: Plan) -> list[str]:
    return sorted({k.node for g in plan.replica_groups for r in g.replicas for k in r.ranks})


def _argvs(log: Path) -> list[list[str]]:
    if not log.exists():
        return []
    parts = log.read_bytes().decode("utf-8", "surrogateescape").split("\0")
    out, cur = [], []
    for p in parts[:-1]:
        if p == END:
            out.append(cur)
            cur = []
        else:
            cur.append(p)
    return out


def _run_script(path: Path, plan: Plan, env: dict[str, str]) -> None:
    """Run a launch script as its users would: once per plan node (the router: once, no argument)."""
    if "#!/usr/bin/env bash" not in path.read_text(encoding="utf-8").splitlines()[0]:
        raise AssertionError(f"{path.name}: not a bash script")
    args = [[]] if path.name.endswith("-router.sh") else [[n] for n in _nodes(plan)]
    matched = 0
    for a in args:
        r = subprocess.run(["bash", str(path), *a], cwd=path.parent, env=env, capture_output=True, timeout=60)
        if r.returncode == 0:
            matched += 1
        else:  # a node the script does not run on: its usage line, nothing else
            assert r.returncode == 2 and r.stderr.startswith(b"usage: "), (path.name, a, r.returncode, r.stderr)
    assert matched, f"{path.name} ran on none of the plan's nodes"


def _shape(tree: ast.AST) -> str:
    """The syntax tree with every string constant blanked: what code the file holds."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            node.value = ""
    return ast.dump(tree)


def _skeleton(x):
    """Keys and value types of loaded YAML (strings blanked): what the documents are."""
    if isinstance(x, dict):
        return {k: _skeleton(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_skeleton(v) for v in x]
    return "str" if isinstance(x, str) else repr(x)


def _ambiguous_plain_scalars(text: str) -> list[str]:
    """Strings written plain that are not plain-safe (planner/emit/yaml_text.py): kubectl's YAML reader
    or a YAML 1.1 one could take them for a number or a boolean."""
    out = []

    def walk(node):
        if isinstance(node, yaml.ScalarNode):
            if node.style is None and node.tag == "tag:yaml.org,2002:str" and not plain_safe(node.value):
                out.append(node.value)
        elif isinstance(node, yaml.SequenceNode):
            for x in node.value:
                walk(x)
        elif isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                walk(k)
                walk(v)
    for doc in yaml.compose_all(text, Loader=yaml.SafeLoader):
        walk(doc)
    return out


def _container_commands(docs: list) -> list[list[str]]:
    out = []

    def walk(x):
        if isinstance(x, dict):
            if "containers" in x:
                out.extend(c["command"] for c in x["containers"])
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)
    for d in docs:
        walk(d)
    return out


def _check_files(files: dict[str, str], base: dict[str, str], plan: Plan, d: Path, env: dict[str, str],
                 stub_ray: Path) -> list[Path]:
    """Write and use every emitted file (see the module docstring); returns the shell scripts written."""
    d.mkdir(parents=True)
    scripts = []
    for name, text in files.items():
        path = d / name
        path.write_text(text, encoding="utf-8")
        if name.endswith(".sh"):
            scripts.append(path)
            _run_script(path, plan, env)
        elif name.endswith(".py"):
            assert _shape(ast.parse(text)) == _shape(ast.parse(base[name])), f"{name}: code changed"
            run_env = {**env, "PYTHONPATH": str(stub_ray), "RAY_STUB_LOG": str(d / "ray.log")}
            r = subprocess.run([sys.executable, str(path)], cwd=d, env=run_env, capture_output=True, timeout=60)
            assert r.returncode in (0, 1), r.stderr  # 1: the stub cluster placed nothing
            assert (d / "ray.log").exists()
        elif name.endswith((".yaml", ".yml")):
            assert _ambiguous_plain_scalars(text) == [], f"{name}: plain scalars another YAML reader may retype"
            docs, want = list(yaml.safe_load_all(text)), list(yaml.safe_load_all(base[name]))
            assert _skeleton(docs) == _skeleton(want), f"{name}: documents changed"
            for i, cmd in enumerate(_container_commands(docs)):
                if cmd[:2] == ["sh", "-c"]:
                    sh = d / f"{name}.container{i}.sh"
                    sh.write_text(cmd[2], encoding="utf-8")
                    scripts.append(sh)
                    r = subprocess.run(["sh", "-c", cmd[2]], cwd=d, env=env, capture_output=True, timeout=60)
                    assert r.returncode == 0, (name, r.stderr)
        elif name.endswith(".json"):
            json.loads(text)
        elif name.endswith(".conf"):  # nginx: the same directives; nginx -t runs in tests/test_emit_router.py
            assert _nginx_directives(text) == _nginx_directives(base[name]), f"{name}: directives changed"
        else:
            raise AssertionError(f"{name}: no check for this kind of file")
    return scripts


def _shellcheck(paths: list[Path]) -> str:
    """shellcheck's findings (all severities) on the scripts: container scripts as sh, the rest as bash."""
    out = ""
    for shell, group in (("bash", [p for p in paths if ".container" not in p.name]),
                         ("sh", [p for p in paths if ".container" in p.name])):
        if group:
            r = subprocess.run(["shellcheck", "--severity=style", "-s", shell, *map(str, group)],
                               capture_output=True, text=True)
            out += r.stdout + r.stderr
    return out


def _need_shellcheck() -> None:
    if shutil.which("shellcheck") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("shellcheck is not installed (apt-get install shellcheck); CI must run this test")
        pytest.skip("shellcheck is not installed")


# -- tests -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", list(PAYLOADS))
def test_no_payload_runs(kind, plans, stub_bin, stub_ray, tmp_path):
    scripts: list[Path] = []
    for field in FIELDS:
        for pname, target, node_passed in COMBOS:
            where = f"{field}-{pname}-{target}"
            marker = tmp_path / f"mark-{where}"
            payload = PAYLOADS[kind].replace(MARK, str(marker))
            base_plan = plans[pname]
            plan, model_path = _with_payload(base_plan, field, payload)
            try:
                files = emit(plan, target, model_path=model_path)
            except InputError as e:
                assert _refusal_allowed(field, target, base_plan, payload), f"{where}: refused: {e}"
                assert "\n" not in str(e) and "\x1b" not in str(e)
                continue
            assert not (field == "model_path" and payload.startswith("-") and target != "ray"), \
                f"{where}: an option-like model path"  # ray's placement groups name no checkpoint
            plain, plain_path = _plain_twin(base_plan, field, payload)
            base = emit(plain, target, model_path=plain_path)
            if field in ("gpu", "generator", "model_name", "topology_name"):  # comments only: one safe line each
                for name, text in files.items():
                    assert not any(c in text for c in "\r\x1b\x01\x07\x7f\u202e\u200b"), (where, name)
                    assert text.count("\n") == base[name].count("\n"), (where, name)  # no line added
            log = tmp_path / f"{where}.log"
            scripts += _check_files(files, base, plan, tmp_path / where, _env(stub_bin, log, plan), stub_ray)
            assert not marker.exists(), f"{where}: the payload ran"
            argvs = _argvs(log)
            if field == "model_path" and target == "k8s":  # each container's argv, or the programs its sh ran
                docs = [x for t in files.values() for x in yaml.safe_load_all(t)]
                for cmd in _container_commands(docs):
                    assert (payload in cmd if cmd[:2] != ["sh", "-c"] else any(payload in a for a in argvs)), where
            elif field == "model_path" and target != "ray":
                assert any(payload in argv for argv in argvs), f"{where}: model path not passed intact"
            if field == "node" and node_passed and target != "ray":
                assert any(payload in a for argv in argvs for a in argv), f"{where}: node name not passed intact"
    _need_shellcheck()
    assert _shellcheck(scripts) == ""


def test_shellcheck_clean_on_plain_plans(plans, stub_bin, stub_ray, tmp_path):
    """Every script of every plain plan and target, container scripts included, runs with the stubs
    and passes shellcheck at every severity."""
    _need_shellcheck()
    scripts: list[Path] = []
    for pname, target, _ in COMBOS:
        files = emit(plans[pname], target)
        log = tmp_path / f"{pname}-{target}.log"
        scripts += _check_files(files, files, plans[pname], tmp_path / f"{pname}-{target}",
                                _env(stub_bin, log, plans[pname]), stub_ray)
        assert _argvs(log) or target == "k8s", f"{pname}/{target}: no program was started"  # k8s: argv pods
    assert len(scripts) >= len(COMBOS)
    assert _shellcheck(scripts) == ""


def test_shellcheck_finds_what_it_should(tmp_path):
    """The shellcheck run above can fail: an unquoted expansion is reported."""
    _need_shellcheck()
    p = tmp_path / "bad.sh"
    p.write_text('#!/usr/bin/env bash\nx="a b"\necho $x\n', encoding="utf-8")
    assert "SC2086" in _shellcheck([p])


def test_stub_run_sees_an_injection(plans, stub_bin, stub_ray, tmp_path):
    """The harness detects a payload that runs: a script with a pasted command substitution touches the
    marker when it is run the way the test above runs every script."""
    marker = tmp_path / "mark"
    files = emit(plans["unified"], "vllm")
    name = "vllm-g0.sh"
    bad = files[name].replace("  ;;", f"  echo $(touch {marker})\n  ;;", 1)
    assert not marker.exists()
    _check_files({name: bad}, files, plans["unified"], tmp_path / "x",
                 _env(stub_bin, tmp_path / "l", plans["unified"]), stub_ray)
    assert marker.exists()


def test_yaml_strings_keep_their_type():
    """Names that kubectl (go-yaml) or a YAML 1.1 reader would take for numbers or booleans are quoted,
    and every string reads back as itself."""
    tricky = ["08", "09", "y", "N", "off", "1e3", "0o17", "0x1F", "2e1", ".inf", "-1", "~", "null", "1:20", "a: b"]
    text = yaml_dump({"values": tricky, "k": {"08": "y"}})
    assert yaml.safe_load(text) == {"values": tricky, "k": {"08": "y"}}
    assert _ambiguous_plain_scalars(text) == []
    assert '- "08"' in text and '- "y"' in text
    # the check above can fail: PyYAML's own dumper writes 08 plain (its YAML 1.1 resolver reads it as a string)
    assert _ambiguous_plain_scalars(yaml.safe_dump(["08", "plain"])) == ["08"]


@pytest.mark.parametrize("target", ["vllm", "sglang", "trtllm", "k8s", "ray"])
def test_option_like_model_path_refused(plans, target):
    """A --model-path starting with '-' would be read by `vllm serve` or `trtllm-serve` as an option of
    theirs (the model is a positional word): refused in one line, with the fix, by every target alike."""
    plan = plans["unified-even" if target == "trtllm" else "unified"]
    with pytest.raises(InputError, match=r"starts with '-'.*\./--trust-remote-code") as e:
        emit(plan, target, model_path="--trust-remote-code")
    assert e.value.field == "--model-path"
    assert emit(plan, target, model_path="./--trust-remote-code")  # the same folder, named as a path


@pytest.mark.parametrize("path", ["", " ", "\t"])
@pytest.mark.parametrize("target", ["vllm", "k8s", "ray"])
def test_empty_model_path_refused(plans, target, path):
    """An empty --model-path names no checkpoint; it once fell back to the Hugging Face repository
    without a word."""
    with pytest.raises(InputError, match="names no checkpoint") as e:
        emit(plans["unified"], target, model_path=path)
    assert e.value.field == "--model-path"


def test_head_ip_variables_distinct():
    """Node names that differ only in characters a shell name cannot hold get variables of their own."""
    names = ["h-0", "h.0", "h_0", "h0", "dgx-1", "dgx.1"]
    assert len({head_ip_var(n, names) for n in names}) == len(names)
    assert head_ip_var("h_0", ["h_0", "dgx0"]) == "DP_HEAD_IP_h_0"
    assert head_ip_var("gpu-node-1", ["gpu-node-1", "gpu-node-2"]) == "DP_HEAD_IP_gpu_node_1"  # no clash: plain


@pytest.mark.parametrize("host", ["1", "08", "h.0", "n.0x1f", "2130706433"])
def test_host_ending_in_a_number_refused(host):
    """Resolvers and URL parsers read such a name as an IPv4 address (1 is 0.0.0.1), so the load
    balancer would send traffic to that address, not to the node."""
    with pytest.raises(InputError, match="ends in a number"):
        safe_host(Endpoint(host=host, port=8000, share=1.0, note="", field="f"))
    assert safe_host(Endpoint(host="10.0.0.7", port=8000, share=1.0, note="", field="f")) == "10.0.0.7"
    assert safe_host(Endpoint(host="dgx0", port=8000, share=1.0, note="", field="f")) == "dgx0"


@pytest.mark.parametrize("pname, target, use", [("multi", "vllm", "ray start --address"),
                                                ("multi", "ray", "ray start --address"),
                                                ("trtllm-multi", "trtllm", "mpirun -H"),
                                                ("multi", "sglang", "--dist-init-addr"),
                                                ("pools", "sglang", "the load balancer and the routers"),
                                                ("dp", "vllm", "--data-parallel-address")])
def test_node_name_ending_in_a_number_refused_where_it_becomes_a_host(plans, pname, target, use):
    """`ray start --address=1:6379`, `mpirun -H 1:8` and `--dist-init-addr 1:5000` would go to 0.0.0.1."""
    with pytest.raises(InputError, match=f"ends in a number, so {re.escape(use)}"):
        emit(_rename_node(plans[pname], "1"), target)
