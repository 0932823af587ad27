"""Reading an HF ``config.json`` into a :class:`~costmodels.model_spec.ModelSpec`.

Covers dense and mixture-of-experts decoders; multi-head, grouped-query and multi-query
attention (``num_key_value_heads`` = heads, fewer, or 1); DeepSeek's multi-head latent
attention (MLA, ``kv_lora_rank``); sliding-window layers, on every layer (Mistral, Phi-3) or
interleaved with full-attention ones (GPT-OSS, Gemma 2 and 3); chunked local attention (Llama 4,
priced as a sliding window of the chunk size, see :func:`_chunked_layers`); gated-GELU MLPs (Gemma).
An MoE model's layers each have either routed experts or a dense MLP, in any pattern
(``ModelSpec.mlp_kinds``): leading dense layers (DeepSeek ``first_k_dense_replace``), listed ones
(Qwen ``mlp_only_layers``), or experts on every n-th layer (Llama 4 ``interleave_moe_layer_step``,
Qwen ``decoder_sparse_step``, DeepSeek ``moe_layer_freq``).
State-space (Mamba) and linear-attention layer stacks are refused (see ``_UNPRICEABLE``).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from costmodels.model_spec import DENSE_MLP, MOE_MLP, ModelSpec, warn
from topologies.errors import InputError, printable

#: Upper bounds far beyond any published model, to refuse a corrupt config before pricing it.
PLAUSIBLE_MAX = {"num_hidden_layers": 1024, "hidden_size": 1 << 20, "num_attention_heads": 1 << 14,
                 "num_key_value_heads": 1 << 14, "vocab_size": 1 << 24, "intermediate_size": 1 << 24,
                 "num_local_experts": 1 << 16, "num_experts_per_tok": 1 << 16, "head_dim": 1 << 14,
                 "moe_intermediate_size": 1 << 24, "shared_expert_intermediate_size": 1 << 24,
                 "n_shared_experts": 1 << 10, "kv_lora_rank": 1 << 16, "q_lora_rank": 1 << 16,
                 "qk_rope_head_dim": 1 << 14, "qk_nope_head_dim": 1 << 14, "v_head_dim": 1 << 14,
                 "sliding_window": 1 << 27, "max_position_embeddings": 1 << 27, "attention_chunk_size": 1 << 27,
                 "intermediate_size_mlp": 1 << 24, "interleave_moe_layer_step": 1024, "decoder_sparse_step": 1024,
                 "moe_layer_freq": 1024, "no_rope_layer_interval": 1024}


#: ``model_type`` values whose config layout this reader interprets (checked against published
#: configs); any other gets a warning, as its fields may mean something else.
KNOWN_MODEL_TYPES = frozenset({"llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe",
                               "deepseek_v2", "deepseek_v3", "kimi_k2", "gpt_oss", "gemma", "gemma2", "gemma3",
                               "gemma3_text", "phi3", "internlm", "llama4", "llama4_text"})


#: Architectures with multi-head latent attention: only their ``kv_lora_rank`` means MLA.
MLA_MODEL_TYPES = frozenset({"deepseek_v2", "deepseek_v3", "kimi_k2"})
GELU_ACTS = {"gelu", "gelu_new", "gelu_fast", "gelu_pytorch_tanh", "relu"}
#: Model types whose MLP is a GELU one when the config names no activation (FalconConfig's
#: ``activation`` default "gelu"; BloomMLP).
GELU_DEFAULT_MODEL_TYPES = frozenset({"falcon", "RefinedWeb", "RefinedWebModel", "bloom", "mpt"})  # MPT: ffn "gelu"
#: Model types whose MLP width defaults to 4 x hidden when the config leaves it out (transformers:
#: GPT2Config / GPTJConfig / GPTBigCodeConfig / CodeGenConfig ``n_inner`` None, GPTNeoConfig
#: ``intermediate_size`` None, FalconConfig ``ffn_hidden_size`` None: "4 * hidden_size"; BloomMLP's
#: fixed 4 x hidden). Other model types' classes default to a fixed width of their own (LlamaConfig:
#: 11008), so a config of theirs without the field cannot be priced from it.
FOUR_X_MLP_MODEL_TYPES = frozenset({"gpt2", "gptj", "gpt_neo", "gpt_bigcode", "codegen", "falcon", "bloom",
                                    "gpt-sw3", "openai-gpt", "gpt_neox_japanese",  # the last: intermediate_multiple_size 4
                                    "RefinedWeb", "RefinedWebModel", "phi-msft", "mixformer-sequential"})  # older Falcon, Phi
#: Gemma's MLP is gated although its activation is a GELU (GeGLU: gate, up and down projections,
#: ``Gemma2MLP`` / ``Gemma3MLP`` in transformers), and its configs leave ``tie_word_embeddings`` to
#: the class default, which is true (``Gemma2Config``, ``Gemma3TextConfig``).
GEMMA_MODEL_TYPES = frozenset({"gemma", "gemma2", "gemma3", "gemma3_text"})
#: Model types whose classes tie the LM head to the embedding unless the config says otherwise
#: (``PretrainedConfig``'s default ``tie_word_embeddings=True``, kept by GPT2Config, BloomConfig,
#: FalconConfig, GPTNeoConfig, OPTConfig, GPTBigCodeConfig and Gemma's; MPT has no LM head of its own).
#: Llama, Mistral, Qwen2 and most newer classes default it to false, as the reader does for the rest.
TIED_DEFAULT_MODEL_TYPES = GEMMA_MODEL_TYPES | {"gpt2", "bloom", "falcon", "RefinedWeb", "RefinedWebModel", "mpt",
                                                "gpt_neo", "opt", "gpt_bigcode"}
#: Model types whose classes give every attention head its own keys and values when the config
#: leaves ``num_key_value_heads`` out (LlamaConfig, PhiConfig, Phi3Config, OlmoConfig, CohereConfig:
#: "if num_key_value_heads is None: num_key_value_heads = num_attention_heads"), or whose attention
#: has no grouped heads at all (GPT-2, GPT-J, GPT-Neo(X), OPT, BLOOM, CodeGen, MPT, InternLM, Qwen v1;
#: Falcon, GPTBigCode and ChatGLM say so with their own multi-query fields). Other classes default to
#: a fixed count of their own (MistralConfig and MixtralConfig: 8, Qwen2MoeConfig: 16), so a config of
#: theirs without the field cannot be priced from it; MLA models' KV cache does not depend on it.
MHA_DEFAULT_MODEL_TYPES = frozenset({"llama", "phi", "phi3", "olmo", "olmo2", "cohere", "gpt2", "gptj", "gpt_neo",
                                     "gpt_neox", "opt", "bloom", "codegen", "mpt", "internlm", "qwen", "falcon",
                                     "baichuan", "persimmon", "fuyu", "jais",  # MHA classes (Baichuan2, ...)
                                     "RefinedWeb", "RefinedWebModel", "gpt_bigcode", "chatglm", "gpt-sw3",
                                     "openai-gpt", "gpt_neox_japanese", "phi-msft", "mixformer-sequential"})
#: Qwen2/Qwen3 classes: ``use_sliding_window`` defaults to false, and with it only the layers from
#: ``max_window_layers`` on slide (Qwen2Config.layer_types: sliding where i >= max_window_layers).
QWEN_WINDOW_MODEL_TYPES = frozenset({"qwen2", "qwen2_moe", "qwen3", "qwen3_moe"})
#: Where a config gives neither ``layer_types`` nor ``sliding_window_pattern``, the class default
#: places one full-attention layer every n layers, the rest sliding: Gemma 2 alternates (n = 2,
#: ``Gemma2Config``: sliding on even layers), Gemma 3 has 5 local layers per global one (n = 6,
#: ``Gemma3TextConfig.sliding_window_pattern``).
DEFAULT_SLIDING_PATTERN = {"gemma2": 2, "gemma3": 6, "gemma3_text": 6}
#: Llama 4: every MoE layer also runs one always-on shared expert as wide as a routed one
#: (``Llama4TextMoe.shared_expert``, an MLP of ``intermediate_size``), which the config does not
#: declare; its dense layers use the wider ``intermediate_size_mlp`` (transformers
#: ``Llama4TextConfig`` and ``Llama4TextDecoderLayer``; vLLM ``Llama4MoE``).
LLAMA4_MODEL_TYPES = frozenset({"llama4", "llama4_text"})
#: Llama 4's ``attention_chunk_size`` where its config leaves it out (``Llama4TextConfig`` default).
LLAMA4_DEFAULT_CHUNK = 8192


#: ``model_type`` of state-space, hybrid Mamba/attention and linear-attention models (transformers
#: and vLLM model types): their layers keep a fixed-size state, not a KV cache growing with context.
STATE_SPACE_MODEL_TYPES = frozenset({"mamba", "mamba2", "falcon_mamba", "jamba", "nemotron_h", "zamba", "zamba2",
                                     "falcon_h1", "bamba", "granitemoehybrid", "qwen3_next", "minimax",
                                     "minimax_m1", "minimax_text_01", "rwkv", "rwkv5", "rwkv6", "rwkv7",
                                     "recurrent_gemma", "lfm2", "plamo2"})


#: Fields of a multimodal wrapper's config that hold for its language model too: the checkpoint's
#: quantisation and dtype, whether its LM head is tied, and the model type where text_config gives none.
_WRAPPER_FIELDS = ("quantization_config", "torch_dtype", "tie_word_embeddings", "model_type")


def _get(cfg: dict[str, Any], *names: str, default: Any = None) -> Any:
    for n in names:
        if n in cfg and cfg[n] is not None:
            return cfg[n]
        nested = cfg.get("hf_format_fields")
        if isinstance(nested, dict) and nested.get(n) is not None:
            return nested[n]
    return default


#: ModelOpt's ``quant_algo`` prefixes and the weight format each stores (TensorRT Model Optimizer's
#: published checkpoints: FP8, NVFP4, W4A16_AWQ / W4A8_AWQ, W8A8_SQ_PER_CHANNEL).
_MODELOPT_ALGOS = (("NVFP4", "fp4"), ("FP8", "fp8"), ("W4A", "int4"), ("INT4", "int4"), ("W8A8", "int8"),
                   ("INT8", "int8"))
#: compressed-tensors' weight (bits, type) and the format priced for it.
_COMPRESSED: dict[tuple[Any, str], str] = {(8, "float"): "fp8", (8, "int"): "int8", (4, "int"): "int4", (4, "float"): "fp4"}
#: Prefix of ``ModelSpec.native_dtype`` for a checkpoint whose weight format is not read here: pricing
#: it needs ``--weight-dtype`` (planner.api refuses ``auto`` for it).
UNKNOWN_DTYPE = "unknown"


def _native_dtype(cfg: dict[str, Any], source: str) -> str:
    """The weight format of the published checkpoint (DeepSeek-V3 ships FP8, GPT-OSS MXFP4), from its
    ``quantization_config`` as transformers' quantizers read it: GPTQ and AWQ ``bits`` (4 by default;
    8 is INT8), compressed-tensors' ``config_groups.*.weights`` (``num_bits``, ``type``), ModelOpt's
    ``quant_algo``, bitsandbytes' ``load_in_4bit`` / ``load_in_8bit``. A method not read here gives
    :data:`UNKNOWN_DTYPE` with its name, so ``--weight-dtype auto`` is refused rather than priced as
    16-bit."""
    q = cfg.get("quantization_config")
    if q is None:
        return "bf16"
    if not isinstance(q, dict):
        raise InputError(f"must be an object, got {type(q).__name__}", source=source, field="quantization_config")
    method = str(q.get("quant_method", "")).lower()
    unknown = f"{UNKNOWN_DTYPE} (quant_method {printable(method)[:40]!r})"  # no escapes from a config
    if method in ("fp8", "fbgemm_fp8") or (not method and "fp8" in str(q.get("fmt", "")).lower()):
        return "fp8"
    if method == "mxfp4":
        return "fp4"  # MoE experts in MXFP4 (4.25 bits with scales); attention stays 16 bit
    if method in ("gptq", "awq", "auto-round", "autoround"):
        bits = q.get("bits", q.get("w_bit", 4))  # w_bit: AutoAWQ's older configs
        if isinstance(bits, int) and not isinstance(bits, bool) and 2 <= bits <= 4:
            return "int4"  # 2 and 3 bits priced as 4: an upper bound on their memory and reads
        if bits == 8:
            return "int8"
        raise InputError(f"{bits!r} bits is not a weight width this planner prices (2 to 4, or 8)", source=source,
                         field="quantization_config.bits")
    if method == "compressed-tensors":
        groups = q.get("config_groups")
        found = set()
        for g in groups.values() if isinstance(groups, dict) else ():
            w = g.get("weights") if isinstance(g, dict) else None
            if isinstance(w, dict):
                found.add(_COMPRESSED.get((w.get("num_bits"), str(w.get("type", "int")).lower()), unknown))
        # several groups: the widest format bounds memory and reads
        order = ["fp4", "int4", "int8", "fp8", unknown]
        return max(found, key=order.index) if found else unknown
    if method == "modelopt":
        algo = str(q.get("quant_algo", "")).upper()
        return next((fmt for prefix, fmt in _MODELOPT_ALGOS if algo.startswith(prefix)), unknown)
    if method == "bitsandbytes":
        if q.get("load_in_4bit") is True:
            return "int4"
        if q.get("load_in_8bit") is True:
            return "int8"
    return unknown


class _Fields:
    """Typed reads of one config's fields, each refusal an :class:`InputError` naming the field."""

    def __init__(self, cfg: dict[str, Any], source: str) -> None:
        self.cfg, self.source = cfg, source

    def need_int(self, *names: str, minimum: int = 1) -> int:
        """The first of ``names`` the config gives: a plausible integer >= ``minimum``; required."""
        cfg, source = self.cfg, self.source
        v = _get(cfg, *names)
        if v is None:
            raise InputError("missing; an HF config.json of a decoder model has it", source=source,
                             field=names[0])
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise InputError(f"must be an integer >= {minimum}, got {v!r}", source=source, field=names[0])
        if v > PLAUSIBLE_MAX.get(names[0], 10**7):
            raise InputError(f"{v} is implausibly large (limit {PLAUSIBLE_MAX.get(names[0], 10**7):,})",
                             source=source, field=names[0])
        return v

    def opt_int(self, *names: str, default: int = 0) -> int:
        """The first of ``names`` the config gives, a plausible integer >= 0, else ``default``."""
        cfg, source = self.cfg, self.source
        v = _get(cfg, *names, default=default)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise InputError(f"must be a non-negative integer, got {v!r}", source=source, field=names[0])
        if v > PLAUSIBLE_MAX.get(names[0], 10**9):
            raise InputError(f"{v} is implausibly large (limit {PLAUSIBLE_MAX.get(names[0], 10**9):,})",
                             source=source, field=names[0])
        return v

    def opt_bool(self, *names: str, default: bool) -> bool:
        """The first of ``names`` the config gives, a JSON boolean, else ``default``."""
        cfg, source = self.cfg, self.source
        v = _get(cfg, *names, default=default)
        if not isinstance(v, bool):  # "false" and "no" are strings, which Python reads as true
            raise InputError(f"must be true or false (a JSON boolean), got {v!r}", source=source, field=names[0])
        return v


