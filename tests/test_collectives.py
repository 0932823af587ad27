"""The measured all-reduce constants: derived by a fixed rule, never edited by hand."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import derive_collectives as dc  # noqa: E402


def test_shipped_constants_are_the_derivation_of_the_shipped_measurements():
    # costmodels/data/collectives.csv must be exactly what benchmarks/derive_collectives.py reads off
    # benchmarks/data/allreduce_measured.csv: a hand edit (a constant tuned to a table) fails here.
    assert (ROOT / "costmodels" / "data" / "collectives.csv").read_text() == dc.render(dc.derive())


def test_every_measured_gpu_is_in_the_catalog():
    from costmodels.hardware import get_gpu

    for gpu, _, _ in dc.load():
        assert get_gpu(gpu).name == gpu
    assert set(dc.LINKS) == {gpu for gpu, _, _ in dc.load()}


def test_every_catalog_gpu_prices_an_all_reduce_on_each_link_it_can_have():
    # Every GPU resolves to measured constants for every link kind a topology may give its group: PCIe
    # always, NVLink where the catalog gives it an NVLink (or xGMI) domain. Over PCIe a GPU never comes
    # out faster than the PCIe fallback measured for unmeasured cards, so an unknown card is not priced
    # optimistically; over NVLink never faster than its own chip's table or the NVLink fallback.
    import math

    from costmodels import calibration as cal, comm
    from costmodels.hardware import gpu_catalog
    from topologies.graph import Link

    pcie, nvlink = Link(32e9, 0.0, "pcie"), Link(300e9, 0.0, "nvlink")
    measured = {g for g, *_ in comm._table()}
    floor = {kind: comm.allreduce_s(message_bytes=16e6, ranks=4, link=link, runtime="vllm",
                                    gpu=cal.COLLECTIVE_FALLBACK_GPU[kind])
             for kind, link in (("pcie", pcie), ("nvlink", nvlink))}
    for name, gpu in gpu_catalog().items():
        kinds = [("pcie", pcie)] + ([("nvlink", nvlink)] if gpu.nvlink_domain_gpus > 1 else [])
        for kind, link in kinds:
            for runtime in ("vllm", "sglang", "trtllm", "nccl"):
                for size in (16e3, 16e6):
                    t = comm.allreduce_s(message_bytes=size, ranks=min(4, max(2, gpu.nvlink_domain_gpus)),
                                         link=link, runtime=runtime, gpu=name)
                    assert math.isfinite(t) and t > 0, (name, kind, runtime, size)
            if kind == "pcie" and name not in measured and cal.COLLECTIVE_SAME_AS.get(name) not in measured:
                t = comm.allreduce_s(message_bytes=16e6, ranks=4, link=pcie, runtime="vllm", gpu=name)
                assert t >= floor["pcie"] * (1 - 1e-12), name


def test_same_as_names_catalog_gpus_and_measured_ones():
    from costmodels import calibration as cal, comm
    from costmodels.hardware import gpu_catalog

    measured = {g for g, *_ in comm._table()}
    for gpu, chip in cal.COLLECTIVE_SAME_AS.items():
        assert gpu in gpu_catalog() and gpu not in measured, gpu
        assert chip in measured, chip
    assert set(cal.COLLECTIVE_FALLBACK_GPU.values()) <= measured
