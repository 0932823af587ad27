"""The built-in model catalog: every entry loads, is planned on a built-in topology, carries its
source, and its parameter count matches the published one; HF names resolve through aliases;
architectures the cost model cannot price are refused in one line."""
import json
import subprocess
import sys

import pytest

from costmodels.hf_config import model_from_config
from costmodels.models import builtin_model_names, get_model, normalize_model_name
from planner.evaluation import evaluate
from topologies.errors import InputError

#: Published total parameter counts, in billions, and where each is published. Model cards give
#: rounded figures, so the tolerance is 3 % (a card's "8B" of 8.03 B is within it).
#: Gemma 3 4B-27B: the language model only (report Table 1: embedding + non-embedding; the
#: 417 M SigLIP vision tower is not part of the catalog entry).
PUBLISHED_PARAMS_B = {
    "llama-2-7b": (6.74, "Touvron et al. 2023, Llama 2 paper, Table 1 ('7B'); HF meta-llama/Llama-2-7b-hf safetensors 6.74B"),
    "llama-2-13b": (13.0, "Llama 2 paper, Table 1"),
    "llama-2-70b": (69.0, "Llama 2 paper, Table 1 ('70B'); HF safetensors 69.0B"),
    "llama-3-8b": (8.03, "HF meta-llama/Meta-Llama-3-8B model page, 8.03B params"),
    "llama-3-70b": (70.6, "HF meta-llama/Meta-Llama-3-70B model page, 70.6B params"),
    "llama-3.1-8b": (8.03, "HF meta-llama/Llama-3.1-8B model page, 8.03B params"),
    "llama-3.1-70b": (70.6, "HF meta-llama/Llama-3.1-70B model page, 70.6B params"),
    "llama-3.1-405b": (406.0, "HF meta-llama/Llama-3.1-405B model page, 406B params"),
    "llama-3.2-1b": (1.23, "meta-llama/Llama-3.2-1B model card, 1.23B parameters"),
    "llama-3.2-3b": (3.21, "meta-llama/Llama-3.2-3B model card, 3.21B parameters"),
    "mistral-7b": (7.24, "HF mistralai/Mistral-7B-v0.1 model page, 7.24B params"),
    "mistral-nemo-12b": (12.2, "HF mistralai/Mistral-Nemo-Instruct-2407 model page, 12.2B params"),
    "mistral-small-24b": (23.6, "HF mistralai/Mistral-Small-24B-Instruct-2501 model page, 23.6B params"),
    "mistral-large-123b": (123.0, "mistralai/Mistral-Large-Instruct-2407 model card, 123B parameters"),
    "mixtral-8x7b": (46.7, "Mistral AI, 'Mixtral of experts' (2024): 47B parameters, 13B active; HF page 46.7B"),
    "mixtral-8x22b": (141.0, "Mistral AI, Mixtral 8x22B announcement: 141B parameters, 39B active"),
    "qwen2.5-7b": (7.61, "Qwen/Qwen2.5-7B-Instruct model card, 7.61B parameters"),
    "qwen2.5-14b": (14.7, "Qwen/Qwen2.5-14B-Instruct model card, 14.7B parameters"),
    "qwen2.5-32b": (32.5, "Qwen/Qwen2.5-32B-Instruct model card, 32.5B parameters"),
    "qwen2.5-72b": (72.7, "Qwen/Qwen2.5-72B-Instruct model card, 72.7B parameters"),
    "qwq-32b": (32.5, "Qwen/QwQ-32B model card, 32.5B parameters"),
    "qwen3-0.6b": (0.6, "Qwen/Qwen3-0.6B model card, 0.6B parameters"),
    "qwen3-1.7b": (1.7, "Qwen/Qwen3-1.7B model card, 1.7B parameters"),
    "qwen3-4b": (4.0, "Qwen/Qwen3-4B model card, 4.0B parameters"),
    "qwen3-8b": (8.2, "Qwen/Qwen3-8B model card, 8.2B parameters"),
    "qwen3-14b": (14.8, "Qwen/Qwen3-14B model card, 14.8B parameters"),
    "qwen3-32b": (32.8, "Qwen/Qwen3-32B model card, 32.8B parameters"),
    "qwen3-30b-a3b": (30.5, "Qwen/Qwen3-30B-A3B model card, 30.5B total, 3.3B activated"),
    "qwen3-235b-a22b": (235.0, "Qwen/Qwen3-235B-A22B model card, 235B total, 22B activated"),
    "deepseek-r1-distill-qwen-1.5b": (1.78, "HF deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B model page, 1.78B params"),
    "deepseek-r1-distill-qwen-7b": (7.62, "HF deepseek-ai/DeepSeek-R1-Distill-Qwen-7B model page, 7.62B params"),
    "deepseek-r1-distill-qwen-14b": (14.8, "HF deepseek-ai/DeepSeek-R1-Distill-Qwen-14B model page, 14.8B params"),
    "deepseek-r1-distill-qwen-32b": (32.8, "HF deepseek-ai/DeepSeek-R1-Distill-Qwen-32B model page, 32.8B params"),
    "deepseek-v2-lite": (15.7, "deepseek-ai/DeepSeek-V2-Lite model card, 15.7B total, 2.4B activated"),
    "deepseek-v2": (236.0, "DeepSeek-V2 paper (arXiv:2405.04434), 236B total, 21B activated"),
    "deepseek-v3": (671.0, "github.com/deepseek-ai/DeepSeek-V3 README_WEIGHTS.md, 671B main model"),
    "gpt-oss-20b": (21.0, "OpenAI gpt-oss model card (2025), 21B total, 3.6B active"),
    "gpt-oss-120b": (117.0, "OpenAI gpt-oss model card (2025), 117B total, 5.1B active"),
    "gemma-2-2b": (2.61, "Gemma 2 report (arXiv:2408.00118) / HF google/gemma-2-2b page, 2.61B params"),
    "gemma-2-9b": (9.24, "HF google/gemma-2-9b model page, 9.24B params"),
    "gemma-2-27b": (27.2, "HF google/gemma-2-27b model page, 27.2B params"),
    "gemma-3-1b": (1.0, "Gemma 3 report (arXiv:2503.19786) Table 1: 302M embedding + 698M non-embedding"),
    "gemma-3-4b": (3.884, "Gemma 3 report Table 1: 675M embedding + 3,209M non-embedding"),
    "gemma-3-12b": (11.771, "Gemma 3 report Table 1: 1,012M embedding + 10,759M non-embedding"),
    "gemma-3-27b": (27.016, "Gemma 3 report Table 1: 1,416M embedding + 25,600M non-embedding"),
    "phi-3-mini-4k": (3.8, "Phi-3 report (arXiv:2404.14219): phi-3-mini, 3.8B parameters"),
    "phi-3-mini-128k": (3.8, "Phi-3 report: phi-3-mini, 3.8B parameters"),
    "phi-3-medium-4k": (14.0, "Phi-3 report: phi-3-medium, 14B parameters"),
    "phi-4": (14.7, "HF microsoft/phi-4 model page, 14.7B params"),
    "internlm-20b": (20.0, "internlm/internlm-20b model card, 20B parameters"),
    "falcon-180b": (180.0, "tiiuae/falcon-180B model card, 180B parameters"),
    "gpt-j-6b": (6.05, "EleutherAI/gpt-j-6b model card, 6,053,381,344 parameters"),
    "llama-4-scout-17b-16e": (109.0, "meta-llama/Llama-4-Scout-17B-16E model card, 17B active, 109B total "
                                     "(the card's total includes the vision encoder, which the entry does not count)"),
    "llama-4-maverick-17b-128e": (400.0, "meta-llama/Llama-4-Maverick-17B-128E model card, 17B active, 400B total"),
}


