"""Writing the new tokens' K/V into the paged cache of one layer.

The cache is [num_blocks * block_size, Hkv, D] (a flat slot axis); ``slot_mapping`` [T] gives each token's
slot, negative for the padding of a CUDA-graph batch. K/V usually arrive as views of a fused qkv projection
(row stride (H + 2 * Hkv) * D), so every stride is passed rather than copying them contiguous first.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _store_kv_kernel(
    K,
    V,
    KC,
    VC,
    SLOTS,
    T,
    HKV,
    D,
    stride_kt,
    stride_kh,
    stride_kd,
    stride_vt,
    stride_vh,
    stride_vd,
    stride_kct,
    stride_kch,
    stride_kcd,
    stride_vct,
    stride_vch,
    stride_vcd,
    BLOCK_T: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    # One program copies BLOCK_T tokens × all heads × the whole head: a [BLOCK_T, BLOCK_H, BLOCK_D] tile.
    offs_t = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    offs_h = tl.arange(0, BLOCK_H)
    offs_d = tl.arange(0, BLOCK_D)
    slot = tl.load(SLOTS + offs_t, mask=offs_t < T, other=-1).to(tl.int64)  # [BLOCK_T]
    row_ok = slot >= 0  # negative slot: padding, skipped (also covers t >= T)
    t = offs_t.to(tl.int64)[:, None, None]
    s = slot[:, None, None]
    h = offs_h[None, :, None]
    d = offs_d[None, None, :]
    mask = row_ok[:, None, None] & (h < HKV) & (d < D)

    k = tl.load(K + t * stride_kt + h * stride_kh + d * stride_kd, mask=mask)
    tl.store(KC + s * stride_kct + h * stride_kch + d * stride_kcd, k.to(KC.dtype.element_ty), mask=mask)
    v = tl.load(V + t * stride_vt + h * stride_vh + d * stride_vd, mask=mask)
    tl.store(VC + s * stride_vct + h * stride_vch + d * stride_vcd, v.to(VC.dtype.element_ty), mask=mask)


def store_kv(
    k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, slot_mapping: torch.Tensor
) -> None:
    """In place: k/v [T, Hkv, D] (any strides) into k_cache/v_cache [slots, Hkv, D] at ``slot_mapping`` [T]
    (int32 or int64; a negative slot is skipped), cast to the caches' dtype."""
    T, hkv, d = k.shape
    assert v.shape == k.shape, (k.shape, v.shape)
    assert k_cache.shape[1:] == (hkv, d) and v_cache.shape[1:] == (hkv, d), (k_cache.shape, v_cache.shape, k.shape)
    assert slot_mapping.shape == (T,), (slot_mapping.shape, T)
    if T == 0:
        return
    block_h, block_d = triton.next_power_of_2(hkv), triton.next_power_of_2(d)
    # ~4K elements per program: several tokens when heads are few (Gemma: 1 × 256), one for wide caches.
    block_t = max(1, min(16, 4096 // (block_h * block_d), triton.next_power_of_2(T)))
    num_warps = 4 if block_t * block_h * block_d >= 2048 else 2
    _store_kv_kernel[(triton.cdiv(T, block_t),)](
        k, v, k_cache, v_cache, slot_mapping, T, hkv, d,
        *k.stride(), *v.stride(), *k_cache.stride(), *v_cache.stride(),
        BLOCK_T=block_t, BLOCK_H=block_h, BLOCK_D=block_d, num_warps=num_warps,
    )  # fmt: skip
