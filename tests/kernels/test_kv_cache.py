"""store_kv against kernels.reference.store_kv: strided K/V views, negative slots, cache dtype casts."""

from __future__ import annotations

import pytest
import torch

from kernels import reference
from kernels.kv_cache import store_kv
from tests.support.kernel_cases import DEVICE, DTYPES, ON_GPU, shapes

# (tokens, query heads, kv heads, head_dim)
SHAPES = shapes(
    [(1, 1, 1, 32), (7, 4, 2, 48), (13, 8, 4, 64), (5, 4, 1, 256)],
    [(8192, 32, 8, 128), (4096, 4, 1, 256), (4096, 12, 12, 32)],  # Llama-8B, Gemma 3, MiniLM
)


def _fused_kv(T: int, H: int, Hkv: int, D: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """k/v [T, Hkv, D] as the engine gets them: views of one fused qkv projection (row stride (H + 2Hkv) * D)."""
    qkv = torch.randn(T, (H + 2 * Hkv) * D, device=DEVICE).to(dtype)
    k = qkv[:, H * D : (H + Hkv) * D].view(T, Hkv, D)
    v = qkv[:, (H + Hkv) * D :].view(T, Hkv, D)
    return k, v


def _check(k, v, slots, num_slots, cache_dtype):
    _, Hkv, D = k.shape
    k_cache = torch.randn(num_slots, Hkv, D, device=DEVICE).to(cache_dtype)
    v_cache = torch.randn(num_slots, Hkv, D, device=DEVICE).to(cache_dtype)
    k_ref, v_ref = k_cache.clone(), v_cache.clone()
    reference.store_kv(k, v, k_ref, v_ref, slots)
    store_kv(k, v, k_cache, v_cache, slots)
    # A copy and a cast: bit for bit, and every slot not written keeps its old value. Except that the
    # interpreter truncates float32 → bfloat16 where torch (and compiled Triton) round to nearest even: 1 ulp.
    truncating = not ON_GPU and cache_dtype == torch.bfloat16 and k.dtype != torch.bfloat16
    rtol = 2**-7 if truncating else 0.0
    torch.testing.assert_close(k_cache, k_ref, rtol=rtol, atol=0.0)
    torch.testing.assert_close(v_cache, v_ref, rtol=rtol, atol=0.0)


@pytest.mark.parametrize("T,H,Hkv,D", SHAPES)
@pytest.mark.parametrize("dtype,atol,rtol", DTYPES)
def test_store_kv_fused_views(T, H, Hkv, D, dtype, atol, rtol):
    torch.manual_seed(0)
    k, v = _fused_kv(T, H, Hkv, D, dtype)
    assert T == 1 or k.stride(0) == (H + 2 * Hkv) * D  # (a single row's stride is whatever view() picks)
    num_slots = 2 * T + 3
    slots = torch.randperm(num_slots, device=DEVICE)[:T]  # int64, scattered
    _check(k, v, slots, num_slots, dtype)


@pytest.mark.parametrize("slot_dtype", [torch.int32, torch.int64])
@pytest.mark.parametrize(
    "dtype,cache_dtype",
    [(torch.float32, torch.bfloat16), (torch.bfloat16, torch.float32), (torch.float32, torch.float16)],
    ids=["fp32->bf16", "bf16->fp32", "fp32->fp16"],
)
def test_store_kv_negative_slots_and_cast(slot_dtype, dtype, cache_dtype):
    torch.manual_seed(1)
    T, H, Hkv, D = 9, 4, 2, 80
    k, v = _fused_kv(T, H, Hkv, D, dtype)
    slots = torch.randperm(20, device=DEVICE)[:T]
    slots[[0, 4, 8]] = -1  # CUDA-graph padding: skipped
    _check(k, v, slots.to(slot_dtype), 20, cache_dtype)


def test_store_kv_all_skipped_and_empty():
    torch.manual_seed(2)
    k, v = _fused_kv(3, 2, 1, 32, torch.float16)
    _check(k, v, torch.full((3,), -1, device=DEVICE), 4, torch.float16)
    _check(k[:0], v[:0], torch.empty(0, dtype=torch.long, device=DEVICE), 4, torch.float16)


def test_store_kv_strided_head_dim():
    """Any strides, even a head_dim that is not the innermost axis."""
    torch.manual_seed(3)
    T, Hkv, D = 6, 3, 40
    k = torch.randn(T, D, Hkv, device=DEVICE).transpose(1, 2)
    v = torch.randn(T, D, Hkv, device=DEVICE).transpose(1, 2)
    _check(k, v, torch.tensor([5, 0, -1, 7, 2, 3], device=DEVICE), 8, torch.float32)
