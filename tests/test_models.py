import json

import pytest

from costmodels.hf_config import model_from_config
from costmodels.models import builtin_model_names, get_model, normalize_model_name
from topologies.errors import InputError

REQUIRED = ["llama-2-70b", "llama-3.1-8b", "llama-3.1-70b", "llama-3.1-405b", "mistral-7b", "mixtral-8x7b",
            "mixtral-8x22b", "qwen2.5-72b", "qwen3-32b", "deepseek-v3", "gpt-oss-120b"]


def test_catalog_has_the_issue_models():
    assert set(REQUIRED) <= set(builtin_model_names())


@pytest.mark.parametrize("alias", ["Llama-3.1-70B", "meta-llama/Llama-3.1-70B-Instruct",
                                   "meta-llama/Meta-Llama-3.1-70B-Instruct", "llama-3.1-70b"])
def test_names_resolve_to_one_entry(alias):
    assert get_model(alias).name == "llama-3.1-70b"


def test_normalize():
    assert normalize_model_name("Qwen/Qwen2.5-72B-Instruct") == "qwen2.5-72b"
    assert normalize_model_name("mistralai/Mistral-7B-v0.1") == "mistral-7b"


@pytest.mark.parametrize("name, kind", [("llama-2-7b", "MHA"), ("llama-3.1-8b", "GQA"), ("deepseek-v3", "MLA")])
def test_attention_kinds(name, kind):
    assert get_model(name).attention_kind == kind


def test_mqa_recognised():
    cfg = {"hidden_size": 4096, "num_hidden_layers": 2, "num_attention_heads": 32, "num_key_value_heads": 1,
           "vocab_size": 1000, "intermediate_size": 8192}
    m = model_from_config(cfg, name="mqa")
    assert m.attention_kind == "MQA"
    assert m.kv_elements_per_token_per_layer(8) == 2 * 128  # one head, replicated on every rank


def test_config_json_by_path(tmp_path):
    cfg = {"hidden_size": 2048, "num_hidden_layers": 4, "num_attention_heads": 16, "num_key_value_heads": 4,
           "vocab_size": 32000, "intermediate_size": 5632}
    d = tmp_path / "my-model"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(cfg))
    m = get_model(str(d / "config.json"))
    assert m.name == "my-model" and m.kv_heads == 4
    assert get_model(str(d)).layers == 4


def test_moe_inconsistent_config_is_input_error():
    cfg = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 100,
           "num_local_experts": 2, "num_experts_per_tok": 4}
    with pytest.raises(InputError, match="num_experts_per_tok"):
        model_from_config(cfg, name="bad", source="bad.json")


def test_missing_field_names_it():
    with pytest.raises(InputError, match="hidden_size"):
        model_from_config({"num_hidden_layers": 2}, name="bad", source="x.json")


def test_unknown_model_suggests():
    with pytest.raises(InputError, match="llama-3.1-70b"):
        get_model("llama-3.1-70")


#: The Llama 4 text config fields that matter here (meta-llama/Llama-4-*-17B-*-Instruct config.json).
LLAMA4_TEXT = {"model_type": "llama4_text", "hidden_size": 5120, "num_hidden_layers": 48, "num_attention_heads": 40,
               "num_key_value_heads": 8, "head_dim": 128, "intermediate_size": 8192, "intermediate_size_mlp": 16384,
               "vocab_size": 202048, "num_local_experts": 128, "num_experts_per_tok": 1,
               "interleave_moe_layer_step": 2, "attention_chunk_size": 8192}


@pytest.mark.parametrize("change, kinds", [
    ({}, "DM" * 24),                                                     # Maverick: MoE on every 2nd layer
    ({"interleave_moe_layer_step": 1, "num_local_experts": 16}, "M" * 48),  # Scout: every layer
    ({"interleave_moe_layer_step": 4}, "DDDM" * 12),
    ({"moe_layers": [0, 47]}, "M" + "D" * 46 + "M"),                      # the explicit list wins over the step
])
def test_llama4_layers_are_read_as_transformers_builds_them(tmp_path, change, kinds):
    """Llama4TextDecoderLayer: routed experts plus one shared expert as wide as one on the MoE
    layers, ``intermediate_size_mlp`` on the dense ones; the RoPE layers (all but every 4th) chunked."""
    cfg = {"model_type": "llama4", "architectures": ["Llama4ForConditionalGeneration"],
           "text_config": {**LLAMA4_TEXT, **change}}
    p = tmp_path / "config.json"
    p.write_text(json.dumps(cfg))
    m = get_model(str(p))
    assert m.mlp_kinds == kinds
    assert (m.moe_layers, m.dense_layers) == (kinds.count("M"), kinds.count("D"))
    assert (m.intermediate, m.moe_intermediate, m.shared_experts, m.shared_intermediate) == (16384, 8192, 1, 0)
    assert m.shared_expert_params() == m.expert_params()
    assert (m.sliding_window, m.sliding_layers) == (8192, 36)
    first_moe = kinds.index("M")
    assert m.layer_params(first_moe) - m.layer_params(first_moe, active=True) == \
        (m.experts - 1) * m.expert_params()


