"""`plan-search topology import nvidia-smi|nccl`: machine reports -> topology files.

Covers every fixture in tests/fixtures/topology-samples/ (what fabric, bandwidth, pairs and
NICs come out, and that the file loads), formats the fixtures do not show (ANSI codes, CRLF,
one GPU, the p2p matrix pasted first, ...), determinism, multi-node assembly, malformed and
hostile inputs (one stderr line, exit 2, nothing written), a robustness sweep over truncated
and corrupted copies of every fixture, and the round trip the issue asks for: import, plan,
emit vLLM scripts, and check that every tensor-parallel group's CUDA_VISIBLE_DEVICES are GPUs
that NVLink joins.
"""
from __future__ import annotations

import random
import re
import traceback
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from planner.cli import main
from topologies.errors import InputError
from topologies.importers import GPU_LINK_FACTS, import_topology, scan_nccl, scan_nvidia_smi
from topologies.load import load_topology

FIX = Path(__file__).parent / "fixtures" / "topology-samples"
H100_RAIL = FIX / "nvidia-smi_8x-h100-sxm_nv18_rail-nics.txt"
A100_LEGEND = FIX / "nvidia-smi_8x-a100-sxm_nv12_nic-legend.txt"
L40S = FIX / "nvidia-smi_4x-l40s_pcie-only.txt"
OLD_SOC = FIX / "nvidia-smi_4x-old-driver_soc.txt"
H100_PCIE_BRIDGES = FIX / "nvidia-smi_4x-h100-pcie_nvlink-bridges-0-2_1-3.txt"
H200_LOG = FIX / "nvidia-smi_8x-h200_log-paste-indented.txt"
NV2_PAIRS = FIX / "nvidia-smi_4x-nv2-bridge-pairs.txt"
CUBE_MESH = FIX / "nvidia-smi_8x-hybrid-cube-mesh_nv1-nv2.txt"
NCCL_A100 = FIX / "nccl-topo_8x-a100-sxm_6-nvswitch.xml"
NCCL_H100_PCIE = FIX / "nccl-topo_4x-h100-pcie_nvlink-bridges-0-2_1-3.xml"
NCCL_H200_VM = FIX / "nccl-topo_8x-h200_vm-hidden-nvswitch.xml"
NCCL_HAND = FIX / "nccl-topo-file_hand-written_pci-only.xml"
NCCL_GRAPH = FIX / "nccl-graph-dump_4gpu-rings.xml"
NCCL_A100_PCIE = FIX / "nccl-topo_4x-a100-pcie-80gb_one-gpu-per-numa.xml"
A6000_BRIDGES = FIX / "nvidia-smi_4x-rtx-a6000_nv4-bridge-pairs.txt"
P40_OLD = FIX / "nvidia-smi_8x-tesla-p40_old-driver_soc.txt"


def run(args) -> tuple[int, str, str]:
    """Invoke the CLI in-process; an uncaught exception shows up as a traceback in stderr."""
    result = CliRunner().invoke(main, [str(a) for a in args])
    err = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        err += "".join(traceback.format_exception(*result.exc_info))
    return result.exit_code, result.stdout, err


def imported(args, tmp_path: Path) -> tuple[dict, str, str]:
    """Run an import with -o; check it loads as a topology; return (data, yaml text, stderr)."""
    out = tmp_path / "imported.yaml"
    code, stdout, err = run([*args, "-o", out])
    assert code == 0, err
    assert "Traceback" not in err
    assert stdout.startswith(f"{out}: ")
    text = out.read_text()
    spec, _ = load_topology(out)
    data = yaml.safe_load(text)
    assert spec.name == data["name"]
    code, stdout, err2 = run(["topology", "validate", out])
    assert code == 0, err2
    return data, text, err


def only_type(data: dict) -> dict:
    assert len(data["node_types"]) == 1
    return next(iter(data["node_types"].values()))


# -- the GPU facts table against the catalog --------------------------------------------------------

def test_link_facts_name_catalog_gpus_and_agree_with_its_nvlink_figure():
    from costmodels.hardware import gpu_catalog

    cat = gpu_catalog()
    for name, f in GPU_LINK_FACTS.items():
        assert name in cat, name
        g = cat[name]
        if f.nvlink_gbyte_per_s_per_link is None:
            assert g.nvlink_bytes_per_s is None
        else:  # all the GPU's links x the per-link figure = the catalog's per-direction NVLink bandwidth
            assert f.nvlink_gbyte_per_s_per_link * f.nvlink_max_links * 1e9 == pytest.approx(g.nvlink_bytes_per_s)
        assert f.nvlink_source and f.pcie_source


# -- every fixture ----------------------------------------------------------------------------------

def test_h100_nvswitch_rail_nics_two_nodes(tmp_path):
    data, _, err = imported(["topology", "import", "nvidia-smi", H100_RAIL, "--gpu", "h100",
                                "--nodes", "2", "--nic-gbit-per-s", "400"], tmp_path)
    nt = only_type(data)
    assert nt["gpu"] == "H100-SXM-80GB" and nt["gpus_per_node"] == 8
    assert nt["fabric"] == {"kind": "nvswitch", "nvlink_bandwidth_gbyte_per_s": 450, "pcie_bandwidth_gbyte_per_s": 64}
    assert nt["nics"] == {"count": 8, "bandwidth_gbit_per_s": 400}  # NIC8 (the bond, near no GPU) not counted
    assert data["node_groups"] == [{"prefix": "node", "count": 2, "type": "h100-sxm-80gb-8gpu"}]
    assert data["network"] == {"kind": "single-switch"}
    assert "NIC8 (mlx5_bond_0) not counted" in data["description"]
    assert "18 links x 25 GB/s" in data["description"] and "H100 datasheet" in data["description"]
    assert err == ""


