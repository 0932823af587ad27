"""Hand-checked arithmetic the issue pins down."""
import pytest

from costmodels.memory import kv_bytes_per_token_per_gpu, kv_cache_bytes_per_token, weight_bytes
from costmodels.models import get_model
from planner import evaluate


def test_130b_weights_fp16_and_int4():
    assert weight_bytes(params=130e9, dtype="fp16") == 260e9
    # 4-bit weights plus one 16-bit scale and a 4-bit zero point per group of 128 (AWQ/GPTQ)
    assert weight_bytes(params=130e9, dtype="int4") == pytest.approx(130e9 * (0.5 + 20 / 128 / 8))


def test_llama2_70b_kv_per_token():
    # 2 (K,V) x 80 layers x 8 KV heads x 128 head dim x 2 bytes
    assert kv_cache_bytes_per_token(layers=80, kv_heads=8, head_dim=128, tp=1, dtype_bytes=2) == 327_680
    m = get_model("llama-2-70b")
    assert kv_bytes_per_token_per_gpu(m, tp=1, layers=m.layers, kv_dtype="fp16") == 327_680


def test_gqa_kv_heads_replicate_past_tp():
    m = get_model("llama-3.1-70b")  # 8 KV heads
    at8 = kv_bytes_per_token_per_gpu(m, tp=8, layers=80, kv_dtype="bf16")
    at16 = kv_bytes_per_token_per_gpu(m, tp=16, layers=80, kv_dtype="bf16")
    assert at8 == at16 == 2 * 80 * 1 * 128 * 2


def test_mla_kv_is_latent_and_not_split_by_tp():
    m = get_model("deepseek-v3")
    per_layer = 512 + 64  # kv_lora_rank + qk_rope_head_dim
    assert kv_bytes_per_token_per_gpu(m, tp=1, layers=61, kv_dtype="bf16") == 61 * per_layer * 2
    assert kv_bytes_per_token_per_gpu(m, tp=8, layers=61, kv_dtype="bf16") == 61 * per_layer * 2


def test_70b_bf16_does_not_fit_one_h100_and_fits_tp2_short_context():
    one = evaluate(topology="dgx-h100x1", model="llama-3.1-70b", tp=1, isl=512, osl=128, weight_dtype="bf16")
    assert not one.fits
    two = evaluate(topology="dgx-h100x1", model="llama-3.1-70b", tp=2, isl=512, osl=128, weight_dtype="bf16")
    assert two.fits and two.metrics.max_batch >= 1
    # ...but not for a 128K-token context
    long = evaluate(topology="dgx-h100x1", model="llama-3.1-70b", tp=2, isl=120_000, osl=8_000, weight_dtype="bf16")
    assert not long.fits


@pytest.mark.parametrize("name, billions, tol", [
    ("llama-3.1-8b", 8.03, 0.01), ("llama-3.1-70b", 70.6, 0.01), ("llama-3.1-405b", 405.9, 0.01),
    ("mixtral-8x7b", 46.7, 0.01), ("deepseek-v3", 671.0, 0.01), ("qwen3-235b-a22b", 235.1, 0.01),
    ("qwen3-30b-a3b", 30.5, 0.01), ("falcon-180b", 179.5, 0.01)])
def test_parameter_counts_match_published(name, billions, tol):
    # Published totals: Meta model cards (8.03B, 70.6B, 405B), Mistral (46.7B),
    # DeepSeek-V3 README_WEIGHTS (671B without the MTP module), Qwen3 (235B; 30B-A3B: '30.5B in total and
    # 3.3B activated', Qwen/Qwen3-30B-A3B model card), TII Falcon (180B).
    assert get_model(name).total_params() / 1e9 == pytest.approx(billions, rel=tol)


def test_moe_active_params():
    assert get_model("mixtral-8x7b").active_params() / 1e9 == pytest.approx(12.9, rel=0.02)
    assert get_model("deepseek-v3").active_params() / 1e9 == pytest.approx(37, rel=0.03)
    assert get_model("qwen3-30b-a3b").active_params() / 1e9 == pytest.approx(3.3, rel=0.02)