@pytest.mark.parametrize("change, chunked", [
    ({"attention_chunk_size": None}, 0),                                # explicitly off: full attention
    ({"no_rope_layers": [1, 1, 0] * 16}, 32),                           # the listed RoPE layers
    ({"no_rope_layer_interval": 2}, 24),
    ({"layer_types": ["chunked_attention", "full_attention"] * 24}, 24),
])
def test_llama4_chunked_layers(change, chunked):
    m = model_from_config({**LLAMA4_TEXT, **change}, name="l4", source="x.json")
    assert m.sliding_layers == chunked and m.sliding_window == (8192 if chunked else 0)


def test_llama4_chunks_by_default_and_refuses_chunks_with_sliding_windows():
    without = {k: v for k, v in LLAMA4_TEXT.items() if k != "attention_chunk_size"}
    assert model_from_config(without, name="l4", source="x.json").sliding_window == 8192  # Llama4TextConfig default
    with pytest.raises(InputError) as e:
        model_from_config({**LLAMA4_TEXT, "sliding_window": 4096}, name="l4", source="x.json")
    assert e.value.field == "attention_chunk_size" and "\n" not in str(e.value)
    with pytest.raises(InputError) as e:
        model_from_config({**LLAMA4_TEXT, "no_rope_layers": [1, 0]}, name="l4", source="x.json")
    assert e.value.field == "no_rope_layers"


@pytest.mark.parametrize("field, kinds", [("decoder_sparse_step", "DMDM"),   # Qwen2-MoE: (i + 1) % step == 0
                                          ("moe_layer_freq", "MDMD")])       # DeepSeek: i % freq == 0
def test_moe_on_every_nth_layer_follows_the_runtime_pattern(field, kinds):
    cfg = {"hidden_size": 64, "num_hidden_layers": 4, "num_attention_heads": 4, "vocab_size": 100,
           "num_experts": 4, "num_experts_per_tok": 2, field: 2}
    assert model_from_config(cfg, name="every-2nd", source="x.json").mlp_kinds == kinds
    assert model_from_config({**cfg, field: 1}, name="every", source="x.json").moe_layers == 4
    # No step of 0; a step past the last layer leaves no layer with experts under (i + 1) % step,
    # while i % freq keeps layer 0.
    for bad in (0, 8) if field == "decoder_sparse_step" else (0,):
        with pytest.raises(InputError) as e:
            model_from_config({**cfg, field: bad}, name="none", source="x.json")
        assert e.value.field == field


def test_mlp_only_layers_are_the_listed_layers_not_the_first_ones():
    cfg = {"hidden_size": 64, "num_hidden_layers": 4, "num_attention_heads": 4, "vocab_size": 100,
           "num_experts": 4, "num_experts_per_tok": 2, "mlp_only_layers": [3]}
    m = model_from_config(cfg, name="qwen-moe", source="x.json")
    assert m.mlp_kinds == "MMMD" and m.dense_layers == 1
    assert m.moe_layers_in(2, 2) == 1 and m.moe_layers_in(0, 3) == 3
    with pytest.raises(InputError) as e:
        model_from_config({**cfg, "mlp_only_layers": [0, 1, 2, 3]}, name="x", source="x.json")
    assert e.value.field == "mlp_only_layers" and "no layer is left with experts" in str(e.value)


@pytest.mark.parametrize("cfg, width", [
    ({"model_type": "opt", "ffn_dim": 16384}, 16384),  # OPT names its MLP width ffn_dim
    ({"model_type": "gpt2"}, 4 * 4096),  # GPT2Config n_inner None: 4 x hidden
    ({"model_type": "RefinedWebModel"}, 4 * 4096),  # an older Falcon config
    ({"model_type": "llama", "intermediate_size": 14336}, 14336),
])
def test_mlp_width_from_each_family(cfg, width):
    base = {"hidden_size": 4096, "num_attention_heads": 32, "num_hidden_layers": 2, "vocab_size": 1000}
    assert model_from_config({**base, **cfg}, name="m").intermediate == width