def test_a100_nv12_nic_legend_spaces(tmp_path):
    data, _, _ = imported(["topology", "import", "nvidia-smi", A100_LEGEND, "--gpu", "A100-SXM4-80GB"], tmp_path)
    nt = only_type(data)
    assert nt["fabric"] == {"kind": "nvswitch", "nvlink_bandwidth_gbyte_per_s": 300, "pcie_bandwidth_gbyte_per_s": 32}
    assert "nics" not in nt  # one node, no speed given: NICs do not matter
    assert "8 NIC ports within a PCIe switch of a GPU" in data["description"]
    assert "NIC8 (mlx5_8), NIC9 (mlx5_9) not counted" in data["description"]
    assert data["nodes"] == [{"name": "node0", "type": "a100-sxm4-80gb-8gpu"}]
    assert data["network"] == {"kind": "none"}


def test_l40s_pcie_only(tmp_path):
    data, _, _ = imported(["topology", "import", "nvidia-smi", L40S, "--gpu", "L40S", "--nic-gbit-per-s", "100"],
                            tmp_path)
    nt = only_type(data)
    assert nt["fabric"] == {"kind": "pcie", "pcie_bandwidth_gbyte_per_s": 32}
    assert nt["nics"] == {"count": 2, "bandwidth_gbit_per_s": 100}
    assert "NODE, SYS" in data["description"]


def test_old_driver_soc_and_device_named_nic_column(tmp_path):
    scan = scan_nvidia_smi(OLD_SOC.read_text(), "old")
    assert scan.gpus == 4 and scan.pair_links == {} and scan.nics == 1
    assert scan.pcie_paths == ["PIX", "SOC"]
    assert "mlx5_0" in scan.nic_note
    data, _, _ = imported(["topology", "import", "nvidia-smi", OLD_SOC, "--gpu", "L40S"], tmp_path)
    assert only_type(data)["fabric"]["kind"] == "pcie"


def test_h100_pcie_bridges_gpu_named_by_nvidia_smi_l(tmp_path):
    data, _, _ = imported(["topology", "import", "nvidia-smi", H100_PCIE_BRIDGES], tmp_path)  # no --gpu
    nt = only_type(data)
    assert nt["gpu"] == "H100-PCIe-80GB"
    assert nt["fabric"] == {"kind": "nvlink-pairs", "nvlink_bandwidth_gbyte_per_s": 300, "pairs": [[0, 2], [1, 3]],
                            "pcie_bandwidth_gbyte_per_s": 64}
    assert "`nvidia-smi -L`" in data["description"]


def test_log_paste_with_timestamps_and_indentation(tmp_path):
    data, _, _ = imported(["topology", "import", "nvidia-smi", H200_LOG, "--gpu", "H200"], tmp_path)
    nt = only_type(data)
    assert nt["gpu"] == "H200-SXM-141GB" and nt["gpus_per_node"] == 8
    assert nt["fabric"]["kind"] == "nvswitch" and nt["fabric"]["nvlink_bandwidth_gbyte_per_s"] == 450
    scan = scan_nvidia_smi(H200_LOG.read_text(), "log")
    assert scan.nics == 2 and "NIC0 (mlx5_0)" in scan.nic_note


def test_nv2_bridge_pairs(tmp_path):
    data, _, _ = imported(["topology", "import", "nvidia-smi", NV2_PAIRS, "--gpu", "A100"], tmp_path)
    f = only_type(data)["fabric"]
    assert f == {"kind": "nvlink-pairs", "nvlink_bandwidth_gbyte_per_s": 50, "pairs": [[0, 1], [2, 3]],
                 "pcie_bandwidth_gbyte_per_s": 32}  # 2 links x 25 GB/s


def test_partial_mesh_is_written_as_pairs_with_a_warning(tmp_path):
    data, _, err = imported(["topology", "import", "nvidia-smi", CUBE_MESH, "--gpu", "A100"], tmp_path)
    f = only_type(data)["fabric"]
    assert f["kind"] == "nvlink-pairs" and f["nvlink_bandwidth_gbyte_per_s"] == 50
    pairs = [tuple(p) for p in f["pairs"]]
    assert sorted(x for p in pairs for x in p) == list(range(8))  # a perfect matching
    mesh = scan_nvidia_smi(CUBE_MESH.read_text(), "m").pair_links
    assert all(mesh[p] == 2 for p in pairs)  # the NV2 links, not the NV1s
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("plan-search: warning: ") and "partial mesh" in lines[0]
    assert "Warnings:" in data["description"]


def test_nccl_a100_six_nvswitches(tmp_path):
    data, _, err = imported(["topology", "import", "nccl", NCCL_A100, "--nodes", "4"], tmp_path)  # GPU from PCI id
    nt = only_type(data)
    assert nt["gpu"] == "A100-SXM4-80GB"
    assert nt["fabric"] == {"kind": "nvswitch", "nvlink_bandwidth_gbyte_per_s": 300, "pcie_bandwidth_gbyte_per_s": 32}
    assert nt["nics"] == {"count": 8, "bandwidth_gbit_per_s": 200}  # eth0 (gdr=0) not counted; speed from the XML
    assert "0x20b2" in data["description"] and "eth0 not counted" in data["description"]
    assert err == ""


