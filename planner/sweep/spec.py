"""The sweep file: its format and checks, and the requests (rows) it asks for (``plan-search sweep``).

A sweep file (YAML or JSON, read through :func:`topologies.load.read_structured_file`, so
the same size, alias and encoding guards apply as to topology files)::

    name: capacity-q3                 # optional; default: the file's name
    base: {isl: 1024, osl: 256, time_limit_s: 10}   # search() arguments every row shares
    grid:                             # the cartesian product of these lists, last key fastest
      topology: [dgx-h100x2, hgx-a100x4]
      model: [llama-3.1-8b, llama-3.1-70b]
      tpot_ms: [null, 50]
    cases:                            # optional explicit requests, after the grid rows
      - {topology: dgx-h100x2, model: llama-3.1-70b, qps: 20, objective: min-gpus}

Keys are the arguments of :func:`planner.api.search` listed in :data:`SEARCH_KEYS`; unknown
keys, wrong types and out-of-range values are refused before anything runs, as one
:class:`InputError` naming the file and the field. Grid values override ``base``; a case is
``base`` plus the case. Relative topology and model file paths are relative to the sweep
file's folder.

Each row runs one ``search`` (CP-SAT with one worker: the sweep is parallel across rows)
and becomes one table row: the request (defaults filled in), then ``status`` (ok,
infeasible, bad-input, timeout or error) and, for ok rows, the plan's totals. A failing row
never stops the sweep. Rows come out in grid order whatever order they finish in, so the
same sweep gives the same table byte for byte (as long as every solve ends within its time
limit: a solve the limit cuts short may differ from run to run).

Rows run in this process (``jobs=1``), in local processes, or as Ray tasks on a cluster.
"""
from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, create_model

from costmodels import calibration as cal
from costmodels.units import DTYPES
from planner.api import OBJECTIVES
from topologies.errors import InputError
from topologies.schema import MAX_PRICE_PER_GPU_HOUR, GpuName

MAX_ROWS = 100_000

# The search() arguments a sweep may set, in column order, with search()'s defaults.
# (weight_dtype / kv_dtype: search() takes None for "auto".)
SEARCH_DEFAULTS: dict[str, Any] = {
    "topology": None, "model": None, "isl": 1024, "osl": 256, "qps": None, "ttft_ms": None, "tpot_ms": None,
    "objective": "throughput", "weight_dtype": "auto", "kv_dtype": "auto", "max_gpus": None,
    "allow_cross_domain_tp": False, "time_limit_s": 10.0, "seed": 0, "runtime": "vllm",
    "ttft_p99_ms": None, "tpot_p99_ms": None, "disaggregation": "auto", "ep": None, "attention_dp": None,
    "expert_imbalance": None, "price_per_gpu_hour": None,
}
SEARCH_KEYS = tuple(SEARCH_DEFAULTS)

STATUSES = ("ok", "infeasible", "bad-input", "timeout", "error")

# Column name -> type, for the CSV header order and the Parquet schema.
RESULT_COLUMNS: dict[str, str] = {
    "status": "str", "message": "str", "gpus_used": "int", "output_tokens_per_s": "float",
    "output_tokens_per_s_per_gpu": "float", "requests_per_s": "float",
    "plan_ttft_ms": "float",  # worst over the plan's replica groups (queueing at the planned load included)
    "plan_tpot_ms": "float", "replica_groups": "str", "cost_per_hour": "float", "solver_status": "str",
    "solver_gap": "float",
}
REQUEST_TYPES: dict[str, str] = {
    "topology": "str", "model": "str", "isl": "int", "osl": "int", "qps": "float", "ttft_ms": "float",
    "tpot_ms": "float", "objective": "str", "weight_dtype": "str", "kv_dtype": "str", "max_gpus": "int",
    "allow_cross_domain_tp": "bool", "time_limit_s": "float", "seed": "int", "runtime": "str",
    "ttft_p99_ms": "float", "tpot_p99_ms": "float", "disaggregation": "str", "ep": "int", "attention_dp": "int",
    "expert_imbalance": "float",
    "price_per_gpu_hour": "str",  # as the --price flags say it: "A100-SXM-80GB=1.8 H100-SXM-80GB=2.5"
}
COLUMN_TYPES: dict[str, str] = {"index": "int", **REQUEST_TYPES, **RESULT_COLUMNS}
COLUMNS = tuple(COLUMN_TYPES)


