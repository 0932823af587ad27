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
