"""Properties of the cost functions over random inputs (hypothesis)."""
from hypothesis import given, settings, strategies as st

from costmodels.comm import allreduce_s
from costmodels.hardware import gpu_catalog
from costmodels.memory import stage_weight_bytes
from costmodels.models import builtin_model_names, get_model
from costmodels.serving import evaluate_replica, max_batch_size
from costmodels.strategy import Links, Strategy, validate_strategy
from topologies.graph import Link

models = st.sampled_from(builtin_model_names()).map(get_model)
gpus = st.sampled_from(sorted(gpu_catalog())).map(lambda n: gpu_catalog()[n])
NV = Link(bandwidth_bytes_per_s=450e9, latency_s=1e-6, kind="nvlink")


@given(m=models, dtype=st.sampled_from(["bf16", "fp8", "int4"]))
@settings(max_examples=60, deadline=None)
def test_weights_per_gpu_never_grow_with_tp(m, dtype):
    prev = None
    for tp in (1, 2, 4, 8, 16):
        w = stage_weight_bytes(m, tp=tp, layer_start=0, layer_count=m.layers, first=True, last=True,
                               weight_dtype=dtype)
        assert prev is None or w <= prev
        prev = w


@given(msg=st.floats(min_value=0, max_value=1e10), bw=st.floats(min_value=1e9, max_value=1e12))
def test_allreduce_free_at_tp1(msg, bw):
    assert allreduce_s(message_bytes=msg, ranks=1, link=Link(bw, 1e-6, "nvlink")) == 0.0


@given(m=models, g=gpus, tp=st.sampled_from([1, 2, 4, 8]), ctx=st.integers(min_value=64, max_value=32_000))
@settings(max_examples=80, deadline=None)
def test_max_batch_shrinks_with_context(m, g, tp, ctx):
    s = Strategy(tp=tp, weight_dtype="fp8", kv_dtype="fp8")
    if validate_strategy(m, s):
        return
    assert max_batch_size(m, g, s, context=ctx * 2) <= max_batch_size(m, g, s, context=ctx)


@given(m=models, tp=st.sampled_from([1, 2, 4, 8]), b=st.integers(min_value=1, max_value=64))
@settings(max_examples=60, deadline=None)
def test_bigger_batch_more_throughput_slower_tokens(m, tp, b):
    g = gpu_catalog()["H200-SXM-141GB"]
    s = Strategy(tp=tp, weight_dtype="fp8", kv_dtype="fp8")
    if validate_strategy(m, s):
        return
    small = evaluate_replica(m, g, s, isl=512, osl=128, batch=b, links=Links(tp=NV))
    big = evaluate_replica(m, g, s, isl=512, osl=128, batch=2 * b, links=Links(tp=NV))
    assert big.tpot_s >= small.tpot_s
    assert big.output_tokens_per_s >= small.output_tokens_per_s