def test_mlp_width_missing_where_no_default_names_the_fields():
    base = {"hidden_size": 4096, "num_attention_heads": 32, "num_hidden_layers": 2, "vocab_size": 1000}
    with pytest.raises(InputError, match="ffn_dim") as e:
        model_from_config({**base, "model_type": "llama"}, name="m")
    assert e.value.field == "intermediate_size"


def test_zero_mlp_width_names_the_field_given():
    base = {"hidden_size": 4096, "num_attention_heads": 32, "num_hidden_layers": 2, "vocab_size": 1000}
    with pytest.raises(InputError, match="at least 1") as e:
        model_from_config({**base, "model_type": "opt", "ffn_dim": 0}, name="m")
    assert e.value.field == "ffn_dim"


def test_falcon_bloom_and_qwen_v1_configs_read_as_their_classes_do():
    """Falcon-7B's multi_query means one K/V head and its MLP is a GELU one named by `activation`
    (FalconConfig); RefinedWeb names its K/V heads n_head_kv; BLOOM's MLP is a GELU one whose config
    names no activation; Qwen v1's intermediate_size counts both MLP branches (QWenMLP). All were
    priced as other models: Falcon-7B at 11.2 B parameters with 71 K/V heads."""
    f7 = model_from_config({"model_type": "falcon", "hidden_size": 4544, "num_attention_heads": 71,
                            "num_hidden_layers": 32, "vocab_size": 65024, "multi_query": True,
                            "new_decoder_architecture": False, "parallel_attn": True, "bias": False}, name="f7")
    assert f7.kv_heads == 1 and not f7.gated_mlp and 6.8e9 < f7.total_params() < 7.0e9  # 6.9 B, head tied
    rw = model_from_config({"model_type": "RefinedWeb", "hidden_size": 8192, "n_head": 128, "n_layer": 60,
                            "vocab_size": 65024, "n_head_kv": 8}, name="rw")
    assert rw.kv_heads == 8 and not rw.gated_mlp
    bloom = model_from_config({"model_type": "bloom", "hidden_size": 1024, "n_head": 16, "n_layer": 24,
                               "vocab_size": 250880}, name="b")
    assert not bloom.gated_mlp and bloom.intermediate == 4096
    qwen = model_from_config({"model_type": "qwen", "hidden_size": 4096, "num_attention_heads": 32,
                              "num_hidden_layers": 32, "vocab_size": 151936, "intermediate_size": 22016}, name="q")
    assert qwen.intermediate == 11008 and qwen.gated_mlp


@pytest.mark.parametrize("cfg, params_b, kv_heads", [
    # MPT: d_model / n_heads / n_layers, an MLP expansion_ratio x d_model wide with a GELU (MPT-7B: 6.7 B)
    ({"model_type": "mpt", "d_model": 4096, "n_heads": 32, "n_layers": 32, "vocab_size": 50432,
      "expansion_ratio": 4}, 6.65, 32),
    # GPT-Neo: num_heads / num_layers (GPT-Neo-1.3B)
    ({"model_type": "gpt_neo", "hidden_size": 2048, "num_heads": 16, "num_layers": 24, "vocab_size": 50257,
      "activation_function": "gelu_new"}, 1.31, 16),
    # BLOOM-176B: n_embed; its LM head is tied to the embedding (BloomConfig keeps the class default)
    ({"model_type": "bloom", "n_embed": 14336, "n_head": 112, "n_layer": 70, "vocab_size": 250880}, 176.24, 112),
    # ChatGLM3-6B: num_layers, padded_vocab_size, multi_query_group_num K/V heads
    ({"model_type": "chatglm", "hidden_size": 4096, "num_attention_heads": 32, "num_layers": 28,
      "padded_vocab_size": 65024, "ffn_hidden_size": 13696, "multi_query_attention": True,
      "multi_query_group_num": 2, "kv_channels": 128}, 6.24, 2),
])
def test_families_with_their_own_field_names(cfg, params_b, kv_heads):
    """These families name their sizes their own way; they were refused (a required field missing)."""
    m = model_from_config(cfg, name="m")
    assert m.total_params() / 1e9 == pytest.approx(params_b, abs=0.01) and m.kv_heads == kv_heads


