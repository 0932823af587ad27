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

import re
import signal
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

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


# -- issue 12 section 4: hostile inputs ----------------------------------------------------------
#
# A valid topology with every kind of name and number (two H100 nodes, a node group, two GB200
# trays in one NVLink domain, leaf-spine); each case below breaks one field of it.

IMPORTERS = CORPUS / "importers"
HOSTILE_BASE = {
    "name": "hostile-base", "description": "two H100 nodes, a node group, two GB200 trays in one NVLink domain",
    "node_types": {
        "h100": {"gpu": "H100-SXM-80GB", "gpus_per_node": 8, "price_per_gpu_hour": 2.5,
                 "fabric": {"kind": "nvswitch", "nvlink_bandwidth_gbyte_per_s": 450, "nvlink_latency_us": 1.0,
                            "pcie_bandwidth_gbyte_per_s": 64, "pcie_latency_us": 2.0},
                 "nics": {"count": 8, "bandwidth_gbit_per_s": 400, "latency_us": 5.0}},
        "tray": {"gpu": "GB200-186GB", "gpus_per_node": 4, "fabric": {"kind": "nvlink-domain"},
                 "nics": {"count": 4, "bandwidth_gbit_per_s": 400}}},
    "nodes": [{"name": "n0", "type": "h100", "rack": "r0"}, {"name": "t0", "type": "tray", "rack": "r1"},
              {"name": "t1", "type": "tray", "rack": "r1"}],
    "node_groups": [{"prefix": "g", "count": 2, "type": "h100", "rack": "gr", "nodes_per_rack": 1}],
    "nvlink_domains": [{"name": "d0", "nodes": ["t0", "t1"], "bandwidth_gbyte_per_s": 900, "latency_us": 1.5}],
    "network": {"kind": "leaf-spine", "oversubscription": 2.0, "switch_latency_us": 1.0},
}


def _hostile_topology(edit: Callable[[dict], None], name: str) -> Callable[[Path], Path]:
    """A maker writing HOSTILE_BASE, changed by ``edit``, as YAML."""
    import copy

    import yaml

    def make(d: Path) -> Path:
        data = copy.deepcopy(HOSTILE_BASE)
        edit(data)
        p = d / name
        p.write_text(yaml.safe_dump(data, allow_unicode=False, sort_keys=False))
        return p
    return make


def _set(path: str, value) -> Callable[[dict], None]:
    """An edit setting one dotted path (list indices as numbers) of the topology."""
    def edit(data: dict) -> None:
        *parents, last = path.split(".")
        x = data
        for k in parents:
            x = x[int(k)] if isinstance(x, list) else x[k]
        x[int(last) if isinstance(x, list) else last] = value
    return edit


def _rename_node_type(new: str) -> Callable[[dict], None]:
    def edit(data: dict) -> None:
        data["node_types"][new] = data["node_types"].pop("h100")
        for n in data["nodes"] + data["node_groups"]:
            if n["type"] == "h100":
                n["type"] = new
    return edit


def _rename_domain(new: str) -> Callable[[dict], None]:
    return _set("nvlink_domains.0.name", new)


BAD_NAMES = {  # payload id -> a name no field may hold
    "command-substitution": "$(touch /tmp/x)",
    "backticks": "`touch /tmp/x`",
    "newline": "n0\necho pwned",
    "terminal-escape": "n\x1b[31mred",
    "semicolon": "n0;reboot",
    "dot-dot-slash": "../etc",
    "uppercase": "Node0",
    "64-characters": "n" * 64,
    "empty": "",
    "leading-dash": "-n0",
}
NAME_FIELDS = {  # field id -> (edit for a payload, the field the message names)
    "topology-name": (lambda v: _set("name", v), "name"),
    "node-name": (lambda v: _set("nodes.0.name", v), "nodes.0.name"),
    "node-rack": (lambda v: _set("nodes.0.rack", v), "nodes.0.rack"),
    "node-type-name": (_rename_node_type, "node_types"),
    "group-prefix": (lambda v: _set("node_groups.0.prefix", v), "node_groups.0.prefix"),
    "domain-name": (_rename_domain, "nvlink_domains.0.name"),
    "gpu-name": (lambda v: _set("node_types.h100.gpu", v), "node_types.h100.gpu"),
}
# The node-group prefix may end in '-' or '.' and be followed by a number, so it has its own rule;
# 64 characters and a leading dash are refused for it too.
NAME_CASES = [
    generated(f"name-{field}-{payload}", _hostile_topology(edit(value), f"name_{field}_{payload}.yaml".replace("-", "_")),
              where, regression="names were not validated: '$(touch /tmp/x)' as a node name reached the launch "
                                "scripts (issue 12 section 2)")
    for field, (edit, where) in NAME_FIELDS.items() for payload, value in BAD_NAMES.items()
    if not (field == "gpu-name" and payload == "uppercase")  # GPU names are catalog names: H100-SXM-80GB
]

