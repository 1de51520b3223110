"""Mistral: Llama's layers, with a sliding window on every layer when its config sets one."""

from __future__ import annotations

from inference.models.config import MistralConfig
from inference.models.llama import LlamaForCausalLM


class MistralForCausalLM(LlamaForCausalLM):
    config_class = MistralConfig
