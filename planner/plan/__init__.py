"""Step 4, Verify, and the plan itself: ``schema.py`` is the placement JSON every emitter and
the checker read (``plan.schema.json`` is generated from it), ``build.py`` turns a solved and
placed search into a :class:`~planner.plan.schema.Plan`, and ``check/`` re-checks a plan
independently of the search that made it.
"""