BAD_NUMBERS = {  # payload id -> a value no link figure may take
    "nan": float("nan"), "infinity": float("inf"), "denormal": 1e-320, "huge": 1e308, "negative": -1.0,
    "boolean": True, "string": "fast",
}
NUMBER_FIELDS = [
    "node_types.h100.fabric.nvlink_bandwidth_gbyte_per_s", "node_types.h100.fabric.nvlink_latency_us",
    "node_types.h100.fabric.pcie_bandwidth_gbyte_per_s", "node_types.h100.fabric.pcie_latency_us",
    "node_types.h100.nics.bandwidth_gbit_per_s", "node_types.h100.nics.latency_us",
    "network.switch_latency_us", "network.oversubscription", "nvlink_domains.0.bandwidth_gbyte_per_s",
    "nvlink_domains.0.latency_us", "node_types.h100.price_per_gpu_hour",
]
NUMBER_CASES = [
    generated(f"number-{field.replace('_', '-').replace('.', '-')}-{payload}",
              _hostile_topology(_set(field, value), f"{field.replace('.', '_')}_{payload}.yaml"),
              field.replace("nvlink_domains.0", "nvlink_domains.0"),
              regression="link figures from 1e-320 to 1e308 were accepted: plans 'OPTIMAL' at 0 tokens/s, TTFT "
                         "nan, Infinity in plan JSON (issue 12 section 4)")
    for field in NUMBER_FIELDS for payload, value in BAD_NUMBERS.items()
    if not (field.endswith("price_per_gpu_hour") and payload == "denormal")  # a price near 0 is a price
]

NVLINK_RATE_CASES = [  # the datasheet's both-ways figure where the file wants one direction (found by a fuzzing pass)
    generated("nvlink-rate-both-ways", _hostile_topology(_set("node_types.h100.fabric.nvlink_bandwidth_gbyte_per_s", 900),
                                                         "nvlink_900.yaml"),
              "node_types.h100.fabric.nvlink_bandwidth_gbyte_per_s", "each way",
              regression="H100 NVLink at 900 GB/s per direction (100,000 too) was priced as given: TP twice as fast"),
]
BOOL_LIST_CASES = [  # booleans inside lists of numbers (found by a fuzzing pass: `[true]` was GPU 1)
    generated(f"bool-in-list-{i}", _hostile_topology(_set("nodes.0.unavailable_gpus", value), f"bool_list_{i}.yaml"),
              "nodes.0.unavailable_gpus", "true or false",
              regression="booleans in lists were read as GPU indices 0 and 1 (unavailable_gpus: [true])")
    for i, value in enumerate([[True], [0, False]])
]


def _corpus_topology(file: str, *mentions: str, **kw) -> Case:
    return topo(file, *mentions, **kw)


def _smi_table(gpus: int) -> Callable[[Path], Path]:
    """An `nvidia-smi topo -m` table of ``gpus`` GPUs all joined by NV18 (one node, as the issue's)."""
    def make(d: Path) -> Path:
        head = "\t" + "\t".join(f"GPU{i}" for i in range(gpus)) + "\tCPU Affinity\tNUMA Affinity\n"
        rows = "".join(f"GPU{i}\t" + "\t".join("X" if i == j else "NV18" for j in range(gpus)) + "\t0-63\t0\n"
                       for i in range(gpus))
        p = d / f"smi_{gpus}_gpus.txt"
        p.write_text(head + rows + "\nLegend:\n\n  X    = Self\n")
        return p
    return make


