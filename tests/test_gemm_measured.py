"""Measured GEMM peaks (costmodels/data/gemm_measured.csv) and the FP4 shortfall they give."""
import csv
from importlib import resources

import pytest

from costmodels.hardware import fp4_matmul_share, gpu_catalog
from costmodels.units import TERA

RUNTIMES = ("vllm", "sglang", "trtllm")


def _rows():
    text = (resources.files("costmodels") / "data" / "gemm_measured.csv").read_text(encoding="utf-8")
    return list(csv.DictReader(text.splitlines()))


def test_every_row_is_a_measurement_with_its_source():
    rows = _rows()
    assert rows
    for r in rows:
        assert r["dtype"] in ("bf16", "fp8", "fp4") and r["runtime"] in RUNTIMES
        m, n, k, ms = int(r["m"]), int(r["n"]), int(r["k"]), float(r["latency_ms"])
        assert float(r["tflops_max"]) == pytest.approx(2 * m * n * k / (ms * 1e-3) / TERA, rel=0.01)
        assert "AIConfigurator" in r["source"] and "gemm_perf.parquet" in r["source"]


def test_b200_under_trtllm_is_the_measured_ratio():
    peaks = {r["dtype"]: float(r["tflops_max"]) for r in _rows()
             if r["gpu"] == "B200-180GB" and r["runtime"] == "trtllm"}
    g = gpu_catalog()["B200-180GB"]
    want = (peaks["fp4"] * TERA / g.fp4_flop_per_s) / (peaks["fp8"] * TERA / g.fp8_flop_per_s)
    assert fp4_matmul_share("B200-180GB", "trtllm") == pytest.approx(want)
    assert 0.6 < want < 0.8


@pytest.mark.parametrize("name", sorted(n for n, g in gpu_catalog().items() if g.fp4_flop_per_s))
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_fp4_is_never_slower_than_fp8_nor_faster_than_the_datasheet(name, runtime):
    g = gpu_catalog()[name]
    share = fp4_matmul_share(name, runtime)
    assert 0 < share <= 1
    if g.fp8_flop_per_s:
        assert g.fp4_flop_per_s * share >= g.fp8_flop_per_s
