"""Mixtral (8x7B, 8x22B): Llama's attention with every MLP a mixture of experts (``block_sparse_moe``: the top 2 of
8, their softmax weights renormalised), a sliding window where its config sets one."""

from __future__ import annotations

from inference.models.llama import LlamaForCausalLM, LlamaModel
from inference.models.moe_block import MoEDecoderLayer, expert_name
from inference.models.moe_config import MixtralConfig


class MixtralModel(LlamaModel):
    layer_class = MoEDecoderLayer


class MixtralForCausalLM(LlamaForCausalLM):
    config_class = MixtralConfig
    model_class = MixtralModel
    checkpoint_name = staticmethod(expert_name)
