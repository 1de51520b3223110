"""Prefill attention over a flat variable-length batch, FlashAttention-2 style.

One program owns BLOCK_M queries of one head of one sequence and streams the visible keys in tiles of
BLOCK_N with an online softmax (running max and sum in float32, exp2 with the scale folded in). Two
addressing modes share the kernel (constexpr ``PAGED``):

- contiguous K/V [Tk, Hkv, D], sequence i owning rows ``cu_seqlens_k[i]:[i+1]`` (``varlen_attention``);
- the paged cache [slots, Hkv, D] read through ``block_tables`` [S, max_blocks] (``paged_attention``: chunked
  prefill, the new tokens' K/V already stored).

Queries are the last positions of their sequence's keys. A key is visible iff (causal) k_pos <= q_pos and
(window) q_pos - window < k_pos. Key tiles wholly outside that band are never visited, and tiles wholly
inside it run without the mask, so the cost scales with what is visible. A row that sees no key yields 0.
``ALIBI`` (JinaBERT): each head's score gets -slope_h * |q_pos - k_pos| (symmetric ALiBi; causal ALiBi is its
restriction to k_pos <= q_pos).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.launch import INTERPRET, launch_fitting

# Compiled, fp16/bf16 operands go to the tensor cores as they are (accumulating in fp32); under the interpreter
# (INTERPRET) tl.dot on them is wrong, so they are converted to float32 there.
_LOG2E = 1.4426950408889634


@triton.jit
def _attn_tiles(
    acc,
    l_i,
    m_i,
    q,
    q_pos,
    K,
    V,
    BT,
    block_size,
    kv_start,
    k_len,
    lo,
    hi,
    stride_kt,
    stride_vt,
    stride_kd,
    stride_vd,
    offs_d,
    qk_scale,
    window,
    slope,
    MASK: tl.constexpr,
    CAUSAL: tl.constexpr,
    WINDOW: tl.constexpr,
    PAGED: tl.constexpr,
    ALIBI: tl.constexpr,
    EVEN_D: tl.constexpr,
    FP32_DOT: tl.constexpr,
    BLOCK_N: tl.constexpr,
    HEAD_D: tl.constexpr,
):
    """Key tiles [lo, hi) of one (query tile, head); ``MASK`` applies the bounds / causal / window mask
    (boundary tiles), without it every key of the tile is visible to every real query row."""
    offs_n0 = tl.arange(0, BLOCK_N)
    d_ok = offs_d < HEAD_D
    for start_n in range(lo, hi, BLOCK_N):
        offs_n = start_n + offs_n0  # [BLOCK_N] key positions
        n_ok = offs_n < k_len
        if PAGED:
            # slot = block_tables[s, pos // block_size] * block_size + pos % block_size
            if MASK:
                blk = tl.load(BT + offs_n // block_size, mask=n_ok, other=0)
            else:
                blk = tl.load(BT + offs_n // block_size)
            rows = blk.to(tl.int64) * block_size + offs_n % block_size
        else:
            rows = (kv_start + offs_n).to(tl.int64)
        k_ptrs = K + rows[:, None] * stride_kt + offs_d[None, :] * stride_kd  # [BLOCK_N, BLOCK_D]
        v_ptrs = V + rows[:, None] * stride_vt + offs_d[None, :] * stride_vd
        if MASK:
            kv_mask = n_ok[:, None] & d_ok[None, :]
            k = tl.load(k_ptrs, mask=kv_mask, other=0.0)
            v = tl.load(v_ptrs, mask=kv_mask, other=0.0)
        elif EVEN_D:
            k = tl.load(k_ptrs)
            v = tl.load(v_ptrs)
        else:
            k = tl.load(k_ptrs, mask=d_ok[None, :], other=0.0)
            v = tl.load(v_ptrs, mask=d_ok[None, :], other=0.0)

        if FP32_DOT:
            qk = tl.dot(q, tl.trans(k.to(tl.float32)), input_precision="ieee")
        else:
            qk = tl.dot(q, tl.trans(k.to(q.dtype)))
        qk = qk * qk_scale  # [BLOCK_M, BLOCK_N], log2 units
        if ALIBI:  # slope in log2 units too
            qk = qk - slope * tl.abs(offs_n[None, :] - q_pos[:, None]).to(tl.float32)
        if MASK:
            ok = n_ok[None, :]
            if CAUSAL:
                ok = ok & (offs_n[None, :] <= q_pos[:, None])
            if WINDOW:
                ok = ok & (offs_n[None, :] > q_pos[:, None] - window)
            qk = tl.where(ok, qk, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(qk, 1))
            # a row that has seen nothing yet keeps m = -inf: subtract 0 instead, so exp2 gives 0, not nan
            m_sub = tl.where(m_new == float("-inf"), 0.0, m_new)
        else:
            m_new = tl.maximum(m_i, tl.max(qk, 1))
            m_sub = m_new
        p = tl.math.exp2(qk - m_sub[:, None])
        alpha = tl.math.exp2(m_i - m_sub)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None]
        if FP32_DOT:
            acc = tl.dot(p, v.to(tl.float32), acc, input_precision="ieee")
        else:
            acc = tl.dot(p.to(q.dtype), v.to(q.dtype), acc)
        m_i = m_new
    return acc, l_i, m_i


@triton.jit
def _prefill_attention_kernel(
    Q,
    K,
    V,
    Out,
    CU_Q,
    CU_K,  # varlen: cu_seqlens_k [S + 1]; paged: context_lens [S]
    BT,  # paged: block_tables [S, max_blocks] (varlen: unused)
    block_size,
    stride_bt,
    stride_qt,
    stride_qh,
    stride_qd,
    stride_kt,
    stride_kh,
    stride_kd,
    stride_vt,
    stride_vh,
    stride_vd,
    stride_ot,
    stride_oh,
    stride_od,
    qk_scale,
    window,
    SLOPES,  # [H] float32 ALiBi slopes (ALIBI only)
    GROUP: tl.constexpr,  # query heads per kv head
    CAUSAL: tl.constexpr,
    WINDOW: tl.constexpr,
    PAGED: tl.constexpr,
    ALIBI: tl.constexpr,
    FP32_DOT: tl.constexpr,
    HEAD_D: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    # grid: (query tiles of the longest sequence, H, S); the last query tiles (the most keys when causal)
    # are launched first so the long programs do not trail at the end.
    pid_m = tl.num_programs(0) - 1 - tl.program_id(0)
    h = tl.program_id(1)
    s = tl.program_id(2)
    q_start = tl.load(CU_Q + s)
    n_q = tl.load(CU_Q + s + 1) - q_start
    if pid_m * BLOCK_M >= n_q:
        return
    if PAGED:
        kv_start = 0
        k_len = tl.load(CU_K + s)
        BT = BT + s.to(tl.int64) * stride_bt
    else:
        kv_start = tl.load(CU_K + s)
        k_len = tl.load(CU_K + s + 1) - kv_start
    q_off = tl.maximum(k_len - n_q, 0)  # position of the sequence's first query
    kvh = h // GROUP
    K = K + kvh.to(tl.int64) * stride_kh
    V = V + kvh.to(tl.int64) * stride_vh

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    m_ok = offs_m < n_q
    d_ok = offs_d < HEAD_D
    q_rows = (q_start + offs_m).to(tl.int64)
    q_ptrs = Q + q_rows[:, None] * stride_qt + h * stride_qh + offs_d[None, :] * stride_qd
    q = tl.load(q_ptrs, mask=m_ok[:, None] & d_ok[None, :], other=0.0)  # [BLOCK_M, BLOCK_D]
    if FP32_DOT:
        q = q.to(tl.float32)
    q_pos = q_off + offs_m
    if ALIBI:
        slope = tl.load(SLOPES + h) * 1.4426950408889634  # exp(x) = exp2(x * log2 e)
    else:
        slope = 0.0

    # Key range of the tile's real rows: visible [lo, hi), and the part [full_lo, full_hi) visible to all.
    min_q = q_off + pid_m * BLOCK_M
    max_q = q_off + tl.minimum((pid_m + 1) * BLOCK_M, n_q) - 1
    if CAUSAL:
        hi = tl.minimum(k_len, max_q + 1)
        full_hi = tl.minimum(k_len, min_q + 1)
    else:
        hi = k_len
        full_hi = k_len
    full_hi = (full_hi // BLOCK_N) * BLOCK_N
    # [lo, b) masked, [b, c) unmasked, [c, hi) masked; b and c are tile aligned unless they reach hi
    if WINDOW:
        lo = (tl.maximum(min_q - window + 1, 0) // BLOCK_N) * BLOCK_N
        full_lo = tl.cdiv(tl.maximum(max_q - window + 1, 0), BLOCK_N) * BLOCK_N
        b = tl.minimum(tl.maximum(full_lo, lo), hi)
    else:
        lo = 0
        b = 0
    c = tl.maximum(full_hi, b)

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    acc, l_i, m_i = _attn_tiles(
        acc, l_i, m_i, q, q_pos, K, V, BT, block_size, kv_start, k_len, lo, b,
        stride_kt, stride_vt, stride_kd, stride_vd, offs_d, qk_scale, window, slope,
        True, CAUSAL, WINDOW, PAGED, ALIBI, BLOCK_D == HEAD_D, FP32_DOT, BLOCK_N, HEAD_D,
    )  # fmt: skip
    acc, l_i, m_i = _attn_tiles(
        acc, l_i, m_i, q, q_pos, K, V, BT, block_size, kv_start, k_len, b, c,
        stride_kt, stride_vt, stride_kd, stride_vd, offs_d, qk_scale, window, slope,
        False, CAUSAL, WINDOW, PAGED, ALIBI, BLOCK_D == HEAD_D, FP32_DOT, BLOCK_N, HEAD_D,
    )  # fmt: skip
    acc, l_i, m_i = _attn_tiles(
        acc, l_i, m_i, q, q_pos, K, V, BT, block_size, kv_start, k_len, c, hi,
        stride_kt, stride_vt, stride_kd, stride_vd, offs_d, qk_scale, window, slope,
        True, CAUSAL, WINDOW, PAGED, ALIBI, BLOCK_D == HEAD_D, FP32_DOT, BLOCK_N, HEAD_D,
    )  # fmt: skip

    # rows that saw no key have acc = 0 and l = 0: divide by 1 to output zeros
    acc = acc / tl.where(l_i == 0.0, 1.0, l_i)[:, None]
    o_ptrs = Out + q_rows[:, None] * stride_ot + h * stride_oh + offs_d[None, :] * stride_od
    tl.store(o_ptrs, acc.to(Out.dtype.element_ty), mask=m_ok[:, None] & d_ok[None, :])


def _config(head_dim: int, dtype: torch.dtype, max_seqlen_q: int) -> tuple[int, int, int, int, int]:
    """(BLOCK_M, BLOCK_N, BLOCK_D, num_warps, num_stages) for an H100-class GPU (fp16/bf16 tiles compiled for
    sm_90 without register spills, within the shared memory); 16 x 16 tiles under the interpreter, so that the
    tests' tiny sequences still span several query and key tiles."""
    block_d = max(16, triton.next_power_of_2(head_dim))
    if INTERPRET:
        return 16, 16, block_d, 4, 1
    if dtype == torch.float32:
        # exact fp32 ("ieee") dots run on the FMA units, not the tensor cores: a correctness path (tests), on
        # tiles small enough not to spill
        block_m, block_n, warps, stages = (64, 32, 8, 2) if block_d <= 64 else (32, 16, 8, 2 if block_d <= 128 else 1)
    elif block_d <= 64:
        block_m, block_n, warps, stages = 128, 64, 4, 3
    elif block_d <= 128:
        block_m, block_n, warps, stages = 128, 64, 8, 3
    else:  # 256: the fp32 accumulator alone is 64 x 256 per program
        block_m, block_n, warps, stages = 64, 64, 8, 2
    # short query chunks (chunked prefill tails, one-token sequences): do not pay for 128 empty rows
    block_m = min(block_m, max(16, triton.next_power_of_2(max_seqlen_q)))
    return block_m, block_n, block_d, warps, stages


