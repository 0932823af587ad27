"""The GPU catalog: datasheet figures, one row per GPU, each with its source.

The figures live in ``costmodels/data/gpus.csv`` (copied, with their sources, from
published datasheets and vendor-submitted MLPerf system descriptions). TFLOPS are dense
(no 2:4 sparsity). Memory is read as GiB: HBM stacks come in binary sizes (H100 80GB is
five 16 GiB stacks); the driver's own reservation is part of the runtime overhead.
"""
from __future__ import annotations

import csv
import re
from collections.abc import Mapping
from dataclasses import dataclass
from difflib import get_close_matches
from functools import cache, lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from costmodels.units import GIB, MIB, TB, TERA
from topologies.errors import InputError

if TYPE_CHECKING:  # for annotations only: costmodels needs no topology schema at run time
    from topologies.schema import TopologySpec


@dataclass(frozen=True)
class GPU:
    name: str
    aliases: tuple[str, ...]
    bf16_flop_per_s: float
    fp8_flop_per_s: float | None
    fp4_flop_per_s: float | None
    int8_op_per_s: float | None
    memory_bytes: float
    hbm_bandwidth_bytes_per_s: float
    nvlink_bytes_per_s: float | None  # per direction
    nvlink_domain_gpus: int
    nic_gbit_per_s: float | None
    source: str
    pcie_gen: int | None = None  # the host link's PCIe generation (x16); None where not recorded

    def matmul_flop_per_s(self, weight_dtype: str) -> float:
        """Peak dense tensor-core rate for GEMMs with weights in ``weight_dtype``.

        FP8/INT8 weights run W8A8 where the GPU has the format; FP4 runs natively on
        Blackwell. Where the format has no tensor-core support (FP8 on A100, 4-bit on
        Hopper), runtimes dequantise and compute in 16 bit (weight-only quantisation),
        so the 16-bit rate applies.
        """
        if weight_dtype == "fp8" and self.fp8_flop_per_s:
            return self.fp8_flop_per_s
        if weight_dtype == "int8" and self.int8_op_per_s:
            return self.int8_op_per_s
        if weight_dtype == "fp4" and self.fp4_flop_per_s:
            return self.fp4_flop_per_s
        return self.bf16_flop_per_s


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def gpu_from_figures(name: str, r: Mapping[str, str | float | None], *, aliases: tuple[str, ...] = (), source: str = "") -> GPU:
    """A :class:`GPU` from the catalog's columns (``costmodels/data/gpus.csv``), given as numbers or as
    the CSV's text; an empty or missing optional figure is None. User-defined GPU types in topology
    files use the same columns (``topologies.schema.GpuTypeSpec``)."""
    def num(key: str) -> float | None:
        v = r.get(key)
        if v is None or (isinstance(v, str) and not v.strip()):
            return None
        return float(v)

    def need(key: str) -> float:
        v = num(key)
        if v is None:
            raise ValueError(f"GPU {name!r}: {key} is required")
        return v

    def rate(key: str) -> float | None:
        v = num(key)
        return v * TERA if v else None

    mib = num("memory_mib_driver")
    nvlink = num("nvlink_gbyte_per_s_per_direction")
    gen = num("pcie_gen")
    return GPU(
        name=name,
        aliases=aliases,
        bf16_flop_per_s=need("bf16_dense_tflops") * TERA,
        fp8_flop_per_s=rate("fp8_dense_tflops"),
        fp4_flop_per_s=rate("fp4_dense_tflops"),
        int8_op_per_s=rate("int8_dense_tops"),
        # what the driver reports (nvidia-smi, cudaMemGetInfo): what the runtimes take their
        # memory fractions of; the datasheet's GB where no driver figure is recorded
        memory_bytes=mib * MIB if mib else need("memory_gib") * GIB,
        hbm_bandwidth_bytes_per_s=need("hbm_bandwidth_tbyte_per_s") * TB,
        nvlink_bytes_per_s=nvlink * 1e9 if nvlink else None,
        nvlink_domain_gpus=int(need("nvlink_domain_gpus")),
        nic_gbit_per_s=num("nic_gbit_per_s"),
        source=source,
        pcie_gen=int(gen) if gen else None,
    )


@lru_cache(maxsize=1)
def gpu_catalog() -> dict[str, GPU]:
    """Every GPU in the catalog by its canonical name."""
    text = (resources.files("costmodels") / "data" / "gpus.csv").read_text(encoding="utf-8")
    out: dict[str, GPU] = {}
    for r in csv.DictReader(text.splitlines()):
        out[r["name"]] = gpu_from_figures(r["name"], r, aliases=tuple(a for a in r["aliases"].split(";") if a),
                                          source=r["source"])
    return out


@lru_cache(maxsize=1)
def _index() -> dict[str, str]:
    idx: dict[str, str] = {}
    for g in gpu_catalog().values():
        for n in (g.name, *g.aliases):
            idx[_key(n)] = g.name
    return idx


