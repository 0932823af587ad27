#!/usr/bin/env bash
# Fresh-install smoke test: build the wheel from the checkout, install it (not editable) into a
# new venv that inherits nothing from the checkout, and run the INSTALLED `plan-search` from a
# folder outside the checkout: every command once.
#
# Why: the tests import the source tree (tests/conftest.py), so a module or data file missing
# from the wheel (planner.emit once was) passes them and fails on a user's first command.
#
# Usage: bash .ci/installed_smoke.sh   (PYTHON selects the interpreter; default: python)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-python}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
unset PYTHONPATH PYTHONHOME PYTHONSTARTUP
venv="$work/venv"
packages=(planner costmodels topologies)

step() { printf 'smoke: %s\n' "$*"; }
fail() { printf 'smoke: FAILED: %s\n' "$*" >&2; exit 1; }

# cli ARGS...: run the installed plan-search; on a non-zero exit show its output and stop.
cli() {
    step "plan-search $*"
    if ! "$venv/bin/plan-search" "$@" >"$work/out" 2>"$work/err"; then
        cat "$work/out" "$work/err" >&2
        fail "plan-search $* (exit non-zero)"
    fi
}

# nonempty FILE...: every file exists and holds something.
nonempty() {
    local f
    for f in "$@"; do [[ -s $f ]] || fail "$f missing or empty"; done
}

build_wheel() {
    # Build from a copy of the files git knows (tracked or new, not ignored): stale build/ or
    # *.egg-info folders in the checkout cannot leak into the wheel.
    step "building the wheel"
    mkdir -p "$work/src" "$work/wheel"
    (cd "$repo" && git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$work/src")
    "$py" -m pip wheel -q --no-deps -w "$work/wheel" "$work/src" >"$work/pip.log" 2>&1 \
        || { cat "$work/pip.log" >&2; fail "pip wheel"; }
    wheel=$(ls "$work"/wheel/*.whl)
}

check_wheel_contents() {
    # Every file of the three packages in the checkout (code and data) must be in the wheel.
    step "comparing the wheel with the source tree"
    (cd "$repo" && git ls-files --cached --others --exclude-standard -- "${packages[@]}") \
        | grep -v '/__pycache__/' | sort >"$work/source-files"
    "$py" -c 'import sys, zipfile; print("\n".join(sorted(n for n in zipfile.ZipFile(sys.argv[1]).namelist()
                                                      if ".dist-info/" not in n)))' "$wheel" >"$work/wheel-files"
    if ! diff "$work/source-files" "$work/wheel-files" >&2; then
        fail "the wheel and the source tree differ (< only in the source tree, > only in the wheel)"
    fi
}

install_wheel() {
    step "installing the wheel into a fresh venv"
    "$py" -m venv "$venv"
    # The wheel's dependencies come from the configured index; pip's output shows only on failure.
    "$venv/bin/python" -m pip install -q "$wheel" >"$work/pip.log" 2>&1 || { cat "$work/pip.log" >&2; fail "pip install"; }
    mkdir -p "$work/run"
    cd "$work/run"
    # The packages must come from the venv, never from the checkout.
    "$venv/bin/python" - "$repo" <<'EOF' || fail "plan-search imports from outside the venv"
import os, sys
import costmodels, planner, planner.emit, topologies
for m in (planner, planner.emit, costmodels, topologies):
    path = os.path.realpath(m.__file__)
    if not path.startswith(os.path.realpath(sys.prefix)):
        sys.exit(f"{m.__name__} imported from {path}")
EOF
}

smoke_plan_and_emit() {
    cli --help
    cli --version
    cli search -t dgx-h100x2 -m llama-3.1-70b -o plan.json
    cli search -t dgx-h100x2 -m llama-3.1-70b --runtime trtllm -o plan-trtllm.json
    cli search -t dgx-h100x2 -m llama-3.1-70b --tpot-ms 50 --qps 20 -o pools.json
    nonempty plan.json plan-trtllm.json pools.json
    # The shipped JSON Schema is package data: validate the plans with it.
    "$venv/bin/python" - plan.json plan-trtllm.json pools.json <<'EOF' || fail "plans do not validate against the installed schema"
import json, sys
import jsonschema
from planner.plan.schema import load_json_schema
for path in sys.argv[1:]:
    with open(path, encoding="utf-8") as f:
        jsonschema.validate(json.load(f), load_json_schema())
EOF
    cli evaluate -t dgx-h100x1 -m llama-3.1-8b --tp 1 --isl 1024 --osl 256
    cli evaluate -t dgx-h100x1 -m llama-3.1-8b --tp 1 --isl 1024 --osl 256 --json
    cli explain -t dgx-h100x2 -m llama-3.1-70b --tp 4 --pp 2 --isl 1024 --osl 256
    local target plan
    for target in vllm sglang trtllm ray k8s; do
        plan=plan.json
        # TensorRT-LLM cannot pin an uneven layer split: its plan is searched with --runtime trtllm.
        if [[ $target == trtllm ]]; then plan="plan-trtllm.json"; fi
        cli emit --plan "$plan" --target "$target" -o "launch-$target"
        [[ -n $(ls -A "launch-$target") ]] || fail "emit --target $target wrote no file"
    done
    cli emit --plan pools.json --target sglang -o launch-sglang-pools
    [[ -n $(ls -A launch-sglang-pools) ]] || fail "emit of the pools plan wrote no file"
}

smoke_topology_sweep_catalog() {
    local samples="$repo/tests/fixtures/topology-samples"
    cp "$samples/nvidia-smi_8x-h100-sxm_nv18_rail-nics.txt" node0.txt
    cp "$samples/nccl-topo_8x-a100-sxm_6-nvswitch.xml" node0.xml
    cli topology import nvidia-smi node0.txt --gpu H100-SXM-80GB --nodes 2 --nic-gbit-per-s 400 -o smi.yaml
    cli topology import nccl node0.xml -o nccl.yaml
    nonempty smi.yaml nccl.yaml
    cli topology validate smi.yaml
    cli topology show nccl.yaml
    cli search -t nccl.yaml -m llama-3.1-8b -q
    cli topology show dgx-h100x2
    cp "$repo/benchmarks/sweeps/example.yaml" sweep.yaml
    cli sweep sweep.yaml -o sweep.csv --jobs 2 --quiet
    nonempty sweep.csv
    [[ $(wc -l <sweep.csv) -eq 11 ]] || fail "sweep.csv should hold a header and 10 rows"
    cli catalog gpus
    cli catalog gpus --json
    cli catalog models
    cli catalog models --json
    cli catalog topologies
}

build_wheel
check_wheel_contents
install_wheel
smoke_plan_and_emit
smoke_topology_sweep_catalog
step "all installed commands ran"
