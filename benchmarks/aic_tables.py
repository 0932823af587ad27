"""Shared driver of the scripts that derive the shipped measured tables from AIConfigurator's data
(``derive_gemm_peaks.py``, ``derive_moe_tables.py``): find the installed tables, build the CSV,
print it or replace the shipped file."""
from __future__ import annotations

import argparse
import csv
import io
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

#: AIConfigurator's system folder -> this project's catalog name (a system without a table of
#: the kind a script reads is skipped by that script)
SYSTEMS = {"a100_sxm": "A100-SXM4-80GB", "h100_sxm": "H100-SXM-80GB", "h200_sxm": "H200-SXM-141GB",
           "l40s": "L40S-48GB", "b200_sxm": "B200-180GB", "gb200": "GB200-186GB", "b300_sxm": "B300",
           "gb300": "GB300", "rtx_pro_6000_server": "RTX-PRO-6000-Blackwell-Server"}
#: the tables' format names -> the weight dtypes of costmodels
FORMATS = {"bfloat16": "bf16", "fp8": "fp8", "nvfp4": "fp4"}


def version_key(v: str) -> tuple:
    """1.3.0rc23 > 1.3.0rc20 > 1.0.0; 0.5.14 > 0.5.6.post2."""
    return tuple(int(x) for x in re.findall(r"\d+", v))


def newest(data_root: Path, pattern: str) -> dict[tuple[str, str], Path]:
    """(system, runtime) -> the newest runtime version's file matching ``pattern`` (a glob of
    ``<system>/<kind>/<runtime>/<version>/<file>`` under ``data_root``), for the systems in SYSTEMS."""
    best: dict[tuple[str, str], Path] = {}
    for f in sorted(data_root.glob(pattern)):
        system, _, runtime, version = f.relative_to(data_root).parts[:4]
        if system in SYSTEMS and ((system, runtime) not in best
                                  or version_key(version) > version_key(best[(system, runtime)].parent.name)):
            best[(system, runtime)] = f
    return best


def data_root() -> Path | None:
    """``systems/data`` of the installed aiconfigurator-core, or None when it is not installed."""
    try:
        import aiconfigurator_core
    except ImportError:
        return None
    return Path(aiconfigurator_core.__file__).parent / "systems" / "data"


def run(doc: str, out: Path, header: Sequence[str], rows: Callable[[Path], list[list] | dict[str, list[list]]],
        argv: Sequence[str] | None = None) -> int:
    """Parse ``--write``, derive the rows and print the CSV or replace ``out``; exit 2 without the peer.

    ``rows`` gives one file's rows (``out`` is that file), or {file name: rows} for one file per
    name in the folder ``out``; printed, each of those is headed by ``# <name>``."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--write", action="store_true", help=f"replace {out.name}")
    args = ap.parse_args(argv)
    root = data_root()
    if root is None:
        print("needs aiconfigurator (pip install '.[peer]')", file=sys.stderr)
        return 2
    derived = rows(root)
    files = derived if isinstance(derived, dict) else {out.name: derived}
    folder = out if isinstance(derived, dict) else out.parent
    for name, body in sorted(files.items()):
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(header)
        w.writerows(body)
        if args.write:
            folder.mkdir(exist_ok=True)
            (folder / name).write_text(buf.getvalue(), encoding="utf-8")
        else:
            sys.stdout.write(f"# {name}\n{buf.getvalue()}" if isinstance(derived, dict) else buf.getvalue())
    return 0