def _max_seqlen(cu_seqlens: torch.Tensor) -> int:
    # host sync: callers that know the value (the engine does) pass max_seqlen_q instead
    return int((cu_seqlens[1:] - cu_seqlens[:-1]).max().item()) if cu_seqlens.numel() > 1 else 0


def _launch(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens_q: torch.Tensor,
    kv_lens: torch.Tensor,
    block_tables: torch.Tensor | None,
    block_size: int,
    scale: float,
    causal: bool,
    sliding_window: int | None,
    max_seqlen_q: int | None,
    alibi_slopes: torch.Tensor | None = None,
    config: tuple[int, int, int, int] | None = None,
) -> torch.Tensor:
    T, H, D = q.shape
    hkv = k.shape[1]
    assert k.shape[2] == D and v.shape == k.shape, (q.shape, k.shape, v.shape)
    assert H % hkv == 0, f"{H} query heads are not a multiple of {hkv} kv heads"
    assert sliding_window is None or sliding_window > 0, sliding_window
    assert alibi_slopes is None or alibi_slopes.shape == (H,), alibi_slopes
    out = torch.empty((T, H, D), dtype=q.dtype, device=q.device)
    num_seqs = cu_seqlens_q.shape[0] - 1
    if T == 0 or num_seqs == 0:
        return out
    if max_seqlen_q is None:
        max_seqlen_q = _max_seqlen(cu_seqlens_q)
    block_m, block_n, block_d, num_warps, num_stages = _config(D, q.dtype, max_seqlen_q)
    if config is not None:
        block_m, block_n, num_warps, num_stages = config
    paged = block_tables is not None
    grid = (triton.cdiv(max_seqlen_q, block_m), H, num_seqs)
    if grid[0] == 0:
        return out
    fp32_dot = INTERPRET or q.dtype == torch.float32
    alibi = alibi_slopes is not None
    key = ("prefill", q.device, q.dtype, k.dtype, H // hkv, causal, sliding_window is not None, paged, alibi, fp32_dot,
           D, block_m, block_n, block_d, num_warps)  # fmt: skip
    launch_fitting(
        _prefill_attention_kernel, grid, key, num_stages,
        q, k, v, out, cu_seqlens_q, kv_lens, block_tables if paged else cu_seqlens_q,
        block_size, block_tables.stride(0) if paged else 0,
        *q.stride(), *k.stride(), *v.stride(), *out.stride(),
        scale * _LOG2E, sliding_window or 0, alibi_slopes.float().contiguous() if alibi else cu_seqlens_q,
        GROUP=H // hkv, CAUSAL=causal, WINDOW=sliding_window is not None, PAGED=paged, ALIBI=alibi,
        FP32_DOT=fp32_dot, HEAD_D=D, BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_D=block_d, num_warps=num_warps,
    )  # fmt: skip
    return out


