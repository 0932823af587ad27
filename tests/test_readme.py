"""Every command README.md shows is run, and the output it shows must be what the command prints.

What counts as a command:

* in a fenced block without a language, every line that starts a command (``$ `` in a shell
  session, or a bare ``plan-search``/``python``/``pip`` line), with ``\\`` continuations joined
  and ``&&`` chains split into their parts;
* an inline code span starting with ``python benchmarks/`` (the benchmarks are named in prose);
* the Python block of "From a deployment tool" (executed in a temporary folder).

Each ``plan-search`` command runs in-process (click's CliRunner) in a temporary folder holding
the input files the README's session creates (``node0.txt``, ``node0.xml``: fixtures of
tests/fixtures/topology-samples; ``plan.json``: written there first by the README command that
writes it, ``WRITTEN_FILES``); each ``python benchmarks/...`` command runs as a subprocess
from the checkout. A command must exit 0, or with the code ``$ echo $?`` shows after it. A
command that cannot run in a test (it needs a GPU machine, installs packages, or takes minutes)
is listed in ``SKIPPED`` with its reason; a README command in neither group fails the test, and
so does a ``SKIPPED`` entry the README no longer shows.

How shown output is compared (``output_problems``):

* after a ``$`` command, the output lines shown must appear in the real output (stdout, then
  stderr) in the same order, each equal to a real line once runs of spaces are collapsed; the
  README may leave lines out, never change one. Only ``wall time:`` lines may differ, and only
  in their numbers;
* after an inline ``python benchmarks/...`` command, the first table or fenced block that
  follows it in the same section is its shown output: every number in the table's cells (the
  row label column and the header excepted) or the block's lines must be a number the real
  output prints (thousands separators ignored).

Inline ``plan-search`` spans are synopses (``-t T -m M [--isl N] ...``): their command path
must exist and every ``--flag`` they name must be an option of that command.
"""
from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from planner.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SAMPLES = Path(__file__).resolve().parent / "fixtures" / "topology-samples"

#: Files the README's commands read, as the session above them would have created them.
INPUT_FILES = {
    "node0.txt": SAMPLES / "nvidia-smi_8x-h100-sxm_nv18_rail-nics.txt",
    "node0.xml": SAMPLES / "nccl-topo_8x-a100-sxm_6-nvswitch.xml",
}

#: README commands a test does not run, each with the reason. Every other command is run.
SKIPPED = {
    "pip install .": "installs the project: .ci/run does it, and .ci/installed_smoke.sh runs the installed wheel",
    "pip install '.[test,ray,plot,lint]'": "installs the test and lint extras: .ci/run does it",
    "ruff check .": "the linter, not part of the project: .ci/run runs it",
    "mypy": "the type checker, not part of the project: .ci/run runs it",
    "python -m pytest -q": "the test suite this test is part of",
    "nvidia-smi topo -m > node0.txt": "needs a GPU machine; node0.txt is a fixture here (INPUT_FILES)",
    "NCCL_TOPO_DUMP_FILE=node0.xml ...": "needs a GPU machine running NCCL; node0.xml is a fixture here",
    "python benchmarks/calibrate.py": "a Powell fit over all rows, about 2 minutes on 2 cores",
    "python benchmarks/calibrate.py --holdout-gpus --holdout-sources --holdout-only --max-evals 100 --only NAME...":
        "one fit per GPU type or source left out, several minutes each",
    "python benchmarks/robustness.py --skip-corpus --skip-emitters": "plans fleets up to 16,368 GPUs in fresh processes, minutes",
    "python benchmarks/peer_compare.py": "needs AIConfigurator installed (the 'peer' extra, in its own venv), minutes",
    "python benchmarks/peer_compare.py --published": ("needs AIConfigurator installed (the 'peer' extra, in its own "
                                                      "venv); tests/test_fidelity.py runs it against a stub peer"),
    "python benchmarks/derive_gemm_peaks.py": "needs AIConfigurator installed (the 'peer' extra, in its own venv)",
    "python benchmarks/derive_moe_tables.py": "needs AIConfigurator installed (the 'peer' extra, in its own venv)",
    "python benchmarks/derive_dense_gemm.py --write": "needs AIConfigurator installed (the 'peer' extra, in its own venv)",
    "python benchmarks/derive_decode_attention.py --write": "needs AIConfigurator installed (the 'peer' extra, in its own venv)",
    "python benchmarks/derive_prefill_attention.py --write": "needs AIConfigurator installed (the 'peer' extra, in its own venv)",
    "python benchmarks/check_emitters.py --compact": "judges launch files with vLLM, SGLang, Ray and Kubernetes "
                                                     "validators installed in their own environments (about 30 GB; "
                                                     "--install), minutes per run: a benchmark, not a test",
    "python benchmarks/solve_scaling.py": "plans fleets up to 16,368 GPUs, about a minute; timings vary by machine",
    "python benchmarks/solve_scaling.py --disaggregation off": "as above",
    "python benchmarks/startup.py": "wall times of fresh processes: they depend on the machine and its load, and "
                                    "tests/test_startup.py runs it once, on --help",
    "python benchmarks/robustness.py": "one process per bad input and fleets up to 16,368 GPUs, minutes",
    "python benchmarks/robustness.py --skip-large": "one process per bad input and per emitter payload case, "
                                                    "about ten minutes on 2 cores",
}