SAMPLES = Path(__file__).parent / "fixtures" / "topology-samples"


def _from_sample(sample: str, change: Callable[[str], str], name: str) -> Callable[[Path], Path]:
    """A machine report from tests/fixtures/topology-samples, changed as a mail client or a hand edit would."""
    def make(d: Path) -> Path:
        p = d / name
        p.write_text(change((SAMPLES / sample).read_text()))
        return p
    return make


def _fold(text: str, width: int) -> str:
    """What `expand | fold -w WIDTH` makes of a table."""
    out = []
    for line in text.expandtabs().split("\n"):
        out += [line[i:i + width] for i in range(0, len(line), width)] or [""]
    return "\n".join(out)


def _gpu_twice(text: str) -> str:
    """The first GPU's <pci> block pasted twice, the copy renumbered."""
    start = text.index('<pci busid="0000:1b:00.0"')
    end = text.index("</pci>", start) + len("</pci>")
    return text[:end] + text[start:end].replace('dev="0"', 'dev="4"') + text[end:]


def importer(id: str, fmt: str, file: str | None, *mentions: str, extra: tuple[str, ...] = (),
             make: Callable[[Path], Path] | None = None, blames_file: bool = True, **kw) -> Case:
    """``topology import FMT FILE``; a corpus file under tests/corpus/importers or a generated one.
    The message names the file unless ``blames_file`` is false (a bad flag)."""
    path = IMPORTERS / file if file else None
    named = (file if file else "{file}",) if blames_file else ()
    return Case(id=id, args=("topology", "import", fmt, str(path) if path else "{file}", *extra),
                mentions=(*named, *mentions), make=make, corpus=(path,) if path else (), **kw)


def _plan_text() -> str:
    """A real plan (search --json on one DGX H100), made once per test session."""
    global _PLAN
    if _PLAN is None:
        code, out, err = run(["search", "--topology", "dgx-h100x1", "--model", SMALL_MODEL, "--json"])
        assert code == 0, err
        _PLAN = out
    return _PLAN


_PLAN: str | None = None


def _hostile_plan(edit: Callable[[str], str], name: str) -> Callable[[Path], Path]:
    def make(d: Path) -> Path:
        p = d / name
        p.write_text(edit(_plan_text()))
        return p
    return make


def _plan_field(path: str, value) -> Callable[[str], str]:
    import json

    def edit(text: str) -> str:
        data = json.loads(text)
        *parents, last = path.split(".")
        x = data
        for k in parents:
            x = x[int(k)] if isinstance(x, list) else x[k]
        x[int(last) if isinstance(x, list) else last] = value
        return json.dumps(data)
    return edit


def plan_case(id: str, edit: Callable[[str], str], *mentions: str, **kw) -> Case:
    return Case(id=id, args=("emit", "--plan", "{file}", "--target", "vllm", "-o", "{tmp}/launch"),
                mentions=("{file}", *mentions), make=_hostile_plan(edit, f"{id}.json"), **kw)


PLAN_CASES = [
    plan_case("plan-nan-metric", lambda t: re.sub(r'"ttft_unloaded_ms": [-+.e0-9]+', '"ttft_unloaded_ms": NaN', t,
                                                  count=1), "ttft_unloaded_ms", "NaN"),
    plan_case("plan-infinity-throughput", lambda t: re.sub(r'"tpot_ms": [-+.e0-9]+', '"tpot_ms": Infinity', t,
                                                           count=1), "tpot_ms", "Infinity"),
    plan_case("plan-duplicate-key", lambda t: t.replace('{', '{"generator": "x", ', 1), "'generator'", "twice"),
    plan_case("plan-group-id-path", _plan_field("replica_groups.0.id", "../../etc"), "replica_groups.0.id"),
    plan_case("plan-group-id-newline", _plan_field("replica_groups.0.id", "g0\nrm -rf /"), "replica_groups.0.id"),
    plan_case("plan-gpu-command-substitution", _plan_field("replica_groups.0.gpu", "$(touch /tmp/x)"),
              "replica_groups.0.gpu"),
    plan_case("plan-generator-newline", _plan_field("generator", "plan-search\n---\nkind: Pod"), "generator"),
    plan_case("plan-node-escape", _plan_field("replica_groups.0.replicas.0.ranks.0.node", "dgx\x1b[2J"),
              "ranks.0.node"),
    plan_case("plan-model-name-backticks", _plan_field("inputs.model.name", "`id`"), "inputs.model.name"),
    plan_case("plan-reason-newline", _plan_field("solver.objective", "x\ny"), "solver.objective"),
]

