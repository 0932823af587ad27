"""CP-SAT's Python module (``ortools.sat.python.cp_model``), loaded without pandas.

ortools 9.x imports pandas (and, through it, pyarrow where installed) at the top of
``cp_model`` for its ``*_series`` helpers alone, which take and return pandas ``Index`` and
``Series`` objects; plan-search never calls them. Importing pandas cost about 0.17 s of an
8-GPU search whose target is 0.4 s end to end (``python benchmarks/startup.py``).

So, when pandas is not loaded yet, ``cp_model`` is imported beside a stand-in ``pandas`` module
whose ``Index`` and ``Series`` are empty classes (the only names ``cp_model`` reads at import:
its type aliases), and the stand-in leaves ``sys.modules`` as soon as the import is done: a
later ``import pandas`` anywhere in the process gets the real package. Inside ``cp_model`` the
helpers test ``isinstance(x, pd.Series)``, which is False for the stand-in as it is for the
ints, lists and variables the planner passes, so every call the planner makes runs as it would
with pandas. Should a future ortools need more of pandas while importing, the stand-in import
fails and ``cp_model`` is imported the ordinary way, pandas and all.

``cp_model`` also imports numpy, whose OpenBLAS starts a pool of threads, one per core, as it
loads. The planner never calls BLAS, and on a busy machine starting those threads cost more
than the rest of numpy's import (``import numpy``: 0.24-0.42 s wall with the pool, 0.16-0.17 s
with one thread, on this 2-core machine under load). So unless numpy is loaded already or the
user set ``OPENBLAS_NUM_THREADS``, it is set to 1 for the import and removed right after:
OpenBLAS reads it once, at load, and child processes see the environment as it was.
"""
from __future__ import annotations

import importlib
import os
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager

_CP_MODEL = "ortools.sat.python.cp_model"


def _stand_in_pandas() -> types.ModuleType:
    """A module named ``pandas`` with the two class names ``cp_model`` reads at import."""
    fake = types.ModuleType("pandas", "plan-search's stand-in while ortools' cp_model loads; never kept")
    fake.Index = type("Index", (), {"__module__": "pandas"})
    fake.Series = type("Series", (), {"__module__": "pandas"})
    return fake


@contextmanager
def _one_blas_thread() -> Iterator[None]:
    """``OPENBLAS_NUM_THREADS=1`` while numpy first loads, unless the user set it (see above)."""
    if "numpy" in sys.modules or "OPENBLAS_NUM_THREADS" in os.environ:
        yield
        return
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    try:
        yield
    finally:
        os.environ.pop("OPENBLAS_NUM_THREADS", None)


def load_cp_model() -> types.ModuleType:
    """``ortools.sat.python.cp_model``, without importing pandas when that is possible."""
    if _CP_MODEL in sys.modules:
        return sys.modules[_CP_MODEL]
    with _one_blas_thread():
        if "pandas" in sys.modules:
            return importlib.import_module(_CP_MODEL)
        sys.modules["pandas"] = _stand_in_pandas()
        try:
            return importlib.import_module(_CP_MODEL)
        except Exception:  # an ortools whose import needs more of pandas: load it with the real one
            sys.modules.pop(_CP_MODEL, None)
        finally:
            sys.modules.pop("pandas", None)
        return importlib.import_module(_CP_MODEL)


cp_model = load_cp_model()
