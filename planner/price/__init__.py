"""Step 1, Price: every replica shape the cluster could run, priced by the cost models.

``cluster.py`` reduces the cluster to classes of interchangeable scale-up domains; ``spans.py``
says where a shape's GPUs may sit and which links it then crosses; ``shapes.py`` prices every
(GPU type, tp, pp, ep, attention DP, span) at its best batch within the SLOs (the cost model's
:mod:`costmodels.batch` answers that, once per shape), with ``roles.py`` (prefill and decode
pools), ``cross_type.py`` (pipelines across GPU types) and ``wide.py`` (wide expert
parallelism); ``candidate.py`` holds the request, the priced shape and the books of a pass.
The solver (:mod:`planner.solve`) then chooses among the candidates.
"""