def model_from_config(cfg: dict[str, Any], *, name: str, source: str = "<config>") -> ModelSpec:
    """Build a :class:`ModelSpec` from an HF ``config.json`` dict.

    Raises :class:`InputError` naming the field when one is missing or inconsistent.
    """
    if not isinstance(cfg, dict):
        raise InputError("a model config must be a JSON object", source=source)
    if isinstance(cfg.get("text_config"), dict):  # multimodal wrappers keep the LM here
        # the language model is text_config alone: the wrapper's own sizes are often the vision tower's,
        # so a field text_config leaves out is missing (the text class's defaults are not known here),
        # not taken from the wrapper. Only what the wrapper states for the whole checkpoint carries over.
        cfg = {**{k: cfg[k] for k in _WRAPPER_FIELDS if k in cfg}, **cfg["text_config"]}
    _refuse_unpriceable(cfg, source)

    f = _Fields(cfg, source)
    need_int, opt_int, opt_bool = f.need_int, f.opt_int, f.opt_bool
    model_type = _get(cfg, "model_type", default=None)
    if model_type is not None and not isinstance(model_type, str):
        raise InputError(f"must be a string, got {model_type!r}", source=source, field="model_type")
    # the names each family gives them: n_embed (BLOOM-176B), d_model / n_layers / n_heads (MPT),
    # num_layers / num_heads (GPT-Neo, ChatGLM's num_layers)
    hidden = need_int("hidden_size", "n_embd", "d_model", "n_embed")
    layers = need_int("num_hidden_layers", "n_layer", "num_layers", "n_layers")
    heads = need_int("num_attention_heads", "n_head", "n_heads", "num_heads")
    # Falcon: n_head_kv in the older RefinedWeb configs; multi_query (one K/V head) in Falcon-7B's
    # (FalconConfig: "num_kv_heads ... if multi_query, 1").
    multi_query = opt_bool("multi_query", default=False) and not opt_bool("new_decoder_architecture", default=False)
    kv_names = ("num_key_value_heads", "num_kv_heads", "n_head_kv")
    if (_get(cfg, *kv_names) is None and not multi_query and model_type is not None
            and model_type not in MHA_DEFAULT_MODEL_TYPES | MLA_MODEL_TYPES):
        raise InputError(f"missing; the {model_type!r} class does not default it to num_attention_heads, so add the "
                         "checkpoint's own count, as its published config.json gives it",
                         source=source, field=kv_names[0])
    kv_heads = opt_int(*kv_names, default=1 if multi_query else heads)
    if opt_bool("multi_query_attention", default=False):  # ChatGLM: multi_query_group_num K/V heads
        kv_heads = opt_int("multi_query_group_num", default=kv_heads)
    if kv_heads == 0:
        raise InputError("must be at least 1 (leave it out when every attention head has its own keys and "
                         "values)", source=source, field="num_key_value_heads")
    if kv_heads > heads or heads % kv_heads:
        raise InputError(f"{kv_heads} KV heads do not divide {heads} attention heads", source=source,
                         field="num_key_value_heads")
    head_dim = _head_dim(cfg, hidden, heads, source, opt_int)
    # Falcon's configs name it `activation` (FalconConfig, default "gelu"); BLOOM's MLP is a GELU one
    # (BloomMLP) whose config names none.
    act = _get(cfg, "hidden_act", "activation_function", "activation",
               default="gelu" if model_type in GELU_DEFAULT_MODEL_TYPES else "silu")
    if not isinstance(act, str):
        raise InputError(f"must be the name of an activation function, got {act!r}", source=source,
                         field="hidden_act")
    act = act.lower()
    gated = act not in GELU_ACTS or model_type in GEMMA_MODEL_TYPES
    intermediate = _mlp_width(cfg, model_type, hidden, source, opt_int)
    if model_type == "qwen":  # Qwen (v1): intermediate_size counts both branches (QWenMLP: intermediate_size // 2)
        intermediate //= 2
    vocab = need_int("vocab_size", "padded_vocab_size")  # padded_vocab_size: ChatGLM

    expert_names = ("num_local_experts", "n_routed_experts", "num_experts")
    experts = opt_int(*expert_names)
    stated = {n: cfg[n] for n in expert_names if cfg.get(n) is not None}
    if len(set(map(str, stated.values()))) > 1:
        raise InputError("the expert count is stated more than once and differently ("
                         + ", ".join(f"{n} {v!r}" for n, v in stated.items()) + "); keep the checkpoint's one",
                         source=source, field=next(iter(stated)))
    per_tok = opt_int("num_experts_per_tok", "experts_per_token", "moe_topk")
    if experts and not per_tok:
        raise InputError("missing for an MoE model (it has experts)", source=source, field="num_experts_per_tok")
    if per_tok and not experts:
        raise InputError("set but the config declares no experts (num_local_experts / n_routed_experts)",
                         source=source, field="num_experts_per_tok")
    if per_tok > experts:
        raise InputError(f"{per_tok} experts per token is more than the {experts} experts", source=source,
                         field="num_experts_per_tok")
    moe_inter = opt_int("moe_intermediate_size", default=0) or (intermediate if experts else 0)
    intermediate = opt_int("intermediate_size_mlp", default=0) or intermediate  # Llama 4's dense layers
    shared = opt_int("n_shared_experts", default=0)
    shared_inter = opt_int("shared_expert_intermediate_size", default=0)
    if (shared_inter or (experts and model_type in LLAMA4_MODEL_TYPES)) and not shared:
        shared = 1
    mlp_kinds = _mlp_kinds(cfg, layers, source, opt_int) if experts else ""

    kv_lora, sliding, sliding_layers = _attention_window(cfg, f, model_type, layers)
    return ModelSpec(
        name=name, layers=layers, hidden=hidden, heads=heads, kv_heads=kv_heads, head_dim=head_dim,
        intermediate=intermediate, vocab=vocab,
        tied_embeddings=opt_bool("tie_word_embeddings", default=model_type in TIED_DEFAULT_MODEL_TYPES), gated_mlp=gated,
        experts=experts, experts_per_token=per_tok, moe_intermediate=moe_inter,
        shared_experts=shared, shared_intermediate=shared_inter, mlp_kinds=mlp_kinds,
        kv_lora_rank=kv_lora, q_lora_rank=opt_int("q_lora_rank", default=0),
        qk_rope_head_dim=opt_int("qk_rope_head_dim", default=0),
        qk_nope_head_dim=opt_int("qk_nope_head_dim", default=0),
        v_head_dim=opt_int("v_head_dim", default=0) or head_dim,
        sliding_window=sliding, sliding_layers=sliding_layers,
        max_context=_max_context(cfg, source, opt_int),
        native_dtype=_native_dtype(cfg, source),
        source=_source_note(cfg, source),
    )