_BASE = {"hidden_size": 4096, "num_attention_heads": 32, "num_hidden_layers": 28, "vocab_size": 1000,
         "intermediate_size": 14336}


@pytest.mark.parametrize("q, dtype", [
    (None, "bf16"),
    ({"quant_method": "gptq", "bits": 8, "group_size": 128}, "int8"),  # Qwen2.5-72B-Instruct-GPTQ-Int8
    ({"quant_method": "gptq", "bits": 4}, "int4"),
    ({"quant_method": "awq", "bits": 4}, "int4"),
    ({"quant_method": "awq", "w_bit": 4}, "int4"),  # AutoAWQ's older field name
    ({"quant_method": "fp8", "fmt": "e4m3"}, "fp8"),
    ({"quant_method": "mxfp4"}, "fp4"),
    ({"quant_method": "compressed-tensors", "format": "float-quantized",
      "config_groups": {"group_0": {"weights": {"num_bits": 8, "type": "float"}}}}, "fp8"),
    ({"quant_method": "compressed-tensors", "format": "pack-quantized",
      "config_groups": {"group_0": {"weights": {"num_bits": 4, "type": "int"}}}}, "int4"),
    ({"quant_method": "modelopt", "quant_algo": "NVFP4"}, "fp4"),
    ({"quant_method": "modelopt", "quant_algo": "FP8"}, "fp8"),
    ({"quant_method": "bitsandbytes", "load_in_4bit": True}, "int4"),
    ({"quant_method": "bitsandbytes", "load_in_8bit": True}, "int8"),
])
def test_checkpoint_weight_format_read_from_quantization_config(q, dtype):
    """Each quantizer's config states its weights' width its own way; an 8-bit GPTQ checkpoint was priced
    as 4-bit (a plan that ran out of memory at launch), compressed-tensors, ModelOpt and bitsandbytes
    ones as 16-bit."""
    cfg = {**_BASE, "model_type": "llama", **({"quantization_config": q} if q else {})}
    assert model_from_config(cfg, name="m").native_dtype == dtype


def test_unknown_quantization_needs_a_weight_dtype():
    """A quantization method not read here is not priced as 16-bit: --weight-dtype auto is refused with the
    fix, an explicit format is taken."""
    from planner.evaluation import evaluate

    cfg = {**_BASE, "model_type": "llama", "quantization_config": {"quant_method": "hqq"}}
    assert model_from_config(cfg, name="m").native_dtype.startswith("unknown")
    with pytest.raises(InputError, match="give the format with --weight-dtype") as e:
        evaluate(topology="dgx-h100x1", model=model_from_config(cfg, name="m"), tp=1, isl=128, osl=16)
    assert e.value.source == "--weight-dtype"
    ev = evaluate(topology="dgx-h100x1", model=model_from_config(cfg, name="m"), tp=1, isl=128, osl=16,
                  weight_dtype="int4")
    assert ev.strategy.weight_dtype == "int4"


def test_gpt_oss_format_comes_from_its_quantization_config():
    """GPT-OSS ships MXFP4 (its config says so); a BF16 re-upload of it carries no quantization_config."""
    cfg = {**_BASE, "model_type": "gpt_oss", "num_local_experts": 32, "num_experts_per_tok": 4,
           "num_key_value_heads": 8}
    assert model_from_config(cfg, name="m").native_dtype == "bf16"
    assert model_from_config({**cfg, "quantization_config": {"quant_method": "mxfp4"}}, name="m").native_dtype == "fp4"
    assert get_model("gpt-oss-120b").native_dtype == "fp4" and get_model("gpt-oss-20b").native_dtype == "fp4"


def test_local_folder_named_like_a_catalog_model_is_read(tmp_path):
    """`--model /models/Llama-3.1-70B-Instruct` reads that folder's config.json (as `vllm serve` loads a
    local folder first), not the catalog entry the name resembles."""
    d = tmp_path / "Llama-3.1-70B-Instruct"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({**_BASE, "model_type": "llama", "num_hidden_layers": 2,
                                               "num_key_value_heads": 8,
                                               "quantization_config": {"quant_method": "awq", "bits": 4}}))
    m = get_model(str(d))
    assert m.layers == 2 and m.native_dtype == "int4" and m.name == "Llama-3.1-70B-Instruct"
    assert get_model("meta-llama/Llama-3.1-70B-Instruct").layers == 80  # a repository name: the catalog
    with pytest.raises(InputError, match="holds no config.json"):
        get_model(str(tmp_path) + "/")


