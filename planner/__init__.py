"""plan-search: plan how to serve a large language model on a GPU cluster.

The functions here are what the CLI calls; deployment tools call them directly.

The planning functions load on first use (PEP 562 ``__getattr__``): ``import planner`` and
the command line's start-up stay light (no solver, no cost model until a command needs
them), so a Ctrl-C in the first second lands in code that handles it
(:mod:`planner.entry`). ``from planner import search, evaluate`` works as before.
"""
from __future__ import annotations

from importlib import import_module

from topologies.errors import InfeasibleError, InputError, PlanSearchError, TopologyError

#: public name -> the module that defines it
_LAZY = {"search": "planner.api", "evaluate": "planner.evaluation", "explain": "planner.breakdown",
         "check_plan": "planner.plan.check"}

__all__ = ["search", "evaluate", "explain", "check_plan", "PlanSearchError", "InputError", "InfeasibleError",
           "TopologyError"]


def __getattr__(name: str):
    """Load a planning function on first use and keep it, so later look-ups are plain attributes."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'planner' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