def custom_gpus(gpu_types: Mapping[str, Any], *, source: str | None = None) -> dict[str, GPU]:
    """The user-defined GPU types of a topology (``gpu_types``: name -> ``topologies.schema.GpuTypeSpec``
    or the same figures as a mapping) as :class:`GPU` objects.

    A name that is a catalog GPU's name or alias (case and punctuation ignored), or that two types share
    that way, is refused: a plan names its GPU, and ``H100`` must price the same in every file, with the
    catalog's sourced figures. A GPU the catalog has is used by its name, without redefining it.
    """
    out: dict[str, GPU] = {}
    seen: dict[str, str] = {}
    for name, spec in gpu_types.items():
        figures = spec.model_dump() if hasattr(spec, "model_dump") else dict(spec)
        where = f"gpu_types.{name}"
        hit = _index().get(_key(name))
        if hit is not None:
            raise InputError(f"{name!r} is the catalog's {hit}; a user-defined GPU needs a name of its own (to use the "
                             f"catalog's figures, name {hit!r} in node_types and drop this entry)",
                             source=source, field=where)
        if _key(name) in seen:
            raise InputError(f"{name!r} and {seen[_key(name)]!r} differ only in case or punctuation; GPU names "
                             f"are matched without them, so rename one", source=source, field=where)
        seen[_key(name)] = name
        out[name] = gpu_from_figures(name, figures, source=str(figures.get("source") or f"user-defined in {source}"))
    return out


def topology_gpu(spec: TopologySpec, name: str, *, source: str | None = None, field: str | None = None) -> GPU:
    """The GPU ``name`` means in the topology ``spec`` (a ``TopologySpec``): one of the file's own
    ``gpu_types``, else a catalog GPU."""
    return get_gpu(name, source=source, field=field, custom=custom_gpus(spec.gpu_types, source=source))


def get_gpu(name: str, *, source: str | None = None, field: str | None = None,
            custom: Mapping[str, GPU] | None = None) -> GPU:
    """Look a GPU up by name or alias (case and punctuation ignored), among ``custom`` (a topology's
    user-defined GPUs, :func:`custom_gpus`) first, then the catalog.

    >>> get_gpu("h100-sxm").name
    'H100-SXM-80GB'
    """
    for own in (custom or {}).values():
        if _key(own.name) == _key(name):
            return own
    hit = _index().get(_key(name))
    if hit is None:
        names = sorted(gpu_catalog())
        near = get_close_matches(name, names + [a for g in gpu_catalog().values() for a in g.aliases], n=1, cutoff=0.4)
        hint = f"did you mean {_index()[_key(near[0])]!r}? " if near else ""
        where = " or define it in the topology's 'gpu_types'" if source != "--gpu" else \
            " or give a GPU spec file (gpu_types: NAME: figures)"
        raise InputError(f"unknown GPU {name!r}; {hint}see `plan-search catalog gpus`{where}",
                         source=source, field=field)
    return gpu_catalog()[hit]


# -- measured GEMM peaks ---------------------------------------------------------------------

@lru_cache(maxsize=1)
def _gemm_measured() -> dict[tuple[str, str], dict[str, float]]:
    """(catalog GPU, runtime) -> {dtype: fastest measured GEMM in FLOP/s}, from
    ``costmodels/data/gemm_measured.csv`` (each row cites the measured table it comes from).
    Rows naming a GPU the catalog does not hold are skipped."""
    text = (resources.files("costmodels") / "data" / "gemm_measured.csv").read_text(encoding="utf-8")
    out: dict[tuple[str, str], dict[str, float]] = {}
    for r in csv.DictReader(text.splitlines()):
        name = gpu_name_or_none(r["gpu"])
        if name is not None:
            out.setdefault((name, r["runtime"]), {})[r["dtype"]] = float(r["tflops_max"]) * TERA
    return out


def _fp4_over_fp8(gpu: GPU, peaks: dict[str, float]) -> float | None:
    """Share of its datasheet peak an NVFP4 GEMM reaches, over the share an FP8 GEMM reaches."""
    if not (gpu.fp4_flop_per_s and gpu.fp8_flop_per_s and "fp4" in peaks and "fp8" in peaks):
        return None
    return (peaks["fp4"] / gpu.fp4_flop_per_s) / (peaks["fp8"] / gpu.fp8_flop_per_s)


@cache
def fp4_matmul_share(gpu_name: str, runtime: str) -> float:
    """How much of the FP4 datasheet rate's advantage over FP8 the runtime's GEMMs realise.

    Datasheets give FP4 twice the FP8 rate; measured NVFP4 GEMMs reach 1.4-1.9x the measured
    FP8 ones (AIConfigurator's op tables: B200 under TensorRT-LLM 4,547 against 3,151 TFLOPS at
    best). This is that shortfall, (measured FP4 / datasheet FP4) / (measured FP8 / datasheet
    FP8), for the GPU under the runtime, else under any runtime measured on that GPU, else the
    median over every measured GPU and runtime; capped at 1 (never faster than the datasheet).
    """
    table = _gemm_measured()
    gpu = gpu_catalog().get(gpu_name)

    def share(g: GPU | None, rt: str) -> float | None:
        return _fp4_over_fp8(g, table[(g.name, rt)]) if g is not None and (g.name, rt) in table else None

    own = share(gpu, runtime)
    if own is None and gpu is not None:
        others = sorted(s for (n, rt) in table if n == gpu.name for s in [share(gpu, rt)] if s is not None)
        own = others[len(others) // 2] if others else None
    if own is None:
        every = sorted(s for (n, rt) in table for s in [share(gpu_catalog()[n], rt)] if s is not None)
        own = every[len(every) // 2] if every else 1.0
    return min(1.0, own)


def gpu_name_or_none(name: str) -> str | None:
    """The catalog name for ``name`` (an alias, any case), or None if the catalog lacks it."""
    return _index().get(_key(name))