def test_nccl_gpu_to_gpu_bridges(tmp_path):
    data, _, _ = imported(["topology", "import", "nccl", NCCL_H100_PCIE], tmp_path)
    nt = only_type(data)
    assert nt["gpu"] == "H100-PCIe-80GB"
    assert nt["fabric"]["pairs"] == [[0, 2], [1, 3]] and nt["fabric"]["nvlink_bandwidth_gbyte_per_s"] == 300
    assert nt["nics"] == {"count": 1, "bandwidth_gbit_per_s": 400}


def test_nccl_vm_with_hidden_nvswitch(tmp_path):
    data, _, _ = imported(["topology", "import", "nccl", NCCL_H200_VM], tmp_path)
    nt = only_type(data)
    assert nt["gpu"] == "H200-SXM-141GB" and nt["fabric"]["kind"] == "nvswitch"
    assert nt["fabric"]["nvlink_bandwidth_gbyte_per_s"] == 450


def test_nccl_hand_written_file_without_gpu_elements(tmp_path):
    data, _, err = imported(["topology", "import", "nccl", NCCL_HAND, "--gpu", "A100", "--nodes", "2",
                             "--nic-gbit-per-s", "200"], tmp_path)
    nt = only_type(data)
    assert nt["gpus_per_node"] == 4 and nt["fabric"]["kind"] == "pcie"
    assert nt["nics"] == {"count": 4, "bandwidth_gbit_per_s": 200}
    assert "no <gpu> elements" in err and len(err.strip().splitlines()) == 1


def test_nccl_ids_and_sm_are_read():
    scan = scan_nccl(NCCL_A100.read_text(), "a")
    assert scan.sm == 80 and scan.switch_links == [12] * 8 and scan.nic_gbit_per_s == 200
    scan = scan_nccl(NCCL_H100_PCIE.read_text(), "b")
    assert scan.pair_links == {(0, 2): 12, (1, 3): 12} and scan.switch_links is None


# -- formats the fixtures do not show ----------------------------------------------------------------

def _table(cells: list[list[str]], *, tabs: bool = True, extra: str = "") -> str:
    n = len(cells)
    sep = "\t" if tabs else "    "
    head = sep + sep.join(f"GPU{i}" for i in range(n)) + sep + "CPU Affinity" + sep + "NUMA Affinity\n"
    rows = "".join(f"GPU{i}" + sep + sep.join(c) + sep + "0-7" + sep + "0\n" for i, c in enumerate(cells))
    return head + rows + extra


def _scan(text: str):
    return scan_nvidia_smi(text, "t.txt")


def test_tabs_spaces_crlf_ansi_and_prefixes_read_the_same():
    cells = [[" X ", "NV4", "SYS", "SYS"], ["NV4", " X ", "SYS", "SYS"],
             ["SYS", "SYS", " X ", "NV4"], ["SYS", "SYS", "NV4", " X "]]
    base = _scan(_table(cells))
    variants = [
        _table(cells, tabs=False),
        _table(cells).replace("\n", "\r\n"),
        "\x1b[4m" + _table(cells).replace("GPU3\tCPU", "GPU3\x1b[0m\tCPU"),
        "".join(f"[rank0]:    {line}\n" for line in _table(cells).splitlines()),
        "\n\n   \n" + "".join(f"        {line}\n\n" for line in _table(cells).splitlines()),
    ]
    for v in variants:
        s = _scan(v)
        assert (s.gpus, s.pair_links, s.pcie_paths) == (base.gpus, base.pair_links, base.pcie_paths), v
    assert base.pair_links == {(0, 1): 4, (2, 3): 4}


def test_single_gpu_and_p2p_matrix_before_the_topology():
    one = _scan("\tGPU0\tCPU Affinity\tNUMA Affinity\tGPU NUMA ID\nGPU0\t X \t0-31\t0\t\tN/A\n")
    assert one.gpus == 1 and one.pair_links == {}
    p2p = " \tGPU0\tGPU1\t\n GPU0\tX\tOK\t\n GPU1\tOK\tX\t\n\nLegend:\n\n  X    = Self\n  OK   = Status Ok\n\n"
    both = _scan(p2p + _table([[" X ", "NV12"], ["NV12", " X "]]))
    assert both.gpus == 2 and both.pair_links == {(0, 1): 12}


def test_gpu_model_from_nvidia_smi_l_lines_and_conflict_with_gpu_flag():
    text = ("GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-1)\nGPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-2)\n"
            + _table([[" X ", "NV18"], ["NV18", " X "]]))
    assert _scan(text).gpu_facts.name == "H100-SXM-80GB"
    odd = _scan(text.replace("H100 80GB HBM3", "Quadro RTX 8000"))
    assert odd.gpu_facts is None and "Quadro RTX 8000" in odd.gpu_evidence


def test_gb200_tray_warns_about_the_nvl72_domain(tmp_path):
    p = tmp_path / "gb200.txt"
    cells = [[" X " if i == j else "NV18" for j in range(4)] for i in range(4)]
    p.write_text(_table(cells))
    r = import_topology("nvidia-smi", [str(p)], gpu="GB200-186GB")
    assert only_type(r.data)["fabric"]["nvlink_bandwidth_gbyte_per_s"] == 900
    assert any("nvlink_domains" in w for w in r.warnings)


