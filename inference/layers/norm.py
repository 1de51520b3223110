"""RMSNorm in its two HF flavours, with the residual add of a pre-norm decoder layer fused in, and BERT's
LayerNorm.

The torch path goes through ``F.rms_norm`` (one op where the textbook form takes six: ~12 us against ~27 us
per call on the CPU, and a decode step of Gemma 3 270M has 109 of them), in float32 whatever the input
dtype. With ``kernels`` set (the engine sets it on CUDA, see ``inference.layers.kernel_switch``) the Triton
kernels of ``kernels/`` run instead, with the same maths (``kernels.reference``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _residual_add(x: torch.Tensor, residual: torch.Tensor | None) -> torch.Tensor:
    return x if residual is None else x + residual


class RMSNorm(nn.Module):
    """Llama / Qwen2: normalise in float32, cast back, then scale by ``weight`` (ones at init).

    ``forward(x)`` → normed; ``forward(x, residual)`` → (norm(x + residual), x + residual): the sum is the
    next residual stream, so a decoder layer never materialises it separately."""

    kernels = False

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.shape = (dim,)
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None):
        if self.kernels:
            from kernels.rms_norm import rms_norm

            return rms_norm(x, self.weight, self.eps, residual=residual)  # [T, D], or per head [T, H, D]
        x = _residual_add(x, residual)
        if x.dtype == torch.float32 and self.weight.dtype == torch.float32:
            out = F.rms_norm(x, self.shape, self.weight, self.eps)
        else:
            out = self.weight * F.rms_norm(x.float(), self.shape, None, self.eps).to(x.dtype)
        return out if residual is None else (out, x)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


class GemmaRMSNorm(nn.Module):
    """Gemma: zero-centred ``weight`` (applied as ``1 + weight``), the whole product kept in float32
    before casting back (Llama casts first, which differs in bf16). Same ``residual`` contract as RMSNorm."""

    kernels = False

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.shape = (dim,)
        self.weight = nn.Parameter(torch.zeros(dim))
        self._scale: torch.Tensor | None = None  # float32 1 + weight, rebuilt when the weight changes
        self._scale_key: tuple | None = None

    def _float_scale(self) -> torch.Tensor:
        w = self.weight
        key = (w.data_ptr(), w.device, w.dtype, None if w.is_inference() else w._version)
        if key != self._scale_key:
            self._scale, self._scale_key = 1.0 + self.weight.float(), key
        return self._scale

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None):
        if self.kernels:
            from kernels.rms_norm import rms_norm

            return rms_norm(x, self.weight, self.eps, residual=residual, gemma=True)
        x = _residual_add(x, residual)
        out = F.rms_norm(x.float(), self.shape, self._float_scale(), self.eps).to(x.dtype)
        return out if residual is None else (out, x)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


class LayerNorm(nn.LayerNorm):
    """BERT's LayerNorm (HF weight names ``weight`` / ``bias``), on the Triton kernel when ``kernels``."""

    kernels = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernels:
            from kernels.layer_norm import layer_norm

            flat = x.reshape(-1, x.shape[-1])  # the kernel takes rows [T, D]; Whisper's decoder passes [B, T, D]
            return layer_norm(flat, self.weight, self.bias, self.eps).view(x.shape)
        return super().forward(x)