def _max_context(cfg: dict[str, Any], source: str, opt_int: Callable[..., int]) -> int:
    """The longest context the runtime serves, as vLLM derives it (``_get_and_verify_max_len``): the
    position embeddings' length, stretched by a RoPE scaling ``factor`` except for the types whose
    length is already the stretched one (llama3, longrope/su); YaRN stretches its
    ``original_max_position_embeddings``. Qwen2.5's YaRN factor 4 over 32,768 serves 131,072 tokens."""
    length = opt_int("max_position_embeddings", "n_positions", "seq_length", default=0)
    rs = cfg.get("rope_scaling")
    if not isinstance(rs, dict) or "gemma3" in str(cfg.get("model_type", "")):
        return length  # vLLM leaves Gemma 3's alone: its 131,072 positions are the stretched length
    kind = str(rs.get("rope_type", rs.get("type", ""))).lower()
    factor = rs.get("factor")
    if kind in ("", "default", "llama3", "longrope", "su", "mrope") or factor is None:
        return length
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 1 <= factor <= 1024:
        raise InputError(f"must be a number from 1 to 1024, got {factor!r}", source=source,
                         field="rope_scaling.factor")
    base = rs.get("original_max_position_embeddings", length) if kind == "yarn" else length
    if isinstance(base, bool) or not isinstance(base, int) or not 0 <= base <= PLAUSIBLE_MAX["max_position_embeddings"]:
        raise InputError(f"must be a whole number of tokens, got {base!r}", source=source,
                         field="rope_scaling.original_max_position_embeddings")
    return int(base * factor)


