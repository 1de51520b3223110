"""Rotary position embeddings (HF's rotate-half convention) with default, linear and llama3 scaling.

cos/sin are computed from the step's positions on the fly, once per forward and shared by every layer
with the same base: [T, head_dim/2] multiplies plus a cos and a sin are negligible next to the layers,
and nothing sized by max_position_embeddings (128k for Llama 3.1, Gemma 3) is ever allocated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

ROPE_TYPES = ("default", "linear", "llama3")


@dataclass(frozen=True, kw_only=True)
class RopeParams:
    """What the rotary embedding computes its frequencies from (the model configs' ``RopeConfig`` is one, read
    from an HF config and validated)."""

    theta: float = 10_000.0
    type: str = "default"  # one of ROPE_TYPES
    factor: float = 1.0  # linear / llama3: how much the context was stretched
    low_freq_factor: float = 1.0  # llama3 only
    high_freq_factor: float = 4.0  # llama3 only
    original_max_position_embeddings: int | None = None  # llama3 only: the pre-training context


def rope_inv_freq(rope: RopeParams, head_dim: int) -> torch.Tensor:
    """[head_dim / 2] float32 inverse frequencies, computed exactly as transformers does."""
    inv_freq = 1.0 / (rope.theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    if rope.type == "linear":
        return inv_freq / rope.factor
    if rope.type == "llama3":
        # long wavelengths are slowed down by `factor`, short ones kept, the band between interpolated
        old_len = rope.original_max_position_embeddings
        low_freq_wavelen = old_len / rope.low_freq_factor
        high_freq_wavelen = old_len / rope.high_freq_factor
        wavelen = 2 * math.pi / inv_freq
        scaled = torch.where(wavelen > low_freq_wavelen, inv_freq / rope.factor, inv_freq)
        smooth = (old_len / wavelen - rope.low_freq_factor) / (rope.high_freq_factor - rope.low_freq_factor)
        smoothed = (1 - smooth) * scaled / rope.factor + smooth * scaled
        is_medium = (wavelen >= high_freq_wavelen) & (wavelen <= low_freq_wavelen)
        return torch.where(is_medium, smoothed, scaled)
    return inv_freq


class Rope(NamedTuple):
    """One step's rotary inputs for the layers sharing a base: cos / signed_sin [T, 1, head_dim] for the
    torch path, or the positions [T] and inverse frequencies [head_dim / 2] for the Triton kernel."""

    cos: torch.Tensor | None = None
    signed_sin: torch.Tensor | None = None
    positions: torch.Tensor | None = None
    inv_freq: torch.Tensor | None = None


class RotaryEmbedding(nn.Module):
    """Holds no parameters or buffers: the inverse frequencies are made lazily per device, so the module
    can be built on the meta device and moved with ``to_empty`` without losing them."""

    kernels = False

    def __init__(self, head_dim: int, rope: RopeParams):
        super().__init__()
        self.head_dim = head_dim
        self.rope = rope
        self._inv_freq: dict[torch.device, torch.Tensor] = {}

    def forward(self, positions: torch.Tensor, dtype: torch.dtype) -> Rope:
        """positions [T] -> the step's ``Rope`` for ``apply_rope``.

        Torch path: ``signed_sin`` is [-sin, sin] over the two halves: rotate-half's sign folded in once per
        step, so each layer's rotation is a roll, a multiply and a multiply-add. Kernel path: the kernel
        computes cos / sin itself from the positions, in float32.
        """
        inv_freq = self._inv_freq.get(positions.device)
        if inv_freq is None:
            inv_freq = self._inv_freq[positions.device] = rope_inv_freq(self.rope, self.head_dim).to(positions.device)
        if self.kernels:
            return Rope(positions=positions, inv_freq=inv_freq)
        freqs = positions.float()[:, None] * inv_freq[None, :]  # [T, head_dim / 2], float32 like HF
        sin = freqs.sin()
        cos = torch.cat((freqs, freqs), dim=-1).cos()
        signed_sin = torch.cat((-sin, sin), dim=-1)
        return Rope(cos=cos.to(dtype)[:, None, :], signed_sin=signed_sin.to(dtype)[:, None, :])

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, {self.rope}"


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
    """x [T, heads, head_dim], cos / signed_sin [T, 1, head_dim] -> x rotated by its token's position.

    HF's ``x * cos + rotate_half(x) * sin`` with rotate_half(x) = [-x2, x1] = roll(x, half) * [-1, 1].
    """
    return torch.addcmul(x * cos, x.roll(x.shape[-1] // 2, -1), signed_sin)


def apply_rope(q: torch.Tensor, k: torch.Tensor, rope: Rope) -> tuple[torch.Tensor, torch.Tensor]:
    """q [T, H, D], k [T, Hkv, D] → both rotated; on the kernel path in place (q and k may be views)."""
    if rope.cos is None:
        from kernels.rotary import rotary_embedding

        return rotary_embedding(q, k, rope.positions, rope.inv_freq, inplace=True)
    return apply_rotary(q, rope.cos, rope.signed_sin), apply_rotary(k, rope.cos, rope.signed_sin)
