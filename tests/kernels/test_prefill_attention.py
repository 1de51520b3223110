"""varlen_attention / paged_attention against their references: GQA, head sizes (odd ones padded), ragged
batches, causal / encoder / sliding-window masks, chunked prefill through shuffled block tables.

Under the interpreter the kernel runs 16 x 16 tiles, so the 17- and 40-token sequences below span several
query and key tiles: masked and unmasked key tiles, skipped ones, and partial last tiles all occur."""

from __future__ import annotations

import pytest
import torch

from kernels import prefill_attention, reference
from kernels.prefill_attention import paged_attention, varlen_attention
from tests.support.kernel_cases import DEVICE, DTYPES, shapes

# (query heads, kv heads, head_dim): GQA 1, 2, 4; 48 is padded to a 64-wide tile
HEADS = shapes(
    [(2, 2, 32), (4, 2, 64), (4, 1, 48), (2, 1, 256)],
    [(32, 8, 128), (4, 1, 256), (12, 12, 32), (14, 2, 64)],  # Llama-8B, Gemma 3, MiniLM, Qwen2-0.5B
)
# (causal, sliding_window): 4 cuts into every sequence, 1000 is wider than all of them
MASKS = [(True, None), (True, 4), (True, 1000), (False, None), (False, 4)]


def _cu(lens: list[int]) -> torch.Tensor:
    return torch.tensor([0, *torch.tensor(lens).cumsum(0).tolist()], dtype=torch.int32, device=DEVICE)


def _randn(*shape: int, dtype: torch.dtype) -> torch.Tensor:
    return torch.randn(*shape, device=DEVICE).to(dtype)


def _check_varlen(q_lens, k_lens, H, Hkv, D, dtype, atol, rtol, causal=True, window=None, max_seqlen_q=None):
    q = _randn(sum(q_lens), H, D, dtype=dtype)
    k = _randn(sum(k_lens), Hkv, D, dtype=dtype)
    v = _randn(sum(k_lens), Hkv, D, dtype=dtype)
    cu_q, cu_k = _cu(q_lens), _cu(k_lens)
    scale = D**-0.5
    out = varlen_attention(q, k, v, cu_q, cu_k, scale, causal, window, max_seqlen_q)
    ref = reference.varlen_attention(q, k, v, cu_q, cu_k, scale, causal, window)
    assert out.shape == q.shape and out.dtype == q.dtype
    torch.testing.assert_close(out, ref, atol=atol, rtol=rtol)


@pytest.mark.parametrize("H,Hkv,D", HEADS)
@pytest.mark.parametrize("dtype,atol,rtol", DTYPES)
def test_varlen_heads(H, Hkv, D, dtype, atol, rtol):
    torch.manual_seed(0)
    _check_varlen([1, 17, 5], [1, 17, 5], H, Hkv, D, dtype, atol, rtol)


@pytest.mark.parametrize("causal,window", MASKS)
@pytest.mark.parametrize("dtype,atol,rtol", DTYPES)
def test_varlen_masks(causal, window, dtype, atol, rtol):
    torch.manual_seed(1)
    _check_varlen([40, 1, 17], [40, 1, 17], 2, 1, 32, dtype, atol, rtol, causal, window)


@pytest.mark.parametrize("causal,window", MASKS)
def test_varlen_fewer_queries_than_keys(causal, window):
    """Queries are the last positions of their keys; a sequence may also have no query, or more queries
    than keys (positions from 0), or no key at all (its queries see nothing: zeros)."""
    torch.manual_seed(2)
    _check_varlen([3, 0, 17, 20, 2], [37, 4, 21, 6, 0], 4, 2, 48, torch.float32, 1e-5, 1e-5, causal, window)


@pytest.mark.parametrize("block_m,block_n", [(32, 16), (16, 32), (64, 16)], ids=["32x16", "16x32", "64x16"])
def test_tile_shapes(monkeypatch, block_m, block_n):
    """The key-range arithmetic (skipped, masked and unmasked tiles) with query and key tiles of different
    sizes, as on a GPU (the interpreter's default is 16 x 16)."""
    config = prefill_attention._config
    monkeypatch.setattr(prefill_attention, "_config", lambda *a: (block_m, block_n, *config(*a)[2:]))
    torch.manual_seed(3)
    for causal, window in [(True, None), (True, 7), (False, 23)]:
        _check_varlen([50, 9], [50, 30], 2, 1, 32, torch.float32, 1e-5, 1e-5, causal, window)
    _check_paged([9, 50], [30, 70], 2, 1, 32, torch.float32, 1e-5, 1e-5, block_size=16, window=20)