def varlen_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens_q: torch.Tensor,
    cu_seqlens_k: torch.Tensor,
    scale: float,
    causal: bool = True,
    sliding_window: int | None = None,
    max_seqlen_q: int | None = None,
    alibi_slopes: torch.Tensor | None = None,
) -> torch.Tensor:
    """Prefill over contiguous K/V → [Tq, H, D] in q.dtype.

    q [Tq, H, D], k/v [Tk, Hkv, D] (H a multiple of Hkv; any row / head strides, e.g. views of a fused qkv);
    cu_seqlens_q / cu_seqlens_k [S + 1] int32: sequence i has queries ``cu_seqlens_q[i]:[i+1]`` and keys
    ``cu_seqlens_k[i]:[i+1]``, its queries being its last positions. ``causal=False`` for encoders;
    ``sliding_window`` w: key visible iff q_pos - w < k_pos. ``max_seqlen_q`` (the longest query run) sizes
    the grid; without it it is read from cu_seqlens_q (a host sync). ``alibi_slopes`` [H]: add
    -slope_h * |q_pos - k_pos| to head h's scores (JinaBERT).
    """
    return _launch(
        q, k, v, cu_seqlens_q, cu_seqlens_k, None, 1, scale, causal, sliding_window, max_seqlen_q, alibi_slopes
    )  # fmt: skip


def paged_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,
    cu_seqlens_q: torch.Tensor,
    context_lens: torch.Tensor,
    block_size: int,
    scale: float,
    sliding_window: int | None = None,
    max_seqlen_q: int | None = None,
    config: tuple[int, int, int, int] | None = None,
) -> torch.Tensor:
    """Causal attention of new tokens over the paged cache (their own K/V already stored) → [T, H, D].

    q [T, H, D]; k_cache/v_cache [num_blocks * block_size, Hkv, D]; block_tables [S, max_blocks] int32;
    cu_seqlens_q [S + 1] int32; context_lens [S] int32: sequence i's queries are the last positions of its
    ``context_lens[i]`` cached tokens. ``max_seqlen_q`` as in ``varlen_attention``. ``config``: force (BLOCK_M,
    BLOCK_N, num_warps, num_stages) (``benchmarks/bench_tune.py`` sweeps them on a GPU).
    """
    return _launch(
        q, k_cache, v_cache, cu_seqlens_q, context_lens, block_tables, block_size, scale, True, sliding_window,
        max_seqlen_q, config=config,
    )  # fmt: skip