def _mlp_width(cfg: dict[str, Any], model_type: Any, hidden: int, source: str, opt_int: Callable[..., int]) -> int:
    """The dense MLP's width: the config's, else 4 x hidden where the model type's class defaults to that
    (``FOUR_X_MLP_MODEL_TYPES``; our catalog's trimmed configs, which carry no model type, too)."""
    names = ("intermediate_size", "n_inner", "ffn_hidden_size", "ffn_dim")  # ffn_dim: OPT
    given = _get(cfg, *names, default=None)
    width = opt_int(*names, default=0)
    if given is not None and width == 0:
        raise InputError("must be at least 1", source=source, field=next(n for n in names if n in cfg))
    if given is not None:
        return width
    if model_type == "mpt":  # MPTConfig: the MLP is expansion_ratio x d_model wide (default 4)
        return opt_int("expansion_ratio", default=4) * hidden
    if model_type is not None and model_type not in FOUR_X_MLP_MODEL_TYPES:
        raise InputError(f"missing; a {model_type!r} config must give its MLP width as one of "
                         f"{', '.join(names)} (only {', '.join(sorted(FOUR_X_MLP_MODEL_TYPES))} default it to "
                         "4 x hidden_size)", source=source, field=names[0])
    return 4 * hidden


def _attention_window(cfg: dict[str, Any], f: _Fields, model_type: Any, layers: int) -> tuple[int, int, int]:
    """``(kv_lora_rank, window, windowed layers)``: multi-head latent attention's rank (0 without
    MLA), and the sliding window or Llama 4's attention chunk with the number of layers using it."""
    source, opt_int, opt_bool = f.source, f.opt_int, f.opt_bool
    kv_lora = opt_int("kv_lora_rank", default=0)
    if kv_lora and model_type is not None and model_type not in MLA_MODEL_TYPES:
        raise InputError(f"multi-head latent attention is only in model types {', '.join(sorted(MLA_MODEL_TYPES))}; "
                         f"a {model_type!r} config with kv_lora_rank is inconsistent: remove it or fix model_type",
                         source=source, field="kv_lora_rank")
    if kv_lora:  # the latent attention's head widths: its KV cache and FLOPs are made of them
        for dim in ("qk_rope_head_dim", "qk_nope_head_dim", "v_head_dim"):
            f.need_int(dim)
    qwen = model_type in QWEN_WINDOW_MODEL_TYPES
    sliding = opt_int("sliding_window", default=0) if opt_bool("use_sliding_window", default=not qwen) else 0
    sliding_layers = _sliding_layers(cfg, layers, model_type, sliding, source, opt_int)
    if sliding_layers == 0:
        sliding = 0
    # Llama 4 chunks by default (Llama4TextConfig: 8192) unless the config sets the field to null.
    chunk = opt_int("attention_chunk_size", default=LLAMA4_DEFAULT_CHUNK
                    if model_type in LLAMA4_MODEL_TYPES and "attention_chunk_size" not in cfg else 0)
    if chunk and sliding:
        raise InputError("a model with both sliding-window and chunked attention layers is not modelled",
                         source=source, field="attention_chunk_size")
    if chunk:
        sliding_layers = _chunked_layers(cfg, layers, source, opt_int)
        sliding = chunk if sliding_layers else 0
    return kv_lora, sliding, sliding_layers


