"""Qwen3-MoE (Qwen3-30B-A3B, Qwen3-235B-A22B): Qwen3's attention (QK-norm, explicit head_dim) with sparse MLPs
(the top k of its experts, renormalised when ``norm_topk_prob``), no shared expert."""

from __future__ import annotations

from inference.models.llama import LlamaForCausalLM, LlamaModel
from inference.models.moe_block import MoEDecoderLayer, expert_name
from inference.models.moe_config import Qwen3MoeConfig
from inference.models.qwen3 import Qwen3Attention


class Qwen3MoeDecoderLayer(MoEDecoderLayer):
    attention_class = Qwen3Attention


class Qwen3MoeModel(LlamaModel):
    layer_class = Qwen3MoeDecoderLayer


class Qwen3MoeForCausalLM(LlamaForCausalLM):
    config_class = Qwen3MoeConfig
    model_class = Qwen3MoeModel
    checkpoint_name = staticmethod(expert_name)