HOSTILE_CASES: list[Case] = [
    *NAME_CASES,
    *NUMBER_CASES,
    *BOOL_LIST_CASES,
    *NVLINK_RATE_CASES,
    # duplicate keys, NaN and Infinity literals
    _corpus_topology("duplicate_key_top.yaml", "'name'", "twice", "line 2"),
    _corpus_topology("duplicate_key_nested.yaml", "'gpus_per_node'", "twice", "line 6"),
    _corpus_topology("duplicate_key.json", "'nvlink_bandwidth_gbyte_per_s'", "twice"),
    _corpus_topology("nan_literal.json", "node_types.h100.fabric.nvlink_bandwidth_gbyte_per_s", "NaN"),
    _corpus_topology("infinity_literal.json", "node_types.h100.nics.bandwidth_gbit_per_s", "-Infinity"),
    # impossible hardware
    _corpus_topology("l40s_on_nvswitch.yaml", "node_types.l40s.fabric.kind", "L40S-48GB has no NVLink"),
    _corpus_topology("l40s_nvlink_pairs.yaml", "node_types.l40s.fabric.kind", "L40S-48GB has no NVLink"),
    _corpus_topology("h100_pcie_on_nvswitch.yaml", "node_types.h100p.fabric.kind", "at most 2"),
    _corpus_topology("h100_multi_node_nvlink_domain.yaml", "nvlink_domains[0].nodes", "16 GPUs", "at most 8"),
    _corpus_topology("gb200_domain_of_76.yaml", "nvlink_domains[0].nodes", "76 GPUs", "at most 72"),
    _corpus_topology("nvlink_pairs_overlap.yaml", "node_types.a100.fabric.pairs", "GPU 1"),
    _corpus_topology("nvlink_pair_with_itself.yaml", "node_types.a100.fabric.pairs", "GPU 2"),
    # sizes the planner cannot serve in 24 GiB, refused before any node is built
    _corpus_topology("too_many_nodes.yaml", "node_groups.0.count", "16384"),
    _corpus_topology("too_many_gpus.yaml", "node_groups", "72,000 GPUs", "65,536"),
    _corpus_topology("ten_thousand_nodes_of_1000_gpus.yaml", "node_types.big.gpus_per_node", "72",
                     timeout_s=5, regression="10,000 nodes x 1,000 GPUs hit MemoryError after two minutes"),
    _corpus_topology("gpus_per_node_73.yaml", "node_types.h100.gpus_per_node", "72"),
    _corpus_topology("nics_count_65.yaml", "node_types.h100.nics.count", "64"),
    # names that would collide, or are not names
    _corpus_topology("domain_named_like_node.yaml", "nvlink_domains[0].name", "'t1'"),
    _corpus_topology("duplicate_domain_names.yaml", "nvlink_domains[1].name", "'d'"),
    _corpus_topology("node_group_prefix_too_long.yaml", "node_groups.0.prefix"),
    _corpus_topology("node_group_rack_ends_in_dash.yaml", "node_groups.0.rack", "'rack-'"),
    _corpus_topology("unknown_key_with_escape.yaml", "\\x1b[31mred", "unknown key"),
    # model configs
    model("string-bool-tie-embeddings", "tie_word_embeddings", "'false'",
          regression="the string 'false' was read as true"),
    model("string-bool-sliding-window", "use_sliding_window", "'no'",
          regression="'no' was read as true: the batch went from 53 to 1,725"),
    model("head-dim-zero", "head_dim", "positive"),
    # found by a fuzzing pass: each was priced as another model
    model("kv-heads-zero", "num_key_value_heads", "at least 1", regression="0 KV heads was priced as full MHA"),
    model("intermediate-missing", "intermediate_size", "4 x hidden_size",
          regression="a llama config without its MLP width was priced at 4 x hidden, 8.8 B parameters for 8.0 B"),
    model("intermediate-zero", "intermediate_size", "at least 1"),
    model("mla-without-head-dims", "qk_rope_head_dim", "missing",
          regression="latent attention without its head widths was priced with zero-width heads"),
    model("head-dim-float", "head_dim", "128.0"),
    model("hidden-not-divisible", "hidden_size", "head_dim"),
    model("hidden-smaller-than-heads", "hidden_size", "head_dim", regression="head_dim worked out to 0"),
    model("first-k-dense-beyond-layers", "first_k_dense_replace", "40",
          regression="first_k_dense_replace beyond the layers silently made a smaller model"),
    model("mlp-only-layers-beyond", "mlp_only_layers", "99", regression="Mixtral planned as 7.2 B parameters"),
    model("mlp-only-layers-all", "mlp_only_layers", "no layer is left with experts"),
    model("mlp-only-layers-string", "mlp_only_layers", "'0,1'"),
    model("layer-types-too-long", "layer_types", "40 entries for 32 layers",
          regression="a longer layer_types ended in a misleading exit 3"),
    model("layer-types-not-strings", "layer_types"),
    model("kv-lora-rank-on-llama", "kv_lora_rank", "'llama'", "deepseek_v3",
          regression="kv_lora_rank turned a Llama config into MLA"),
    model("model-type-not-string", "model_type"),
    model("hidden-act-list", "hidden_act"),
    model("hidden-size-float", "hidden_size", "4096.0"),
    model("moe-intermediate-absurd", "moe_intermediate_size", "implausibly large"),
    model("shared-experts-absurd", "n_shared_experts", "implausibly large"),
    model("sliding-window-bool", "sliding_window", "True"),
    model("source-with-escape", "source", "printable"),
    model("experts-negative", "num_local_experts", "-8"),
    model("duplicate-key", "'hidden_size'", "twice"),
    model("nan-value", "rope_theta", "NaN"),
    model("kv-heads-missing-mistral", "num_key_value_heads", "does not default it to num_attention_heads",
          regression="a Mistral config without its KV head count was priced with 32, its class's default is 8"),
    model("gptq-bits-5", "quantization_config.bits", "2 to 4, or 8"),
    model("experts-stated-twice", "stated more than once", regression="two expert counts: the first read won"),
    model("infinity-layers", "num_hidden_layers", "Infinity"),
    # importers
    importer("import-nccl-net-speed-400-digits", "nccl", "nccl_net_speed_400_digits.xml", "<net name='mlx5_0'>",
             "speed=", regression="OverflowError: integer division result too large for a float"),
    importer("import-nccl-net-speed-5000-digits", "nccl", "nccl_net_speed_5000_digits.xml", "speed="),
    importer("import-nccl-net-speed-unicode-digits", "nccl", "nccl_net_speed_unicode_digits.xml", "speed="),
    importer("import-nccl-net-speed-too-slow", "nccl", "nccl_net_speed_too_slow.xml", "speed=1 Mb/s"),
    importer("import-nccl-nvlink-count-huge", "nccl", "nccl_nvlink_count_huge.xml", "count="),
    importer("import-nccl-device-id-huge", "nccl", "nccl_device_id_huge.xml", "device="),
    importer("import-nccl-gpu-dev-negative", "nccl", "nccl_gpu_dev_negative.xml", "dev='-1'"),
    importer("import-nccl-net-name-escape", "nccl", "nccl_net_name_escape.xml", "invalid XML"),
    importer("import-nccl-100-gpus", "nccl", "nccl_100_gpus_one_node.xml", "100 GPUs", "at most 72"),
    importer("import-smi-gpu-index-5000-digits", "nvidia-smi", "nvidia-smi_gpu_index_5000_digits.txt", "--gpu"),
    importer("import-smi-1000-gpus", "nvidia-smi", None, "1000 GPU columns", "at most 72", make=_smi_table(1000),
             regression="a 1,000-GPU all-NVLink table was imported as one node"),
    importer("import-smi-73-gpus", "nvidia-smi", None, "73 GPU columns", make=_smi_table(73)),
    # found by a red-team pass: read with fewer GPUs or NICs, or half a file, and no word said
    importer("import-smi-wrapped-64", "nvidia-smi", None, "line 2", "looks wrapped", extra=("--gpu", "H100"),
             make=_from_sample("nvidia-smi_8x-h100-sxm_nv18_rail-nics.txt", lambda t: _fold(t, 64), "wrapped.txt"),
             regression="an 8-GPU table wrapped at 64 columns imported as 7 GPUs"),
    importer("import-smi-two-tables", "nvidia-smi", None, "a second `nvidia-smi topo -m` table", extra=("--gpu", "L40S"),
             make=_from_sample("nvidia-smi_4x-l40s_pcie-only.txt", lambda t: t + "\n" + t, "two.txt"),
             regression="two nodes' tables in one file imported the first alone"),
    importer("import-nccl-gpu-twice", "nccl", None, "<pci busid='0000:1b:00.0'>", "lists a GPU twice",
             make=_from_sample("nccl-topo_4x-h100-pcie_nvlink-bridges-0-2_1-3.xml", _gpu_twice, "dup.xml"),
             regression="a duplicated <pci> block imported a 4-GPU machine as 5 GPUs"),
    *[importer(f"import-name-{payload}", "nvidia-smi", "nvidia-smi_nic_legend_escape.txt", "--name",
               extra=("--gpu", "A100", "--name", value), blames_file=False)
      for payload, value in BAD_NAMES.items() if payload != "empty"],
    importer("import-nics-per-node-65", "nvidia-smi", "nvidia-smi_nic_legend_escape.txt", "--nics-per-node",
             extra=("--gpu", "A100", "--nics-per-node", "65"), blames_file=False),
    # plan JSON read back by emit
    *PLAN_CASES,
]


