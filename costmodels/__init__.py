"""Analytic cost models: pure functions of a model, a GPU, a strategy and a workload."""
