"""Malformed and hostile inputs: every one must fail cleanly.

Each case asserts that the CLI
* exits 2 (bad input) -- or 3 where the request is well formed but genuinely infeasible,
  which the case says;
* writes exactly ONE line on stderr, ``plan-search: error: ...`` (or ``infeasible:``), with
  no traceback, naming the file or the flag and, where relevant, the field;
* prints nothing on stdout and, for ``search`` (always run with ``-o``), creates no output
  file and leaves no temp file behind.

Small hand-written inputs live in tests/corpus/ (topologies/ and models/<name>/config.json);
big, binary or filesystem-shaped ones (a YAML alias bomb, a 20 MB file, non-UTF-8 bytes, an
empty file, a directory, ...) are generated under tmp_path at run time.

Click's own usage errors (a bad ``click.Choice``, a non-integer where an integer is
expected, ``-o`` naming a directory) are one line too, like every other mistake.

A case with ``regression=...`` once failed (a traceback, a wrong exit code, a message that
did not name the file); the text says how, so the case keeps it fixed.
"""
from __future__ import annotations

import signal
import threading
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
from click.testing import CliRunner

from planner.cli import main

CORPUS = Path(__file__).parent / "corpus"
TOPO = CORPUS / "topologies"
MODELS = CORPUS / "models"
SMALL_MODEL = "llama-3.1-8b"


class _Timeout(Exception):
    pass


def run(args, *, timeout_s: int = 20) -> tuple[int, str, str]:
    """Invoke the CLI in-process; return (exit code, stdout, stderr).

    An uncaught exception is appended to stderr as the traceback a user would see, so the
    "no Traceback" assertion catches it. A command that runs longer than ``timeout_s`` is
    interrupted (SIGALRM) and reported the same way.
    """
    def on_alarm(signum, frame):
        raise _Timeout(f"plan-search did not answer within {timeout_s} s")

    use_alarm = threading.current_thread() is threading.main_thread()
    if use_alarm:
        old = signal.signal(signal.SIGALRM, on_alarm)
        signal.alarm(timeout_s)
    try:
        result = CliRunner().invoke(main, [str(a) for a in args])
    finally:
        if use_alarm:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, old)
    err = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        err += "".join(traceback.format_exception(*result.exc_info))
    return result.exit_code, result.stdout, err


# -- cases ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...]  # "{file}" -> the generated file, "{tmp}" -> a scratch folder
    mentions: tuple[str, ...]  # stderr must contain each ("{file}" -> the generated file's name)
    code: int | tuple[int, ...] = 2
    make: Callable[[Path], Path] | None = None  # builds a hostile input under a scratch folder
    regression: str | None = None  # how the product once got this case wrong
    timeout_s: int = 20
    corpus: tuple[Path, ...] = field(default=())

    def prepare(self, root: Path) -> tuple[Path | None, Path, list[str]]:
        """Build the case under ``root``: (the generated input or None, the output folder, the
        command-line arguments), a ``search`` always given an ``-o`` that must stay unwritten."""
        scratch, out_dir = root / "in", root / "out"
        scratch.mkdir()
        out_dir.mkdir()
        made = self.make(scratch) if self.make else None

        def fill(s: str) -> str:
            s = s.replace("{tmp}", str(out_dir))
            return s.replace("{file}", str(made)) if made is not None else s

        args = [fill(a) for a in self.args]
        if args[0] == "search" and "-o" not in args:
            args += ["-o", str(out_dir / "out.json")]
        return made, out_dir, args

    def expected_mentions(self, made: Path | None) -> list[str]:
        """What stderr must contain, ``{file}`` being the generated input's name."""
        return [m.replace("{file}", made.name) if made is not None else m for m in self.mentions]


def topo(file: str, *mentions: str, **kw) -> Case:
    """A topology corpus file given to ``search``; stderr must name the file."""
    path = TOPO / file
    return Case(id=f"topology-{Path(file).stem.replace('_', '-')}-{Path(file).suffix[1:]}",
                args=("search", "--topology", str(path), "--model", SMALL_MODEL), mentions=(file, *mentions),
                corpus=(path,), **kw)


def model(folder: str, *mentions: str, file: str = "config.json", **kw) -> Case:
    """A model config from the corpus given to ``search``; stderr must name the file."""
    path = MODELS / folder / file
    return Case(id=f"model-{folder}", args=("search", "--topology", "dgx-h100x1", "--model", str(path)),
                mentions=(f"{folder}/{file}", *mentions), corpus=(path,), **kw)


