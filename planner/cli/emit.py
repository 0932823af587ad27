"""``plan-search emit``: a plan's launch files for one target, written all or nothing."""
from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

import click

from planner.cli.group import EMIT_VERSIONS_HELP, clean_errors, main
from planner.emit import TARGETS as EMIT_TARGETS
from topologies.errors import InputError


@main.command()
@click.option("--plan", "plan_file", required=True, help="Placement JSON written by `search --json` or `-o`.")
@click.option("--target", required=True, type=click.Choice(list(EMIT_TARGETS)),
              help="Serving runtime (vllm, sglang, trtllm), Ray placement groups (ray) or Kubernetes manifests (k8s).")
@click.option("--model-path", help="Checkpoint to serve (HF repo id or folder); default: the model's HF repo.")
@click.option("--runtime-version", metavar="X.Y[.Z]",
              help=f"Release of the target's runtime to write for ({EMIT_VERSIONS_HELP}).")
@click.option("--output", "-o", "out_dir", type=click.Path(file_okay=False),
              help="Write the files into this folder (created); default: print them all.")
@clean_errors
def emit(plan_file, target, model_path, runtime_version, out_dir):
    """Write the runtime's launch files for a plan (scripts per replica group)."""
    from planner.emit import check_model_path, emit as emit_fn, load_plan
    from planner.emit.verify import check_against_topology

    if out_dir is not None:
        check_out_dir(out_dir, "--output")
    if model_path is not None:
        check_model_path(model_path)  # a flag's mistake, not the plan file's
    plan = load_plan(plan_file)
    try:
        files = emit_fn(plan, target, model_path=model_path, runtime_version=runtime_version)
    except InputError as e:  # a plan the runtime cannot express: say which file
        if e.source is not None:
            raise
        raise InputError(str(e), source=plan_file) from None
    check_against_topology(plan, source=plan_file)  # the independent check, where the topology loads here
    if out_dir is None:
        click.echo("".join(f"# === {name} ===\n{text}" for name, text in files.items()), nl=False)
        return
    write_all_atomic(out_dir, files)
    for name in files:
        click.echo(os.path.join(out_dir, name))


def check_out_dir(out_dir: str, flag: str) -> None:
    """Refuse an output folder that cannot be written, before any work is done: an empty name, a path
    that is not a folder, or a folder (or its nearest existing parent, when it is to be created) that
    this user cannot write into."""
    if not out_dir.strip():
        raise InputError("empty; give a folder", source=flag)
    d = Path(out_dir)
    if d.exists() and not d.is_dir():
        raise InputError("exists and is not a folder", source=out_dir)
    probe = d
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise InputError(f"cannot create the folder: {probe} is not a folder", source=out_dir)
    if not os.access(probe, os.W_OK | os.X_OK):
        raise InputError(f"cannot write into {probe}: permission denied", source=out_dir)


def _plain_file_name(name: str, out_dir: str) -> None:
    """Refuse a launch-file name that is not one plain file name inside the folder (defence in depth:
    the emitters make names from checked group ids)."""
    if (not isinstance(name, str) or name in ("", ".", "..") or os.path.basename(name) != name
            or "/" in name or "\\" in name or "\0" in name or not name.isprintable()):
        raise InputError(f"refusing to write {name!r}: not a plain file name", source=out_dir)


def write_all_atomic(out_dir: str, files: dict[str, str]) -> None:
    """Write every file into ``out_dir`` (created) via temp files renamed only once all are written.

    Scripts get mode 0o777 and other files 0o666, less the umask (as any new file). An existing
    target that is not a regular file (a symlink, a device, a fifo, a folder) is refused before
    anything is written; any error while writing is one line naming the file and leaves no temp file.
    """
    check_out_dir(out_dir, "--output")
    d = Path(out_dir)
    for name in files:
        _plain_file_name(name, out_dir)
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"cannot create folder: {e.strerror}", source=out_dir) from None
    for name in files:
        try:
            st = os.lstat(d / name)
        except FileNotFoundError:
            continue
        except OSError as e:
            raise InputError(f"cannot inspect: {e.strerror}", source=str(d / name)) from None
        if not stat.S_ISREG(st.st_mode):
            raise InputError("exists and is not a regular file (a symlink, device, fifo or folder); remove it or "
                             "choose another folder", source=str(d / name))
    temps: list[tuple[Path, Path]] = []
    current = out_dir
    try:
        for i, (name, text) in enumerate(files.items()):
            current = str(d / name)
            tmp = d / f".plan-search-{os.getpid()}-{i}-{secrets.token_hex(4)}.tmp"  # short: any legal name fits
            mode = 0o777 if name.endswith(".sh") else 0o666  # the kernel takes the umask off
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            temps.append((tmp, d / name))
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
        for tmp, target in temps:
            current = str(target)
            os.replace(tmp, target)
    except OSError as e:
        _remove_temps(temps)
        raise InputError(f"cannot write: {e.strerror or e}", source=current) from None
    except BaseException:
        _remove_temps(temps)
        raise


def _remove_temps(temps: list[tuple[Path, Path]]) -> None:
    for tmp, _ in temps:
        try:
            os.unlink(tmp)
        except OSError:
            pass
