"""``check_plan``: re-verify any plan from scratch, trusting none of its numbers.

It reloads nothing from the planner's search: it takes the plan's placement, asks the
topology graph for the GPUs and links, recomputes memory and latency with the cost
model, and lists every way the plan breaks the rules:

* every rank on a GPU that exists, is available, is of the group's GPU type, used once;
* ranks numbered ``stage * tp + tp_rank``, ``tp x pp`` of them per replica, the layer
  split covering the model;
* every TP group (each attention group, under attention DP) inside one scale-up domain
  (unless the plan allows otherwise), and the strategy one the runtime accepts;
* memory of every GPU within its capacity at the plan's batch and context;
* TTFT and TPOT within the SLOs, mean and p99, and the reported figures matching the recomputation;
* the planned capacity covering the requested rate;
* prefill/decode pools: both present, the KV transfer recomputed on the slowest path
  between them, TTFT checked on prefill groups and TPOT on decode groups.

Each rule is one small function in :data:`RULES`, registered at the point of the walk
(:data:`STAGES`) where what it needs is known: a group's declaration, a rank, a replica's
layout, a group's recomputed figures, the plan's totals. :func:`check_plan` walks the plan
once and runs each point's rules in the tuple's order, so problems are listed group by
group, replica by replica. A new rule is one function in :mod:`planner.plan.check.rules` and one
line in :data:`RULES`. The modules: :mod:`~planner.plan.check.audit` (what rules look at),
:mod:`~planner.plan.check.rules` (the rules and their registry), :mod:`~planner.plan.check.walk` (the walk).
"""
from planner.plan.check.audit import REL_TOL, CheckReport
from planner.plan.check.rules import RULES, STAGES, Rule
from planner.plan.check.walk import check_plan

__all__ = ["REL_TOL", "RULES", "STAGES", "CheckReport", "Rule", "check_plan"]