COMMAND_START = re.compile(r"^(plan-search|python3?|pip|nvidia-smi|NCCL_\w+=)\b")
NUMBER = re.compile(r"(?<![\w.])[-+]?\d[\d,]*(?:\.\d+)?")


@dataclass
class Shown:
    """One command as README.md shows it."""

    command: str
    line: int  # 1-based line of README.md
    output: list[str] = field(default_factory=list)  # lines shown as its output (after `$ cmd`)
    exit_code: int = 0
    inline: bool = False  # named in prose; its shown output is the table or block that follows


def _fenced_blocks(lines: list[str]):
    """Yield (language, first line number, body lines) of every fenced block."""
    i = 0
    while i < len(lines):
        if lines[i].startswith("```"):
            lang, start, body = lines[i][3:].strip(), i + 2, []
            i += 1
            while not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            yield lang, start, body
        i += 1


def _join_continuations(body: list[str], start: int):
    """Yield (line number, logical line): a line ending in a backslash continues on the next."""
    i = 0
    while i < len(body):
        first, text = i, body[i]
        while text.endswith("\\") and i + 1 < len(body):
            i += 1
            text = text[:-1].rstrip() + " " + body[i].strip()
        yield start + first, text
        i += 1


def _session_commands(body: list[str], start: int) -> list[Shown]:
    """Commands of a block: `$ cmd` lines with the output lines below them, or bare command lines."""
    session = any(line.startswith("$ ") for line in body)
    out: list[Shown] = []
    for number, text in _join_continuations(body, start):
        if session and text.startswith("$ "):
            cmd = text[2:].split("  #")[0].strip()
            if cmd == "echo $?":
                out[-1].exit_code = -1  # the next output line is the previous command's exit code
                continue
            out.extend(Shown(part.strip(), number) for part in cmd.split(" && "))
        elif session and out:
            if out[-1].exit_code == -1:
                out[-1].exit_code = int(text)
            elif text.strip():
                out[-1].output.append(text)
        elif not session and COMMAND_START.match(text):
            out.extend(Shown(part.strip(), number) for part in text.split(" && "))
    return out


def readme_commands() -> list[Shown]:
    """Every command README.md shows (see the module docstring), in README order."""
    lines = README.read_text(encoding="utf-8").splitlines()
    found: list[Shown] = []
    for lang, start, body in _fenced_blocks(lines):
        if lang == "":
            found.extend(_session_commands(body, start))
    for number, line in enumerate(_outside_fences(lines), 1):
        for span in re.findall(r"`([^`]+)`", line or ""):
            if span.startswith("python benchmarks/"):
                found.append(Shown(span, number, inline=True))
    return sorted(found, key=lambda s: s.line)


def _outside_fences(lines: list[str]) -> list[str | None]:
    """The README's lines, None for lines inside fenced blocks (their spans are not prose)."""
    out, inside = [], False
    for line in lines:
        fence = line.startswith("```")
        out.append(None if inside or fence else line)
        inside ^= fence
    return out


