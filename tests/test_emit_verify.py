"""`plan-search emit` refuses inconsistent plans and writes its folder safely.

Inconsistent plans (issue 12): duplicate group ids, a GPU index no node has, tp x pp that the
replica's ranks do not match, a layer split with a negative entry, a group without replicas, a
group id that would write outside the output folder. Each is refused in one line, exit 2,
with nothing written, both by ``emit()`` (structure, no topology needed) and by the command
(which also runs the independent check_plan when the plan's topology loads here).
Output folder: files honour the umask, existing non-regular targets are refused, write errors
are one line and leave no temporary file.
"""
from __future__ import annotations

import copy
import json
import os
import stat

import pytest
from click.testing import CliRunner

from planner import api
from planner.cli import main
from planner.cli.emit import write_all_atomic
from planner.emit import emit
from planner.plan.schema import Plan
from topologies.errors import InputError


@pytest.fixture(scope="module")
def plan_dict() -> dict:
    p = api.search(topology="dgx-h100x2", model="llama-3.1-70b", tpot_ms=100, disaggregation="off",
                   time_limit_s=10.0, workers=1, seed=0)
    return json.loads(p.to_json())


def _edit(d: dict, how) -> dict:
    d = copy.deepcopy(d)
    how(d)
    return d


def _g0(d):
    return d["replica_groups"][0]


EDITS = {
    "duplicate-id": (lambda d: d["replica_groups"].append(copy.deepcopy(_g0(d))), "replica_groups.1.id"),
    "duplicate-id-but-case": (lambda d: d["replica_groups"].append({**copy.deepcopy(_g0(d)), "id": _g0(d)["id"].upper()}),
                              "replica_groups.1.id"),
    "gpu-index-999": (lambda d: _g0(d)["replicas"][0]["ranks"][0].update(gpu_index=999), None),
    "gpu-index-5000": (lambda d: _g0(d)["replicas"][0]["ranks"][0].update(gpu_index=5000),
                       "replica_groups.0.replicas.0.ranks.0.gpu_index"),
    "tp-8": (lambda d: _g0(d)["strategy"].update(tp=8), "replica_groups.0.replicas.0.ranks"),
    "negative-split": (lambda d: _g0(d)["strategy"].update(layer_split=[88, -8]),
                       "replica_groups.0.strategy.layer_split"),
    "short-split": (lambda d: _g0(d)["strategy"].update(layer_split=[40, 39]), "replica_groups.0.strategy.layer_split"),
    "no-replicas": (lambda d: _g0(d).update(replicas=[]), "replica_groups.0.replicas"),
    "id-traversal": (lambda d: _g0(d).update(id="../../evil"), "replica_groups.0.id"),
    "id-dot-dot": (lambda d: _g0(d).update(id=".."), "replica_groups.0.id"),
    "gpu-used-twice": (lambda d: _g0(d)["replicas"][1]["ranks"][0].update(
        node=_g0(d)["replicas"][0]["ranks"][0]["node"], gpu_index=_g0(d)["replicas"][0]["ranks"][0]["gpu_index"]),
        "replica_groups.0.replicas.1.ranks.0.gpu_index"),
    "rank-numbering": (lambda d: _g0(d)["replicas"][0]["ranks"][0].update(rank=7), "replica_groups.0.replicas.0.ranks"),
    "batch-beyond-memory": (lambda d: _g0(d)["strategy"].update(batch_size=100000), None),
    # figures the launch flags are made of (found by a fuzzing pass: each reached the files, or was a traceback)
    "max-model-len": (lambda d: _g0(d)["strategy"].update(max_model_len=10**11), "replica_groups.0.strategy.max_model_len"),
    "kv-dtype": (lambda d: _g0(d)["strategy"].update(kv_dtype="x"), "replica_groups.0.strategy.kv_dtype"),
    "no-reserve": (lambda d: _g0(d)["memory_per_gpu_bytes"].update(reserve=0), None),
    "huge-capacity": (lambda d: _g0(d)["memory_per_gpu_bytes"].update(capacity=2**63), None),
    "huge-osl": (lambda d: (d["inputs"]["workload"].update(osl=10**29),
                            [g["strategy"].update(max_model_len=d["inputs"]["workload"]["isl"] + 10**29)
                             for g in d["replica_groups"]]), None),
}


@pytest.mark.parametrize("name", list(EDITS))
def test_cli_refuses_inconsistent_plan(plan_dict, tmp_path, name):
    how, field = EDITS[name]
    assert len(_g0(plan_dict)["replicas"]) >= 2 and _g0(plan_dict)["strategy"]["pp"] == 2
    p = tmp_path / "plan.json"
    p.write_text(json.dumps(_edit(plan_dict, how)), encoding="utf-8")
    out = tmp_path / "out"
    for target in ("vllm", "k8s", "ray"):
        r = CliRunner().invoke(main, ["emit", "--plan", str(p), "--target", target, "-o", str(out)])
        assert r.exit_code == 2, (target, r.output)
        assert r.stdout == "" and len(r.stderr.strip().splitlines()) == 1 and str(p) in r.stderr
        if field:
            assert f"{field}:" in r.stderr, r.stderr
        assert not out.exists() and not (tmp_path.parent / "evil").exists()