def _sliding_layers(cfg: dict[str, Any], layers: int, model_type: Any, sliding: int, source: str,
                    opt_int: Callable[..., int]) -> int:
    """How many layers attend over a sliding window: those ``layer_types`` names sliding; else all
    but every n-th layer with ``sliding_window_pattern`` n (or the model type's default n, as
    Gemma's configs leave it out); else every layer when ``sliding_window`` is set."""
    layer_types = _get(cfg, "layer_types", default=None)
    if isinstance(layer_types, list):
        if len(layer_types) != layers or not all(isinstance(t, str) for t in layer_types):
            raise InputError(f"must list one attention type (a string) per layer: {len(layer_types)} entries for "
                             f"{layers} layers (num_hidden_layers)", source=source, field="layer_types")
        return sum(1 for t in layer_types if "sliding" in t)
    if isinstance(layer_types, str) and "alternating" in layer_types:
        return layers // 2
    if not sliding:
        return 0
    if model_type in QWEN_WINDOW_MODEL_TYPES:
        return max(0, layers - opt_int("max_window_layers", default=28))  # Qwen2Config's default: 28
    pattern = opt_int("sliding_window_pattern", default=DEFAULT_SLIDING_PATTERN.get(model_type, 0))
    return layers - layers // pattern if pattern else layers