def test_every_catalog_model_has_a_published_count():
    assert set(builtin_model_names()) == set(PUBLISHED_PARAMS_B)


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS_B))
def test_parameter_count_matches_the_published_one(name):
    published_b, _source = PUBLISHED_PARAMS_B[name]
    computed_b = get_model(name).total_params() / 1e9
    assert computed_b == pytest.approx(published_b, rel=0.03), f"{name}: {computed_b:.3f}B vs {published_b}B"


#: Active parameters where the source states them in the same convention (embeddings included).
PUBLISHED_ACTIVE_B = {"qwen3-30b-a3b": 3.3, "qwen3-235b-a22b": 22.0, "deepseek-v2": 21.0, "mixtral-8x7b": 12.9,
                      "mixtral-8x22b": 39.0, "llama-4-scout-17b-16e": 17.0, "llama-4-maverick-17b-128e": 17.0}


@pytest.mark.parametrize("name", sorted(PUBLISHED_ACTIVE_B))
def test_active_parameters_match_the_published_ones(name):
    assert get_model(name).active_params() / 1e9 == pytest.approx(PUBLISHED_ACTIVE_B[name], rel=0.03)


#: Models whose weights outgrow 8 H100s (640 GB) even in FP8: priced in FP8 on 8 H200s of hgx-h200x2.
TOO_BIG_FOR_8_H100 = {"deepseek-v3", "llama-3.1-405b", "llama-4-maverick-17b-128e"}


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS_B))
def test_every_catalog_model_cites_a_source_and_is_planned(name):
    """Each model loads and a replica of it fits on one 8-GPU node (8 H100s of dgx-h100x1, or 8
    H200s for the largest) at the smallest TP degree its heads allow that holds the weights; the
    step times it is priced at are finite and positive."""
    m = get_model(name)
    assert len(m.source) > 40 and m.source.isprintable()
    ev = None
    for tp in (1, 2, 4, 8):
        if m.heads % tp or (m.kv_heads % tp and tp % m.kv_heads and not m.is_mla):
            continue
        big = name in TOO_BIG_FOR_8_H100
        ev = evaluate(topology="hgx-h200x2" if big else "dgx-h100x1", model=name, tp=tp, isl=1024, osl=128,
                      weight_dtype="fp8" if big else None)
        if ev.fits:
            break
    assert ev is not None and ev.fits, f"{name} does not fit on one 8-GPU node"
    assert ev.metrics.max_batch >= 1
    assert 0 < ev.metrics.tpot_s < 1 and 0 < ev.metrics.ttft_s < 60


