"""A model architecture as the cost models see it: a small frozen description
(:class:`ModelSpec`) of its layers, attention, MLPs and experts, with the weight, KV-cache and
FLOP counts they imply. :mod:`costmodels.hf_config` builds one from an HF ``config.json``;
:mod:`costmodels.models` is the catalog of built-in models.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

_warned: set[str] = set()

#: One letter per layer in :attr:`ModelSpec.mlp_kinds`.
MOE_MLP, DENSE_MLP = "M", "D"


def warn(message: str) -> None:
    """Print ``plan-search: warning: message`` on stderr, once per message per process.

    For what a config does not say clearly enough to refuse (an unknown ``model_type``): the
    plan is still made, and the user learns why it may be off.
    """
    import sys

    from topologies.errors import printable

    if message not in _warned:
        _warned.add(message)
        print(f"plan-search: warning: {printable(message)}", file=sys.stderr)


@dataclass(frozen=True)
class ModelSpec:
    """One decoder-only transformer. Counts are per model, not per GPU."""

    name: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int  # dense MLP width
    vocab: int
    tied_embeddings: bool = False
    gated_mlp: bool = True  # SwiGLU (3 matrices) vs GELU MLP (2 matrices)
    # Mixture of experts
    experts: int = 0
    experts_per_token: int = 0
    moe_intermediate: int = 0
    shared_experts: int = 0
    shared_intermediate: int = 0
    # The MLP of each layer, one letter per layer: "M" routed experts (plus any shared ones),
    # "D" a dense MLP of ``intermediate``. Empty: every layer "M" in an MoE model, "D" otherwise.
    mlp_kinds: str = ""
    # Multi-head latent attention
    kv_lora_rank: int = 0
    q_lora_rank: int = 0
    qk_rope_head_dim: int = 0
    qk_nope_head_dim: int = 0
    v_head_dim: int = 0
    # Sliding-window attention, and chunked local attention priced as one (Llama 4: the window
    # is the chunk size, the layers the chunked ones)
    sliding_window: int = 0
    sliding_layers: int = 0
    max_context: int = 0
    native_dtype: str = "bf16"  # the dtype the published checkpoint's weights ship in
    source: str = ""

    def __post_init__(self) -> None:
        """Fill in the default :attr:`mlp_kinds` and check it agrees with the layer count and experts."""
        if not self.mlp_kinds:
            object.__setattr__(self, "mlp_kinds", (MOE_MLP if self.experts else DENSE_MLP) * self.layers)
        kinds = self.mlp_kinds
        if len(kinds) != self.layers or set(kinds) - {MOE_MLP, DENSE_MLP} or (MOE_MLP in kinds) != (self.experts > 0):
            raise ValueError(f"mlp_kinds {kinds!r} must give one of {MOE_MLP!r}/{DENSE_MLP!r} per layer "
                             f"({self.layers}), with {MOE_MLP!r} present exactly when the model has experts")

    @property
    def is_moe(self) -> bool:
        return self.experts > 0

    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank > 0

    @property
    def moe_layers(self) -> int:
        """Layers with routed experts (0 for a dense model)."""
        return self.mlp_kinds.count(MOE_MLP)

    @property
    def dense_layers(self) -> int:
        """Layers of an MoE model with a dense MLP instead of experts, wherever they are (0 for a
        dense model, whose layers are all dense)."""
        return self.layers - self.moe_layers if self.is_moe else 0

    def is_moe_layer(self, layer: int) -> bool:
        """Whether ``layer`` has routed experts. A layer past the last (no model has one; kept
        for ranges callers extend) is of the last layer's kind."""
        return self.mlp_kinds[min(layer, self.layers - 1)] == MOE_MLP

    def moe_layers_in(self, start: int, count: int) -> int:
        """How many of the layers ``start .. start+count-1`` have routed experts."""
        end = start + count
        inside = self.mlp_kinds.count(MOE_MLP, start, min(end, self.layers))
        past = max(0, end - max(start, self.layers))
        return inside + (past if self.is_moe_layer(self.layers - 1) else 0)

    @property
    def attention_kind(self) -> str:
        if self.is_mla:
            return "MLA"
        if self.kv_heads == 1:
            return "MQA"
        return "MHA" if self.kv_heads == self.heads else "GQA"

    # -- parameter counts --------------------------------------------------------------
    def attention_params_per_layer(self) -> int:
        h = self.hidden
        if self.is_mla:
            qk_dim = self.qk_nope_head_dim + self.qk_rope_head_dim
            q = (h * self.q_lora_rank + self.q_lora_rank * self.heads * qk_dim) if self.q_lora_rank \
                else h * self.heads * qk_dim
            kv = h * (self.kv_lora_rank + self.qk_rope_head_dim) \
                + self.kv_lora_rank * self.heads * (self.qk_nope_head_dim + self.v_head_dim)
            o = self.heads * self.v_head_dim * h
            return q + kv + o
        return h * self.heads * self.head_dim * 2 + h * self.kv_heads * self.head_dim * 2

    def _mlp(self, width: int) -> int:
        return (3 if self.gated_mlp else 2) * self.hidden * width

    def dense_mlp_params(self) -> int:
        return self._mlp(self.intermediate)

    def expert_params(self) -> int:
        """Parameters of one routed expert."""
        return self._mlp(self.moe_intermediate)

    def shared_expert_params(self) -> int:
        return self.shared_experts * self._mlp(self.shared_intermediate or self.moe_intermediate)

    def layer_params(self, layer: int, *, active: bool = False) -> int:
        """Parameters of one decoder layer (``active``: only the experts a token uses)."""
        norms = 2 * self.hidden
        if self.is_moe_layer(layer):
            n = self.experts_per_token if active else self.experts
            mlp = n * self.expert_params() + self.shared_expert_params() + self.hidden * self.experts
        else:
            mlp = self.dense_mlp_params()
        return self.attention_params_per_layer() + mlp + norms

    def routed_expert_params(self, layer: int) -> int:
        """Parameters of the routed experts of one layer (0 for a dense layer): the part of
        :meth:`layer_params` that expert parallelism spreads over its ranks."""
        return self.experts * self.expert_params() if self.is_moe_layer(layer) else 0

    def embedding_params(self) -> int:
        return self.vocab * self.hidden

    def lm_head_params(self) -> int:
        return 0 if self.tied_embeddings else self.vocab * self.hidden

    def total_params(self) -> int:
        """Resident parameters (all experts).

        >>> from costmodels.models import get_model
        >>> get_model("llama-3.1-70b").total_params() // 10**8
        705
        """
        return (self.embedding_params() + self.lm_head_params() + self.hidden
                + sum(self.layer_params(i) for i in range(self.layers)))

    def active_params(self) -> int:
        """Parameters one token touches (routed experts: only ``experts_per_token``)."""
        return (self.embedding_params() + self.lm_head_params() + self.hidden
                + sum(self.layer_params(i, active=True) for i in range(self.layers)))

    # -- KV cache -----------------------------------------------------------------------
    def kv_elements_per_token_per_layer(self, tp: int) -> int:
        """K and V elements one token stores in one layer on one GPU of a TP group.

        GQA/MQA: KV heads are split across TP ranks and replicated once ``tp`` exceeds
        them. MLA: one compressed latent (``kv_lora_rank + qk_rope_head_dim``), the same
        on every TP rank (replicated, not split).
        """
        if self.is_mla:
            return self.kv_lora_rank + self.qk_rope_head_dim
        heads_per_gpu = max(self.kv_heads // tp, 1) if self.kv_heads % tp == 0 or tp % self.kv_heads == 0 \
            else -(-self.kv_heads // tp)
        return 2 * heads_per_gpu * self.head_dim

    def kv_tokens_stored(self, context: int, layers: int) -> float:
        """Token-layers of KV kept for one sequence of ``context`` tokens over ``layers`` layers.

        Sliding-window layers keep at most ``sliding_window`` tokens (chunked-attention layers
        at most a chunk: :func:`costmodels.hf_config._chunked_layers`); they are spread evenly over the model, so a
        stage of ``layers`` layers has its share of them.
        """
        if not self.sliding_window or not self.sliding_layers:
            return float(context * layers)
        sw_share = self.sliding_layers / self.layers
        return layers * ((1 - sw_share) * context + sw_share * min(context, self.sliding_window))


_LABEL_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


def model_label(name: str) -> str:
    """A model name as plans carry it: ``[A-Za-z0-9._-]``, starting with a letter or digit, at
    most 128 characters. Names come from folder names (``/models/My Model/config.json``); other
    characters become ``-``, so a path cannot put shell or YAML syntax into a plan."""
    label = _LABEL_CHARS.sub("-", name).lstrip("-._")[:128].rstrip("-._")
    return label or "model"
