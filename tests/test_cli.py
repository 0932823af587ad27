"""The ``plan-search`` command line, driven in-process with click's CliRunner.

Covers: --help on every command, the happy paths of search / evaluate / explain / catalog,
the plan JSON against the shipped schema, determinism, and the two infeasible exit paths.
Malformed and hostile inputs live in tests/test_bad_inputs.py.
"""
from __future__ import annotations

import json
from importlib import resources

import click
import jsonschema
import pytest
from click.testing import CliRunner

from planner.cli import main

SMALL = ["--topology", "dgx-h100x1", "--model", "llama-3.1-8b"]


def run(args: list[str]) -> tuple[int, str, str]:
    """Invoke the CLI in-process; return (exit code, stdout, stderr).

    An uncaught exception (a bug: the CLI should never show a traceback) is re-raised so the
    test fails with it.
    """
    result = CliRunner().invoke(main, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def _all_command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = [prefix]
    for name, cmd in sorted(group.commands.items()):
        if isinstance(cmd, click.Group):
            out.extend(_all_command_paths(cmd, prefix + (name,)))
        else:
            out.append(prefix + (name,))
    return out


COMMAND_PATHS = _all_command_paths(main)


def test_command_walk_finds_every_command():
    names = {" ".join(p) for p in COMMAND_PATHS}
    assert {"", "search", "evaluate", "explain", "topology", "topology validate", "topology show",
            "catalog", "catalog gpus", "catalog models", "catalog topologies"} <= names


@pytest.mark.parametrize("path", COMMAND_PATHS, ids=lambda p: " ".join(p) or "plan-search")
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help(path, flag):
    code, out, err = run([*path, flag])
    assert code == 0, err
    assert out.startswith("Usage: "), out
    assert err == ""


@pytest.mark.parametrize("path", [(), ("topology",), ("catalog",), ("topology", "import")],
                         ids=lambda p: " ".join(p) or "plan-search")
def test_bare_group_prints_help_and_exits_0(path):
    """A group given no command prints its help on stdout and exits 0 (as git and kubectl do), not an
    "error:" with the help folded into it."""
    code, out, err = run(list(path))
    assert code == 0, err
    first = out.splitlines()[0]
    assert first.startswith("Usage: ") and first.endswith(" ".join((*path, "[OPTIONS] COMMAND [ARGS]..."))), out
    assert "Commands:" in out
    assert err == ""


@pytest.mark.parametrize("command", ["search", "evaluate", "explain"])
def test_help_lists_topology_first_and_tp_before_batch(command):
    """Options are listed in the order they are declared: the topology and model first, then (evaluate
    and explain) the strategy from --tp onwards; isl/osl show the defaults search uses."""
    code, out, _ = run([command, "--help"])
    assert code == 0
    flags = [line.split()[0].rstrip(",") for line in out.splitlines() if line.startswith("  -")]
    assert flags[:2] == ["-t", "-m"], flags
    assert "[default: 1024]" in " ".join(out[out.index("--isl"):].split()[:12]), out
    assert "[default: 256]" in " ".join(out[out.index("--osl"):].split()[:12]), out
    if command != "search":
        assert flags.index("--tp") < flags.index("--pp") < flags.index("--batch") < flags.index("--isl")


def test_evaluate_isl_osl_default_as_search():
    """evaluate without --isl/--osl prices 1,024-token prompts and 256-token answers, search's defaults."""
    code, out, err = run(["evaluate", *SMALL, "--tp", "1", "--json"])
    assert code == 0, err
    same = run(["evaluate", *SMALL, "--tp", "1", "--json", "--isl", "1024", "--osl", "256"])
    assert json.loads(out) == json.loads(same[1])
    other = run(["evaluate", *SMALL, "--tp", "1", "--json", "--isl", "512", "--osl", "256"])
    assert json.loads(out) != json.loads(other[1])


def test_version():
    code, out, _ = run(["--version"])
    assert code == 0
    assert "0.1.0" in out


# -- search --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def plan_json() -> str:
    code, out, err = run(["search", *SMALL, "--json"])
    assert code == 0, err
    return out


@pytest.fixture(scope="module")
def plan_schema() -> dict:
    return json.loads((resources.files("planner.plan") / "plan.schema.json").read_text(encoding="utf-8"))


def test_search_report_says_optimal():
    code, out, err = run(["search", *SMALL])
    assert code == 0, err
    assert "OPTIMAL" in out
    assert "llama-3.1-8b" in out and "dgx-h100x1" in out
    assert err == ""


def test_search_json_parses_and_matches_schema(plan_json, plan_schema):
    plan = json.loads(plan_json)
    jsonschema.validate(plan, plan_schema)
    assert plan["solver"]["status"] == "OPTIMAL"
    assert plan["inputs"]["model"]["name"] == "llama-3.1-8b"
    assert plan["inputs"]["topology"]["name"] == "dgx-h100x1"
    assert plan["totals"]["gpus_used"] >= 1


def test_search_output_file_equals_json_stdout(plan_json, tmp_path):
    out_file = tmp_path / "plan.json"
    code, out, err = run(["search", *SMALL, "-o", out_file])
    assert code == 0, err
    assert out_file.read_text(encoding="utf-8") == plan_json
    assert "OPTIMAL" in out  # -o alone still prints the report
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.json"]  # no temp file left behind


def test_search_output_file_with_json_flag(plan_json, tmp_path):
    out_file = tmp_path / "plan.json"
    code, out, err = run(["search", *SMALL, "--json", "-o", out_file])
    assert code == 0, err
    assert out == plan_json
    assert out_file.read_text(encoding="utf-8") == plan_json


def test_search_json_is_deterministic(plan_json):
    code, again, err = run(["search", *SMALL, "--json"])
    assert code == 0, err
    assert again.encode() == plan_json.encode()


@pytest.mark.parametrize("kw", [
    dict(topology="mixed-h100x2-a100x2", model="llama-3.1-70b", tpot_ms=50),
    dict(topology="dgx-h100x128", model="llama-3.1-8b", qps=300, objective="min-gpus", tpot_ms=20),
    dict(topology="hgx-a100x4", model="mixtral-8x7b", objective="latency"),
], ids=["mixed", "min-gpus-1024", "latency"])
def test_proven_plans_do_not_depend_on_workers(kw):
    """With optimality proven, more CP-SAT workers give the same plan, byte for byte, except
    the recorded ``solver.workers`` itself. (Unified replicas: with prefill/decode pools,
    equal-objective optima are common and which one CP-SAT meets first may vary with the
    worker count; one worker, the default, is reproducible run to run.)"""
    from planner import api

    texts = set()
    for workers in (1, 2, 4):
        plan = api.search(isl=1024, osl=256, workers=workers, disaggregation="off", **kw)
        assert plan.solver.status == "OPTIMAL" and plan.solver.workers == workers
        texts.add(plan.model_copy(update={"solver": plan.solver.model_copy(update={"workers": 1})}).to_json())
    assert len(texts) == 1


# -- evaluate / explain --------------------------------------------------------------------------

EVAL_KEYS = {"fits", "memory_per_gpu_bytes", "max_batch_size", "ttft_ms", "tpot_ms", "output_tokens_per_s",
             "output_tokens_per_s_per_gpu"}
MEMORY_KEYS = {"weights", "kv_cache", "activations", "overhead", "total", "capacity"}


def _evaluate(*extra: str) -> dict:
    code, out, err = run(["evaluate", "--topology", "dgx-h100x1", "--model", "llama-3.1-70b", "--json", *extra])
    assert code == 0, err
    return json.loads(out)


def test_evaluate_70b_tp1_does_not_fit():
    """A set-up that does not fit is exit 3 in one line, with no figures (they once came with exit 0)."""
    code, out, err = run(["evaluate", "--topology", "dgx-h100x1", "--model", "llama-3.1-70b", "--json", "--tp", "1",
                          "--weight-dtype", "bf16", "--isl", "1024", "--osl", "256"])
    assert code == 3, err
    assert out == ""
    assert len(err.splitlines()) == 1 and err.startswith("plan-search: infeasible: tp=1 pp=1 dp=1"), err
    assert "GPU memory" in err and "GiB of weights" in err


def test_evaluate_70b_tp2_fits():
    d = _evaluate("--tp", "2", "--isl", "512", "--osl", "128")
    assert EVAL_KEYS <= d.keys()
    assert MEMORY_KEYS <= d["memory_per_gpu_bytes"].keys()
    assert d["fits"] is True
    assert d["max_batch_size"] >= 1
    mem = d["memory_per_gpu_bytes"]
    assert 0 < mem["total"] <= mem["capacity"]
    assert d["ttft_ms"] > 0 and d["tpot_ms"] > 0
    assert d["output_tokens_per_s"] > 0
    assert d["output_tokens_per_s_per_gpu"] == pytest.approx(d["output_tokens_per_s"] / 2, rel=1e-3)


def test_evaluate_text():
    code, out, err = run(["evaluate", "--topology", "dgx-h100x1", "--model", "llama-3.1-70b", "--tp", "2",
                          "--isl", "512", "--osl", "128"])
    assert code == 0, err
    assert "tp=2" in out


def test_explain_mentions_kv_cache():
    code, out, err = run(["explain", "--topology", "dgx-h100x1", "--model", "llama-3.1-70b", "--tp", "2",
                          "--isl", "512", "--osl", "128"])
    assert code == 0, err
    assert "KV cache" in out
    assert err == ""


def test_explain_kv_figures_are_those_the_batch_was_sized_with():
    """The per-token and per-sequence KV figures explain prints are the ones that bound the batch: under
    attention data parallelism a sequence's cache lives on its attention group (TensorRT-LLM: one GPU
    holding every KV head), and a sliding-window model keeps only the window on those layers."""
    import re

    from costmodels.memory import kv_bytes_per_token_per_gpu
    from costmodels.models import get_model
    args = ["explain", "-t", "dgx-b200x1", "-m", "qwen3-235b-a22b", "--weight-dtype", "fp4", "--kv-dtype", "fp8",
            "--runtime", "trtllm", "--tp", "8", "--ep", "8", "--attention-dp", "8", "--isl", "5000", "--osl", "500"]
    code, out, err = run(args)
    assert code == 0, err
    whole = kv_bytes_per_token_per_gpu(get_model("qwen3-235b-a22b"), tp=1, layers=94, kv_dtype="fp8")
    kib, seq_gib = re.search(r"costs (\d+) KiB of KV cache on each GPU of the sequence's attention group "
                             r"\(8 groups share the batch\), one 5500-token sequence ([\d.]+) GiB", out).groups()
    assert int(kib) == round(whole / 1024)
    assert float(seq_gib) == pytest.approx(whole * 5500 / 2**30, abs=1e-3)
    assert "attention and dense layers whole on each GPU, one copy per attention group (8 groups)" in out
    code, out, err = run(["explain", "-t", "dgx-h100x1", "-m", "gemma-2-27b", "--tp", "1", "--isl", "8000",
                          "--osl", "256"])
    assert code == 0, err
    kib, seq_gib = re.search(r"costs (\d+) KiB of KV cache per GPU, one 8256-token sequence ([\d.]+) GiB",
                             out).groups()
    assert float(seq_gib) < int(kib) * 1024 * 8256 / 2**30 * 0.9  # half the layers keep a 4,096-token window


def test_no_tpot_limit_is_said_once_with_the_flags():
    """A plan with no latency limit says so once, naming the flags; a TPOT limit silences it."""
    code, out, err = run(["search", *SMALL, "-q"])
    assert code == 0, err
    hints = [line for line in out.splitlines() if "limit was given" in line]
    assert hints == ["no TPOT or TTFT limit was given: the TPOT and TTFT above are what objective throughput "
                     "leaves them; --tpot-ms and --ttft-ms set limits"], out
    code, out, err = run(["search", *SMALL, "-q", "--ttft-ms", "2000"])
    assert [line for line in out.splitlines() if "limit was given" in line] == [
        "no TPOT limit was given: the TPOT above is what objective throughput leaves it; --tpot-ms sets one"]
    code, out, err = run(["search", *SMALL, "-q", "--tpot-ms", "80"])
    assert code == 0, err
    assert "limit was given" not in out


def test_report_links_in_words():
    """A degree of 1 sends nothing: the report says so rather than 'local -'; spans are words, not ids."""
    code, out, err = run(["search", "-t", "dgx-h100x2", "-m", "llama-3.1-70b", "--tpot-ms", "50", "--qps", "20",
                          "--runtime", "sglang", "-q"])
    assert code == 0, err
    assert "local -" not in out and "(intra)" not in out and "(wide)" not in out, out
    assert "no PP traffic (pp=1)" in out, out
    assert "inside one scale-up domain" in out, out


# -- infeasible requests: exit 3, one line --------------------------------------------------------

def _one_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_unreachable_tpot_exits_3(tmp_path):
    out_file = tmp_path / "plan.json"
    code, out, err = run(["search", "--topology", "dgx-h100x1", "--model", "llama-3.1-70b", "--tpot-ms", "0.5",
                          "-o", out_file])
    assert code == 3
    assert "--tpot-ms" in _one_line(err)
    assert out == ""
    assert not out_file.exists()


def test_model_too_big_for_cluster_exits_3():
    code, out, err = run(["search", "--topology", "pcie-l40sx1", "--model", "llama-3.1-405b"])
    assert code == 3
    line = _one_line(err)
    assert "GiB" in line and "llama-3.1-405b" in line
    assert out == ""



def test_weights_too_big_names_whole_domains_and_the_advice_works():
    """DeepSeek-V3 in FP8 on one 8-GPU node: the weights alone need 9 such GPUs, and one GPU cannot be
    added to a DGX, so the line asks for another 8-GPU node or domain; two such nodes do give a plan."""
    args = ["search", "-m", "deepseek-v3", "--isl", "2048", "--osl", "512", "--tpot-ms", "50",
            "--disaggregation", "off", "-q"]
    code, out, err = run([*args, "-t", "dgx-h100x1"])
    assert code == 3
    line = _one_line(err)
    assert "the cluster's 8 free GPUs" in line and "at least 9 such GPUs" in line, line
    assert "at least one more 8-GPU node or NVLink domain" in line, line
    assert "1 GPU" not in line, line
    code, out, err = run([*args, "-t", "dgx-h100x2"])
    assert code == 0, err
    assert "total: 16 GPUs" in out


def test_topology_validate_counts_agree_in_number():
    code, out, err = run(["topology", "validate", "dgx-h100x1"])
    assert code == 0, err
    assert "1 node, 8 GPUs (8 available), 1 scale-up domain\n" in out, out
    code, out, err = run(["topology", "validate", "dgx-h100x2"])
    assert "2 nodes, 16 GPUs (16 available), 2 scale-up domains\n" in out, out


# -- topology / catalog --------------------------------------------------------------------------

def test_topology_validate_builtin():
    code, out, err = run(["topology", "validate", "dgx-h100x1"])
    assert code == 0, err
    assert out.startswith("dgx-h100x1: ok:")
    assert "8 GPUs" in out


def test_topology_show_builtin_json():
    code, out, err = run(["topology", "show", "dgx-h100x2", "--json"])
    assert code == 0, err
    assert json.loads(out)["links"]


@pytest.mark.parametrize("what, expected", [
    ("gpus", "H100-SXM-80GB"),
    ("models", "llama-3.1-70b"),
    ("topologies", "dgx-h100x2"),
])
def test_catalog(what, expected):
    code, out, err = run(["catalog", what])
    assert code == 0, err
    assert expected in out


@pytest.mark.parametrize("what, expected", [("gpus", "H100-SXM-80GB"), ("models", "llama-3.1-70b"),
                                            ("topologies", "p5.48xlarge")])
def test_catalog_json(what, expected):
    code, out, err = run(["catalog", what, "--json"])
    assert code == 0, err
    rows = json.loads(out)
    assert expected in {row["name"] for row in rows}
    assert all(len(row["source"]) > 20 for row in rows)  # every entry cites where its figures come from
    if what == "gpus":
        gens = {row["name"]: row["pcie_gen"] for row in rows}
        assert gens["H100-SXM-80GB"] == 5 and gens["A100-PCIe-80GB"] == 4


@pytest.mark.parametrize("what, name, reference", [
    ("gpus", "A100-SXM4-80GB", "glennklockwood.com/garden/processors/A100"),   # the first web address
    ("models", "llama-4-scout-17b-16e", "HF meta-llama/Llama-4-Scout-17B-16E"),  # else the first clause
    ("topologies", "p5.48xlarge", "aws.amazon.com/ec2/instance-types/p5"),      # after "Sources:"
    ("topologies", "mixed-h100x2-a100x2", "Figures as dgx-h100x1 and hgx-a100x4"),
])
def test_catalog_tables_show_each_entrys_first_source_reference(what, name, reference):
    code, out, err = run(["catalog", what])
    assert code == 0, err
    lines = out.splitlines()
    assert "source" in lines[0]
    row = next(line for line in lines if line.split()[0] == name)
    assert reference in row
    code, full, _ = run(["catalog", what, "--json"])
    note = next(r["source"] for r in json.loads(full) if r["name"] == name)
    assert len(note) > len(reference) and reference.replace("HF ", "Hugging Face ") in note
    assert max(len(line) for line in lines) <= 220  # the column is cut, the full note is in --json


def test_verbose_logs_the_solver_on_stderr_and_keeps_stdout_clean(plan_json):
    code, out, err = run(["search", *SMALL, "--json", "--verbose"])
    assert code == 0
    assert out == plan_json  # the log does not change the plan or leak into stdout
    assert "CP-SAT" in err or "Starting" in err


def test_quiet_prints_only_the_result():
    code, out, err = run(["search", *SMALL, "--quiet"])
    assert code == 0 and err == ""
    assert "wall time" not in out and "OPTIMAL" in out


def test_search_emit_of_a_config_json_needs_a_model_path(tmp_path):
    """`search --emit` of a model given as a config.json names no checkpoint a launch file could serve: refused
    before the search with the flag `search` has (the message used to name a flag only `emit` had, after the
    whole search); with --model-path it writes the files; --model-path alone is refused."""
    from pathlib import Path
    config = Path(__file__).parent / "corpus" / "models" / "valid-llama" / "config.json"
    out = tmp_path / "launch"
    base = ["search", "-t", "dgx-h100x1", "-m", config, "--time-limit-s", "2", "-q"]
    code, _, err = run([*base, "--emit", "vllm", "--emit-dir", out])
    assert code == 2 and "--model-path" in err and len(err.splitlines()) == 1 and not out.exists()
    code, _, err = run([*base, "--emit", "vllm", "--emit-dir", out, "--model-path", "/models/valid-llama"])
    assert code == 0, err
    assert "/models/valid-llama" in (out / "vllm-g0.sh").read_text()
    code, _, err = run([*base, "--model-path", "/models/valid-llama"])
    assert code == 2 and "add --emit" in err
    code, _, err = run([*base, "--emit", "ray", "--emit-dir", tmp_path / "ray"])  # placement groups name no checkpoint
    assert code == 0, err
