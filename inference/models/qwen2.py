"""Qwen2 / Qwen2.5: Llama with biases on the q/k/v projections (set by ``Qwen2Config``) and an optional
sliding window on the upper layers (``use_sliding_window``, off in released checkpoints)."""

from __future__ import annotations

from inference.models.config import Qwen2Config
from inference.models.llama import LlamaForCausalLM


class Qwen2ForCausalLM(LlamaForCausalLM):
    config_class = Qwen2Config
