"""Rotary position embeddings (HF's rotate-half convention) with default, linear, llama3, yarn and dynamic (NTK)
scaling.

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

ROPE_TYPES = ("default", "linear", "llama3", "yarn", "dynamic")


@dataclass(frozen=True, kw_only=True)
class RopeParams:
    """What the rotary embedding computes its frequencies from (the model configs' ``RopeConfig`` is one, read
    from an HF config and validated)."""

    theta: float = 10_000.0
    type: str = "default"  # one of ROPE_TYPES
    factor: float = 1.0  # linear / llama3 / yarn / dynamic: how much the context was stretched
    low_freq_factor: float = 1.0  # llama3 only
    high_freq_factor: float = 4.0  # llama3 only
    # llama3 / yarn: the pre-training context; dynamic: the config's max_position_embeddings (what transformers'
    # dynamic NTK divides by)
    original_max_position_embeddings: int | None = None
    # yarn only: cos and sin are multiplied by the attention factor; None computes it from factor / mscale /
    # mscale_all_dim as transformers does (``rope_attention_scale``)
    attention_factor: float | None = None
    mscale: float | None = None
    mscale_all_dim: float | None = None
    beta_fast: float = 32.0  # rotations bounding the extrapolated (fast) band
    beta_slow: float = 1.0  # ... and the interpolated (slow) one
    truncate: bool = True  # round the band's bounds to whole dimensions


def _yarn_mscale(scale: float, mscale: float = 1.0) -> float:
    return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0


def rope_attention_scale(rope: RopeParams) -> float:
    """What cos and sin are multiplied by: yarn's attention factor (transformers' ``_compute_yarn_parameters``),
    1 for every other type."""
    if rope.type != "yarn":
        return 1.0
    if rope.attention_factor is not None:
        return rope.attention_factor
    if rope.mscale and rope.mscale_all_dim:
        return float(_yarn_mscale(rope.factor, rope.mscale) / _yarn_mscale(rope.factor, rope.mscale_all_dim))
    return _yarn_mscale(rope.factor)


def _default_inv_freq(theta: float, head_dim: int) -> torch.Tensor:
    return 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))


def _yarn_inv_freq(rope: RopeParams, dim: int) -> torch.Tensor:
    """Interpolated (divided by factor) below the band of dims that turn fewer than beta_slow times over the
    original context, extrapolated (kept) above the band turning more than beta_fast times, a linear ramp
    between. The operations are transformers' own, in its order, so the float32 results are identical."""
    base, old_len = rope.theta, rope.original_max_position_embeddings

    def correction_dim(rotations: float) -> float:  # the dim index that turns `rotations` times over old_len
        return (dim * math.log(old_len / (rotations * 2 * math.pi))) / (2 * math.log(base))

    low, high = correction_dim(rope.beta_fast), correction_dim(rope.beta_slow)
    if rope.truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001  # as transformers: avoids a division by zero
    ramp = torch.clamp((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low), 0, 1)
    pos_freqs = base ** (torch.arange(0, dim, 2).float() / dim)
    extrapolation, interpolation = 1.0 / pos_freqs, 1.0 / (rope.factor * pos_freqs)
    extrapolation_factor = 1 - ramp
    return interpolation * (1 - extrapolation_factor) + extrapolation * extrapolation_factor


def _dynamic_ntk_theta(rope: RopeParams, dim: int) -> float:
    """Dynamic NTK's enlarged base, computed once for the fixed length max_position_embeddings * factor.

    transformers recomputes it every forward from that forward's longest position (seq_len), so its answer for a
    token depends on what else is in the batch and on how the prompt was chunked; our engine must not. As vLLM's
    ``DynamicNTKScalingRotaryEmbedding``, the base is the one transformers' ``_compute_dynamic_ntk_parameters``
    gives for seq_len = max_position_embeddings * factor, i.e. for the whole stretched context, at every position.
    """
    max_pos, factor = rope.original_max_position_embeddings, rope.factor
    seq_len = max(max_pos * factor, max_pos)
    return rope.theta * ((factor * seq_len / max_pos) - (factor - 1)) ** (dim / (dim - 2))


def rope_inv_freq(rope: RopeParams, head_dim: int) -> torch.Tensor:
    """[head_dim / 2] float32 inverse frequencies, computed exactly as transformers does."""
    if rope.type == "yarn":
        return _yarn_inv_freq(rope, head_dim)
    if rope.type == "dynamic":
        return _default_inv_freq(_dynamic_ntk_theta(rope, head_dim), head_dim)
    inv_freq = _default_inv_freq(rope.theta, head_dim)
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
    torch path (the attention scale folded in), or the positions [T], inverse frequencies [head_dim / 2] and
    the scale of cos and sin for the Triton kernel."""

    cos: torch.Tensor | None = None
    signed_sin: torch.Tensor | None = None
    positions: torch.Tensor | None = None
    inv_freq: torch.Tensor | None = None
    scale: float = 1.0


class RotaryEmbedding(nn.Module):
    """Holds no parameters or buffers: the inverse frequencies are made lazily per device, so the module
    can be built on the meta device and moved with ``to_empty`` without losing them."""

    kernels = False

    def __init__(self, head_dim: int, rope: RopeParams):
        super().__init__()
        self.head_dim = head_dim
        self.rope = rope
        self.scale = rope_attention_scale(rope)
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
            return Rope(positions=positions, inv_freq=inv_freq, scale=self.scale)
        freqs = positions.float()[:, None] * inv_freq[None, :]  # [T, head_dim / 2], float32 like HF
        sin = freqs.sin()
        cos = torch.cat((freqs, freqs), dim=-1).cos()
        signed_sin = torch.cat((-sin, sin), dim=-1)
        if self.scale != 1.0:  # yarn: HF scales cos and sin in float32, before the cast
            cos, signed_sin = cos * self.scale, signed_sin * self.scale
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

        return rotary_embedding(q, k, rope.positions, rope.inv_freq, inplace=True, scale=rope.scale)
    return apply_rotary(q, rope.cos, rope.signed_sin), apply_rotary(k, rope.cos, rope.signed_sin)