# a file with node groups only: four nodes a0..a3, then a second group whose prefix and type vary
GROUPS_ONLY = """name: groups-only
node_types:
  h100:
    gpu: H100-SXM-80GB
    gpus_per_node: 8
    fabric: {{kind: nvswitch, nvlink_bandwidth_gbyte_per_s: 450}}
    nics: {{count: 8, bandwidth_gbit_per_s: 400}}
node_groups:
  - {{prefix: a, count: 4, type: h100}}
  - {{prefix: {second}, count: 2, type: {type}}}
network: {{kind: single-switch}}
"""


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
    flags("model-unknown-hf-name", *S[:3], "--model", "meta-llama/Llama-3.5-70B-Instruct",
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
          regression="TypeError traceback from ortools: solve (planner/solve/cpsat.py:220) sets num_workers to an int past "
              "int32; api.search should bound --workers"),
    flags("seed-absurd", *S, "--seed", str(10**20), mentions=("--seed",),
          regression="TypeError traceback from ortools: solve (planner/solve/cpsat.py:221) sets random_seed to an int past "
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
          regression="TypeError/OverflowError traceback: serves_qps (planner/solve/cpsat.py:174) int(ceil(qps * QPS_SCALE)) "
              "overflows CP-SAT's int64 (and is inf for --qps 1e308); check qps against the cluster's "
              "capacity before building the model and raise InfeasibleError"),
    # -- issue 12 sections 3 and 5: outputs and wrong answers --
    flags("output-empty-name", *S, "-o", "", mentions=("--output", "empty"),
          regression="-o '' exited 0 and wrote nothing"),
    flags("output-device-file", *S, "-o", "/dev/null", mentions=("/dev/null", "character device"),
          regression="-o replaced whatever sat at the path, a device file included"),
    flags("output-in-proc", *S, "-o", "/proc/plan-search-out.json", mentions=("/proc/plan-search-out.json",),
          regression="a traceback after all the work was done"),
    Case(id="output-symlink-to-stdout", args=(*S, "-o", "{file}"), mentions=("{file}", "symbolic link"),
         make=lambda d: (d / "out.json").symlink_to("/dev/stdout") or d / "out.json",
         regression="-o followed a symlink to /dev/stdout"),
    flags("output-name-too-long", *S, "-o", "{tmp}/" + "n" * 256, mentions=("n" * 256,),
          regression="a traceback after the search: the temporary name was longer than the target's"),
    flags("import-output-empty-name", "topology", "import", "nvidia-smi",
          str(Path(__file__).parent / "fixtures" / "topology-samples" / "nvidia-smi_4x-l40s_pcie-only.txt"),
          "--gpu", "L40S", "-o", "", mentions=("--output", "empty")),
    flags("evaluate-tp-past-the-cluster", *E, "--tp", "16", mentions=("tp=16", "does not fit"), code=3,
          regression="exit 0 with TTFT, TPOT and throughput for a set-up it said does not fit"),
    flags("evaluate-batch-past-memory", *E, "--tp", "1", "--batch", "5000",
          mentions=("batch 5000", "GPU memory", "largest batch that fits"), code=3,
          regression="exit 0 with figures for a batch that does not fit in memory"),
    flags("evaluate-dp-past-the-cluster", *E, "--tp", "1", "--dp", "16", mentions=("16 GPUs",), code=3),
    flags("pools-only-unreachable-tpot", "search", "--topology", "dgx-h100x2", "--model", SMALL_MODEL,
          "--disaggregation", "only", "--runtime", "sglang", "--tpot-ms", "1", mentions=("--tpot-ms", "fastest plan reaches"), code=3,
          regression="OverflowError: the best TPOT was tracked for unified candidates only"),
    flags("emit-from-search-on-pools", "search", "--topology", "dgx-h100x2", "--model", SMALL_MODEL,
          "--disaggregation", "only", "--runtime", "sglang", "--emit", "vllm", "--emit-dir", "{tmp}/launch",
          mentions=("--emit sglang",), regression="said 'use --target sglang', a flag search does not have"),
    # -- issue 12 section 4: hostile inputs --
    *HOSTILE_CASES,
    # -- issue 12 section 5: a message naming the wrong field --
    generated("node-group-unknown-type", _write("groups.yaml", GROUPS_ONLY.format(second="b", type="h1000")),
              "node_groups[1].type", "(node 'b0')", "'h1000'",
              regression="said nodes[4].type for a file with only node_groups"),
    generated("node-group-duplicate-name", _write("groups.yaml", GROUPS_ONLY.format(second="a", type="h100")),
              "node_groups[1].prefix", "(node 'a0')", "also node_groups[0]",
              regression="said nodes[4].name for a file with only node_groups"),
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
    assert not any(c in err for c in "\x1b\x07\r\x00\u2028"), f"raw control characters on stderr: {err!r}"
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