def test_unequal_nvswitch_link_counts_take_the_smallest(tmp_path):
    text = NCCL_A100.read_text().replace('count="2" tclass', 'count="1" tclass', 1)
    p = tmp_path / "degraded.xml"
    p.write_text(text)
    r = import_topology("nccl", [str(p)])
    assert only_type(r.data)["fabric"]["nvlink_bandwidth_gbyte_per_s"] == 275  # 11 links x 25
    assert any("unequal" in w for w in r.warnings)


# -- determinism and assembly -------------------------------------------------------------------------

def test_output_is_byte_identical_and_stdout_equals_the_file(tmp_path):
    args = ["topology", "import", "nvidia-smi", A100_LEGEND, OLD_SOC, "--gpu", "A100", "--nic-gbit-per-s", "200"]
    _, a, _ = run(args)
    _, b, _ = run(args)
    assert a == b and a.startswith("# Generated by")
    out = tmp_path / "t.yaml"
    code, _, err = run([*args, "-o", out])
    assert code == 0, err
    assert out.read_text() == a
    code, c, _ = run(["topology", "import", "nccl", NCCL_A100])
    _, d, _ = run(["topology", "import", "nccl", NCCL_A100])
    assert c == d


def test_several_files_make_distinct_node_types_only_where_shapes_differ(tmp_path):
    data, _, _ = imported(["topology", "import", "nvidia-smi", A100_LEGEND, OLD_SOC, A100_LEGEND, "--gpu", "A100",
                           "--nic-gbit-per-s", "200", "--name", "mixed"], tmp_path)
    assert data["name"] == "mixed"
    assert sorted(data["node_types"]) == ["a100-sxm4-80gb-4gpu", "a100-sxm4-80gb-8gpu"]
    assert [n["type"] for n in data["nodes"]] == ["a100-sxm4-80gb-8gpu", "a100-sxm4-80gb-4gpu", "a100-sxm4-80gb-8gpu"]
    assert [n["name"] for n in data["nodes"]] == ["node0", "node1", "node2"]
    assert f"{OLD_SOC} (node1)" in data["description"]


def test_standard_input(tmp_path):
    result = CliRunner().invoke(main, ["topology", "import", "nvidia-smi", "-", "--gpu", "L40S"],
                                input=L40S.read_text())
    assert result.exit_code == 0, result.stderr
    data = yaml.safe_load(result.stdout)
    assert only_type(data)["gpus_per_node"] == 4 and data["name"] == "imported"
    assert "<stdin>" in data["description"]
    result = CliRunner().invoke(main, ["topology", "import", "nvidia-smi", "-", "--gpu", "L40S"], input="")
    assert result.exit_code == 2 and "nothing on standard input" in result.stderr


def test_nccl_and_nvidia_smi_agree_on_the_same_machine(tmp_path):
    a = import_topology("nvidia-smi", [str(H100_PCIE_BRIDGES)]).data
    b = import_topology("nccl", [str(NCCL_H100_PCIE)]).data
    assert only_type(a)["fabric"] == only_type(b)["fabric"]


# -- bad input: one line, exit 2, nothing written ----------------------------------------------------

def _mutate(src: Path, old: str, new: str, count: int = 1):
    def make(d: Path) -> Path:
        text = src.read_text()
        assert old in text, old
        p = d / f"bad-{src.name}"
        p.write_text(text.replace(old, new, count))
        return p
    return make


def _write(name: str, data: str | bytes):
    def make(d: Path) -> Path:
        p = d / name
        (p.write_bytes if isinstance(data, bytes) else p.write_text)(data)
        return p
    return make


def _cut(src: Path, frac: float):
    def make(d: Path) -> Path:
        text = src.read_text()
        p = d / f"cut-{src.name}"
        p.write_text(text[: int(len(text) * frac)])
        return p
    return make


BOMB = ('<?xml version="1.0"?>\n<!DOCTYPE system [\n <!ENTITY a "aaaaaaaaaa">\n'
        + "".join(f' <!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">\n' for i in range(8))
        + ']>\n<system version="1"><cpu>&i;</cpu></system>\n')
SMI = ("topology", "import", "nvidia-smi")
NCCL = ("topology", "import", "nccl")