# -- the file format ---------------------------------------------------------------------------

_STRICT = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


def _printable(v: str) -> str:
    if not v.isprintable():
        raise ValueError("holds a line break, a terminal escape or another unprintable character; remove it")
    return v


# a topology or model name or path: written into every result row and the status line, so one printable line
_Name = Annotated[str, Field(min_length=1, max_length=4096), AfterValidator(_printable)]


def _yaml_off(value: Any) -> Any:
    """YAML 1.1 reads an unquoted ``off`` as false: take false as ``off`` (true has no meaning here)."""
    if value is False:
        return "off"
    if value is True:
        raise ValueError("true is not a value here: give auto, off or only")
    return value


_FIELD_TYPES: dict[str, Any] = {
    "topology": _Name,
    "model": _Name,
    "isl": Annotated[int, Field(gt=0)],
    "osl": Annotated[int, Field(gt=0)],
    "qps": Annotated[float, Field(ge=0)] | None,
    "ttft_ms": Annotated[float, Field(gt=0)] | None,
    "tpot_ms": Annotated[float, Field(gt=0)] | None,
    "objective": Literal[tuple(OBJECTIVES)],
    "weight_dtype": Literal[("auto",) + tuple(DTYPES)] | None,
    "kv_dtype": Literal[("auto",) + tuple(DTYPES)] | None,
    "max_gpus": Annotated[int, Field(gt=0)] | None,
    "allow_cross_domain_tp": bool,
    "time_limit_s": Annotated[float, Field(gt=0, le=7 * 24 * 3600)],
    "seed": Annotated[int, Field(ge=0, lt=2**31)],
    "runtime": Literal[tuple(cal.RUNTIMES)],
    "ttft_p99_ms": Annotated[float, Field(gt=0)] | None,
    "tpot_p99_ms": Annotated[float, Field(gt=0)] | None,
    "disaggregation": Annotated[Literal["auto", "off", "only"], BeforeValidator(_yaml_off)],
    "ep": Annotated[int, Field(gt=0)] | None,
    "attention_dp": Annotated[int, Field(gt=0)] | None,
    "expert_imbalance": Annotated[float, Field(ge=1)] | None,
    # GPU type -> US dollars per GPU-hour, over the topology's own prices (search()'s argument)
    # keys are GPU names (as a topology's gpu_types and the catalog spell them); at most as many as a
    # topology may define, since each result row repeats the mapping
    "price_per_gpu_hour": Annotated[dict[GpuName, Annotated[float, Field(ge=0, le=MAX_PRICE_PER_GPU_HOUR)]],
                                    Field(max_length=64)] | None,
}
assert tuple(_FIELD_TYPES) == SEARCH_KEYS


# Unset fields stay None (not validated); only keys the file gives count (model_fields_set).
SearchArgs = create_model("SearchArgs", __config__=_STRICT,
                          **{k: (t, None) for k, t in _FIELD_TYPES.items()})  # type: ignore[call-overload]
Grid = create_model("Grid", __config__=_STRICT,
                    **{k: (Annotated[list[t], Field(min_length=1)], None)  # type: ignore[valid-type]
                       for k, t in _FIELD_TYPES.items()})  # type: ignore[call-overload]


class SweepFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # printed in the summary and the status line: one line, no terminal escapes or format characters
    name: Annotated[str, Field(min_length=1, max_length=200, strict=True), AfterValidator(_printable)] | None = None
    base: SearchArgs = Field(default_factory=SearchArgs)  # type: ignore[valid-type]
    grid: Grid = Field(default_factory=Grid)  # type: ignore[valid-type]
    cases: list[SearchArgs] = Field(default_factory=list)  # type: ignore[valid-type]


