"""Llama (2, 3, 3.1+ and compatible checkpoints such as SmolLM2): RMSNorm, rotary, SiLU-gated MLP, GQA.

Runs a flat batch of T tokens (see ``inference.layers.context``); only ``Attention`` reads the context.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from inference.layers.activation import ActAndMul
from inference.layers.attention import Attention
from inference.layers.linear import MergedLinear, load_hf_weights
from inference.layers.norm import RMSNorm
from inference.layers.rotary import Rope, RotaryEmbedding, apply_rope
from inference.models.config import DecoderConfig, LlamaConfig

# HF projections that live inside our fused ones
PACKED_MODULES = {
    "q_proj": ("qkv_proj", "q"),
    "k_proj": ("qkv_proj", "k"),
    "v_proj": ("qkv_proj", "v"),
    "gate_proj": ("gate_up_proj", "gate"),
    "up_proj": ("gate_up_proj", "up"),
}
# buffers some checkpoints carry that are not parameters here
_NON_PARAMETERS = ("rotary_emb.inv_freq", "rotary_emb.cos_cached", "rotary_emb.sin_cached")


class LlamaAttention(nn.Module):
    def __init__(self, config: DecoderConfig, layer_idx: int):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.head_dim = config.head_dim
        q_size, kv_size = self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        self.qkv_proj = MergedLinear(config.hidden_size, {"q": q_size, "k": kv_size, "v": kv_size}, config.qkv_bias)
        self.o_proj = nn.Linear(q_size, config.hidden_size, bias=config.o_bias)
        self.attn = Attention(
            self.num_heads,
            self.num_kv_heads,
            self.head_dim,
            scale=self.head_dim**-0.5,
            sliding_window=config.sliding_windows[layer_idx],
        )

    def forward(self, x: torch.Tensor, rope: Rope) -> torch.Tensor:
        """x [T, hidden] -> [T, hidden]."""
        T = x.shape[0]
        q, k, v = self.qkv_proj.split(self.qkv_proj(x))
        q, k = apply_rope(q.view(T, self.num_heads, self.head_dim), k.view(T, self.num_kv_heads, self.head_dim), rope)
        return self.o_proj(self.attn(q.reshape(T, -1), k.reshape(T, -1), v))


class LlamaMLP(nn.Module):
    """down(act(gate(x)) * up(x)) with gate and up fused into one projection."""

    def __init__(self, hidden_size: int, intermediate_size: int, hidden_act: str, bias: bool = False):
        super().__init__()
        self.gate_up_proj = MergedLinear(hidden_size, {"gate": intermediate_size, "up": intermediate_size}, bias)
        self.act = ActAndMul(hidden_act)
        self.down_proj = nn.Linear(intermediate_size, hidden_size, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act(self.gate_up_proj(x)))


class LlamaDecoderLayer(nn.Module):
    def __init__(self, config: DecoderConfig, layer_idx: int):
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = LlamaAttention(config, layer_idx)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = LlamaMLP(config.hidden_size, config.intermediate_size, config.hidden_act, config.mlp_bias)

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None, rope: Rope) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, residual) -> (this layer's output, the residual stream before it is added). The add is fused
        into the next norm: x + residual is formed by the norm that reads it."""
        if residual is None:
            residual, x = x, self.input_layernorm(x)
        else:
            x, residual = self.input_layernorm(x, residual)
        x = self.self_attn(x, rope)
        x, residual = self.post_attention_layernorm(x, residual)
        return self.mlp(x), residual


class LlamaModel(nn.Module):
    layer_class: type[nn.Module] = LlamaDecoderLayer  # (config, layer_idx) -> a layer; the families' own

    def __init__(self, config: DecoderConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(self.layer_class(config, i) for i in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.rotary_emb = RotaryEmbedding(config.head_dim, config.rope)

    def forward(
        self, input_ids: torch.Tensor, positions: torch.Tensor, inputs_embeds: torch.Tensor | None = None
    ) -> torch.Tensor:
        x = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        rope = self.rotary_emb(positions, x.dtype)
        residual = None
        for layer in self.layers:
            x, residual = layer(x, residual, rope)
        return self.norm(x, residual)[0]


class LlamaForCausalLM(nn.Module):
    """The engine's interface: forward -> hidden, compute_logits, load_weights, attention_layers, config."""

    config_class: type[DecoderConfig] = LlamaConfig
    model_class: type[nn.Module] = LlamaModel
    packed_modules = PACKED_MODULES
    # a checkpoint name -> ours, or (our parameter, its shard): the mixture-of-experts families' experts
    checkpoint_name: Callable[[str], str | tuple[str, str]] | None = None

    def __init__(self, config: DecoderConfig):
        super().__init__()
        self.config = config
        self.model = self.model_class(config)
        # tied: the logits reuse the embedding matrix, there is no lm_head parameter at all
        self.lm_head = None if config.tie_word_embeddings else nn.Linear(config.hidden_size, config.vocab_size, False)

    def forward(
        self, input_ids: torch.Tensor, positions: torch.Tensor, inputs_embeds: torch.Tensor | None = None
    ) -> torch.Tensor:
        """input_ids, positions: [T] (flat batch, absolute positions) -> final hidden states [T, hidden].
        ``inputs_embeds`` [T, hidden]: the input vectors instead of the ids' embeddings (images in LLaVA)."""
        return self.model(input_ids, positions, inputs_embeds)

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden [N, hidden] -> float32 logits [N, vocab]."""
        if self.lm_head is None:  # tied
            return F.linear(hidden, self.model.embed_tokens.weight).float()
        return self.lm_head(hidden).float()

    def attention_layers(self) -> list[Attention]:
        return [layer.self_attn.attn for layer in self.model.layers]

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        tied = self.lm_head is None

        def skip(name: str) -> bool:
            # tied checkpoints may still carry a copy of the embedding as lm_head.weight
            return name.endswith(_NON_PARAMETERS) or (tied and name == "lm_head.weight")

        load_hf_weights(self, weights, self.packed_modules, skip=skip, rename=self.checkpoint_name)
