"""Step 3, Place: every rank of the chosen replicas on a concrete GPU, the tensor-parallel
groups on the fastest links of their domains, pipeline stages on the next fastest.
"""
