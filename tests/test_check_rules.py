"""``check_plan`` as named rules: every rule registered once, with a docstring and a known point of
the walk; problems listed in walk order (placement of every group, then each group's recomputed
figures, then the plan's totals); and a new rule is one function and one entry in the tuple."""
from __future__ import annotations

import copy
import inspect
import json
import re

import pytest

import planner.plan.check.walk as walk
from planner import api
from planner.plan.check import RULES, STAGES, Rule, check_plan, rules as rules_module


@pytest.fixture(scope="module")
def two_groups():
    """A plan of two unified groups (TP4 and TP8) with SLOs, p99 figures, a rate and a price."""
    plan = api.search(topology="dgx-h100x2", model="llama-3.1-70b", qps=14, objective="min-gpus", tpot_ms=30,
                      ttft_ms=2000, tpot_p99_ms=80, ttft_p99_ms=5000, price_per_gpu_hour={"H100-SXM-80GB": 2.5})
    assert [g.id for g in plan.replica_groups] == ["g0", "g1"] and check_plan(plan).ok
    return plan.model_dump(mode="json")


def test_every_rule_is_registered_once_with_a_docstring_and_a_stage():
    verifies = [r.verify for r in RULES]
    assert len(set(verifies)) == len(verifies)
    defined = {f for _, f in inspect.getmembers(rules_module, inspect.isfunction)
               if f.__module__ == rules_module.__name__ and not f.__name__.startswith("_")}
    assert defined == set(verifies), "a rule written in planner/plan/check/rules.py but not registered in RULES"
    for r in RULES:
        assert r.at in STAGES and (r.verify.__doc__ or "").strip(), r.verify.__name__
    # within one stage, rules run in tuple order; the tuple lists stages in walk order
    order = [STAGES.index(r.at) for r in RULES]
    assert order == sorted(order)
    with pytest.raises(AssertionError, match="unknown stage"):
        Rule("nowhere", rules_module.batch_fits)


def _kinds(problems: list[str]) -> list[tuple[str, str]]:
    """(group or 'plan', what) of each problem, by the words its rule uses."""
    words = {"p99": "p99", "reported": "figures", "dp=": "dp", "does not fit": "batch", "memory": "memory",
             "TPOT": "tpot", "TTFT": "ttft", "traffic_share": "share"}  # the first that matches
    out = []
    for p in problems:
        m = re.match(r"(g\d+)", p)
        out.append((m.group(1) if m else "plan", next(v for k, v in words.items() if k in p)))
    return out


def test_problems_are_listed_in_walk_order(two_groups):
    d = copy.deepcopy(two_groups)
    d["replica_groups"][0]["strategy"]["batch_size"] = 100000  # g0 no longer fits: fails its pricing rules
    d["replica_groups"][1]["strategy"]["dp"] = 2  # g1 declares a replica it does not place
    got = _kinds(check_plan(d).problems)
    assert got[0] == ("g1", "dp"), "placement problems of every group come before any group's figures"
    assert got[1:3] == [("g0", "batch"), ("g0", "memory")]
    g0_served = [k for g, k in got[3:] if g == "g0" and k != "share"]
    assert g0_served == sorted(g0_served, key=["tpot", "ttft", "p99", "figures"].index)
    first_share = next(i for i, (_, k) in enumerate(got) if k == "share")
    assert all(k == "share" for _, k in got[first_share:]) and len(got) > first_share + 1


def test_a_new_rule_is_one_function_and_one_entry(two_groups, monkeypatch):
    def every_group_is_named_x(a, grp):
        """Every group's id is 'x' (a rule made up for this test)."""
        if grp.group.id != "x":
            yield f"{grp.group.id}: not named x"

    def last_word(a, _):
        """Runs at the end."""
        yield "the end"

    monkeypatch.setattr(walk, "RULES", (Rule("group", every_group_is_named_x, stops=True), *RULES,
                                        Rule("totals", last_word)))
    problems = check_plan(two_groups).problems
    # the new group rule stops each group before placement: nothing is placed, so the totals disagree
    assert problems[:2] == ["g0: not named x", "g1: not named x"] and problems[-1] == "the end"
    assert any(p.startswith("totals.gpus_used is 12 but 0 GPUs are placed") for p in problems)


def test_a_unified_groups_ttft_and_the_worst_are_checked_as_reported():
    """A unified group's TTFT and the totals' worst TTFT are compared with the recomputation: edited down to
    10 ms (or the totals to 40), the plan passed every check (a review)."""
    plan = api.search(topology="dgx-h100x1", model="llama-3.1-8b", ttft_ms=50)
    assert check_plan(plan).ok
    d = json.loads(plan.to_json())
    d["replica_groups"][0]["metrics_per_replica"]["ttft_ms"] = 10.0
    assert any("reported ttft_ms 10.0" in p for p in check_plan(d).problems)
    d = json.loads(plan.to_json())
    d["totals"]["ttft_ms"] = 40.0
    assert any("reported worst TTFT 40.0 ms" in p for p in check_plan(d).problems)
