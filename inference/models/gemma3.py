"""Gemma 3, text only (transformers' ``Gemma3ForCausalLM``).

Differences from Llama: per-layer sliding / full attention with two RoPE bases (local 10k, global 1M,
the global one possibly scaled), RMSNorm on q and k per head, zero-centred float32 RMSNorms around both
the attention and the MLP (4 per layer), GELU-tanh gated MLP, embeddings scaled by sqrt(hidden_size),
attention scale ``query_pre_attn_scalar ** -0.5``, and optional final logit softcapping.
"""

from __future__ import annotations

import torch
from torch import nn

from inference.layers.attention import Attention
from inference.layers.linear import MergedLinear
from inference.layers.norm import GemmaRMSNorm
from inference.layers.rotary import Rope, RotaryEmbedding, apply_rope
from inference.models.config import Gemma3TextConfig
from inference.models.llama import LlamaForCausalLM, LlamaMLP


class Gemma3Attention(nn.Module):
    def __init__(self, config: Gemma3TextConfig, layer_idx: int):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.head_dim = config.head_dim
        q_size, kv_size = self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        self.qkv_proj = MergedLinear(config.hidden_size, {"q": q_size, "k": kv_size, "v": kv_size}, config.qkv_bias)
        self.o_proj = nn.Linear(q_size, config.hidden_size, bias=config.o_bias)
        self.q_norm = GemmaRMSNorm(self.head_dim, config.rms_norm_eps)
        self.k_norm = GemmaRMSNorm(self.head_dim, config.rms_norm_eps)
        self.attn = Attention(
            self.num_heads,
            self.num_kv_heads,
            self.head_dim,
            scale=config.query_pre_attn_scalar**-0.5,
            sliding_window=config.sliding_windows[layer_idx],
        )

    def forward(self, x: torch.Tensor, rope: Rope) -> torch.Tensor:
        """x [T, hidden], the rope of this layer's base -> [T, hidden]."""
        T = x.shape[0]
        q, k, v = self.qkv_proj.split(self.qkv_proj(x))
        q = self.q_norm(q.view(T, self.num_heads, self.head_dim))  # norm, then rotate
        k = self.k_norm(k.view(T, self.num_kv_heads, self.head_dim))
        q, k = apply_rope(q, k, rope)
        return self.o_proj(self.attn(q.reshape(T, -1), k.reshape(T, -1), v))


class Gemma3DecoderLayer(nn.Module):
    def __init__(self, config: Gemma3TextConfig, layer_idx: int):
        super().__init__()
        self.layer_type = config.layer_types[layer_idx]
        eps = config.rms_norm_eps
        self.input_layernorm = GemmaRMSNorm(config.hidden_size, eps)
        self.self_attn = Gemma3Attention(config, layer_idx)
        self.post_attention_layernorm = GemmaRMSNorm(config.hidden_size, eps)
        self.pre_feedforward_layernorm = GemmaRMSNorm(config.hidden_size, eps)
        self.mlp = LlamaMLP(config.hidden_size, config.intermediate_size, config.hidden_act)
        self.post_feedforward_layernorm = GemmaRMSNorm(config.hidden_size, eps)

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None, rope: Rope) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, residual) -> (this layer's output, the residual stream before it is added), as Llama's; the
        sandwich norms around attention and MLP normalise the sublayer outputs before they are added."""
        if residual is None:
            residual, x = x, self.input_layernorm(x)
        else:
            x, residual = self.input_layernorm(x, residual)
        x = self.post_attention_layernorm(self.self_attn(x, rope))
        x, residual = self.pre_feedforward_layernorm(x, residual)
        return self.post_feedforward_layernorm(self.mlp(x)), residual


class Gemma3TextModel(nn.Module):
    def __init__(self, config: Gemma3TextConfig):
        super().__init__()
        self.embed_scale = config.hidden_size**0.5
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(Gemma3DecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = GemmaRMSNorm(config.hidden_size, config.rms_norm_eps)
        self.rotary_emb = RotaryEmbedding(config.head_dim, config.rope)  # full-attention layers
        self.rotary_emb_local = RotaryEmbedding(config.head_dim, config.rope_local)  # sliding layers

    def forward(
        self, input_ids: torch.Tensor, positions: torch.Tensor, inputs_embeds: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``inputs_embeds``: token embeddings (unscaled) given instead of looked up."""
        x = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        # the scale is rounded to the weight dtype first, as HF does (sqrt(640) is 25.25 in bf16)
        x = x * torch.tensor(self.embed_scale, dtype=x.dtype)
        rope = {
            "full_attention": self.rotary_emb(positions, x.dtype),
            "sliding_attention": self.rotary_emb_local(positions, x.dtype),
        }
        residual = None
        for layer in self.layers:
            x, residual = layer(x, residual, rope[layer.layer_type])
        return self.norm(x, residual)[0]


class Gemma3ForCausalLM(LlamaForCausalLM):
    """Same interface and weight names as Llama's (q/k/v and gate/up fused the same way)."""

    config_class = Gemma3TextConfig
    model_class = Gemma3TextModel

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = super().compute_logits(hidden)
        cap = self.config.final_logit_softcapping
        return logits if cap is None else torch.tanh(logits / cap) * cap
