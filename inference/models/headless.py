"""Decoder embedding checkpoints (Qwen3-Embedding): a causal LM's body without its output head, as HF's
``Qwen2Model`` / ``Qwen3Model`` (and sentence-transformers) save it: weight names without the ``model.`` prefix and
no ``lm_head``. The embedding engine runs its causal forward and pools the last token."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import torch
from torch import nn

from inference.models.pooling import Pooling
from inference.models.qwen2 import Qwen2ForCausalLM
from inference.models.qwen3 import Qwen3ForCausalLM


def headless(cls: type[nn.Module], name: str) -> type[nn.Module]:
    """``cls`` (a ``LlamaForCausalLM``-style model) built without an lm_head, loading body-only weight names."""

    class Headless(cls):
        default_pooling = Pooling("lasttoken", normalize=True)  # Qwen3-Embedding's card

        def __init__(self, config):
            super().__init__(dataclasses.replace(config, tie_word_embeddings=True))  # tied: no lm_head parameter

        def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
            raise TypeError(f"{name} is an embedding checkpoint without an output head: it has no logits")

        def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
            super().load_weights((n if n.startswith(("model.", "lm_head.")) else f"model.{n}", t) for n, t in weights)

    Headless.__name__ = Headless.__qualname__ = name  # picklable by name (the prepared-weights cache)
    return Headless


Qwen2Model = headless(Qwen2ForCausalLM, "Qwen2Model")
Qwen3Model = headless(Qwen3ForCausalLM, "Qwen3Model")