@pytest.mark.parametrize("config", [(32, 16, 4, 1), (64, 32, 8, 2)], ids=["32x16-4warps-1stage", "64x32-8warps"])
def test_paged_forced_config(config):
    """The tiles benchmarks/bench_tune.py sweeps on a GPU, passed in: query tiles longer than some sequences'
    queries, key tiles crossing blocks of 5, a window."""
    torch.manual_seed(6)
    _check_paged([9, 50], [30, 70], 4, 2, 32, torch.float32, 1e-5, 1e-5, block_size=5, window=20, config=config)


def test_max_seqlen_q_given():
    """With max_seqlen_q passed the grid is sized without reading cu_seqlens on the host; same result."""
    torch.manual_seed(4)
    _check_varlen([1, 17, 5], [1, 17, 5], 2, 1, 32, torch.float32, 1e-5, 1e-5, max_seqlen_q=17)
    _check_paged([1, 17], [9, 17], 2, 1, 32, torch.float32, 1e-5, 1e-5, block_size=5, max_seqlen_q=17)


def test_varlen_strided_views():
    """q / k / v as views of one fused qkv projection, as the engine hands them over."""
    torch.manual_seed(5)
    T, H, Hkv, D = 22, 4, 2, 32
    qkv = _randn(T, (H + 2 * Hkv) * D, dtype=torch.float16)
    q = qkv[:, : H * D].view(T, H, D)
    k = qkv[:, H * D : (H + Hkv) * D].view(T, Hkv, D)
    v = qkv[:, (H + Hkv) * D :].view(T, Hkv, D)
    cu = _cu([17, 5])
    out = varlen_attention(q, k, v, cu, cu, 0.2)
    assert out.is_contiguous()
    torch.testing.assert_close(out, reference.varlen_attention(q, k, v, cu, cu, 0.2), atol=2e-3, rtol=2e-3)


# --- paged -----------------------------------------------------------------------------------------