def generated(id: str, make: Callable[[Path], Path], *mentions: str, as_model: bool = False, **kw) -> Case:
    """A hostile file built at run time; stderr must name it."""
    args = ("search", "--topology", "dgx-h100x1", "--model", "{file}") if as_model else \
        ("search", "--topology", "{file}", "--model", SMALL_MODEL)
    return Case(id=id, args=args, mentions=("{file}", *mentions), make=make, **kw)


def flags(id: str, *args: str, mentions: tuple[str, ...], **kw) -> Case:
    return Case(id=id, args=args, mentions=mentions, **kw)


S = ("search", "--topology", "dgx-h100x1", "--model", SMALL_MODEL)
E = ("evaluate", "--topology", "dgx-h100x1", "--model", SMALL_MODEL, "--isl", "512", "--osl", "128")


# generated inputs ------------------------------------------------------------------------------

def _write(name: str, data: str | bytes) -> Callable[[Path], Path]:
    def make(d: Path) -> Path:
        p = d / name
        (p.write_bytes if isinstance(data, bytes) else p.write_text)(data)
        return p
    return make


def _billion_laughs(d: Path) -> Path:
    """The classic bomb (9 levels of 9 aliases = 9**9 'lol's if expanded), inside a topology."""
    lines = ['lol0: &lol0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 9):
        lines.append(f"lol{i}: &lol{i} [" + ", ".join([f"*lol{i - 1}"] * 9) + "]")
    lines += ["name: bomb", "description: *lol8"]
    p = d / "billion_laughs.yaml"
    p.write_text("\n".join(lines) + "\n")
    return p


def _alias_flood(d: Path) -> Path:
    """More aliases than the loader's budget (1000)."""
    p = d / "alias_flood.yaml"
    p.write_text("x: &x [1, 2, 3]\nname: [" + ", ".join(["*x"] * 5000) + "]\n")
    return p


def _twenty_mb(d: Path) -> Path:
    p = d / "huge.yaml"
    chunk = "# " + "x" * 1021 + "\n"
    with p.open("w") as f:
        f.write("name: huge\n")
        f.write(chunk * (20 * 1024))  # 20 MiB of comment lines
    return p


def _hundred_mb_model(d: Path) -> Path:
    """A 100 MiB config.json (sparse: the size is refused before a byte is read)."""
    p = d / "config.json"
    with p.open("wb") as f:
        f.write(b'{"model_type": "llama", "pad": "')
        f.truncate(100 * 2**20)
    return p


def _directory(d: Path) -> Path:
    p = d / "a_directory.yaml"
    p.mkdir()
    return p


def _symlink_loop(d: Path) -> Path:
    p = d / "loop.yaml"
    p.symlink_to(p)
    return p


def _model_dir_without_config(d: Path) -> Path:
    p = d / "no-config-here"
    p.mkdir()
    (p / "README.md").write_text("not a model\n")
    return p


def _deep(open_: str, close: str, name: str) -> Callable[[Path], Path]:
    return _write(name, open_ * 100_000 + close * 100_000)


BIG_INT = "9" * 5000  # past Python's 4300-digit int-from-string limit

CASES: list[Case] = [
    # --- topology files: syntax ---
    topo("truncated.yaml", "invalid YAML", "line 11"),
    topo("truncated.json", "invalid JSON", "line 1"),
    topo("top_level_list.yaml", "mapping"),
    topo("top_level_list.json", "mapping"),
    topo("top_level_scalar.yaml", "mapping"),
    topo("python_tag.yaml", "invalid YAML", "python/object"),
    # --- topology files: types and ranges ---
    topo("gpus_per_node_string.yaml", "node_types.h100.gpus_per_node", "integer"),
    topo("gpus_per_node_negative.yaml", "node_types.h100.gpus_per_node"),
    topo("gpus_per_node_zero.yaml", "node_types.h100.gpus_per_node"),
    topo("gpus_per_node_absurd.yaml", "node_types.h100.gpus_per_node", "72"),
    topo("gpus_per_node_fractional.yaml", "node_types.h100.gpus_per_node"),
    topo("gpus_per_node_bool.yaml", "node_types.h100.gpus_per_node",
         regression="a YAML boolean is accepted as gpus_per_node (true -> 1 GPU): pydantic lax mode coerces "
             "bool to int; topologies/schema.py NodeType.gpus_per_node should be strict"),
    topo("nics_zero.yaml", "node_types.h100.nics.count"),
    topo("node_group_negative_count.yaml", "node_groups.0.count"),
    topo("bandwidth_negative.yaml", "node_types.h100.fabric.nvlink_bandwidth_gbyte_per_s"),
    topo("bandwidth_nan.yaml", "node_types.h100.fabric.nvlink_bandwidth_gbyte_per_s"),
    topo("bandwidth_infinite.yaml", "node_types.h100.fabric.nvlink_bandwidth_gbyte_per_s",
         regression="an infinite bandwidth (.inf) passes Field(gt=0) and is accepted (the plan JSON then "
             "reports it as 0.0); topologies/schema.py _Strict should set allow_inf_nan=False"),
    topo("oversubscription_below_one.yaml", "network.oversubscription"),
    topo("fabric_kind_unknown.yaml", "node_types.h100.fabric.kind", "nvswitch"),
    topo("unavailable_gpus_string.yaml", "unavailable_gpus"),
    topo("node_type_names_mapping_list.json", "node_types"),
    # --- topology files: structure and cross-references ---
    topo("empty_mapping.yaml", "name", "required"),
    topo("no_nodes.yaml", "nodes", "node_groups"),
    topo("unknown_key_typo.yaml", "netwrok", "unknown key"),
    topo("unknown_nested_key.yaml", "node_types.h100.fabric.nvlink_latnecy_us", "unknown key"),
    topo("duplicate_node_names.yaml", "nodes[2].name", "'n0'"),
    topo("unknown_node_type.yaml", "nodes[0].type", "'h1000'", "h100"),
    topo("unknown_gpu.yaml", "node_types.h100.gpu", "did you mean 'H100-SXM-80GB'",
         regression="the unknown-GPU message names the topology's 'name:' ('bad-gpu'), not the file: "
             "cluster_view (planner/candidates.py:112) passes source=topo.name to get_gpu"),
    topo("unavailable_gpu_out_of_range.yaml", "nodes[0].unavailable_gpus", "8", "0..7"),
    topo("nvlink_pair_out_of_range.yaml", "node_types.a100-pcie.fabric.pairs", "4", "0..3"),
    topo("unreachable_nodes.yaml", "nics", "'n0'"),
    topo("several_nodes_network_none.yaml", "network.kind"),
    topo("nvlink_domain_unknown_node.yaml", "nvlink_domains[0].nodes", "'tray7'"),
    topo("all_gpus_unavailable.yaml", "unavailable",
         regression="the all-GPUs-unavailable message names the topology's 'name:' ('all-busy'), not the "
             "file: cluster_view (planner/candidates.py:116) raises with source=topo.name"),
    # --- topology files: hostile, generated at run time ---
    generated("topology-billion-laughs", _billion_laughs, "description"),
    generated("topology-alias-flood", _alias_flood, "aliases"),
    generated("topology-20mb", _twenty_mb, "MiB"),
    generated("model-100mb", _hundred_mb_model, "MiB", as_model=True),
    generated("topology-non-utf8", _write("latin1.yaml", "name: caf\xe9\n".encode("latin-1")), "UTF-8"),
    generated("topology-nul-byte", _write("nul.yaml", b"name: a\x00b\n"), "invalid YAML"),
    generated("topology-utf8-bom-json", _write("bom.json", b'\xef\xbb\xbf{"name": "x"}'), "node_types"),
    generated("topology-empty-file", _write("empty.yaml", ""), "empty"),
    generated("topology-whitespace-only", _write("blank.yaml", " \n\t\n\n"), "empty"),
    generated("topology-directory", _directory, "not a regular file"),
    generated("topology-symlink-loop", _symlink_loop),
    generated("topology-deeply-nested-yaml", _deep("[", "]", "deep.yaml"), "nests too deeply"),
    generated("topology-deeply-nested-json", _deep("[", "]", "deep.json"), "JSON",
              regression="RecursionError traceback: topologies/load.py:63-66 catches only JSONDecodeError "
                  "around json.loads; catch RecursionError (and ValueError) as the YAML branch does"),
    generated("topology-huge-integer-json", _write("bigint.json", '{"name": "x", "node_types": ' + BIG_INT + "}"),
              "JSON", regression="ValueError (int too long to convert) traceback from json.loads: "
                          "topologies/load.py:63-66 catches only JSONDecodeError"),
    generated("topology-huge-integer-yaml", _write("bigint.yaml", "name: x\nnode_types: " + BIG_INT + "\n"),
              "YAML", regression="ValueError (int too long to convert) traceback from PyYAML's int constructor: "
                          "topologies/load.py:68-76 catches only YAMLError and RecursionError"),
    generated("topology-missing-file", lambda d: d / "does_not_exist.yaml", "does not exist"),
    # --- topology by name ---
    flags("topology-unknown-builtin-name", "search", "--topology", "dgx-h1O0x1", "--model", SMALL_MODEL,
          mentions=("--topology", "dgx-h1O0x1", "did you mean 'dgx-h100x1'")),
    flags("topology-empty-name", "search", "--topology", "", "--model", SMALL_MODEL, mentions=("--topology",),
          regression="an empty --topology is read as Path('') == '.', so the message is '.: not a regular "
              "file' and names neither the flag nor what was typed: topologies/load.py:111-118"),
    # --- model configs ---
    model("missing-hidden-size", "hidden_size", "missing"),
    model("experts-per-tok-gt-experts", "num_experts_per_tok", "10", "8"),
    model("experts-per-tok-without-experts", "num_experts_per_tok"),
    model("kv-heads-not-dividing", "num_key_value_heads", "5", "32"),
    model("kv-heads-gt-heads", "num_key_value_heads", "64"),
    model("hidden-size-string", "hidden_size", "'4096'"),
    model("layers-negative", "num_hidden_layers", "-32"),
    model("vocab-bool", "vocab_size"),
    model("list-config", "JSON object"),
    model("null-config", "JSON object"),
    model("truncated", "invalid JSON"),
    model("yaml-config", ".json", file="config.yaml"),
    Case(id="model-layers-absurd", args=S[:3] + ("--model", str(MODELS / "layers-absurd" / "config.json")),
         mentions=("layers-absurd",), code=(2, 3), corpus=(MODELS / "layers-absurd" / "config.json",),
         timeout_s=3,
         regression="num_hidden_layers: 1000000000 is accepted and search then runs for hours: "
             "costmodels/memory.py:70 stage_weight_bytes sums layer_params layer by layer for every "
             "priced candidate; model_from_config (costmodels/models.py:210) has no upper bound"),
    Case(id="model-context-shorter-than-isl-osl",
         args=S[:3] + ("--model", str(MODELS / "tiny-context" / "config.json")),
         mentions=("--isl", "64"), corpus=(MODELS / "tiny-context" / "config.json",)),
    generated("model-deeply-nested-json", _deep("[", "]", "config.json"), "JSON", as_model=True,
              regression="RecursionError traceback: topologies/load.py:63-66 (shared file reader) catches only "
                  "JSONDecodeError"),
    generated("model-non-utf8", _write("config.json", b'{"hidden_size": "\xff\xfe"}'), "UTF-8", as_model=True),
    generated("model-empty-file", _write("config.json", ""), "empty", as_model=True),
    generated("model-missing-file", lambda d: d / "nowhere" / "config.json", "does not exist", as_model=True),
    generated("model-dir-without-config", _model_dir_without_config, "--model", as_model=True),
    flags("model-unknown-name", *S[:3], "--model", "llama-3.1-8bb",
          mentions=("--model", "llama-3.1-8bb", "did you mean 'llama-3.1-8b'")),
    flags("model-unknown-hf-name", *S[:3], "--model", "meta-llama/Llama-3-70B-Instruct",
          mentions=("--model", "did you mean 'llama-3.1-70b'")),
    # --- flags: workload ---
    flags("isl-negative", *S, "--isl", "-5", mentions=("--isl", "-5")),
    flags("osl-zero", *S, "--osl", "0", mentions=("--osl",)),
    flags("isl-osl-beyond-context", *S, "--isl", "130000", "--osl", "2000", mentions=("--isl", "131072")),
    flags("isl-beyond-context-huge", *S, "--isl", "99999999999999999999", mentions=("--isl",)),
    flags("isl-not-an-integer", *S, "--isl", "1e3", mentions=("--isl",)),
    flags("qps-negative", *S, "--qps", "-1", mentions=("--qps",)),
    flags("qps-nan", *S, "--qps", "nan", mentions=("--qps",)),
    flags("ttft-infinite", *S, "--ttft-ms", "inf", mentions=("--ttft-ms",)),
    flags("tpot-zero", *S, "--tpot-ms", "0", mentions=("--tpot-ms",)),
    flags("max-gpus-zero", *S, "--max-gpus", "0", mentions=("--max-gpus",)),
    flags("time-limit-zero", *S, "--time-limit-s", "0", mentions=("--time-limit-s",)),
    flags("workers-zero", *S, "--workers", "0", mentions=("--workers",)),
    flags("workers-absurd", *S, "--workers", str(10**20), mentions=("--workers",),
          regression="TypeError traceback from ortools: solve (planner/cpsat.py:220) sets num_workers to an int past "
              "int32; api.search should bound --workers"),
    flags("seed-absurd", *S, "--seed", str(10**20), mentions=("--seed",),
          regression="TypeError traceback from ortools: solve (planner/cpsat.py:221) sets random_seed to an int past "
              "int32; api.search should range-check --seed"),
    flags("objective-min-gpus-without-qps", *S, "--objective", "min-gpus", mentions=("--objective", "--qps")),
    flags("objective-bogus", *S, "--objective", "cheapest", mentions=("--objective",)),
    flags("weight-dtype-bogus", *S, "--weight-dtype", "fp7", mentions=("--weight-dtype",)),
    flags("kv-dtype-bogus", *S, "--kv-dtype", "bf17", mentions=("--kv-dtype",)),
    # --- flags: strategy (evaluate / explain) ---
    flags("ep-3-for-8-experts", "evaluate", "--topology", "dgx-h100x1", "--model", "mixtral-8x7b", "--tp", "8",
          "--ep", "3", "--isl", "512", "--osl", "128", mentions=("--ep", "8 experts")),
    flags("ep-on-dense-model", *E, "--tp", "2", "--ep", "2", mentions=("--ep", "no experts")),
    flags("search-ep-3-for-256-experts", "search", "--topology", "dgx-h100x4", "--model", "deepseek-v3", "--ep", "3",
          mentions=("--ep", "256 experts")),
    flags("attention-dp-on-dense-model", *S, "--attention-dp", "2", mentions=("--attention-dp", "no experts")),
    flags("attention-dp-not-dividing-tp", "evaluate", "--topology", "dgx-h100x1", "--model", "mixtral-8x7b", "--tp",
          "8", "--ep", "8", "--attention-dp", "3", "--isl", "512", "--osl", "128",
          mentions=("--attention-dp", "must divide tp=8")),
    flags("attention-dp-zero", "search", "--topology", "dgx-h100x1", "--model", "mixtral-8x7b", "--attention-dp", "0",
          mentions=("--attention-dp",)),
    flags("trtllm-attention-dp-partial", "evaluate", "--topology", "dgx-h100x1", "--model", "mixtral-8x7b",
          "--runtime", "trtllm", "--tp", "8", "--ep", "8", "--attention-dp", "2", "--isl", "512", "--osl", "128",
          mentions=("--attention-dp", "TensorRT-LLM")),
    flags("expert-imbalance-below-one", "search", "--topology", "dgx-h100x1", "--model", "mixtral-8x7b",
          "--expert-imbalance", "0.5", mentions=("--expert-imbalance", ">= 1")),
    flags("expert-imbalance-nan", "search", "--topology", "dgx-h100x1", "--model", "mixtral-8x7b",
          "--expert-imbalance", "nan", mentions=("--expert-imbalance",)),
    flags("expert-imbalance-on-dense-model", *S, "--expert-imbalance", "1.2", mentions=("--expert-imbalance",
                                                                                         "no experts")),
    flags("tp-3-for-64-heads", "evaluate", "--topology", "dgx-h100x1", "--model", "llama-3.1-70b", "--tp", "3",
          "--isl", "512", "--osl", "128", mentions=("--tp", "64")),
    flags("explain-tp-3-for-64-heads", "explain", "--topology", "dgx-h100x1", "--model", "llama-3.1-70b",
          "--tp", "3", "--isl", "512", "--osl", "128", mentions=("--tp", "64")),
    flags("pp-more-than-layers", *E, "--tp", "1", "--pp", "33", mentions=("--pp", "32 layers")),
    flags("tp-zero", *E, "--tp", "0", mentions=("--tp",)),
    flags("dp-zero", *E, "--tp", "1", "--dp", "0", mentions=("--dp",)),
    flags("batch-zero", *E, "--tp", "1", "--batch", "0", mentions=("--batch",)),
    flags("gpu-unknown", *E, "--tp", "1", "--gpu", "H10O-SXM-80GB",
          mentions=("--gpu", "did you mean 'H100-SXM-80GB'")),
    flags("gpu-not-in-topology", *E, "--tp", "1", "--gpu", "A100-SXM4-80GB", mentions=("--gpu", "A100")),
    flags("evaluate-missing-tp", *E, mentions=("--tp",)),
    # --- output file ---
    flags("output-into-missing-folder", *S, "-o", "{tmp}/missing/out.json", mentions=("out.json", "folder")),
    flags("output-is-a-directory", *S, "-o", "{tmp}", mentions=("--output",)),
    # --- genuinely infeasible requests: exit 3 ---
    flags("infeasible-tpot", "search", "--topology", "dgx-h100x1", "--model", "llama-3.1-70b", "--tpot-ms", "0.5",
          mentions=("--tpot-ms",), code=3),
    flags("infeasible-model-too-big", "search", "--topology", "pcie-l40sx1", "--model", "llama-3.1-405b",
          mentions=("GiB", "llama-3.1-405b"), code=3),
    flags("infeasible-qps", "search", "--topology", "dgx-h100x1", "--model", "mixtral-8x7b", "--qps", "1e6",
          mentions=("--qps",), code=3),
    flags("infeasible-qps-absurd", *S, "--qps", "1e20", mentions=("--qps",), code=3,
          regression="TypeError/OverflowError traceback: serves_qps (planner/cpsat.py:174) int(ceil(qps * QPS_SCALE)) "
              "overflows CP-SAT's int64 (and is inf for --qps 1e308); check qps against the cluster's "
              "capacity before building the model and raise InfeasibleError"),
]


def _param(c: Case):
    return pytest.param(c, id=c.id)


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_bad_input(case: Case, tmp_path: Path):
    made, out_dir, args = case.prepare(tmp_path)
    code, out, err = run(args, timeout_s=case.timeout_s)
    if made is not None and made.is_file() and not made.is_symlink() and made.stat().st_size > 2**20:
        made.unlink()  # do not keep 20 MB in pytest's retained temp folders

    assert "Traceback" not in err, err
    expected = case.code if isinstance(case.code, tuple) else (case.code,)
    assert code in expected, f"exit {code}, expected {expected}; stderr: {err}"
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}: {err!r}"
    prefix = "plan-search: infeasible: " if code == 3 else "plan-search: error: "
    assert lines[0].startswith(prefix), err
    for m in case.expected_mentions(made):
        assert m in err, f"stderr does not mention {m!r}: {err}"
    assert out == "", f"unexpected stdout: {out!r}"
    assert list(out_dir.iterdir()) == [], "an output (or temp) file was left behind"