# -- issue 12 section 4: what must still work ------------------------------------------------------

def test_hostile_base_is_valid():
    """The base every hostile topology case edits is itself a valid topology, so each case fails
    for the one field it breaks."""
    import yaml

    from planner.price.cluster import cluster_view
    from topologies.graph import Topology
    from topologies.load import parse_topology

    cluster_view(Topology(parse_topology(yaml.safe_load(yaml.safe_dump(HOSTILE_BASE)))))


def test_hostile_plan_base_is_valid(tmp_path):
    p = tmp_path / "plan.json"
    p.write_text(_plan_text())
    code, _, err = run(["emit", "--plan", p, "--target", "vllm", "-o", tmp_path / "launch"])
    assert code == 0, err


def test_names_like_internal_vertices_change_nothing():
    """Nodes named ``leaf``, ``spine``, ``switch`` and ``nvlink`` in racks named ``pcie`` and
    ``gpu0``: once, such names collided with the graph's switch vertices and changed latencies.
    Every link between GPUs is the same as with plain names."""
    import copy

    from topologies.graph import Topology
    from topologies.load import parse_topology

    plain = copy.deepcopy(HOSTILE_BASE)
    tricky = copy.deepcopy(HOSTILE_BASE)
    rename = {"n0": "leaf", "t0": "spine", "t1": "switch"}
    for n in tricky["nodes"]:
        n["name"] = rename[n["name"]]
        n["rack"] = {"r0": "pcie", "r1": "gpu0"}[n["rack"]]
    tricky["nvlink_domains"][0].update(name="nvlink", nodes=["spine", "switch"])
    tricky["node_groups"][0].update(prefix="nvswitch", rack="nic")
    a, b = Topology(parse_topology(plain)), Topology(parse_topology(tricky))
    names = dict(zip((n.name for n in b.spec.all_nodes()), (n.name for n in a.spec.all_nodes()), strict=True))

    def plain_id(gid: str) -> str:
        node, gpu = gid.split("/")
        return f"{names[node]}/{gpu}"

    gpus = b.gpus()
    assert [plain_id(x) for x in gpus] == a.gpus()
    for x in gpus:
        for y in gpus[::7]:
            assert b.link(x, y) == a.link(plain_id(x), plain_id(y)), (x, y)
    assert sorted(map(len, b.domains.values())) == sorted(map(len, a.domains.values()))


