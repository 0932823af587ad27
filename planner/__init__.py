"""plan-search: plan how to serve a large language model on a GPU cluster.

The functions here are what the CLI calls; deployment tools call them directly.
"""
from planner.api import evaluate, search
from planner.breakdown import explain
from planner.check import check_plan
from topologies.errors import InfeasibleError, InputError, PlanSearchError, TopologyError

__all__ = ["search", "evaluate", "explain", "check_plan", "PlanSearchError", "InputError", "InfeasibleError",
           "TopologyError"]