BAD = [
    # (id, args with "{file}", a maker for {file} or None, what stderr must mention)
    ("missing-file", (*SMI, "{tmp}/nope.txt", "--gpu", "H100"), None, ("nope.txt", "does not exist")),
    ("directory", (*SMI, "{tmp}", "--gpu", "H100"), None, ("not a regular file",)),
    ("non-utf8", (*SMI, "{file}", "--gpu", "H100"), _write("latin1.txt", "\tGPU0\tGPU1\n\xe9".encode("latin-1")),
     ("latin1.txt", "not UTF-8", "byte")),
    ("empty", (*SMI, "{file}", "--gpu", "H100"), _write("empty.txt", " \n\n"), ("empty.txt", "empty")),
    ("huge", (*SMI, "{file}", "--gpu", "H100"), _write("huge.txt", "x" * (17 * 2**20)), ("huge.txt", "limit")),
    ("no-table", (*SMI, "{file}", "--gpu", "H100"), _write("prose.txt", "nvidia-smi: command not found\n"),
     ("prose.txt", "no `nvidia-smi topo -m` table", "GPU0")),
    ("no-gpu-rows", (*SMI, "{file}", "--gpu", "H100"), _cut(H100_RAIL, 0.05), ("cut-", "GPU0", "truncated")),
    ("truncated-row", (*SMI, "{file}", "--gpu", "H100"), _cut(H100_RAIL, 0.30), ("cut-", "row GPU", "truncated")),
    ("missing-row", (*SMI, "{file}", "--gpu", "H100"),
     _mutate(H100_RAIL, "GPU5\tNV18", "GPX5\tNV18"), ("row GPU5", "missing")),
    ("garbled-cell", (*SMI, "{file}", "--gpu", "H100"),
     _mutate(H100_RAIL, "GPU2\tNV18\tNV18", "GPU2\tNV1B\tNV18"), ("row GPU2", "column GPU0", "'NV1B'")),
    ("asymmetric", (*SMI, "{file}", "--gpu", "H100"),
     _mutate(H100_RAIL, "GPU3\tNV18\tNV18", "GPU3\tSYS\tNV18"), ("row GPU0, column GPU3", "not symmetric")),
    ("non-square-short", (*SMI, "{file}", "--gpu", "H100"),
     _mutate(H100_RAIL, "GPU1\tNV18\t X \tNV18", "GPU1\tNV18\t X "), ("row GPU1", "columns")),
    ("non-square-long", (*SMI, "{file}", "--gpu", "L40S"),
     _mutate(L40S, "GPU0\t X \tNODE", "GPU0\t X \tNODE\tSYS"), ("row GPU0", "not square")),
    ("diagonal", (*SMI, "{file}", "--gpu", "H100"),
     _mutate(H100_RAIL, "GPU4\tNV18\tNV18\tNV18\tNV18\t X ", "GPU4\tNV18\tNV18\tNV18\tNV18\tNV18"),
     ("row GPU4, column GPU4", "X (self)")),
    ("duplicate-row", (*SMI, "{file}", "--gpu", "L40S"), _mutate(L40S, "\nGPU3\t", "\nGPU2\t"),
     ("row GPU2", "twice")),
    ("header-gap", (*SMI, "{file}", "--gpu", "L40S"), _mutate(L40S, "\tGPU2\t", "\tGPU7\t"),
     ("GPU7", "GPU2", "header")),
    ("unknown-gpu", (*SMI, H100_RAIL, "--gpu", "H900"), None, ("--gpu", "unknown GPU 'H900'", "catalog gpus")),
    ("gpu-not-nvidia", (*SMI, H100_RAIL, "--gpu", "MI300X"), None, ("--gpu", "MI300X-192GB", "H100-SXM-80GB")),
    ("gpu-without-nvlink", (*SMI, H100_RAIL, "--gpu", "L40S"), None, ("NV18", "L40S-48GB has no NVLink", "--gpu")),
    ("gpu-too-few-links", (*SMI, H100_RAIL, "--gpu", "A100"), None, ("NV18", "at most 12", "--gpu")),
    ("gpu-not-named", (*SMI, H100_RAIL), None, (H100_RAIL.name, "--gpu", "H100-SXM-80GB, H200-SXM-141GB")),
    ("multi-node-no-speed", (*SMI, H100_RAIL, "--gpu", "H100", "--nodes", "2"), None,
     ("--nic-gbit-per-s", "required", "400")),
    ("multi-node-no-nics", (*SMI, NV2_PAIRS, NV2_PAIRS, "--gpu", "A100", "--nic-gbit-per-s", "100"), None,
     (NV2_PAIRS.name, "no NICs", "--nics-per-node")),
    ("nodes-with-files", (*SMI, L40S, L40S, "--gpu", "L40S", "--nodes", "3"), None, ("--nodes", "one file")),
    ("nodes-zero", (*SMI, L40S, "--gpu", "L40S", "--nodes", "0"), None, ("--nodes",)),
    ("no-file", SMI, None, ("FILE",)),
    ("output-folder-missing", (*SMI, L40S, "--gpu", "L40S", "-o", "{tmp}/no/such/t.yaml"), None,
     ("folder does not exist",)),
    ("nccl-graph-dump", (*NCCL, NCCL_GRAPH), None, ("NCCL graph dump", "NCCL_TOPO_DUMP_FILE")),
    ("nccl-truncated", (*NCCL, "{file}"), _cut(NCCL_A100, 0.5), ("cut-", "invalid XML at line", "truncated")),
    ("nccl-bomb", (*NCCL, "{file}"), _write("bomb.xml", BOMB), ("bomb.xml", "refusing XML", "entities")),
    ("nccl-external-entity", (*NCCL, "{file}"),
     _write("xxe.xml", '<?xml version="1.0"?>\n<!DOCTYPE system [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n'
                       '<system>&x;</system>\n'), ("xxe.xml", "refusing XML")),
    ("nccl-wrong-root", (*NCCL, "{file}"), _write("plan.xml", "<plan><gpu dev='0'/></plan>\n"),
     ("plan.xml", "<plan>", "<system>")),
    ("nccl-no-gpus", (*NCCL, "{file}"), _write("cpu.xml", '<system version="1"><cpu numaid="0"/></system>\n'),
     ("cpu.xml", "no GPUs")),
    ("nccl-bad-count", (*NCCL, "{file}"), _mutate(NCCL_H100_PCIE, 'count="12"', 'count="twelve"'),
     ("<gpu dev='0'>", "count='twelve'", "not a number")),
    ("nccl-mixed-sm", (*NCCL, "{file}"), _mutate(NCCL_A100, 'sm="80"', 'sm="90"'), ("different generations",)),
    ("nccl-not-xml", (*NCCL, H100_RAIL), None, (H100_RAIL.name, "invalid XML at line 1")),
    ("nccl-uncatalogued-gpu", (*NCCL, "{file}"), _mutate(NCCL_H100_PCIE, 'device="0x2331"', 'device="0x2322"', 4),
     ("0x2322", "H800 PCIe", "--gpu")),
]


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_input_is_one_line_exit_2_nothing_written(case, tmp_path):
    _, args, make, mentions = case
    work = tmp_path / "work"
    work.mkdir()
    f = make(work) if make else None
    out = tmp_path / "out.yaml"
    args = [str(a).replace("{file}", str(f)).replace("{tmp}", str(work)) for a in args]
    if "-o" not in args and len(args) > 3:
        args += ["-o", str(out)]
    code, stdout, err = run(args)
    assert code == 2, (code, err)
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("plan-search: error: "), err
    for m in mentions:
        assert m in lines[0], (m, lines[0])
    assert stdout == ""
    assert not out.exists()
    assert not [p for p in tmp_path.rglob(".*.tmp")]