def _head_dim(cfg: dict[str, Any], hidden: int, heads: int, source: str, opt_int: Callable[..., int]) -> int:
    """``head_dim`` as given (a positive integer), or ``hidden_size / num_attention_heads`` when
    that divides exactly; never 0."""
    if _get(cfg, "head_dim") is not None:
        v = opt_int("head_dim")
        if v < 1:
            raise InputError(f"must be a positive integer, got {v}", source=source, field="head_dim")
        return v
    if hidden % heads:
        raise InputError(f"{hidden} is not a multiple of num_attention_heads ({heads}), so the head size is "
                         f"unknown; give head_dim", source=source, field="hidden_size")
    return hidden // heads


#: Config fields describing layer layouts the cost model does not price: (field, is it in use, why).
#: Read as a plain model, such a config would be planned as something else (attention layers with
#: a KV cache where there are none), so it is refused instead.
_UNPRICEABLE: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
    ("model_type", lambda v: isinstance(v, str) and v in STATE_SPACE_MODEL_TYPES,
     "state-space (Mamba) or linear-attention layers are not modelled: the cost model prices attention "
     "layers with a KV cache"),
    ("hybrid_override_pattern", lambda v: True,
     "Mamba layers mixed with attention layers (Nemotron-H) are not modelled"),
    ("layers_block_type", lambda v: True, "Mamba layers mixed with attention layers (Jamba) are not modelled"),
    ("attn_layer_period", lambda v: True, "Mamba layers mixed with attention layers (Jamba) are not modelled"),
    ("ssm_state_size", lambda v: True, "state-space (Mamba) layers are not modelled"),
    ("mamba_d_state", lambda v: True, "state-space (Mamba) layers are not modelled"),
    ("linear_num_value_heads", lambda v: True, "linear-attention layers (Qwen3-Next) are not modelled"),
    ("layer_types", lambda v: isinstance(v, list) and any(isinstance(t, str) and ("linear" in t or "mamba" in t)
                                                           for t in v),
     "linear-attention or Mamba layers are not modelled: the cost model prices attention layers with a KV cache"),
)