def _paged_cache(ctx_lens: list[int], Hkv: int, D: int, block_size: int, dtype: torch.dtype):
    """A cache with more blocks than needed (random contents everywhere) and block tables that hand each
    sequence shuffled blocks; unused table entries point past the cache (they must never be read)."""
    need = [-(-n // block_size) for n in ctx_lens]
    num_blocks = sum(need) + 3
    k_cache = _randn(num_blocks * block_size, Hkv, D, dtype=dtype)
    v_cache = _randn(num_blocks * block_size, Hkv, D, dtype=dtype)
    perm = torch.randperm(num_blocks).tolist()
    tables = torch.full((len(ctx_lens), max(need) + 2), num_blocks + 1000, dtype=torch.int32)
    for i, n in enumerate(need):
        tables[i, :n] = torch.tensor(perm[:n], dtype=torch.int32)
        perm = perm[n:]
    return k_cache, v_cache, tables.to(DEVICE)


def _check_paged(
    q_lens, ctx_lens, H, Hkv, D, dtype, atol, rtol, block_size, window=None, max_seqlen_q=None, config=None
):
    k_cache, v_cache, tables = _paged_cache(ctx_lens, Hkv, D, block_size, dtype)
    q = _randn(sum(q_lens), H, D, dtype=dtype)
    cu_q = _cu(q_lens)
    ctx = torch.tensor(ctx_lens, dtype=torch.int32, device=DEVICE)
    scale = D**-0.5
    out = paged_attention(q, k_cache, v_cache, tables, cu_q, ctx, block_size, scale, window, max_seqlen_q, config)
    ref = reference.paged_attention(q, k_cache, v_cache, tables, cu_q, ctx, block_size, scale, window)
    assert out.shape == q.shape and out.dtype == q.dtype
    torch.testing.assert_close(out, ref, atol=atol, rtol=rtol)


@pytest.mark.parametrize("H,Hkv,D", HEADS)
@pytest.mark.parametrize("dtype,atol,rtol", DTYPES)
def test_paged_heads(H, Hkv, D, dtype, atol, rtol):
    """Chunked prefill: a decode-like single query, a chunk in the middle of a prompt, a whole prompt."""
    torch.manual_seed(6)
    _check_paged([1, 6, 5], [1, 23, 5], H, Hkv, D, dtype, atol, rtol, block_size=16)


@pytest.mark.parametrize("window", [None, 4, 1000])
@pytest.mark.parametrize("block_size", [16, 5])
@pytest.mark.parametrize("dtype,atol,rtol", DTYPES)
def test_paged_windows_and_blocks(window, block_size, dtype, atol, rtol):
    torch.manual_seed(7)
    _check_paged([1, 17, 3], [9, 40, 3], 2, 1, 32, dtype, atol, rtol, block_size, window)


# --- whole batches: real model shapes on a GPU ----------------------------------------------------

# (H, Hkv, D, causal, window, prompt lengths, new tokens per sequence for a chunked-prefill step or None)
BATCHES = shapes(
    [(2, 1, 32, True, 5, [33, 1, 9], [8, 1, 9]), (4, 4, 32, False, None, [20, 3], None)],
    [
        (32, 8, 128, True, None, [512] * 4, [128] * 4),  # Llama-8B
        (32, 8, 128, True, None, [1000, 513, 1, 130], [1, 513, 1, 64]),
        (4, 1, 256, True, 512, [512] * 4, [128] * 4),  # Gemma 3 local layer
        (4, 1, 256, True, 512, [1000, 513, 1, 700], [300, 1, 1, 700]),
        (4, 1, 256, True, None, [1000, 513, 1, 700], [300, 1, 1, 700]),  # Gemma 3 global layer
        (14, 2, 64, True, None, [512] * 4, [512, 1, 16, 200]),  # Qwen2-0.5B
        (12, 12, 32, False, None, [128, 7, 512, 33], None),  # MiniLM / BERT
    ],
)


@pytest.mark.parametrize("H,Hkv,D,causal,window,lens,chunks", BATCHES)
@pytest.mark.parametrize("dtype,atol,rtol", DTYPES)
def test_batches(H, Hkv, D, causal, window, lens, chunks, dtype, atol, rtol):
    """Whole prompts over contiguous K/V, then (decoders) a step of chunked prefill over the paged cache."""
    torch.manual_seed(8)
    _check_varlen(lens, lens, H, Hkv, D, dtype, atol, rtol, causal, window, max_seqlen_q=max(lens))
    if chunks is not None:
        _check_paged(chunks, lens, H, Hkv, D, dtype, atol, rtol, 16, window)


@pytest.mark.parametrize("causal,window", [(False, None), (True, None), (False, 9)])
@pytest.mark.parametrize("dtype,atol,rtol", DTYPES)
def test_varlen_alibi(causal, window, dtype, atol, rtol):
    """ALiBi (JinaBERT): -slope_h * |q_pos - k_pos| on head h's scores. Three heads (GQA 3/1), head_dim 40 (a
    padded tile), ragged sequences spanning several tiles, one with fewer queries than keys; slopes steep enough
    that a wrong sign or distance changes the output."""
    torch.manual_seed(10)
    q_lens, k_lens, H, D = [33, 1, 6], [33, 1, 19], 3, 40
    q = _randn(sum(q_lens), H, D, dtype=dtype)
    k = _randn(sum(k_lens), 1, D, dtype=dtype)
    v = _randn(sum(k_lens), 1, D, dtype=dtype)
    cu_q, cu_k = _cu(q_lens), _cu(k_lens)
    slopes = torch.tensor([0.5, 0.125, 2**-0.5], device=DEVICE)
    out = varlen_attention(q, k, v, cu_q, cu_k, D**-0.5, causal, window, alibi_slopes=slopes)
    ref = reference.varlen_attention(q, k, v, cu_q, cu_k, D**-0.5, causal, window, alibi_slopes=slopes)
    torch.testing.assert_close(out, ref, atol=atol, rtol=rtol)
    plain = reference.varlen_attention(q, k, v, cu_q, cu_k, D**-0.5, causal, window)
    assert (plain.float() - ref.float()).abs().max() > 0.1  # the bias matters at these slopes