@pytest.mark.parametrize("model_type, kv_heads", [("llama", 32), ("phi3", 32), ("gpt_neox", 32), ("baichuan", 32),
                                                   (None, 32)])
def test_kv_heads_default_where_the_class_defaults_to_heads(model_type, kv_heads):
    cfg = {**_BASE, **({"model_type": model_type} if model_type else {})}
    assert model_from_config(cfg, name="m").kv_heads == kv_heads


@pytest.mark.parametrize("model_type", ["mistral", "mixtral", "qwen2", "qwen2_moe", "gemma2"])
def test_kv_heads_missing_where_the_class_has_its_own_default(model_type):
    """MistralConfig defaults to 8 KV heads, Qwen2MoeConfig to 16: reading the absence as one per head priced
    Mistral's KV cache 4x too large."""
    with pytest.raises(InputError, match="does not default it to num_attention_heads") as e:
        model_from_config({**_BASE, "model_type": model_type}, name="m")
    assert e.value.field == "num_key_value_heads"


@pytest.mark.parametrize("extra, sliding_layers", [
    ({"use_sliding_window": True, "sliding_window": 4096, "max_window_layers": 28}, 0),
    ({"use_sliding_window": True, "sliding_window": 4096, "max_window_layers": 21}, 7),
    ({"use_sliding_window": True, "sliding_window": 4096}, 0),  # Qwen2Config's default: 28 layers full
    ({"sliding_window": 4096, "max_window_layers": 21}, 0),  # use_sliding_window defaults to false
])
def test_qwen_sliding_window_from_max_window_layers(extra, sliding_layers):
    """Qwen2/Qwen3 slide only the layers from max_window_layers on (Qwen2Config.layer_types)."""
    cfg = {**_BASE, "model_type": "qwen2", "num_key_value_heads": 4, **extra}
    assert model_from_config(cfg, name="m").sliding_layers == sliding_layers


@pytest.mark.parametrize("rope, context", [
    ({"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}, 131072),  # Qwen2.5's card
    ({"rope_type": "linear", "factor": 2.0}, 65536),
    ({"rope_type": "llama3", "factor": 8.0, "original_max_position_embeddings": 8192}, 32768),  # already stretched
    (None, 32768),
])
def test_context_stretched_by_rope_scaling_as_vllm_derives_it(rope, context):
    cfg = {**_BASE, "model_type": "llama", "max_position_embeddings": 32768,
           **({"rope_scaling": rope} if rope else {})}
    assert model_from_config(cfg, name="m").max_context == context
    # Gemma 3's linear factor 8 is already in its 131,072 positions (vLLM skips it for gemma3)
    gemma = {**cfg, "model_type": "gemma3_text", "num_key_value_heads": 8, "max_position_embeddings": 131072,
             "rope_scaling": {"rope_type": "linear", "factor": 8.0}}
    assert model_from_config(gemma, name="m").max_context == 131072
    with pytest.raises(InputError) as e:
        model_from_config({**cfg, "rope_scaling": {"type": "yarn", "factor": "4"}}, name="m")
    assert e.value.field == "rope_scaling.factor"


def test_multimodal_wrapper_prices_its_text_config_alone():
    """The wrapper's own sizes are often its vision tower's: a partial text_config is not completed from them."""
    cfg = {"model_type": "some_vlm", "hidden_size": 1152, "num_hidden_layers": 27, "num_attention_heads": 16,
           "intermediate_size": 4304, "quantization_config": {"quant_method": "fp8"},
           "text_config": {"model_type": "llama", "vocab_size": 128256, "num_key_value_heads": 8}}
    with pytest.raises(InputError, match="hidden_size"):
        model_from_config(cfg, name="m")
    m = model_from_config({**cfg, "text_config": {**cfg["text_config"], **_BASE}}, name="m")
    assert (m.hidden, m.layers, m.native_dtype) == (4096, 28, "fp8")  # the checkpoint's format carries over


def test_expert_counts_that_disagree_are_refused():
    cfg = {**_BASE, "model_type": "qwen3_moe", "num_key_value_heads": 4, "num_experts": 128, "n_routed_experts": 64,
           "num_experts_per_tok": 8}
    with pytest.raises(InputError, match="stated more than once"):
        model_from_config(cfg, name="m")
    assert model_from_config({**cfg, "n_routed_experts": 128}, name="m").experts == 128