@pytest.mark.parametrize("path", sorted((Path(__file__).parent / "fixtures" / "topology-samples").glob("nvidia-smi_*"))
                         + sorted((Path(__file__).parent / "fixtures" / "topology-samples").glob("nccl-topo_*")),
                         ids=lambda p: p.name)
def test_importer_fixtures_still_import_and_validate(path, tmp_path):
    fmt = "nvidia-smi" if path.name.startswith("nvidia-smi") else "nccl"
    gpu = {"l40s": "L40S", "h100-pcie": "H100-PCIe-80GB", "a100": "A100", "h100-sxm": "H100", "h200": "H200",
           "nv2-bridge": "A100", "old-driver": "L40S", "hybrid-cube": "A100"}
    extra = next((["--gpu", g] for k, g in gpu.items() if k in path.name), [])
    out = tmp_path / "t.yaml"
    code, _, err = run(["topology", "import", fmt, path, *extra, "-o", out])
    assert code == 0, err
    code, _, err = run(["topology", "validate", out])
    assert code == 0, err


def test_builtin_topologies_validate():
    from topologies.load import builtin_topology_names

    for name in builtin_topology_names():
        code, _, err = run(["topology", "validate", name])
        assert code == 0, (name, err)


def test_dump_text_never_reaches_the_terminal_raw(tmp_path):
    """A NIC legend holding terminal escapes imports; neither the YAML nor the messages hold them."""
    out = tmp_path / "t.yaml"
    code, _, err = run(["topology", "import", "nvidia-smi", IMPORTERS / "nvidia-smi_nic_legend_escape.txt", "--gpu",
                        "A100", "-o", out])
    assert code == 0, err
    assert "\x1b" not in err and "\x1b" not in out.read_text() and "\x07" not in out.read_text()
    assert "mlx5_0]0;pwned" in out.read_text()  # kept, minus the control characters


