"""plan-search: plan how to serve a large language model on a GPU cluster.

The functions here are what the CLI calls; deployment tools call them directly.
"""
from planner.api import evaluate, search
from topologies.errors import InfeasibleError, InputError, PlanSearchError, TopologyError

__all__ = ["search", "evaluate", "explain", "check_plan", "PlanSearchError", "InputError", "InfeasibleError",
           "TopologyError"]


def __getattr__(name):  # lazy: keep `import planner` light
    if name == "explain":
        from planner.explain import explain
        return explain
    if name == "check_plan":
        from planner.check import check_plan
        return check_plan
    raise AttributeError(name)
