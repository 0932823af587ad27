"""Imports run one way: planner -> costmodels -> topologies; inside planner/ along the data flow
(price -> solve -> place -> plan -> emit, then the library's doors and the command line); and inside
the sub-packages too (the importers: facts -> shared helpers -> one module per format -> node types
-> the topology; the checker: audit -> rules -> walk). Only planner/cli/ imports click."""
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
    # pricing: the request and the domain classes first, then where GPUs sit and which layouts a
    # shape takes, then the pools, pipelines across types and wide EP, all gathered by shapes
    "planner/price": {"__init__": set(), "candidate": set(), "cluster": set(), "layouts": {"candidate"},
                      "spans": {"candidate", "cluster"}, "roles": {"candidate", "cluster", "spans"},
                      "cross_type": {"candidate", "cluster", "layouts", "spans"},
                      "wide": {"candidate", "cluster", "roles", "spans"},
                      "shapes": {"candidate", "cluster", "layouts", "spans", "roles", "cross_type", "wide"}},
    "planner/solve": {"__init__": set(), "ortools_loader": set(), "progress": {"ortools_loader"},
                      "cpsat": {"ortools_loader", "progress"}, "objectives": {"cpsat", "progress"},
                      "disagg": {"cpsat"}},
    "planner/sweep": {"spec": set(), "run": {"spec"}, "table": {"spec"}, "__init__": {"spec", "run", "table"}},
}


#: For each part of planner/ (a sub-package, or a module at its top), the parts it may import: the
#: steps of the flow only look back, never ahead. The plan's schema (``planner.plan.schema``) is the
#: contract every step may name (the solver words its pools verdict in it), so it is allowed apart.
FLOW = {
    "price": set(),
    "solve": {"price"},
    "place": {"price", "solve"},
    "plan": {"price", "solve", "place"},
    "emit": {"plan"},
    "api": {"price", "solve", "place", "plan"},
    "evaluation": {"api", "price", "plan"},
    "frontier": {"api", "price", "solve", "plan"},
    "breakdown": {"api", "evaluation"},
    "outfile": set(),
    "sweep": {"api", "outfile"},
    "cli": {"api", "evaluation", "frontier", "breakdown", "price", "solve", "plan", "emit", "sweep", "outfile"},
    "entry": {"cli"},
    "__main__": {"entry"},
    "__init__": {"api", "evaluation", "breakdown", "plan"},
}
CONTRACT = "planner.plan.schema"


def _part(module: str) -> str | None:
    """The part of planner/ a dotted module name lies in (None: outside planner/ or planner itself)."""
    parts = module.split(".")
    return parts[1] if parts[0] == "planner" and len(parts) > 1 else None


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


def _targets(path: Path) -> set[str]:
    """Like :func:`_modules`, but ``from a.b import c`` names ``a.b.c`` where ``c`` is a module of
    this project (``from planner import api``, ``from planner.plan import schema``)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                full = f"{node.module}.{a.name}"
                where = ROOT / full.replace(".", "/")
                out.add(full if where.with_suffix(".py").exists() or (where / "__init__.py").exists() else node.module)
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


def test_planner_imports_follow_the_flow():
    parts = {f.stem for f in (ROOT / "planner").glob("*.py")} | {
        d.name for d in (ROOT / "planner").iterdir() if (d / "__init__.py").exists()}
    assert parts == set(FLOW), f"a new part of planner/ needs its row in FLOW: {parts ^ set(FLOW)}"
    for f in (ROOT / "planner").rglob("*.py"):
        rel = f.relative_to(ROOT / "planner").parts
        own = rel[0] if len(rel) > 1 else f.stem
        reached = {_part(m) for m in _targets(f) if not m.startswith(CONTRACT)} - {None, own}
        assert reached <= FLOW[own], f"{f.relative_to(ROOT)} imports {reached - FLOW[own]}, ahead of {own} in the flow"


def test_only_the_command_line_imports_click():
    for f in (ROOT / "planner").rglob("*.py"):
        if f.relative_to(ROOT / "planner").parts[0] != "cli":
            assert "click" not in _imports(f), f
