"""A mixture of experts' stacks quantized for the CPU, as ``quantize`` does every Linear.

``FusedMoE``'s torch path multiplies each expert's rows by its float weights: a float32 GEMM whose rounding
depends on how many rows it has, so a token's answer would depend on which other tokens chose the same expert,
and decode would read float32 experts. ``QuantizedExperts`` gives every expert's gate/up [2I, H] and down [H, I]
their own ``QuantizedLinear`` (the model's mode: int4 where lossless, int4x2 elsewhere under ``auto``) and sends
each (token, expert) row through it by the row's role, as the dense layers do: prompt rows on the bf16 prefill
copy, generated rows on the int kernels, both bit for bit the same for a row whatever the row count. The pairs
are grouped by expert (one call per expert with tokens, no per-token loop) and a token's k rows summed in float32
in the router's order, as ``reference.fused_moe`` does. Under ``quantize = "none"`` the experts are
``FloatLinear``s of the float weights (``unquantized.keep_float``): every row alike, whatever the count.
"""

from __future__ import annotations

import torch
from torch import nn

from inference.layers.context import current_context
from inference.layers.moe import FusedMoE
from inference.weights.quantize import QuantizedLinear, quantized_linear
from inference.weights.unquantized import FloatLinear
from kernels.reference import gelu_tanh_and_mul, silu_and_mul


def _roles(rows: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """A bool mask [n] of generated rows → (prompt row indices, generated row indices), None where empty."""
    prompt, generated = (~rows).nonzero().squeeze(1), rows.nonzero().squeeze(1)
    return (prompt if prompt.numel() else None), (generated if generated.numel() else None)


class QuantizedExperts(nn.Module):
    """forward(x [T, H], weights [T, k], ids [T, k]) → [T, H], as ``FusedMoE``, on quantized experts."""

    def __init__(self, moe: FusedMoE, mode: str, group_size: int, bf16_prefill: bool = True):
        super().__init__()
        self.num_experts, self.intermediate_size, self.activation = (
            moe.num_experts,
            moe.intermediate_size,
            moe.activation,
        )
        if mode == "none":  # float experts, every row alike whatever the count (``unquantized.keep_float``)
            self.w13 = nn.ModuleList(FloatLinear(w, None) for w in moe.w13_weight.detach())
            self.w2 = nn.ModuleList(FloatLinear(w, None) for w in moe.w2_weight.detach())
            return
        self.w13 = nn.ModuleList(quantized_linear(w, None, mode, group_size) for w in moe.w13_weight.detach())
        self.w2 = nn.ModuleList(quantized_linear(w, None, mode, group_size) for w in moe.w2_weight.detach())
        if bf16_prefill:
            for layer in (*self.w13, *self.w2):
                layer.use_bf16_prefill()

    @staticmethod
    def _apply(layer: QuantizedLinear | FloatLinear, x: torch.Tensor, generated: torch.Tensor | None) -> torch.Tensor:
        if generated is None:  # outside the engine's steps (tests): by row count, as the dense layers
            return layer.by_rows(x)
        return layer.by_role(x, *_roles(generated))

    def forward(self, x: torch.Tensor, weights: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        T, k = ids.shape
        ctx = current_context()
        generated = None  # [T] bool: the rows a step generates (the rest are prompt rows)
        if ctx is not None and ctx.prompt_lens is not None and T == ctx.num_tokens:
            generated = torch.zeros(T, dtype=torch.bool)
            gen_rows = ctx.row_roles()[1]
            if gen_rows is not None:
                generated[gen_rows] = True
        act = gelu_tanh_and_mul if self.activation == "gelu_tanh" else silu_and_mul
        flat = ids.reshape(-1)
        order = torch.argsort(flat, stable=True)  # pair indices t*k + j grouped by expert
        counts = torch.bincount(flat, minlength=self.num_experts).tolist()
        scale = weights.reshape(-1).float()
        rows = torch.zeros(T * k, x.shape[1], dtype=torch.float32)
        start = 0
        for expert, count in enumerate(counts):
            if count:
                pairs = order[start : start + count]
                tokens = pairs // k
                roles = None if generated is None else generated[tokens]
                hidden = act(self._apply(self.w13[expert], x[tokens], roles))  # [n, I]
                rows[pairs] = self._apply(self.w2[expert], hidden, roles).float() * scale[pairs, None]
                start += count
        return rows.view(T, k, -1).sum(dim=1).to(x.dtype)

    def extra_repr(self) -> str:
        return f"num_experts={self.num_experts}, intermediate_size={self.intermediate_size}"
