"""Record the command-line flags each runtime release's own parser defines (issue 16, "fast checks in CI").

For every ``PACKAGE==VERSION`` (default: the releases the emitters write for, see ``RELEASES``) this downloads
the wheel with ``pip download --no-deps`` and reads the modules that build the runtime's parser, without
importing them (they pull in torch and CUDA): the source is parsed with ``ast`` and these are collected:

  * every ``"--flag"`` string given to an ``add_argument(...)`` call (``f"--{prefix}name"`` counts as
    ``--name``: the routers' prefix is empty on their own command line);
  * every field of the dataclasses the parser turns into flags field by field (vLLM's ``FrontendArgs``,
    SGLang's ``ServerArgs`` and, from 0.5.22, its field namespaces in ``sglang/srt/arg_groups/fields/``),
    as ``--field-name``, unless the field is declared ``Arg(no_cli=True)``; an ``Arg(cli_name=..., aliases=[...])``
    adds those names instead;
  * for Ray, the ``@click.option("--flag")`` decorators of ``ray start`` (ray/scripts/scripts.py).

The result, one flag a line after a header naming the wheel and its SHA-256, goes to
tests/data/runtime_flags/<package>-<version>.txt; tests/test_emit_flags_recorded.py checks every flag of every
emitted command against it. Boolean flags' ``--no-`` spellings are not listed (the emitters write none).

TensorRT-LLM is not recorded by this script: PyPI's ``tensorrt-llm`` is a stub without the source and NVIDIA's
own index is not reachable from here. Its files in tests/data/runtime_flags/ (``tensorrt-llm-<version>.txt``,
the ``trtllm-serve serve`` options; ``tensorrt-llm-api-<version>.txt``, the LLM API keys) were transcribed
from each release's documentation pages in NVIDIA/TensorRT-LLM's published docs tree (sphinx-click and
Sphinx viewcode renderings of serve.py and llmapi/llm_args.py at the release), as each file's header says.

Usage: python benchmarks/record_runtime_flags.py [--work DIR] [PACKAGE==VERSION ...]
"""
from __future__ import annotations

import argparse
import ast
import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "runtime_flags"
RELEASES = ("vllm==0.11.0", "vllm==0.33.0", "sglang==0.5.15", "sglang==0.5.23", "sglang-router==0.3.2",
            "vllm-router==0.1.17", "ray==2.60.0")

#: Per package: (modules whose add_argument literals count, modules whose dataclass fields count, classes).
RECIPES = {
    "vllm": (("vllm/engine/arg_utils.py", "vllm/entrypoints/openai/cli_args.py", "vllm/entrypoints/cli/serve.py",
              "vllm/entrypoints/common/cli_args.py"),
             ("vllm/entrypoints/openai/cli_args.py", "vllm/entrypoints/common/cli_args.py"),
             ("FrontendArgs", "BaseFrontendArgs")),
    "sglang": (("sglang/srt/server_args.py",), ("sglang/srt/server_args.py", "sglang/srt/arg_groups/fields/*.py"),
               ("ServerArgs", "*")),
    "sglang-router": (("sglang_router/router_args.py",), (), ()),
    "vllm-router": (("vllm_router/router_args.py",), (), ()),
}


