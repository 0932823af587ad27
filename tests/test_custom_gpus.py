"""User-defined GPU types (issue 14): a topology's own ``gpu_types``, a ``gpu_spec`` file it names, and
``topology import --gpu SPEC``.

Covers: a plan end to end on a GPU the catalog lacks (search, plan JSON, check, vLLM emit); the spec file
resolved beside the topology and counted in its hash; hostile figures (NaN, infinity, negative, huge,
strings, bools, unknown keys) refused in one line naming the file and the field, exit 2; a catalog name
refused; an import with a spec file that then plans.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from topologies.errors import InputError
from topologies.load import load_topology

from test_importers import run  # the CLI in-process, a stray exception shown as a traceback

FIX = Path(__file__).parent / "fixtures" / "topology-samples"

ACME = {"bf16_dense_tflops": 400, "fp8_dense_tflops": 800, "memory_gib": 64, "hbm_bandwidth_tbyte_per_s": 2.0,
        "nvlink_gbyte_per_s_per_direction": 200, "nvlink_domain_gpus": 4, "pcie_gen": 5,
        "source": "Acme X1 datasheet (a made-up GPU for tests)"}


def topology(gpu="Acme-X1", **extra) -> dict:
    return {"name": "acme-box", **extra,
            "node_types": {"box": {"gpu": gpu, "gpus_per_node": 4,
                                   "fabric": {"kind": "nvswitch", "nvlink_bandwidth_gbyte_per_s": 200}}},
            "nodes": [{"name": "n0", "type": "box"}], "network": {"kind": "none"}}


def write(path: Path, data) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False) if path.suffix != ".json" else json.dumps(data))
    return path


def one_line_error(args, *mentions) -> str:
    code, _, err = run(args)
    assert code == 2, err
    assert "Traceback" not in err and err.count("\n") == 1, err
    for m in mentions:
        assert m in err, (m, err)
    return err


def test_plan_end_to_end_on_an_inline_gpu_type(tmp_path):
    from planner import api, evaluation
    from planner.emit import emit
    from planner.plan.check import check_plan

    topo = write(tmp_path / "acme.yaml", topology(gpu_types={"Acme-X1": ACME}))
    code, out, err = run(["topology", "validate", topo])
    assert code == 0, err
    plan = api.search(topology=str(topo), model="llama-3.1-8b", disaggregation="off")
    assert {g.gpu for g in plan.replica_groups} == {"Acme-X1"} and plan.totals.output_tokens_per_s > 0
    assert check_plan(plan, topology=str(topo)).ok
    scripts = emit(plan, "vllm")
    assert scripts and all("Acme" not in name for name in scripts)
    # the figures are the ones priced: a slower HBM gives a slower decode
    slow = write(tmp_path / "slow.yaml", topology(gpu_types={"Acme-X1": {**ACME, "hbm_bandwidth_tbyte_per_s": 0.5}}))
    ev = [evaluation.evaluate(topology=str(t), model="llama-3.1-8b", tp=1, batch=8, isl=1024, osl=256) for t in (topo, slow)]
    assert ev[1].metrics.tpot_s > 2 * ev[0].metrics.tpot_s


def test_gpu_spec_file_beside_the_topology_counts_in_its_hash(tmp_path, monkeypatch):
    from planner import api

    d = tmp_path / "cluster"
    d.mkdir()
    write(d / "acme-gpu.yaml", {"gpu_types": {"Acme-X1": ACME}})
    topo = write(d / "acme.yaml", topology(gpu_spec="acme-gpu.yaml"))
    monkeypatch.chdir(tmp_path)  # relative to the topology file, not the working directory
    spec, sha = load_topology(str(topo))
    assert spec.gpu_types["Acme-X1"].bf16_dense_tflops == 400
    plan = api.search(topology=str(topo), model="llama-3.1-8b", disaggregation="off")
    assert plan.replica_groups[0].gpu == "Acme-X1"
    write(d / "acme-gpu.yaml", {"gpu_types": {"Acme-X1": {**ACME, "memory_gib": 32}}})
    assert load_topology(str(topo))[1] != sha  # a changed spec file is a changed topology


NUMERIC_FIELDS = ["bf16_dense_tflops", "memory_gib", "hbm_bandwidth_tbyte_per_s", "fp8_dense_tflops",
                  "nvlink_gbyte_per_s_per_direction", "memory_mib_driver"]
HOSTILE = {"nan": float("nan"), "inf": float("inf"), "negative": -5, "zero": 0, "huge": 1e300,
           "string": "12", "bool": True, "list": [1, 2], "text": "fast"}


@pytest.mark.parametrize("field", NUMERIC_FIELDS)
@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_figure_in_a_spec_file_is_one_line_naming_file_and_field(kind, field, tmp_path):
    spec = write(tmp_path / "gpu.yaml", {"gpu_types": {"Acme-X1": {**ACME, field: HOSTILE[kind]}}})
    topo = write(tmp_path / "t.yaml", topology(gpu_spec="gpu.yaml"))
    one_line_error(["topology", "validate", topo], str(spec), f"gpu_types.Acme-X1.{field}")


@pytest.mark.parametrize("kind", ["nan", "negative", "string", "huge"])
def test_hostile_figure_inline_names_the_topology(kind, tmp_path):
    topo = write(tmp_path / "t.yaml", topology(gpu_types={"Acme-X1": {**ACME, "bf16_dense_tflops": HOSTILE[kind]}}))
    one_line_error(["search", "-t", topo, "-m", "llama-3.1-8b"], str(topo), "gpu_types.Acme-X1.bf16_dense_tflops")


def test_json_spec_file_with_nan_literal(tmp_path):
    spec = tmp_path / "gpu.json"
    spec.write_text(json.dumps({"gpu_types": {"Acme-X1": ACME}}).replace("400", "NaN"))
    topo = write(tmp_path / "t.yaml", topology(gpu_spec="gpu.json"))
    one_line_error(["topology", "validate", topo], str(spec), "gpu_types.Acme-X1.bf16_dense_tflops")


@pytest.mark.parametrize("patch,field,words", [
    ({"tflops": 3}, "gpu_types.Acme-X1.tflops", "unknown key"),
    ({"memory_gib": None}, "gpu_types.Acme-X1.memory_gib", ""),
    ({"nvlink_domain_gpus": 1}, "gpu_types.Acme-X1.nvlink_domain_gpus", "at least 2"),
    ({"pcie_gen": 9}, "gpu_types.Acme-X1.pcie_gen", ""),
    ({"source": "a\x1b[31mred"}, "gpu_types.Acme-X1.source", "control character"),
])
def test_bad_spec_entries(patch, field, words, tmp_path):
    spec = write(tmp_path / "gpu.yaml", {"gpu_types": {"Acme-X1": {**ACME, **patch}}})
    topo = write(tmp_path / "t.yaml", topology(gpu_spec="gpu.yaml"))
    one_line_error(["topology", "validate", topo], str(spec), field, words)


@pytest.mark.parametrize("name", ["H100", "h100-sxm-80gb", "A100_80GB"])
def test_a_catalog_name_is_refused(name, tmp_path):
    topo = write(tmp_path / "t.yaml", topology(gpu=name, gpu_types={name: ACME}))
    one_line_error(["topology", "validate", topo], str(topo), f"gpu_types.{name}", "catalog's")


def test_names_in_both_the_file_and_its_spec_and_missing_spec(tmp_path):
    write(tmp_path / "gpu.yaml", {"gpu_types": {"Acme-X1": ACME}})
    topo = write(tmp_path / "t.yaml", topology(gpu_spec="gpu.yaml", gpu_types={"Acme-X1": ACME}))
    one_line_error(["topology", "validate", topo], "gpu_types.Acme-X1", "keep one")
    topo2 = write(tmp_path / "t2.yaml", topology(gpu_spec="nowhere.yaml"))
    one_line_error(["topology", "validate", topo2], "nowhere.yaml", "does not exist")
    topo3 = write(tmp_path / "t3.yaml", topology(gpu_types={"Acme-X1": ACME, "acme_x1": ACME}))
    one_line_error(["topology", "validate", topo3], "differ only in case")
    topo4 = write(tmp_path / "t4.yaml", topology(gpu="Acme-X2", gpu_types={"Acme-X1": ACME}))
    one_line_error(["topology", "validate", topo4], "node_types.box.gpu", "unknown GPU 'Acme-X2'", "gpu_types")


def test_import_with_a_gpu_spec_writes_it_into_the_topology_and_plans(tmp_path):
    from planner import api

    spec = write(tmp_path / "acme-gpu.yaml", {"gpu_types": {"Acme-X1": ACME}})
    out = tmp_path / "imported.yaml"
    code, _, err = run(["topology", "import", "nvidia-smi", FIX / "nvidia-smi_4x-nv2-bridge-pairs.txt",
                        "--gpu", spec, "-o", out])
    assert code == 0, err
    data = yaml.safe_load(out.read_text())
    (nt,) = data["node_types"].values()
    assert nt["gpu"] == "Acme-X1"
    assert nt["fabric"]["kind"] == "nvlink-pairs" and nt["fabric"]["nvlink_bandwidth_gbyte_per_s"] == 200
    assert nt["fabric"]["pcie_bandwidth_gbyte_per_s"] == 64  # PCIe Gen5 x16 from the spec's pcie_gen
    assert data["gpu_types"]["Acme-X1"]["source"] == ACME["source"]
    plan = api.search(topology=str(out), model="llama-3.1-8b", disaggregation="off")
    assert plan.replica_groups[0].gpu == "Acme-X1"


def test_import_with_a_bad_gpu_spec(tmp_path):
    smi = FIX / "nvidia-smi_4x-nv2-bridge-pairs.txt"
    bad = write(tmp_path / "bad.yaml", {"gpu_types": {"Acme-X1": {**ACME, "memory_gib": -1}}})
    one_line_error(["topology", "import", "nvidia-smi", smi, "--gpu", bad], str(bad), "gpu_types.Acme-X1.memory_gib")
    two = write(tmp_path / "two.yaml", {"gpu_types": {"Acme-X1": ACME, "Acme-X2": ACME}})
    one_line_error(["topology", "import", "nvidia-smi", smi, "--gpu", two], str(two), "with one")
    clash = write(tmp_path / "clash.yaml", {"gpu_types": {"L40S": ACME}})
    one_line_error(["topology", "import", "nvidia-smi", smi, "--gpu", clash], str(clash), "catalog's")
    one_line_error(["topology", "import", "nvidia-smi", smi, "--gpu", tmp_path / "none.yaml"], "none.yaml",
                   "does not exist")


def test_library_callers_get_input_errors():
    from topologies.load import parse_topology

    with pytest.raises(InputError) as e:
        parse_topology(topology(gpu_types={"Acme-X1": {**ACME, "bf16_dense_tflops": float("nan")}}), source="lib")
    assert e.value.field == "gpu_types.Acme-X1.bf16_dense_tflops"


@pytest.mark.parametrize("written", ["H100", "h100-sxm-80gb", "H100-SXM"])
def test_catalog_gpu_by_alias_or_in_any_case_plans_as_its_catalog_name(written, tmp_path):
    """A node type may name a catalog GPU by an alias or in any case, as `--gpu` may: validate, search,
    evaluate and emit work, and the plan names the catalog GPU (this was a KeyError traceback)."""
    from planner import api
    from planner.emit import emit
    from planner.plan.check import check_plan

    topo = write(tmp_path / "box.yaml", topology(gpu=written))
    code, out, err = run(["topology", "validate", topo])
    assert code == 0, err
    code, out, err = run(["evaluate", "-t", topo, "-m", "llama-3.1-8b", "--tp", "4"])
    assert code == 0 and "Traceback" not in err, err
    plan = api.search(topology=str(topo), model="llama-3.1-8b", disaggregation="off", time_limit_s=5.0)
    assert {g.gpu for g in plan.replica_groups} == {"H100-SXM-80GB"}
    assert check_plan(plan, topology=str(topo)).ok
    assert emit(plan, "vllm")


def test_nvlink_domain_whose_trays_spell_one_gpu_differently(tmp_path):
    """An NVLink domain must hold one GPU type, compared by catalog name: trays written `GB200` and
    `GB200-186GB` are one type (this was refused as mixing GPU types)."""
    from pathlib import Path as P
    data = yaml.safe_load((P(__file__).parents[1] / "topologies" / "builtin" / "gb200-nvl72x1.yaml").read_text())
    data["node_types"]["gb200-tray-b"] = {**data["node_types"]["gb200-tray"], "gpu": "GB200"}
    for n in data["nodes"][9:]:
        n["type"] = "gb200-tray-b"
    topo = write(tmp_path / "gb.yaml", data)
    code, out, err = run(["topology", "validate", topo])
    assert code == 0, err
    data["node_types"]["gb200-tray-b"]["gpu"] = "B200-180GB"  # a different GPU in the domain is still refused
    code, out, err = run(["topology", "validate", write(tmp_path / "mixed.yaml", data)])
    assert code == 2 and "mixes GPU types" in err


def test_bridged_pairs_keep_their_own_rate(tmp_path):
    """The per-direction NVLink cap holds NVSwitch nodes to the part's figure; bridged pairs are not held
    to it: a pair's rate is its bridge's or link count's (two MI250X dies share four Infinity Fabric links,
    200 GB/s each way, while the catalog's conservative figure is one link)."""
    data = {"name": "mi250x-box", "node_types": {"box": {
        "gpu": "MI250X", "gpus_per_node": 8,
        "fabric": {"kind": "nvlink-pairs", "nvlink_bandwidth_gbyte_per_s": 200,
                   "pairs": [[0, 1], [2, 3], [4, 5], [6, 7]]}}},
        "nodes": [{"name": "n0", "type": "box"}], "network": {"kind": "none"}}
    code, out, err = run(["topology", "validate", write(tmp_path / "mi250x.yaml", data)])
    assert code == 0, err