def _shown_after(line: int) -> list[str]:
    """The table or fenced block that follows README line `line` within its section, or []."""
    lines = README.read_text(encoding="utf-8").splitlines()[line:]
    for i, text in enumerate(lines):
        if text.startswith("#") or "`python benchmarks/" in text:
            return []
        if text.startswith("```"):
            return lines[i + 1:i + 1 + next(j for j, t in enumerate(lines[i + 1:]) if t.startswith("```"))]
        if text.startswith("|"):
            rows = []
            for row in lines[i:]:
                if not row.startswith("|"):
                    break
                rows.append("|".join(row.split("|")[2:]))  # the cells after the row's label
            return rows[2:]  # the body, below the header and its rule
    return []


def _numbers(text: str) -> set[str]:
    return {n.replace(",", "") for n in NUMBER.findall(text)}


def _norm(line: str) -> str:
    return " ".join(line.split())


def output_problems(shown: list[str], real: str) -> list[str]:
    """Shown lines not found, in order, among the real output's lines (see the module docstring)."""
    real_lines = [_norm(x) for x in real.splitlines()]
    problems, at = [], 0
    for want in map(_norm, shown):
        pattern = NUMBER.sub("#", want) if want.startswith("wall time:") else None
        for j in range(at, len(real_lines)):
            got = NUMBER.sub("#", real_lines[j]) if pattern else real_lines[j]
            if got == (pattern or want):
                at = j + 1
                break
        else:
            problems.append(want)
    return problems


def number_problems(shown: list[str], real: str) -> list[str]:
    """Numbers of the shown table or block that the real output does not print."""
    have = _numbers(real)
    return sorted({n for line in shown for n in _numbers(line)} - have, key=lambda n: float(n))


COMMANDS = readme_commands()
TO_RUN = [s for s in COMMANDS if s.command not in SKIPPED]


def test_every_readme_command_is_run_or_skipped_with_a_reason():
    unknown = [f"README.md:{s.line}: {s.command}" for s in TO_RUN
               if not s.command.startswith(("plan-search ", "python benchmarks/"))]
    assert not unknown, "README commands this test neither runs nor lists in SKIPPED: " + "; ".join(unknown)
    stale = sorted(set(SKIPPED) - {s.command for s in COMMANDS})
    assert not stale, f"SKIPPED lists commands README.md no longer shows: {stale}"


def test_the_parser_finds_the_commands_readme_is_known_to_show():
    """A guard on the parser itself: were it to find nothing, the tests below would pass vacuously."""
    commands = {s.command for s in COMMANDS}
    assert "plan-search search --topology dgx-h100x2 --model llama-3.1-70b" in commands
    assert "python benchmarks/fidelity.py" in commands
    assert any(s.output and s.command.startswith("plan-search search") for s in COMMANDS)
    assert any(s.exit_code == 3 for s in COMMANDS)
    assert len(TO_RUN) >= 8


#: Files a README command writes and a later one reads: the README command that writes each, run
#: first in the reading command's folder (each command runs in a folder of its own).
WRITTEN_FILES = {"plan.json": "plan-search search -t dgx-h100x2 -m llama-3.1-70b -q -o plan.json"}


def test_written_files_come_from_readme_commands():
    commands = {s.command for s in COMMANDS}
    assert set(WRITTEN_FILES.values()) <= commands


def _run_cli(command: str, folder: Path, monkeypatch) -> tuple[int, str]:
    for name, source in INPUT_FILES.items():
        shutil.copy(source, folder / name)
    monkeypatch.chdir(folder)
    for name, writer in WRITTEN_FILES.items():
        if name in shlex.split(command) and writer != command:
            result = CliRunner().invoke(main, shlex.split(writer)[1:])
            assert result.exit_code == 0 and (folder / name).is_file(), (writer, result.output)
    result = CliRunner().invoke(main, shlex.split(command)[1:])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout + result.stderr


