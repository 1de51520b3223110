"""Qwen2-MoE (Qwen1.5-MoE-A2.7B, Qwen2-57B-A14B): Qwen2's attention (q/k/v biases); each sparse layer's MLP the
top k of its experts plus a shared expert scaled by a sigmoid gate; layers in ``mlp_only_layers`` (or off the
``decoder_sparse_step``) dense."""

from __future__ import annotations

from inference.models.llama import LlamaForCausalLM, LlamaModel
from inference.models.moe_block import MoEDecoderLayer, expert_name
from inference.models.moe_config import Qwen2MoeConfig


class Qwen2MoeModel(LlamaModel):
    layer_class = MoEDecoderLayer


class Qwen2MoeForCausalLM(LlamaForCausalLM):
    config_class = Qwen2MoeConfig
    model_class = Qwen2MoeModel
    checkpoint_name = staticmethod(expert_name)
