"""Rotary position embedding, rotate-half (NeoX / HF) convention (``reference.rotary_embedding``).

cos/sin come from ``positions * inv_freq`` in the kernel (no cache tensor: each layer passes its own inv_freq, and
Gemma 3's local and global layers differ). Grid (T, q head blocks + k head blocks): a program rotates a block of
heads of one token, q or k, so one launch serves both and the per-token angles are computed once per program.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

# 2π as a sum of pieces for Cody–Waite range reduction. The first three have at most 5 significant bits, so their
# products with k (the number of turns, < 2**19 for angles below 2**21, i.e. two million positions at
# inv_freq[0] = 1) are exact in float32.
_INV_2PI = tl.constexpr(0.15915494309189535)
_2PI_A = tl.constexpr(6.25)
_2PI_B = tl.constexpr(0.03125)
_2PI_C = tl.constexpr(0.00189208984375)
_2PI_D = tl.constexpr(4.321733649703674e-05)


@triton.jit
def _rotate_heads(
    src_ptr,
    dst_ptr,
    t,
    h0,
    n_heads,
    stride_st,
    stride_sh,
    stride_dt,
    stride_dh,
    half,
    cos,
    sin,
    BLOCK_H: tl.constexpr,
    BLOCK_HALF: tl.constexpr,
):
    """Heads h0 .. h0 + BLOCK_H of token t: [BLOCK_H, D] → rotated, written to dst. cos/sin [1, BLOCK_HALF]."""
    heads = h0 + tl.arange(0, BLOCK_H)
    cols = tl.arange(0, BLOCK_HALF)
    mask = (heads < n_heads)[:, None] & (cols < half)[None, :]
    src = src_ptr + t * stride_st + heads[:, None] * stride_sh + cols[None, :]
    x1 = tl.load(src, mask=mask, other=0.0).to(tl.float32)
    x2 = tl.load(src + half, mask=mask, other=0.0).to(tl.float32)
    dst = dst_ptr + t * stride_dt + heads[:, None] * stride_dh + cols[None, :]
    tl.store(dst, (x1 * cos - x2 * sin).to(dst_ptr.dtype.element_ty), mask=mask)
    tl.store(dst + half, (x2 * cos + x1 * sin).to(dst_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _rotary_kernel(
    q_ptr,
    k_ptr,
    q_out_ptr,
    k_out_ptr,
    pos_ptr,
    inv_freq_ptr,
    scale,
    n_q_heads,
    n_k_heads,
    half,
    stride_qt,
    stride_qh,
    stride_kt,
    stride_kh,
    stride_qot,
    stride_qoh,
    stride_kot,
    stride_koh,
    BLOCK_HQ: tl.constexpr,
    BLOCK_HK: tl.constexpr,
    BLOCK_HALF: tl.constexpr,
):
    t = tl.program_id(0).to(tl.int64)
    pid_h = tl.program_id(1)
    n_q_blocks = tl.cdiv(n_q_heads, BLOCK_HQ)

    cols = tl.arange(0, BLOCK_HALF)
    inv_freq = tl.load(inv_freq_ptr + cols, mask=cols < half, other=0.0)
    # the float32 product, rounded as the reference rounds it (the launch disables FMA contraction, which would
    # otherwise fold this product into the reduction below unrounded)
    angle = tl.load(pos_ptr + t).to(tl.float32) * inv_freq
    # reduce to [-π, π] before cos/sin: positions reach 1e5+, where fast hardware cos/sin lose all accuracy.
    # Every step but the last is exact (see the constants), so r is the float32 angle mod 2π within ~1e-7.
    turns = tl.floor(angle * _INV_2PI + 0.5)
    r = angle - turns * _2PI_A
    r = r - turns * _2PI_B
    r = r - turns * _2PI_C
    r = r - turns * _2PI_D
    # yarn's attention factor scales cos and sin (1 for every other rope), after they are computed in float32
    cos = (tl.cos(r) * scale)[None, :]
    sin = (tl.sin(r) * scale)[None, :]

    if pid_h < n_q_blocks:
        _rotate_heads(
            q_ptr, q_out_ptr, t, pid_h * BLOCK_HQ, n_q_heads, stride_qt, stride_qh, stride_qot, stride_qoh, half,
            cos, sin, BLOCK_HQ, BLOCK_HALF,
        )  # fmt: skip
    else:
        _rotate_heads(
            k_ptr, k_out_ptr, t, (pid_h - n_q_blocks) * BLOCK_HK, n_k_heads, stride_kt, stride_kh, stride_kot,
            stride_koh, half, cos, sin, BLOCK_HK, BLOCK_HALF,
        )  # fmt: skip


def rotary_embedding(
    q: torch.Tensor,
    k: torch.Tensor,
    positions: torch.Tensor,
    inv_freq: torch.Tensor,
    inplace: bool = False,
    scale: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate-half rotary: q [T, H, D], k [T, Hkv, D], positions [T] int, inv_freq [D/2] float32 → (q, k) rotated,
    in float32 maths, in the inputs' dtypes. ``scale`` multiplies cos and sin (yarn's attention factor).

    By default returns new contiguous tensors. ``inplace=True`` writes into q and k and returns them: they may be
    strided views (e.g. of a fused qkv projection, row stride above H * D) with a contiguous last axis.
    """
    if q.dim() != 3 or k.dim() != 3 or q.shape[0] != k.shape[0] or q.shape[2] != k.shape[2]:
        raise ValueError(f"expected q [T, H, D] and k [T, Hkv, D], got {tuple(q.shape)} and {tuple(k.shape)}")
    T, H, D = q.shape
    Hkv = k.shape[1]
    if D % 2 or inv_freq.shape != (D // 2,):
        raise ValueError(f"inv_freq must be [{D // 2}] for head_dim {D}, got {tuple(inv_freq.shape)}")
    if positions.shape != (T,):
        raise ValueError(f"positions must be [{T}], got {tuple(positions.shape)}")
    if inplace:
        if q.stride(-1) != 1 or k.stride(-1) != 1:
            raise ValueError("inplace needs q and k with a contiguous last axis")
        q_out, k_out = q, k
    else:
        q = q if q.stride(-1) == 1 else q.contiguous()
        k = k if k.stride(-1) == 1 else k.contiguous()
        q_out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
        k_out = torch.empty(k.shape, dtype=k.dtype, device=k.device)
    positions = positions.contiguous()
    inv_freq = inv_freq.to(torch.float32).contiguous()

    half = D // 2
    BLOCK_HALF = triton.next_power_of_2(half)
    # about 2048 elements per half-block: 16 per thread at 4 warps
    cap = max(1, 2048 // BLOCK_HALF)
    BLOCK_HQ = min(triton.next_power_of_2(max(H, 1)), cap)
    BLOCK_HK = min(triton.next_power_of_2(max(Hkv, 1)), cap)
    n_blocks = triton.cdiv(H, BLOCK_HQ) + triton.cdiv(Hkv, BLOCK_HK)
    if T > 0 and n_blocks > 0 and half > 0:
        _rotary_kernel[(T, n_blocks)](
            q, k, q_out, k_out, positions, inv_freq, float(scale), H, Hkv, half,
            q.stride(0), q.stride(1), k.stride(0), k.stride(1),
            q_out.stride(0), q_out.stride(1), k_out.stride(0), k_out.stride(1),
            BLOCK_HQ=BLOCK_HQ, BLOCK_HK=BLOCK_HK, BLOCK_HALF=BLOCK_HALF, num_warps=4,
            enable_fp_fusion=False,
        )  # fmt: skip
    return q_out, k_out