def test_unknown_model_type_warns_once_and_plans(tmp_path):
    import json

    cfg = json.loads((MODELS / "valid-llama" / "config.json").read_text())
    cfg["model_type"] = "brand_new_arch"
    p = tmp_path / "new-arch" / "config.json"
    p.parent.mkdir()
    p.write_text(json.dumps(cfg))
    code, out, err = run(["search", "--topology", "dgx-h100x1", "--model", p, "--json"])
    assert code == 0, err
    assert err.count("plan-search: warning:") == 1 and "'brand_new_arch'" in err and str(p) in err
    assert '"OPTIMAL"' in out


def test_model_names_from_folders_are_plan_ids(tmp_path):
    """A config in a folder whose name holds spaces and shell syntax plans; the plan's model name
    is kept to [A-Za-z0-9._-]."""
    import json

    p = tmp_path / "My Model $(id)" / "config.json"
    p.parent.mkdir()
    p.write_text((MODELS / "valid-llama" / "config.json").read_text())
    code, out, err = run(["search", "--topology", "dgx-h100x1", "--model", p, "--json"])
    assert code == 0, err
    assert json.loads(out)["inputs"]["model"]["name"] == "My-Model-id"


def test_plans_never_hold_nan_or_infinity():
    import json

    from pydantic import ValidationError

    from planner.plan.schema import Plan

    data = json.loads(_plan_text())
    Plan.model_validate(data)
    for bad in (float("nan"), float("inf")):
        data["totals"]["tpot_ms"] = bad
        with pytest.raises(ValidationError):
            Plan.model_validate(data)


def test_strict_booleans_and_sizes_keep_builtins_working():
    from costmodels.models import builtin_model_names, get_model

    for name in builtin_model_names():
        assert get_model(name).head_dim > 0
