"""Imports run one way: planner -> costmodels -> topologies, and inside the sub-packages too (the
importers: facts -> shared helpers -> one module per format -> node types -> the topology; the
checker: audit -> rules -> walk); only planner/cli.py imports click."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {"topologies": {"planner", "costmodels", "ortools", "click"},
             "costmodels": {"planner", "ortools", "click"},
             "planner": set()}


#: For each sub-package, each module and the sibling modules it may import. The importers: formats
#: read into the shared scan, never each other, and nothing reaches up to ``build``. The checker: the
#: rules see only the audit; the walk runs the rules.
LAYERS = {
    "topologies/importers": {
        "gpu_facts": set(), "common": {"gpu_facts"}, "nvidia_smi": {"gpu_facts", "common"},
        "nccl": {"gpu_facts", "common"}, "node_type": {"gpu_facts", "common"},
        "build": {"gpu_facts", "common", "nvidia_smi", "nccl", "node_type"},
        "__init__": {"gpu_facts", "common", "nvidia_smi", "nccl", "build"}},
    "planner/plan/check": {"audit": set(), "rules": {"audit"}, "walk": {"audit", "rules"},
                      "__init__": {"audit", "rules", "walk"}},
}


def _modules(path: Path) -> set[str]:
    """The dotted names of the absolute imports of ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def _imports(path: Path) -> set[str]:
    return {m.split(".")[0] for m in _modules(path)}


def test_import_direction():
    seen = set()
    for pkg, banned in FORBIDDEN.items():
        for f in (ROOT / pkg).rglob("*.py"):
            assert not _imports(f) & banned, f"{f.relative_to(ROOT)} imports {_imports(f) & banned}"
            seen.add(f.parent)
    packages = {p.parent for pkg in FORBIDDEN for p in (ROOT / pkg).rglob("__init__.py")}
    assert {ROOT / sub for sub in LAYERS} <= packages <= seen  # sub-packages are covered


@pytest.mark.parametrize("sub", sorted(LAYERS))
def test_import_direction_inside_sub_packages(sub):
    package = sub.replace("/", ".")
    files = {f.stem: f for f in (ROOT / sub).glob("*.py")}
    assert set(files) == set(LAYERS[sub]), f"a new module of {sub}/ needs its row in LAYERS"
    for stem, f in files.items():
        siblings = {m[len(package) + 1:].split(".")[0] for m in _modules(f) if m.startswith(package + ".")}
        assert siblings <= LAYERS[sub][stem], f"{f.relative_to(ROOT)} imports {siblings - LAYERS[sub][stem]}"
        assert package not in _modules(f), f"{f.relative_to(ROOT)} imports its own package from inside"
        relative = [n for n in ast.walk(ast.parse(f.read_text(encoding="utf-8")))
                    if isinstance(n, ast.ImportFrom) and n.level]
        assert not relative, f"{f.relative_to(ROOT)}: a relative import, which this test would not see"


def test_only_cli_imports_click():
    for f in (ROOT / "planner").rglob("*.py"):
        if f.name != "cli.py":
            assert "click" not in _imports(f), f