def test_enough_cases():
    assert len(CASES) >= 30
    assert len({c.id for c in CASES}) == len(CASES), "case ids must be unique"


def test_every_corpus_file_has_a_case():
    used = {p for c in CASES for p in c.corpus} | set(CONTROLS)
    on_disk = {p for p in CORPUS.rglob("*") if p.is_file()}
    assert on_disk - used == set(), "corpus files without a case"
    assert used - on_disk == set(), "cases naming missing corpus files"


# -- controls: the corpus's good twins work, so the bad files fail for the stated reason --------

CONTROLS = {
    TOPO / "valid.yaml": ["search", "--topology", str(TOPO / "valid.yaml"), "--model", SMALL_MODEL, "--json"],
    MODELS / "valid-llama" / "config.json": ["search", "--topology", "dgx-h100x1", "--model",
                                             str(MODELS / "valid-llama" / "config.json"), "--json"],
}


@pytest.mark.parametrize("path", list(CONTROLS), ids=lambda p: p.relative_to(CORPUS).as_posix())
def test_control_input_works(path):
    code, out, err = run(CONTROLS[path])
    assert code == 0, err
    assert '"OPTIMAL"' in out


# -- topology validate reports what search reports ------------------------------------------------

@pytest.mark.parametrize("path", sorted(p for p in TOPO.iterdir() if p.name != "valid.yaml"), ids=lambda p: p.name)
def test_validate_agrees_with_search(path):
    v_code, _, v_err = run(["topology", "validate", str(path)])
    s_code, _, s_err = run(["search", "--topology", str(path), "--model", SMALL_MODEL])
    assert v_code == s_code
    if s_code:
        assert v_err == s_err


# -- an absurdly large --max-gpus is no cap at all -----------------------------------------------

def test_huge_max_gpus_is_no_cap():
    code, out, err = run([*S, "--max-gpus", str(10**20), "--json"])
    assert "Traceback" not in err, err
    assert code == 0, err
    assert '"OPTIMAL"' in out
