"""Step 2, Choose: CP-SAT decides how many replicas of which priced shape run, and in which
classes of scale-up domains.

``cpsat.py`` is the solver model (counts per shape and domain class, the objective, the SLO and
GPU limits); ``objectives.py`` runs it for each objective (with the lexicographic tie-breaks)
and words an infeasible request; ``disagg.py`` re-solves without the serving mode the plan
took and words the verdict between unified replicas and prefill/decode pools;
``progress.py`` progress lines and a clean Ctrl-C; ``ortools_loader.py`` loads OR-Tools
without its heavy optional imports. The k best plans and the latency/throughput frontier,
which run whole searches, are :mod:`planner.frontier`.
"""