def _validation_error(e: ValidationError, src: str) -> InputError:
    err = e.errors()[0]
    loc = ".".join(str(x) for x in err["loc"]) or None
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = f"unknown key; the keys a sweep may set are {', '.join(SEARCH_KEYS)}" \
            if loc and re.match(r"^(base|grid|cases\.\d+)\.", loc) else \
            "unknown key; a sweep file has name, base, grid and cases"
    elif err["type"] == "value_error":  # our own validators' words, without pydantic's prefix
        msg = str(err["ctx"]["error"])
    elif err["type"] == "missing":
        msg = "missing"
    elif err["type"] == "too_short":
        msg = "empty list; give at least one value"
    elif err["type"] in ("dict_type", "model_type", "model_attributes_type"):
        msg = "must be a mapping (key: value)" if loc != "grid" else "must be a mapping of keys to lists of values"
    elif not isinstance(err.get("input"), (dict, list)):
        msg = f"{msg}, got {err.get('input')!r}"
    return InputError(msg, source=src, field=loc)


@dataclass(frozen=True)
class Sweep:
    """A validated sweep: every row's request (all of :data:`SEARCH_KEYS`), in grid order."""

    name: str
    source: str
    folder: Path  # relative topology/model paths are relative to this
    points: list[dict[str, Any]] = field(repr=False)


def _given(args: BaseModel) -> dict[str, Any]:
    return {k: getattr(args, k) for k in SEARCH_KEYS if k in args.model_fields_set}


def load_sweep(path: str | Path) -> Sweep:
    """Read and validate a sweep file; raises :class:`InputError` naming the file and field."""
    from topologies.load import read_structured_file

    src = str(path)
    data, _ = read_structured_file(path)
    if not isinstance(data, dict):
        raise InputError("a sweep file must be a mapping with base, grid and cases", source=src)
    try:
        spec = SweepFile.model_validate(data)
    except ValidationError as e:
        raise _validation_error(e, src) from None
    return sweep_from_spec(spec, source=src, folder=Path(path).parent,
                           grid_order=list(data.get("grid") or {}))


def sweep_from_spec(spec: SweepFile, *, source: str, folder: Path, grid_order: list[str] | None = None) -> Sweep:
    base = _given(spec.base)
    grid = _given(spec.grid)
    keys = [k for k in (grid_order or SEARCH_KEYS) if k in grid]
    cases = [_given(c) for c in spec.cases]
    grid_rows = math.prod(len(grid[k]) for k in keys) if keys else 0
    total = grid_rows + len(cases)
    if total == 0:
        raise InputError("nothing to run: give lists under grid, or cases", source=source, field="grid")
    if total > MAX_ROWS:
        raise InputError(f"{total:,} rows is more than the limit of {MAX_ROWS:,}; split the sweep into several files",
                         source=source, field="grid" if grid_rows > MAX_ROWS or not cases else "cases")
    for k in ("topology", "model"):
        if keys and k not in base and k not in grid:
            raise InputError(f"missing: the grid rows need a {k}; add it to base or grid", source=source, field=k)
        for i, c in enumerate(cases):
            if k not in base and k not in c:
                raise InputError(f"missing: add {k} to the case or to base", source=source, field=f"cases.{i}.{k}")
    defaults = {**SEARCH_DEFAULTS, **base}
    points = []
    if keys:
        for combo in itertools.product(*(grid[k] for k in keys)):
            points.append({**defaults, **dict(zip(keys, combo, strict=True))})
    points.extend({**defaults, **c} for c in cases)
    for p in points:
        for k in ("weight_dtype", "kv_dtype"):
            if p[k] is None:
                p[k] = "auto"
    name = spec.name or Path(source).stem
    return Sweep(name=name, source=source, folder=folder, points=points)
