"""Activations by their HF config names, and the gated form the decoder MLPs use."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn


def sigmoid(x: torch.Tensor) -> torch.Tensor:
    """1 / (1 + exp(-x)), elementwise, each element's value the same wherever it lies in the tensor. (torch.sigmoid
    on the CPU computes a tail of the flat tensor on another path that rounds differently, on some CPUs: a token's
    gate would depend on how many tokens share its step. exp, add and the reciprocal do not.)"""
    return torch.reciprocal(1 + torch.exp(-x))


def quick_gelu(x: torch.Tensor) -> torch.Tensor:
    """HF "quick_gelu" (CLIP): x * sigmoid(1.702 x)."""
    return x * sigmoid(1.702 * x)


# HF `hidden_act` / `hidden_activation` names -> function. "gelu" is the exact (erf) GELU;
# "gelu_pytorch_tanh" and "gelu_new" are both the tanh approximation.
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "silu": F.silu,
    "swish": F.silu,
    "gelu": F.gelu,
    "gelu_pytorch_tanh": partial(F.gelu, approximate="tanh"),
    "gelu_new": partial(F.gelu, approximate="tanh"),
    "relu": F.relu,
    "quick_gelu": quick_gelu,
}


def get_activation(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"activation {name!r} is not supported (supported: {', '.join(ACTIVATIONS)})") from None


# gated activations with a fused Triton kernel (kernels/activation.py)
_KERNELS = {"silu": "silu_and_mul", "swish": "silu_and_mul", "gelu_pytorch_tanh": "gelu_tanh_and_mul",
            "gelu_new": "gelu_tanh_and_mul"}  # fmt: skip


# plain activations with a Triton kernel (kernels/activation.py): name -> (function, keyword arguments)
_PLAIN_KERNELS: dict[str, tuple[str, dict[str, str]]] = {
    "gelu": ("gelu", {}),
    "gelu_pytorch_tanh": ("gelu", {"approximate": "tanh"}),
    "gelu_new": ("gelu", {"approximate": "tanh"}),
    "quick_gelu": ("quick_gelu", {}),
}


class Activation(nn.Module):
    """Plain elementwise activation by its HF name, any shape (the CLIP vision tower's MLP). With ``kernels``
    set (CUDA), the Triton kernel where there is one for the activation."""

    kernels = False

    def __init__(self, name: str):
        super().__init__()
        self.name = name
        self.act = get_activation(name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernels and self.name in _PLAIN_KERNELS:
            from kernels import activation as fused

            fn, kwargs = _PLAIN_KERNELS[self.name]
            return getattr(fused, fn)(x, **kwargs)
        return self.act(x)

    def extra_repr(self) -> str:
        return self.name


class ActAndMul(Activation):
    """Gated activation over a fused gate/up projection: [T, 2I] -> act(gate) * up, [T, I]. With ``kernels``
    set (CUDA), one fused Triton kernel where there is one for the activation."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernels and self.name in _KERNELS:
            from kernels import activation as fused

            return getattr(fused, _KERNELS[self.name])(x)
        gate, up = x.chunk(2, dim=-1)
        return self.act(gate) * up