def test_robustness_sweep_never_crashes(tmp_path):
    """Cut every fixture at many points and corrupt random bytes: always a result or an InputError."""
    rng = random.Random(7)
    outcomes = {"ok": 0, "error": 0}
    for src in sorted(FIX.iterdir()):
        if src.suffix not in (".txt", ".xml"):
            continue
        fmt = "nccl" if src.suffix == ".xml" else "nvidia-smi"
        text = src.read_text()
        variants = [text[: len(text) * k // 12] for k in range(1, 12)]
        for _ in range(12):
            chars = list(text)
            for _ in range(rng.randint(1, 6)):
                chars[rng.randrange(len(chars))] = rng.choice(["\t", " ", "\n", "X", "N", "<", ">", '"', "7", "\x00"])
            variants.append("".join(chars))
        for k, v in enumerate(variants):
            p = tmp_path / f"{src.stem}-{k}{src.suffix}"
            p.write_text(v)
            try:
                import_topology(fmt, [str(p)], gpu="A100-SXM4-80GB" if "h100" not in src.name and "h200" not in src.name
                                else ("H100-PCIe-80GB" if "pcie" in src.name else "H100-SXM-80GB"))
                outcomes["ok"] += 1
            except InputError as e:
                assert str(p) in str(e) or str(e).startswith("--"), str(e)
                outcomes["error"] += 1
    assert outcomes["ok"] > 0 and outcomes["error"] > 0, outcomes


# -- round trip: import -> plan -> vLLM scripts -> NVLink-joined TP groups ---------------------------

def _nvlinked_pairs(path: Path) -> set[frozenset[int]]:
    """GPU pairs joined by NVLink, read straight from the `nvidia-smi topo -m` rows (independent of the importer)."""
    out = set()
    for line in path.read_text().splitlines():
        m = re.match(r"^GPU(\d+)\t(.*)$", line)
        if m:
            for j, cell in enumerate(m.group(2).split("\t")):
                if cell.startswith("NV"):
                    out.add(frozenset((int(m.group(1)), j)))
    return out


def _tp_groups_from_vllm(files: dict[str, str], plan) -> list[list[int]]:
    """Split every CUDA_VISIBLE_DEVICES of the emitted group scripts into its tensor-parallel groups."""
    groups = []
    for g in plan.replica_groups:
        text, tp = files[f"vllm-{g.id}.sh"], g.strategy.tp
        for devs in re.findall(r"CUDA_VISIBLE_DEVICES=([0-9,]+)", text):
            ids = [int(x) for x in devs.split(",")]
            assert len(ids) % tp == 0
            groups.extend(ids[k:k + tp] for k in range(0, len(ids), tp))
    return groups


@pytest.mark.parametrize("fixture,gpu,kwargs,tp", [
    (H100_RAIL, "h100", dict(model="llama-3.1-70b"), None),
    (H100_PCIE_BRIDGES, None, dict(model="llama-3.1-70b", max_gpus=2), 2),
    (H100_PCIE_BRIDGES, None, dict(model="llama-3.1-70b"), 2),
    (H100_PCIE_BRIDGES, None, dict(model="llama-3.1-8b", objective="latency", max_gpus=2), 2),
    (A6000_BRIDGES, None, dict(model="llama-3.1-8b", objective="latency", max_gpus=2), 2),
], ids=["h100-sxm-nvswitch", "h100-pcie-bridges-2gpus", "h100-pcie-bridges-all", "h100-pcie-bridges-latency",
        "rtx-a6000-bridges-latency"])
def test_round_trip_tp_groups_sit_on_nvlink(fixture, gpu, kwargs, tp, tmp_path):
    from planner import api
    from planner.emit import emit

    out = tmp_path / "imported.yaml"
    args = ["topology", "import", "nvidia-smi", fixture, "-o", out] + (["--gpu", gpu] if gpu else [])
    code, _, err = run(args)
    assert code == 0, err
    plan = api.search(topology=str(out), disaggregation="off", **kwargs)
    if tp is not None:
        assert {g.strategy.tp for g in plan.replica_groups} == {tp}
    nvlinked = _nvlinked_pairs(fixture)
    groups = _tp_groups_from_vllm(emit(plan, "vllm"), plan)
    assert groups
    for grp in groups:
        for a in grp:
            for b in grp:
                if a != b:
                    assert frozenset((a, b)) in nvlinked, (grp, sorted(map(sorted, nvlinked)))


SHARED_SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "topology-samples" / \
    "nvidia-smi-topo-m_8xH100-SXM_dstack.txt"


@pytest.mark.skipif(not SHARED_SAMPLE.is_file(), reason="the shared real-machine sample is not beside this checkout "
                                                        "(its licence keeps it out of the project)")
def test_round_trip_on_the_real_dstack_sample(tmp_path):
    """The real `nvidia-smi topo -m` of an 8x H100 SXM machine (read in place, never copied):
    imported, planned on, emitted for vLLM; each CUDA_VISIBLE_DEVICES is an NVLink-joined set."""
    from planner import api
    from planner.emit import emit

    out = tmp_path / "real.yaml"
    code, _, err = run(["topology", "import", "nvidia-smi", SHARED_SAMPLE, "--gpu", "H100-SXM-80GB", "-o", out])
    assert code == 0, err
    plan = api.search(topology=str(out), model="llama-3.1-70b", disaggregation="off")
    text = "".join(emit(plan, "vllm").values())
    sets = re.findall(r"CUDA_VISIBLE_DEVICES=([\d,]+)", text)
    assert sets and all(len(s.split(",")) >= 2 for s in sets)  # 70B in BF16 needs TP >= 2 on 80 GB GPUs
    spec, _ = load_topology(str(out))
    assert spec.node_types[spec.all_nodes()[0].type].fabric.kind == "nvswitch"  # NV18 everywhere: one domain


# -- GPUs beyond the HGX ones: A100 PCIe, bridged RTX A6000, Tesla P40 (issue 14) --------------------

def test_nccl_a100_pcie_is_named_a100_pcie_not_sxm_and_plans(tmp_path):
    """An NC A100 v4-shaped dump (PCI device 0x20b5, one GPU per NUMA node, each GPU listing an NVLink to
    itself as the Azure VM's NCCL does) is the A100 PCIe 80GB, priced on PCIe: never an A100 SXM4 on NVSwitch."""
    from planner import api

    data, _, err = imported([*NCCL, NCCL_A100_PCIE], tmp_path)
    nt = only_type(data)
    assert nt["gpu"] == "A100-PCIe-80GB" and nt["gpus_per_node"] == 4
    assert nt["fabric"] == {"kind": "pcie", "pcie_bandwidth_gbyte_per_s": 32}
    assert "PCI device 0x20b5" in data["description"] and "list an NVLink to themselves" in err
    plan = api.search(topology=str(tmp_path / "imported.yaml"), model="llama-3.1-70b", disaggregation="off")
    assert {g.gpu for g in plan.replica_groups} == {"A100-PCIe-80GB"}
    assert plan.totals.output_tokens_per_s > 0


def test_smi_rtx_a6000_bridges_named_from_the_file(tmp_path):
    data, _, _ = imported([*SMI, A6000_BRIDGES], tmp_path)
    nt = only_type(data)
    assert nt["gpu"] == "RTX-A6000-48GB"
    assert nt["fabric"] == {"kind": "nvlink-pairs", "nvlink_bandwidth_gbyte_per_s": 56.25, "pairs": [[0, 1], [2, 3]],
                            "pcie_bandwidth_gbyte_per_s": 32}
    assert "4 links x 14.062 GB/s" in data["description"] and "RTX A6000 datasheet" in data["description"]
    # --gpu names it too, by alias
    data2, _, _ = imported([*SMI, A6000_BRIDGES, "--gpu", "RTX-A6000-48GB"], tmp_path)
    assert only_type(data2)["fabric"] == nt["fabric"]


def test_smi_tesla_p40_old_driver_pcie_gen3_and_plans(tmp_path):
    from planner import api

    data, _, _ = imported([*SMI, P40_OLD], tmp_path)
    nt = only_type(data)
    assert nt["gpu"] == "P40-24GB" and nt["gpus_per_node"] == 8
    assert nt["fabric"] == {"kind": "pcie", "pcie_bandwidth_gbyte_per_s": 16}
    assert "Tesla P40" in data["description"] and "SOC" in data["description"]
    plan = api.search(topology=str(tmp_path / "imported.yaml"), model="llama-3.1-8b", disaggregation="off")
    assert {g.gpu for g in plan.replica_groups} == {"P40-24GB"}
    assert plan.totals.output_tokens_per_s > 0


def _fold(text: str, width: int) -> str:
    """What `expand | fold -w WIDTH` (or a mail client wrapping at a fixed width) makes of a table."""
    out = []
    for line in text.expandtabs().split("\n"):
        out += [line[i:i + width] for i in range(0, len(line), width)] or [""]
    return "\n".join(out)


@pytest.mark.parametrize("width", [64, 80, 100])
def test_wrapped_table_refused(width):
    """Wrapped at a fixed width, the table's first lines read as a smaller header and shorter rows: an 8-GPU
    H100 table imported as 7 GPUs (64 columns) or with 1 NIC of 8 (80 columns)."""
    text = _fold(H100_RAIL.read_text(), width)
    with pytest.raises(InputError, match="looks wrapped"):
        scan_nvidia_smi(text, "wrapped.txt")
    assert scan_nvidia_smi(_fold(H100_RAIL.read_text(), 400), "wide.txt").gpus == 8  # wide enough: unchanged


def test_a_log_line_after_the_table_naming_another_nic_is_no_wrap():
    text = H100_RAIL.read_text()
    cut = text.index("Legend:")
    assert scan_nvidia_smi(text[:cut].rstrip("\n") + "\nINFO NIC9 mlx5_9 is down\n\n" + text[cut:], "l.txt").gpus == 8


def test_two_tables_in_one_file_refused():
    """Two nodes' tables pasted together (or `pdsh` output) imported the first node alone."""
    with pytest.raises(InputError, match="a second `nvidia-smi topo -m` table") as e:
        scan_nvidia_smi(L40S.read_text() + "\n" + H100_RAIL.read_text(), "two.txt")
    assert e.value.field == f"line {len(L40S.read_text().splitlines()) + 2}"
    pdsh = "".join(f"{node}: {line}\n" for node, f in (("node1", H100_RAIL), ("node2", A100_LEGEND))
                   for line in f.read_text().splitlines())
    with pytest.raises(InputError, match="a second"):
        scan_nvidia_smi(pdsh, "pdsh.txt")


def test_log_lines_naming_gpu0_before_the_table_are_skipped():
    """A log line such as 'Using GPU0 for rank 0' is no header; the table after it is read. Many such lines
    are each looked at once (they made the scan quadratic: 20,000 took 28 s)."""
    text = "2025-01-01 INFO Using GPU0 for rank 0\n" * 3 + H100_RAIL.read_text()
    assert scan_nvidia_smi(text, "log.txt").gpus == 8
    many = "step: GPU0 util high\n" * 5000 + H100_RAIL.read_text()
    assert scan_nvidia_smi(many, "log.txt").gpus == 8


def test_nccl_gpu_listed_twice_refused():
    """A duplicated <pci> block made a 4-GPU machine 5 GPUs and rewired its NVLink pairs to a GPU that does not
    exist."""
    text = NCCL_H100_PCIE.read_text()
    start = text.index('<pci busid="0000:1b:00.0"')
    end = text.index("</pci>", start) + len("</pci>")
    block = text[start:end]
    with pytest.raises(InputError, match="bus id 0000:1b:00.0: the file lists a GPU twice"):
        scan_nccl(text[:end] + block.replace('dev="0"', 'dev="4"') + text[end:], "dup.xml")
    # two dev numbers alike (NCCL's fused multi-node topologies may number each tray from 0): bus order
    other = block.replace('busid="0000:1b:00.0"', 'busid="0000:ff:00.0"')
    scan = scan_nccl(text[:end] + other + text[end:], "dup.xml")
    assert scan.gpus == 5 and any("PCI bus order" in w for w in scan.warnings)


def test_nccl_link_attributes():
    """An <nvlink count="0"> is refused naming the element (it reached the schema's internal check); a class
    code without its 0x is read as NCCL means it; a huge attribute is not echoed whole."""
    text = NCCL_A100.read_text()
    with pytest.raises(InputError, match="no valid count") as e:
        scan_nccl(text.replace('count="2"', 'count="0"', 1), "zero.xml")
    assert e.value.field.startswith("<gpu dev=")
    assert scan_nccl(text.replace('tclass="0x068000"', 'tclass="068000"'), "no0x.xml").switch_links \
        == scan_nccl(text, "a.xml").switch_links
    huge = NCCL_H100_PCIE.read_text().replace('busid="0000:1b:00.0" class="0x030200" vendor="0x10de" device="0x2331"',
                                              'busid="' + "A" * 100_000 + '" class="0x030200" vendor="0x10de" '
                                              'device="zz"', 1)
    with pytest.raises(InputError) as e:
        scan_nccl(huge, "huge.xml")
    assert len(str(e.value)) < 300


def test_smi_l_lines_of_another_machine_or_mig_devices():
    """`nvidia-smi -L` lines naming more GPUs than the table has come from another machine (they named the
    GPU model of a 4-GPU L40S table H100); MIG devices under a GPU mean it is partitioned: said."""
    lines = "".join(f"GPU {i}: NVIDIA H100 80GB HBM3 (UUID: GPU-{i})\n" for i in range(8))
    with pytest.raises(InputError, match="name GPU 4, but the table has 4 GPUs"):
        scan_nvidia_smi(lines + L40S.read_text(), "l.txt")
    mig = ("GPU 0: NVIDIA A100-SXM4-80GB (UUID: GPU-a)\n  MIG 1g.10gb     Device  0: (UUID: MIG-a)\n"
           + "".join(f"GPU {i}: NVIDIA A100-SXM4-80GB (UUID: GPU-{i})\n" for i in range(1, 8)))
    scan = scan_nvidia_smi(mig + A100_LEGEND.read_text(), "mig.txt")
    assert scan.gpus == 8 and any("GPU 0 is in MIG mode" in w for w in scan.warnings)
    assert not any("MIG" in w for w in scan_nvidia_smi(A100_LEGEND.read_text(), "a.txt").warnings)


def test_an_invisible_character_in_the_header_is_named():
    """A zero-width space after GPU3 made the message blame GPU4 ("names GPU4 where GPU3 was expected")."""
    text = H100_RAIL.read_text().replace("GPU3", "GPU3\u200b", 1)
    with pytest.raises(InputError, match=r"'GPU3\\u200b' holds an invisible character"):
        scan_nvidia_smi(text, "z.txt")
