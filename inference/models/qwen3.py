"""Qwen3 (dense): Llama's layers with RMSNorm over each head's q and k before the rotary (``q_norm`` /
``k_norm``, Llama's RMSNorm convention, as Gemma 3 applies its own), an explicit head_dim that may differ from
hidden / heads, optional biases on q/k/v and o (``attention_bias``) and Qwen2's optional sliding window."""

from __future__ import annotations

import torch
from torch import nn

from inference.layers.norm import RMSNorm
from inference.layers.rotary import Rope, apply_rope
from inference.models.config import Qwen3Config
from inference.models.llama import LlamaAttention, LlamaDecoderLayer, LlamaForCausalLM, LlamaMLP, LlamaModel


class Qwen3Attention(LlamaAttention):
    def __init__(self, config: Qwen3Config, layer_idx: int):
        super().__init__(config, layer_idx)
        self.q_norm = RMSNorm(self.head_dim, config.rms_norm_eps)
        self.k_norm = RMSNorm(self.head_dim, config.rms_norm_eps)

    def forward(self, x: torch.Tensor, rope: Rope) -> torch.Tensor:
        """x [T, hidden] -> [T, hidden]."""
        T = x.shape[0]
        q, k, v = self.qkv_proj.split(self.qkv_proj(x))
        q = self.q_norm(q.view(T, self.num_heads, self.head_dim))  # per head [T, H, D]: norm, then rotate
        k = self.k_norm(k.view(T, self.num_kv_heads, self.head_dim))
        q, k = apply_rope(q, k, rope)
        return self.o_proj(self.attn(q.reshape(T, -1), k.reshape(T, -1), v))


class Qwen3DecoderLayer(LlamaDecoderLayer):
    def __init__(self, config: Qwen3Config, layer_idx: int):
        nn.Module.__init__(self)  # Llama's layer with Qwen3's attention, built once
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = Qwen3Attention(config, layer_idx)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = LlamaMLP(config.hidden_size, config.intermediate_size, config.hidden_act, config.mlp_bias)


class Qwen3Model(LlamaModel):
    layer_class = Qwen3DecoderLayer


class Qwen3ForCausalLM(LlamaForCausalLM):
    """Llama's interface and weight names, plus ``self_attn.q_norm`` / ``self_attn.k_norm``."""

    config_class = Qwen3Config
    model_class = Qwen3Model