@pytest.mark.parametrize("alias, key", [
    ("meta-llama/Llama-3.3-70B-Instruct", "llama-3.1-70b"),
    ("deepseek-ai/DeepSeek-R1", "deepseek-v3"),
    ("deepseek-ai/DeepSeek-R1-0528", "deepseek-v3"),
    ("Qwen/Qwen2.5-32B-Instruct", "qwen2.5-32b"),
    ("deepseek-ai/DeepSeek-R1-Distill-Llama-70B", "llama-3.1-70b"),
    ("deepseek-ai/DeepSeek-R1-Distill-Llama-8B", "llama-3.1-8b"),
    ("deepseek-ai/DeepSeek-R1-Distill-Qwen-32B", "deepseek-r1-distill-qwen-32b"),
    ("DEEPSEEK-AI/deepseek-r1-distill-qwen-7b", "deepseek-r1-distill-qwen-7b"),
    ("meta-llama/Meta-Llama-3-8B-Instruct", "llama-3-8b"),
    ("meta-llama/Llama-3.2-1B-Instruct", "llama-3.2-1b"),
    ("Qwen/QwQ-32B", "qwq-32b"),
    ("Qwen/Qwen3-0.6B", "qwen3-0.6b"),
    ("deepseek-ai/DeepSeek-V2-Lite-Chat", "deepseek-v2-lite"),
    ("openai/gpt-oss-20b", "gpt-oss-20b"),
    ("google/gemma-2-9b-it", "gemma-2-9b"),
    ("google/gemma-3-27b-it", "gemma-3-27b"),
    ("microsoft/Phi-3-mini-4k-instruct", "phi-3-mini-4k"),
    ("microsoft/Phi-3.5-mini-instruct", "phi-3-mini-128k"),
    ("mistralai/Mistral-Nemo-Instruct-2407", "mistral-nemo-12b"),
    ("mistralai/Mistral-Small-24B-Instruct-2501", "mistral-small-24b"),
    ("mistralai/Mistral-Large-Instruct-2411", "mistral-large-123b"),
    ("internlm/internlm-20b", "internlm-20b"),
    ("meta-llama/Llama-4-Scout-17B-16E-Instruct", "llama-4-scout-17b-16e"),
    ("meta-llama/Llama-4-Scout-17B-16E", "llama-4-scout-17b-16e"),
    ("meta-llama/Llama-4-Maverick-17B-128E-Instruct", "llama-4-maverick-17b-128e"),
    ("Llama-4-Maverick", "llama-4-maverick-17b-128e"),
])
def test_hf_names_resolve_case_insensitively(alias, key):
    assert normalize_model_name(alias) == key
    assert normalize_model_name(alias.upper()) == key
    assert get_model(alias).name == key


def _priced(m):
    """The fields of a ModelSpec that pricing reads (all but its name and source)."""
    d = dict(vars(m))
    d.pop("name"), d.pop("source")
    return d


