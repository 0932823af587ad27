import json
import os
import sys

import pytest

# Tests import the packages from the checkout; no test may read ../shared.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
TESTS = os.path.dirname(os.path.abspath(__file__))  # tests may share helpers: `from test_optimality import _packs`
if TESTS not in sys.path:
    sys.path.append(TESTS)


@pytest.fixture(autouse=True)
def every_plan_is_verified(monkeypatch):
    """Every plan any test builds is validated against the shipped JSON Schema and re-verified
    by the independent ``check_plan`` before the test sees it."""
    import jsonschema

    from planner.plan import build
    from planner.plan.check import check_plan
    from planner.plan.schema import load_json_schema

    schema = load_json_schema()
    real = build.build_plan

    def verified(spec, topo, *args, **kwargs):
        plan = real(spec, topo, *args, **kwargs)
        jsonschema.validate(json.loads(plan.to_json()), schema)
        report = check_plan(plan, topology=topo, model=spec)
        assert report.ok, report.problems
        return plan

    monkeypatch.setattr(build, "build_plan", verified)
    yield
