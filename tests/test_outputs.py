"""Single output files (``search -o``, ``topology import -o``, ``sweep -o``): issue 12, section 3.

A target that is not a regular file, or a folder that cannot take the file, is refused in one
line (exit 2) before any work; a write that fails anyway is one line naming the file; a new
file's mode follows the umask; the file appears whole or not at all.
"""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from planner import api
from planner.cli import main
from planner.outfile import TEMP_PREFIX

SEARCH = ["search", "--topology", "dgx-h100x1", "--model", "llama-3.1-8b", "--quiet"]
SMI = Path(__file__).parent / "fixtures" / "topology-samples" / "nvidia-smi_4x-l40s_pcie-only.txt"


def run(args) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def no_search(monkeypatch):
    """Fail the test if the search starts: the output check must come first."""
    def refuse(**_):
        raise AssertionError("the search ran before the output path was checked")
    monkeypatch.setattr(api, "search", refuse)


def _one_line_error(code: int, err: str, *mentions: str) -> None:
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("plan-search: error: "), err
    assert "Traceback" not in err
    for m in mentions:
        assert m in err, err


def _fifo(d: Path) -> Path:
    p = d / "pipe.json"
    os.mkfifo(p)
    return p


def _stdout_link(d: Path) -> Path:
    p = d / "out.json"
    p.symlink_to("/dev/stdout")
    return p


def _file_link(d: Path) -> Path:
    (d / "real.json").write_text("keep me\n")
    p = d / "out.json"
    p.symlink_to(d / "real.json")
    return p


@pytest.mark.parametrize("make, why", [
    (lambda d: Path("/dev/null"), "character device"),
    (_fifo, "fifo"),
    (_stdout_link, "symbolic link"),
    (_file_link, "symbolic link"),
    (lambda d: d, "directory"),
], ids=["device", "fifo", "symlink-to-stdout", "symlink-to-file", "folder"])
def test_search_refuses_a_target_that_is_not_a_regular_file(tmp_path, no_search, make, why):
    target = make(tmp_path)
    code, out, err = run([*SEARCH, "-o", target])
    _one_line_error(code, err, why, str(target))
    assert out == ""
    if (tmp_path / "real.json").exists():
        assert (tmp_path / "real.json").read_text() == "keep me\n"


def test_empty_output_name_is_refused(no_search):
    code, out, err = run([*SEARCH, "-o", ""])
    _one_line_error(code, err, "--output", "empty")


def test_empty_plot_name_is_refused(no_search):
    code, _, err = run([*SEARCH, "--pareto", "--plot", ""])
    _one_line_error(code, err, "--plot", "empty")


def test_unwritable_folder_is_refused_before_the_search(tmp_path, no_search, monkeypatch):
    """A read-only folder (os.access says so; root would bypass a chmod, so it is simulated)."""
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, m, **kw: False if Path(p) == tmp_path else real_access(p, m, **kw))
    code, _, err = run([*SEARCH, "-o", tmp_path / "plan.json"])
    _one_line_error(code, err, "plan.json", "not writable")


def test_pseudo_file_system_is_refused_before_the_search(no_search):
    code, _, err = run([*SEARCH, "-o", "/proc/plan-search-test.json"])
    _one_line_error(code, err, "/proc/plan-search-test.json")


def test_name_too_long_is_refused_before_the_search(tmp_path, no_search):
    code, _, err = run([*SEARCH, "-o", tmp_path / ("a" * 256)])
    _one_line_error(code, err, "a" * 256)


def test_legal_255_byte_name_is_written(tmp_path):
    """The temporary name must not grow with the target's (it once was `.{name}.XXXX.tmp`)."""
    target = tmp_path / ("p" * 250 + ".json")
    code, _, err = run([*SEARCH, "-o", target])
    assert code == 0, err
    assert target.read_text().startswith("{")
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_new_file_mode_follows_the_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        code, _, err = run([*SEARCH, "-o", tmp_path / "plan.json"])
    finally:
        os.umask(old)
    assert code == 0, err
    assert stat.S_IMODE((tmp_path / "plan.json").stat().st_mode) == 0o666 & ~mask


def test_replaced_file_keeps_its_mode(tmp_path):
    target = tmp_path / "plan.json"
    target.write_text("old\n")
    target.chmod(0o640)
    code, _, err = run([*SEARCH, "-o", target])
    assert code == 0, err
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert target.read_text() != "old\n"


def test_write_error_is_one_line_and_leaves_the_old_file(tmp_path, monkeypatch):
    """A full disk at the last moment: one line naming the file, the old file intact, no temp file."""
    target = tmp_path / "plan.json"
    target.write_text("old\n")

    def full(*_a, **_k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(os, "replace", full)
    code, _, err = run([*SEARCH, "-o", target])
    _one_line_error(code, err, "plan.json", "no space left")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["plan.json"]


def test_topology_import_refuses_a_device_before_importing(tmp_path):
    code, out, err = run(["topology", "import", "nvidia-smi", SMI, "--gpu", "L40S", "-o", "/dev/null"])
    _one_line_error(code, err, "/dev/null", "character device")
    assert out == ""


def test_sweep_refuses_a_symlink_before_running(tmp_path, monkeypatch):
    from planner import sweep as sw

    f = tmp_path / "s.yaml"
    f.write_text("base: {topology: dgx-h100x1, model: llama-3.1-8b}\ngrid: {isl: [512]}\n")
    monkeypatch.setattr(sw, "run_sweep", lambda *a, **k: (_ for _ in ()).throw(AssertionError("ran")))
    link = _stdout_link(tmp_path)
    link.rename(tmp_path / "out.csv")
    code, out, err = run(["sweep", f, "-o", tmp_path / "out.csv"])
    _one_line_error(code, err, "out.csv", "symbolic link")
    assert out == ""


def test_temp_names_do_not_leak(tmp_path):
    code, _, err = run([*SEARCH, "-o", tmp_path / "plan.json"])
    assert code == 0, err
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(TEMP_PREFIX)]