def test_distills_alias_only_where_the_priced_fields_are_identical():
    # Llama distills are their bases; the Qwen ones differ from Qwen2.5 Instruct in context length.
    assert _priced(get_model("deepseek-r1-distill-qwen-32b")) != _priced(get_model("qwen2.5-32b"))
    diff = {k for k, v in _priced(get_model("deepseek-r1-distill-qwen-32b")).items()
            if v != _priced(get_model("qwen2.5-32b"))[k]}
    assert diff == {"max_context"}


def test_gemma_layers_are_read_as_published():
    g2, g3 = get_model("gemma-2-9b"), get_model("gemma-3-27b")
    # GeGLU (3 matrices) and tied embeddings though the configs name a GELU and omit tying.
    assert g2.gated_mlp and g2.tied_embeddings and g3.gated_mlp and g3.tied_embeddings
    assert (g2.sliding_layers, g2.sliding_window) == (21, 4096)  # alternating local/global
    assert (g3.sliding_layers, g3.sliding_window) == (62 - 10, 1024)  # 5 local : 1 global
    assert g2.head_dim == 256 and g2.heads * g2.head_dim != g2.hidden  # head_dim is not hidden / heads


def test_gemma3_default_pattern_applies_when_the_config_omits_it():
    cfg = {"model_type": "gemma3_text", "hidden_size": 64, "num_hidden_layers": 12, "num_attention_heads": 4,
           "num_key_value_heads": 2, "head_dim": 16, "intermediate_size": 128, "vocab_size": 100,
           "sliding_window": 32}
    assert model_from_config(cfg, name="g3").sliding_layers == 10
    assert model_from_config({**cfg, "sliding_window_pattern": 4}, name="g3").sliding_layers == 9
    layer_types = ["sliding_attention"] * 11 + ["full_attention"]
    assert model_from_config({**cfg, "layer_types": layer_types}, name="g3").sliding_layers == 11


#: Mamba hybrids and linear-attention models: a few fields of each published config.json.
UNPRICEABLE = {
    "jamba": ({"model_type": "jamba", "num_local_experts": 16, "num_experts_per_tok": 2, "attn_layer_period": 8,
               "mamba_d_state": 16}, "model_type"),
    "nemotron-h": ({"model_type": "nemotron_h", "hybrid_override_pattern": "M-M-M-M*-" * 6, "ssm_state_size": 256},
                   "model_type"),
    "falcon-mamba": ({"model_type": "falcon_mamba", "state_size": 16}, "model_type"),
    "qwen3-next": ({"model_type": "qwen3_next", "linear_num_value_heads": 32, "num_experts": 512,
                    "num_experts_per_tok": 10}, "model_type"),
    "minimax-text-01": ({"model_type": "minimax", "num_local_experts": 32, "num_experts_per_tok": 2}, "model_type"),
    "unknown-hybrid": ({"model_type": "my_hybrid", "ssm_state_size": 128}, "ssm_state_size"),
    "untyped-hybrid": ({"layer_types": ["linear_attention", "full_attention"] * 2}, "layer_types"),
}
DECODER = {"hidden_size": 4096, "num_hidden_layers": 4, "num_attention_heads": 32, "num_key_value_heads": 8,
           "intermediate_size": 14336, "vocab_size": 65536}


@pytest.mark.parametrize("name", sorted(UNPRICEABLE))
def test_unpriceable_architectures_are_refused_naming_the_field(name):
    extra, field = UNPRICEABLE[name]
    with pytest.raises(InputError) as e:
        model_from_config({**DECODER, **extra}, name=name, source=f"{name}.json")
    assert e.value.field == field and "not modelled" in str(e.value) and "refused" in str(e.value)
    assert "\n" not in str(e.value) and len(str(e.value)) < 400


def test_a_mamba_config_is_refused_by_the_cli_in_one_line(tmp_path):
    d = tmp_path / "Jamba-v0.1"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({**DECODER, "model_type": "jamba", "num_local_experts": 16,
                                               "num_experts_per_tok": 2, "attn_layer_period": 8,
                                               "mamba_d_state": 16}))
    r = subprocess.run([sys.executable, "-m", "planner.cli", "evaluate", "-t", "dgx-h100x1", "-m", str(d),
                        "--tp", "8", "--isl", "1024", "--osl", "128"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert r.stdout == "" and len(r.stderr.strip().splitlines()) == 1
    assert "model_type" in r.stderr and "Mamba" in r.stderr and "Traceback" not in r.stderr


def test_the_repo_emit_names_for_each_model_resolves_back_to_it():
    from planner.emit import HF_MODELS

    assert {k: get_model(repo).name for k, (repo, _dtype) in HF_MODELS.items()} == {k: k for k in HF_MODELS}
