"""Imports run one way: planner -> costmodels -> topologies; only planner/cli.py imports click."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {"topologies": {"planner", "costmodels", "ortools", "click"},
             "costmodels": {"planner", "ortools", "click"},
             "planner": set()}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


def test_import_direction():
    for pkg, banned in FORBIDDEN.items():
        for f in (ROOT / pkg).rglob("*.py"):
            assert not _imports(f) & banned, f"{f.relative_to(ROOT)} imports {_imports(f) & banned}"


def test_only_cli_imports_click():
    for f in (ROOT / "planner").rglob("*.py"):
        if f.name != "cli.py":
            assert "click" not in _imports(f), f