def _refuse_unpriceable(cfg: dict[str, Any], source: str) -> None:
    """Raise :class:`InputError` naming the first field whose architecture the cost model cannot price."""
    for field, in_use, why in _UNPRICEABLE:
        v = cfg.get(field)
        if v is not None and in_use(v):
            shown = repr(v) if len(repr(v)) <= 60 else repr(v)[:57] + "..."
            raise InputError(f"set to {shown}: {why}, so the model is refused rather than planned as something else",
                             source=source, field=field)


def _mlp_kinds(cfg: dict[str, Any], layers: int, source: str, opt_int: Callable[..., int]) -> str:
    """Which layers of an MoE model have routed experts (``ModelSpec.mlp_kinds``), as transformers
    and vLLM place them: the ``moe_layers`` list where given (Llama 4), else every layer ``i`` with
    ``(i + 1) % step == 0`` for ``interleave_moe_layer_step`` (Llama 4) or ``decoder_sparse_step``
    (Qwen MoE), and ``i % moe_layer_freq == 0`` (DeepSeek); minus the first
    ``first_k_dense_replace`` layers (DeepSeek) and the ``mlp_only_layers`` (Qwen MoE). At least
    one layer must keep its experts."""
    first_k = opt_int("first_k_dense_replace", default=0)
    if first_k >= layers:
        raise InputError(f"{first_k} dense layers leave none of the {layers} layers (num_hidden_layers) with experts",
                         source=source, field="first_k_dense_replace")
    mlp_only = _layer_list(cfg, "mlp_only_layers", layers, source)
    steps = {f: opt_int(f, default=1) for f in ("interleave_moe_layer_step", "decoder_sparse_step", "moe_layer_freq")}
    for f, step in steps.items():
        if step < 1:
            raise InputError(f"must be at least 1 (experts on every {step}-th layer), got {step}", source=source,
                             field=f)
    listed = _layer_list(cfg, "moe_layers", layers, source) if isinstance(_get(cfg, "moe_layers"), list) else None
    moe = [i for i in range(layers)
           if (i in listed if listed is not None else
               (i + 1) % steps["interleave_moe_layer_step"] == 0 and (i + 1) % steps["decoder_sparse_step"] == 0
               and i % steps["moe_layer_freq"] == 0)
           and i >= first_k and i not in mlp_only]
    if not moe:
        field = "mlp_only_layers" if mlp_only else "moe_layers" if listed is not None else \
            next((f for f, step in steps.items() if step > 1), "first_k_dense_replace")
        raise InputError(f"no layer is left with experts (num_hidden_layers is {layers})", source=source, field=field)
    return "".join(MOE_MLP if i in moe else DENSE_MLP for i in range(layers))