def _run_script(command: str) -> tuple[int, str]:
    proc = subprocess.run([sys.executable, *shlex.split(command)[1:]], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.parametrize("shown", TO_RUN, ids=lambda s: f"L{s.line}:{s.command}")
def test_readme_command(shown: Shown, tmp_path, monkeypatch):
    if shown.command.startswith("plan-search "):
        code, real = _run_cli(shown.command, tmp_path, monkeypatch)
    else:
        code, real = _run_script(shown.command)
    assert code == shown.exit_code, f"README.md:{shown.line}: `{shown.command}` exited {code}:\n{real}"
    missing = output_problems(shown.output, real)
    assert not missing, (f"README.md:{shown.line}: `{shown.command}` does not print these shown lines "
                         f"(in this order):\n" + "\n".join(missing) + f"\n--- real output:\n{real}")
    if shown.inline:
        after = _shown_after(shown.line)
        missing = number_problems(after, real)
        assert not missing, (f"README.md:{shown.line}: the figures shown after `{shown.command}` "
                             f"that it does not print: {missing}\n--- real output:\n{real}")


def test_output_matching_is_strict():
    """The matching rule refuses a changed number, a changed column and a reordering."""
    real = "a   b  c\n1  2.5  3,000\nwall time: 0.41 s\n"
    assert output_problems(["a b c", "1 2.5 3,000", "wall time: 9.99 s"], real) == []
    assert output_problems(["1 2.6 3,000"], real) == ["1 2.6 3,000"]
    assert output_problems(["a b d"], real) == ["a b d"]
    assert output_problems(["1 2.5 3,000", "a b c"], real) == ["a b c"]
    assert number_problems(["| 2.5 % | 3,000 |"], real) == []
    assert number_problems(["| 2.4 % | 3000 | 7 |"], real) == ["2.4", "7"]


def test_python_example_runs(tmp_path, monkeypatch):
    """The "From a deployment tool" block, executed as shown (it writes plan.json into the folder)."""
    lines = README.read_text(encoding="utf-8").splitlines()
    blocks = [body for lang, _, body in _fenced_blocks(lines) if lang == "python"]
    assert len(blocks) == 1
    monkeypatch.chdir(tmp_path)
    exec(compile("\n".join(blocks[0]), "README.md", "exec"), {})
    assert (tmp_path / "plan.json").stat().st_size > 0


def test_topology_file_example_is_valid(tmp_path):
    """The "Topology files" example passes `topology validate`."""
    lines = README.read_text(encoding="utf-8").splitlines()
    blocks = [body for lang, _, body in _fenced_blocks(lines) if lang == "yaml" and body[0].startswith("name: my-")]
    assert len(blocks) == 1
    path = tmp_path / "my-cluster.yaml"
    path.write_text("\n".join(blocks[0]) + "\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["topology", "validate", str(path)])
    assert result.exit_code == 0, result.output


def _synopses() -> list[tuple[int, str]]:
    lines = README.read_text(encoding="utf-8").splitlines()
    return [(n, span.replace("\\|", "|")) for n, line in enumerate(_outside_fences(lines), 1)
            for span in re.findall(r"`((?:[^`\\]|\\.)+)`", line or "") if span.startswith("plan-search ")]


@pytest.mark.parametrize("line,synopsis", _synopses(), ids=lambda x: str(x)[:60])
def test_synopsis_names_real_commands_and_options(line, synopsis):
    words = synopsis.split()[1:]
    command: click.Command = main
    path = ["plan-search"]
    while isinstance(command, click.Group) and words:
        name = words[0].split("|")[0]
        if name not in command.commands:
            break
        assert all(alt in command.commands for alt in words[0].split("|")), f"README.md:{line}: {synopsis}"
        command, path = command.commands[name], path + [name]
        words = words[1:]
    assert not isinstance(command, click.Group) or not words, f"README.md:{line}: no command `{synopsis}`"
    options = {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)} | {"--help", "-h"}
    named = set(re.findall(r"(?<![\w-])(--[a-z][\w-]*|-[a-zA-Z])\b", " ".join(words)))
    unknown = sorted(named - options)
    assert not unknown, f"README.md:{line}: `{' '.join(path)}` has no option {unknown}"