@pytest.mark.parametrize("name", [n for n, (_, f) in EDITS.items() if f])
def test_emit_refuses_structure_without_validation(plan_dict, name):
    """A plan built without pydantic's checks (model_construct, as a library caller could) is refused too."""
    how, field = EDITS[name]
    valid = Plan.model_validate(plan_dict)
    bad = _edit(plan_dict, how)
    groups = []
    for gd, g in zip(bad["replica_groups"], valid.replica_groups * 2, strict=False):
        reps = [g.replicas[0].model_construct(index=r["index"], ranks=[g.replicas[0].ranks[0].model_construct(**k)
                                                                      for k in r["ranks"]]) for r in gd["replicas"]]
        strategy = g.strategy.model_construct(**gd["strategy"])
        groups.append(g.model_copy(update={"id": gd["id"], "replicas": reps, "strategy": strategy}))
    plan = valid.model_copy(update={"replica_groups": groups})
    with pytest.raises(InputError) as e:
        emit(plan, "vllm")
    assert e.value.field == field


def test_consistent_plan_still_emits(plan_dict, tmp_path):
    p = tmp_path / "plan.json"
    p.write_text(json.dumps(plan_dict), encoding="utf-8")
    r = CliRunner().invoke(main, ["emit", "--plan", str(p), "--target", "vllm", "-o", str(tmp_path / "out")])
    assert r.exit_code == 0, r.stderr


# -- output folder -----------------------------------------------------------------------------------

def test_files_honour_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        write_all_atomic(str(tmp_path / "d"), {"a.sh": "#!/bin/sh\n", "b.yaml": "x: 1\n"})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "d" / "a.sh").stat().st_mode) == 0o750
    assert stat.S_IMODE((tmp_path / "d" / "b.yaml").stat().st_mode) == 0o640
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["a.sh", "b.yaml"]


@pytest.mark.parametrize("kind", ["symlink", "fifo", "folder"])
def test_refuses_a_target_that_is_not_a_regular_file(tmp_path, kind):
    d = tmp_path / "d"
    d.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    t = d / "a.sh"
    if kind == "symlink":
        t.symlink_to(victim)
    elif kind == "fifo":
        os.mkfifo(t)
    else:
        t.mkdir()
    with pytest.raises(InputError, match="not a regular file") as e:
        write_all_atomic(str(d), {"b.yaml": "x: 1\n", "a.sh": "#!/bin/sh\n"})
    assert "\n" not in str(e.value) and str(t) in str(e.value)
    assert victim.read_text() == "keep\n" and sorted(p.name for p in d.iterdir()) == ["a.sh"]


@pytest.mark.parametrize("name", ["../x.sh", "a/b.sh", "..", ".", "", "/etc/x.sh"])
def test_refuses_names_that_are_not_plain(tmp_path, name):
    with pytest.raises(InputError, match="not a plain file name"):
        write_all_atomic(str(tmp_path / "d"), {name: "x\n"})
    assert not (tmp_path / "d").exists() and not (tmp_path / "x.sh").exists()


def test_write_error_is_one_line_and_leaves_no_temp(tmp_path):
    d = tmp_path / "d"
    long_name = "a" * 255  # a legal name: the temporary name must not be longer
    write_all_atomic(str(d), {long_name: "x\n"})
    assert [p.name for p in d.iterdir()] == [long_name]
    with pytest.raises(InputError, match="cannot (write|inspect)") as e:
        write_all_atomic(str(d), {"ok.sh": "x\n", "b" * 256: "x\n"})  # too long a name: the OS refuses
    assert "\n" not in str(e.value)
    assert [p.name for p in d.iterdir()] == [long_name]  # nothing new, no temporary file


def test_error_while_writing_leaves_no_temp(tmp_path, monkeypatch):
    d = tmp_path / "d"
    d.mkdir()

    def full(*a, **k):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr("planner.cli.emit.os.replace", full)
    with pytest.raises(InputError, match="a.sh: cannot write: No space left on device") as e:
        write_all_atomic(str(d), {"a.sh": "x\n", "b.yaml": "y\n"})
    assert "\n" not in str(e.value) and list(d.iterdir()) == []


def test_cli_empty_output_is_refused(plan_dict, tmp_path):
    p = tmp_path / "plan.json"
    p.write_text(json.dumps(plan_dict), encoding="utf-8")
    r = CliRunner().invoke(main, ["emit", "--plan", str(p), "--target", "vllm", "-o", ""])
    assert r.exit_code == 2 and r.stdout == "" and "--output: empty" in r.stderr
