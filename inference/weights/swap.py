"""Replacing a loaded model's layers for the CPU, in place: what ``quantize.quantize`` and
``unquantized.keep_float`` share (which layers, a fused projection's ``split``, a tied head's embedding)."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from inference.layers.moe import FusedMoE


def swap_layers(model: nn.Module, linear: Callable[[nn.Linear], nn.Module],
                experts: Callable[[FusedMoE], nn.Module]) -> None:  # fmt: skip
    """Every nn.Linear the model calls becomes ``linear(it)`` (a fused one's replacement keeps its ``split``), then
    every mixture of experts' stacks ``experts(it)``."""
    dense_only = getattr(model, "dense_only", ())  # read as matrices, never called (DeepSeek's kv_b_proj)
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.Linear) and name not in dense_only:
                replacement = linear(child)
                if hasattr(child, "split"):  # MergedLinear: keep how to split its output
                    replacement.split = child.split
                setattr(module, name, replacement)
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, FusedMoE):
                setattr(module, name, experts(child))


def tied_embedding(model: nn.Module) -> nn.Embedding | None:
    """The token embeddings a tied model's logits reuse (its ``lm_head`` is None until one is set: compute_logits
    uses it once it is); None for a model with a head of its own."""
    if getattr(model, "lm_head", "absent") is not None:
        return None
    return getattr(model, "tied_embeddings", None) or getattr(getattr(model, "model", None), "embed_tokens", None)
