"""Float weights whose rows do not depend on how many share the call: ``quantize = "none"`` on the CPU.

A quantized model's layers are batch invariant by role (``QuantizedLinear.by_role``). Unquantized, every Linear was
a plain ``F.linear``: MKL's sgemm rounds rows 1 to 11 of a small product differently from the same rows of a big one,
so a prompt's logprobs followed what shared its step (no prompt of eight kept its logprobs bit for bit in
``benchmarks/bench_quality.py``), and a near-tie could flip a token. ``FloatLinear`` multiplies every row the way the
quantized models' fp32 prefill does (``row_blocks.float_linear``: one call of at least 16 rows where a check of the
layer's shape finds that keeps a row's bits, else fixed blocks of 128; bf16 weights in ``linear_in_blocks``), so a
row's bits are the same alone, beside others, or in a chunk of any size. ``keep_float`` swaps a model's Linears
(and a tied head, and a mixture of experts' stacks) for them; the weights are the same tensors, nothing is copied.
"""

from __future__ import annotations

import torch
from torch import nn

from inference.weights.row_blocks import float_linear, linear_in_blocks, one_call_holds
from inference.weights.swap import swap_layers, tied_embedding


class FloatLinear(nn.Module):
    """``F.linear`` over [..., in] -> [..., out] with each row's bits independent of the row count."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        # plain attributes, as QuantizedLinear's (never moved or saved apart from the module): the model's own tensors
        self.weight = weight.detach()
        self.bias = None if bias is None else bias.detach()
        self.out_features, self.in_features = weight.shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2:  # the models pass flat [T, hidden]; Whisper's decoder [B, T, hidden]
            return self(x.reshape(-1, x.shape[-1])).reshape(*x.shape[:-1], self.out_features)
        x = x.to(self.weight.dtype)
        out = float_linear(x, self.weight) if x.dtype == torch.float32 else linear_in_blocks(x, self.weight)
        return out if self.bias is None else torch.add(self.bias, out)

    # ``QuantizedExperts`` sends its rows by role or by count; here every row is computed alike either way
    def by_rows(self, x: torch.Tensor) -> torch.Tensor:
        return self(x)

    def by_role(self, x: torch.Tensor, prompt: torch.Tensor | None, generated: torch.Tensor | None) -> torch.Tensor:
        return self(x)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def keep_float(model: nn.Module) -> nn.Module:
    """Replace every nn.Linear (fused ones keep their ``split``) by a ``FloatLinear`` on the same weights, give a tied
    model a ``FloatLinear`` head on its embedding matrix, and a mixture of experts' stacks ``QuantizedExperts`` of
    ``FloatLinear`` experts (see ``quantize.quantize``, which does the same for the quantized modes). In place."""
    from inference.weights.quantize_moe import QuantizedExperts

    embed = tied_embedding(model)
    swap_layers(
        model, lambda child: FloatLinear(child.weight, child.bias), lambda moe: QuantizedExperts(moe, "none", 0)
    )
    if embed is not None:
        model.lm_head = FloatLinear(embed.weight, None)
    return model


def check_rows(model: nn.Module) -> None:
    """Make the row-count check of every ``FloatLinear``'s fp32 shape (``row_blocks.one_call_holds``) now, at load,
    rather than in the first request that reaches it: it runs ~40 products of the layer's shape, 13 ms for
    SmolLM2's 960 x 576 projection but 1.0 s for its 49,152 x 576 head and 6.7 s for Gemma 3's 262,144 x 640 one."""
    for module in model.modules():
        if isinstance(module, FloatLinear) and module.weight.dtype == torch.float32:
            one_call_holds(module.weight)