def _flag_of(node: ast.expr) -> str | None:
    """The flag a positional ``add_argument`` argument names, or None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("--"):
        return node.value
    if isinstance(node, ast.JoinedStr) and node.values:
        head, tail = node.values[0], node.values[-1]
        if (isinstance(head, ast.Constant) and head.value == "--" and len(node.values) == 3
                and isinstance(tail, ast.Constant) and isinstance(node.values[1], ast.FormattedValue)
                and isinstance(node.values[1].value, ast.Name) and node.values[1].value.id == "prefix"):
            return "--" + tail.value
    return None


def add_argument_flags(tree: ast.AST) -> set[str]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "add_argument":
            out.update(f for f in map(_flag_of, node.args) if f)
    return out


def _arg_call(annotation: ast.expr) -> ast.Call | None:
    for node in ast.walk(annotation):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Arg":
            return node
    return None


def _field_flags(stmt: ast.AnnAssign) -> set[str]:
    name = stmt.target.id
    if name.startswith("_") or "ClassVar" in ast.unparse(stmt.annotation):
        return set()
    call = _arg_call(stmt.annotation)
    kw = {k.arg: k.value for k in call.keywords} if call else {}
    if isinstance(kw.get("no_cli"), ast.Constant) and kw["no_cli"].value is True:
        return set()
    cli = kw.get("cli_name")
    names = {cli.value if isinstance(cli, ast.Constant) else "--" + name.replace("_", "-")}
    if isinstance(kw.get("aliases"), ast.List):
        names |= {e.value for e in kw["aliases"].elts if isinstance(e, ast.Constant)}
    return names


def dataclass_flags(tree: ast.AST, classes: tuple[str, ...]) -> set[str]:
    """``--field-name`` of each annotated field of the named classes (``*``: every class of the module)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and ("*" in classes or node.name in classes):
            for stmt in node.body:
                if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                    out |= _field_flags(stmt)
    return out


def click_start_flags(tree: ast.AST) -> set[str]:
    """``ray start``'s options: the ``@click.option("--x", ...)`` decorators of ``def start``."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == "start":
            for dec in node.decorator_list:
                if isinstance(dec, ast.Call) and getattr(dec.func, "attr", None) == "option":
                    out.update(f for f in map(_flag_of, dec.args) if f)
    return out


def _sources(wheel: zipfile.ZipFile, patterns: tuple[str, ...]) -> dict[str, ast.AST]:
    names = wheel.namelist()
    out = {}
    for pat in patterns:
        for n in names:
            if Path(n).match(pat) and n.count("/") == pat.count("/"):
                out[n] = ast.parse(wheel.read(n).decode("utf-8"), filename=n)
    return out


def flags_of_wheel(package: str, path: Path) -> tuple[set[str], list[str]]:
    """(the flags, the files read) of one wheel."""
    with zipfile.ZipFile(path) as wheel:
        if package == "ray":
            trees = _sources(wheel, ("ray/scripts/scripts.py",))
            return set().union(*map(click_start_flags, trees.values())), sorted(trees)
        literal, fields, classes = RECIPES[package]
        a, b = _sources(wheel, literal), _sources(wheel, fields)
        flags = set().union(*map(add_argument_flags, a.values()), *(dataclass_flags(t, classes) for t in b.values()))
        return flags, sorted(set(a) | set(b))


def record(spec: str, work: Path) -> Path:
    package, version = spec.split("==")
    dest = work / f"{package}-{version}"
    dest.mkdir(parents=True, exist_ok=True)
    if not list(dest.glob("*.whl")):
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-q",
                        "-d", str(dest), spec], check=True)
    (wheel,) = dest.glob("*.whl")
    flags, files = flags_of_wheel(package, wheel)
    if not flags:
        raise SystemExit(f"{spec}: no flags found in {', '.join(files) or 'the wheel'}")
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    out = OUT / f"{package}-{version}.txt"
    OUT.mkdir(parents=True, exist_ok=True)
    header = [f"# {package} {version}: flags its parser defines, recorded by benchmarks/record_runtime_flags.py",
              f"# from {wheel.name} (sha256 {sha}), files: {', '.join(files)}"]
    out.write_text("\n".join(header + sorted(flags)) + "\n", encoding="utf-8")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("specs", nargs="*", default=list(RELEASES), help="PACKAGE==VERSION (default: %(default)s)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/record_runtime_flags"), help="download folder")
    args = ap.parse_args(argv)
    for spec in args.specs:
        print(record(spec, args.work))
    return 0


if __name__ == "__main__":
    sys.exit(main())