def _layer_list(cfg: dict[str, Any], field: str, layers: int, source: str) -> list[int]:
    """A config field listing distinct layer indices (``mlp_only_layers``, ``moe_layers``)."""
    value = _get(cfg, field, default=[])
    if not isinstance(value, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in value):
        raise InputError(f"must be a list of layer indices, got {value!r}"[:200], source=source, field=field)
    bad = [i for i in value if not 0 <= i < layers]
    if bad or len(set(value)) != len(value):
        what = f"layer {bad[0]} is not in 0..{layers - 1}" if bad else "a layer is listed twice"
        raise InputError(f"{what} (num_hidden_layers is {layers})", source=source, field=field)
    return value


def _chunked_layers(cfg: dict[str, Any], layers: int, source: str, opt_int: Callable[..., int]) -> int:
    """How many layers attend within chunks of ``attention_chunk_size`` tokens (Llama 4): those
    ``layer_types`` names chunked; else those with RoPE, a 1 in ``no_rope_layers``; else all but
    every ``no_rope_layer_interval``-th (default 4), the NoPE layers, which attend globally
    (transformers ``Llama4TextConfig``; vLLM ``Llama4Attention`` chunks exactly the RoPE layers).

    Priced as sliding-window layers of the chunk size (``ModelSpec.kv_tokens_stored``): a token
    of a chunked layer attends to the tokens of its own chunk, between 1 and the chunk size, so
    the window is the most such a layer keeps and reads (the runtime must hold it for a
    sequence's worst position): an upper bound on the average. Like sliding-window layers, they
    are taken as spread evenly over the stages of a pipeline, and their attention FLOPs are
    priced over the whole context, which is exact up to the chunk size (8,192 tokens for Llama
    4) and an over-estimate past it.
    """
    layer_types = _get(cfg, "layer_types", default=None)
    if isinstance(layer_types, list):  # its length is checked by _sliding_layers
        return sum(1 for t in layer_types if "chunk" in t)
    no_rope = _get(cfg, "no_rope_layers", default=[])
    if no_rope:  # an empty list means the default pattern (Llama4TextConfig)
        if not isinstance(no_rope, list) or len(no_rope) != layers or any(v not in (0, 1) or isinstance(v, bool)
                                                                           for v in no_rope):
            raise InputError(f"must list 0 (no RoPE, global attention) or 1 (RoPE, chunked) for each of the {layers} "
                             f"layers", source=source, field="no_rope_layers")
        return sum(no_rope)
    interval = opt_int("no_rope_layer_interval", default=4)
    if interval < 1:
        raise InputError(f"must be at least 1, got {interval}", source=source, field="no_rope_layer_interval")
    return layers - layers // interval


def _source_note(cfg: dict[str, Any], source: str) -> str:
    """Where the config came from: its own ``source`` note (built-ins cite theirs) or the file."""
    if "source" not in cfg:
        from topologies.errors import printable

        return printable(source)[:2000]
    note = cfg["source"]
    if not isinstance(note, str) or len(note) > 2000 or not note.isprintable():
        raise InputError("must be one line of printable text (at most 2,000 characters)", source=source,
                         field="source")
    return note


def warn_unknown_type(cfg: Any, ref: str) -> None:
    inner = cfg.get("text_config") if isinstance(cfg, dict) else None
    model_type = _get({**cfg, **inner} if isinstance(inner, dict) else cfg, "model_type")
    if model_type not in KNOWN_MODEL_TYPES:
        what = f"model_type {model_type!r} is not one" if model_type is not None else "no model_type; not one of those"
        warn(f"{ref}: {what} plan-search has checked its reading of ({', '.join(sorted(KNOWN_MODEL_TYPES))}); "
             f"planning with the standard fields, so check the parameter count in the plan")
