"""Decode attention over the paged KV cache: one query per sequence, split-K (flash-decoding).

Stage 1, grid (S, Hkv, num_splits): a program takes one sequence, one kv head and ALL the query heads that
share it (GQA), so every K/V tile is loaded once for the whole group. It walks its share of the sequence's
visible positions (the last ``sliding_window`` of its ``context_lens[i]``), gathering each key's slot
through the block table, with an online softmax in float32. With one split it writes the output directly;
otherwise it writes a partial (normalised output, log-sum-exp) that stage 2, grid (S, H), merges.

Everything the host decides (grid, num_splits, block sizes) depends on shapes only, never on the values of
``context_lens``, and the partials can live in a caller's preallocated workspace: the call can be captured
in a CUDA graph and replayed for any context lengths up to the block table's capacity.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels import launch

LOG2E = 1.4426950408889634
# Stage 1 splits a sequence only while each split keeps at least this many positions of the table's
# capacity (min(max_blocks * block_size, sliding_window)): shorter shares would cost more in partials than
# they win in parallelism.
MIN_TOKENS_PER_SPLIT = 64
MAX_SPLITS = 64


@triton.jit
def _decode_stage1_kernel(
    Q,
    KC,
    VC,
    BLOCK_TABLES,
    CONTEXT_LENS,
    OUT,
    PART,
    LSE,
    qk_scale,
    window,
    stride_qs,
    stride_qh,
    stride_qd,
    stride_kcs,
    stride_kch,
    stride_kcd,
    stride_vcs,
    stride_vch,
    stride_vcd,
    stride_bt,
    stride_os,
    stride_oh,
    GROUP: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    BLOCK_SIZE: tl.constexpr,
    BLOCK_G: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_N: tl.constexpr,
    USE_DOT: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
    HAS_WINDOW: tl.constexpr,
    DIRECT_OUT: tl.constexpr,
):
    seq = tl.program_id(0)
    kvh = tl.program_id(1)
    split = tl.program_id(2)
    num_splits = tl.num_programs(2)
    num_heads = tl.num_programs(1) * GROUP

    # Visible keys: [start, ctx). The query sits at ctx - 1, so causality is the upper bound and the window
    # (key visible iff q_pos - window < k_pos) the lower one: no per-element mask beyond the range.
    ctx = tl.load(CONTEXT_LENS + seq).to(tl.int32)
    start = ctx * 0
    if HAS_WINDOW:
        start = tl.minimum(tl.maximum(ctx - window, 0), ctx)
    # Splits share the visible range in whole tiles: trailing splits may get nothing (short contexts).
    tiles_per_split = tl.cdiv(tl.cdiv(ctx - start, BLOCK_N), num_splits)
    lo = start + split * tiles_per_split * BLOCK_N
    hi = tl.minimum(lo + tiles_per_split * BLOCK_N, ctx)

    offs_g = tl.arange(0, BLOCK_G)
    offs_d = tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, BLOCK_N)
    heads = kvh * GROUP + offs_g  # [BLOCK_G]; rows >= GROUP pad the group up to a tl.dot-able size
    g_mask = offs_g < GROUP
    d_mask = offs_d < HEAD_DIM
    gd_mask = g_mask[:, None] & d_mask[None, :]

    # bf16/fp16 → float32 before tl.dot (the interpreter's bf16 dot is wrong); on the GPU a tf32 dot of
    # upcast 16-bit values is still exact in its operands (their mantissas fit in tf32's).
    q = tl.load(Q + seq * stride_qs + heads[:, None] * stride_qh + offs_d[None, :] * stride_qd, mask=gd_mask, other=0.0)
    q = q.to(tl.float32)  # [BLOCK_G, BLOCK_D]

    m_i = tl.full([BLOCK_G], float("-inf"), tl.float32)  # running max, log2 domain
    l_i = tl.zeros([BLOCK_G], tl.float32)  # running sum of exp2(score - m_i)
    acc = tl.zeros([BLOCK_G, BLOCK_D], tl.float32)

    bt_row = BLOCK_TABLES + seq.to(tl.int64) * stride_bt
    k_head = KC + kvh * stride_kch
    v_head = VC + kvh * stride_vch
    for n0 in range(lo, hi, BLOCK_N):
        pos = n0 + offs_n  # [BLOCK_N] positions in the sequence
        n_mask = pos < hi
        block = tl.load(bt_row + pos // BLOCK_SIZE, mask=n_mask, other=0).to(tl.int64)
        slot = block * BLOCK_SIZE + pos % BLOCK_SIZE  # [BLOCK_N]
        nd_mask = n_mask[:, None] & d_mask[None, :]
        k = tl.load(k_head + slot[:, None] * stride_kcs + offs_d[None, :] * stride_kcd, mask=nd_mask, other=0.0)
        k = k.to(tl.float32)  # [BLOCK_N, BLOCK_D]
        if USE_DOT:
            s = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION)
        else:  # a group too small for tl.dot: broadcast-multiply and reduce over D
            s = tl.sum(q[:, None, :] * k[None, :, :], axis=2)
        s = tl.where(n_mask[None, :], s * qk_scale, float("-inf"))  # [BLOCK_G, BLOCK_N]

        # Every tile holds at least one visible key, so m_new is finite and no row computes inf - inf.
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)

        v = tl.load(v_head + slot[:, None] * stride_vcs + offs_d[None, :] * stride_vcd, mask=nd_mask, other=0.0)
        v = v.to(tl.float32)  # [BLOCK_N, BLOCK_D]
        if USE_DOT:
            pv = tl.dot(p, v, input_precision=DOT_PRECISION)
        else:
            pv = tl.sum(p[:, :, None] * v[None, :, :], axis=1)
        acc = acc * alpha[:, None] + pv
        m_i = m_new

    # An empty share (context 0, or a trailing split) has l_i == 0: it writes zeros and lse = -inf.
    nonempty = l_i > 0
    out = acc / tl.where(nonempty, l_i, 1.0)[:, None]
    if DIRECT_OUT:
        o_ptrs = OUT + seq * stride_os + heads[:, None] * stride_oh + offs_d[None, :]
        tl.store(o_ptrs, out.to(OUT.dtype.element_ty), mask=gd_mask)
    else:
        row = (seq * num_heads + heads) * num_splits + split  # [BLOCK_G] rows of PART [S, H, splits, D]
        tl.store(PART + row[:, None].to(tl.int64) * HEAD_DIM + offs_d[None, :], out, mask=gd_mask)
        lse = tl.where(nonempty, m_i + tl.log2(tl.where(nonempty, l_i, 1.0)), float("-inf"))
        tl.store(LSE + row, lse, mask=g_mask)


@triton.jit
def _decode_stage2_kernel(
    PART,
    LSE,
    OUT,
    num_splits,
    stride_os,
    stride_oh,
    HEAD_DIM: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_P: tl.constexpr,
    CHUNK_P: tl.constexpr,
):
    # One program merges the num_splits partials of one (sequence, head): weights 2^(lse_j - max).
    seq = tl.program_id(0)
    head = tl.program_id(1)
    row0 = (seq * tl.num_programs(1) + head) * num_splits

    offs_p = tl.arange(0, BLOCK_P)
    lse = tl.load(LSE + row0 + offs_p, mask=offs_p < num_splits, other=float("-inf"))
    m = tl.max(lse, axis=0)
    m = tl.where(m == float("-inf"), 0.0, m)  # every split empty (context 0): all weights 0, output 0
    den = tl.sum(tl.exp2(lse - m), axis=0)

    offs_d = tl.arange(0, BLOCK_D)
    d_mask = offs_d < HEAD_DIM
    offs_c = tl.arange(0, CHUNK_P)
    acc = tl.zeros([BLOCK_D], tl.float32)
    for p0 in range(0, num_splits, CHUNK_P):
        p = p0 + offs_c
        p_mask = p < num_splits
        w = tl.exp2(tl.load(LSE + row0 + p, mask=p_mask, other=float("-inf")) - m)  # [CHUNK_P]
        part_ptrs = PART + (row0 + p)[:, None].to(tl.int64) * HEAD_DIM + offs_d[None, :]
        part = tl.load(part_ptrs, mask=p_mask[:, None] & d_mask[None, :], other=0.0)  # [CHUNK_P, BLOCK_D]
        acc += tl.sum(w[:, None] * part, axis=0)

    out = acc / tl.where(den > 0, den, 1.0)
    tl.store(OUT + seq * stride_os + head * stride_oh + offs_d, out.to(OUT.dtype.element_ty), mask=d_mask)


def decode_num_splits(
    num_seqs: int, num_kv_heads: int, max_context: int, device: torch.device, sliding_window: int | None = None
) -> int:
    """How many splits ``decode_attention`` uses by default: enough (S, Hkv, split) programs for about two
    waves over the SMs, as long as each split keeps ``MIN_TOKENS_PER_SPLIT`` of the positions a sequence can
    see (``max_context`` = the block table's capacity, max_blocks * block_size, capped by the window). Depends
    on shapes only, so a CUDA graph captured for a batch size stays valid; size a workspace with it."""
    if sliding_window is not None:
        max_context = min(max_context, sliding_window)
    # the interpreter (no SM count) runs programs one after the other: no parallelism to fill
    sms = launch.sm_count(torch.device(device)) or 1
    wanted = triton.cdiv(2 * sms, max(1, num_seqs * num_kv_heads))
    useful = triton.cdiv(max(1, max_context), MIN_TOKENS_PER_SPLIT)
    return max(1, min(wanted, useful, MAX_SPLITS))


def decode_workspace_numel(num_seqs: int, num_heads: int, head_dim: int, num_splits: int) -> int:
    """float32 elements of the partials for ``num_splits`` > 1: [S, H, splits, D] outputs + [S, H, splits]
    log-sum-exps. One flat buffer of the largest batch's size can serve every captured batch size."""
    return num_seqs * num_heads * num_splits * (head_dim + 1)


def _tiles(head_dim: int, group: int) -> tuple[int, int, int, int]:
    """(BLOCK_D, BLOCK_G, BLOCK_N, num_warps): ~8 KiB of 16-bit K (and of V) per tile whatever the head_dim;
    the group padded to 16 rows for tl.dot, except plain multi-head attention (group 1)."""
    block_d = triton.next_power_of_2(head_dim)
    block_g = 1 if group == 1 else max(16, triton.next_power_of_2(group))
    block_n = max(16, min(64, 4096 // block_d))
    num_warps = 8 if block_d * max(block_g, block_n) >= 8192 else 4
    return block_d, block_g, block_n, num_warps


def decode_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,
    context_lens: torch.Tensor,
    block_size: int,
    scale: float,
    sliding_window: int | None = None,
    num_splits: int | None = None,
    workspace: torch.Tensor | None = None,
    tiles: tuple[int, int, int] | None = None,
) -> torch.Tensor:
    """One query per sequence over the paged cache → [S, H, D] in q.dtype (contiguous).

    q [S, H, D] (any strides), the query of sequence i at position ``context_lens[i] - 1``;
    k_cache / v_cache [num_blocks * block_size, Hkv, D] (H a multiple of Hkv), any float dtype;
    block_tables [S, max_blocks] int32, context_lens [S] int32 on the device (0: a padding row, output 0).
    Sequence i attends to its first ``context_lens[i]`` positions, only the last ``sliding_window`` of them
    when given. ``num_splits`` defaults to ``decode_num_splits``; with more than one, the partials go to
    ``workspace`` (flat float32, at least ``decode_workspace_numel`` elements) or a fresh buffer.
    No host synchronisation: capturable in a CUDA graph. ``tiles``: force stage 1's (BLOCK_N positions a step,
    num_warps, num_stages) (``benchmarks/bench_tune.py`` sweeps them on a GPU).
    """
    S, H, D = q.shape
    num_slots, hkv, d_cache = k_cache.shape
    assert v_cache.shape == k_cache.shape and d_cache == D, (q.shape, k_cache.shape, v_cache.shape)
    assert H % hkv == 0, f"{H} query heads are not a multiple of {hkv} kv heads"
    assert block_tables.dim() == 2 and block_tables.shape[0] == S, (block_tables.shape, S)
    assert context_lens.shape == (S,), (context_lens.shape, S)
    assert num_slots % block_size == 0, (num_slots, block_size)
    out = torch.empty((S, H, D), dtype=q.dtype, device=q.device)
    if S == 0:
        return out
    if num_splits is None:
        num_splits = decode_num_splits(S, hkv, block_tables.shape[1] * block_size, q.device, sliding_window)
    assert num_splits >= 1, num_splits

    group = H // hkv
    block_d, block_g, block_n, num_warps = _tiles(D, group)
    num_stages = 2
    if tiles is not None:
        block_n, num_warps, num_stages = tiles
    if num_splits == 1:
        part = lse = out  # unused: stage 1 writes the output itself
    else:
        numel = decode_workspace_numel(S, H, D, num_splits)
        if workspace is None:
            workspace = torch.empty(numel, dtype=torch.float32, device=q.device)
        assert workspace.dtype == torch.float32 and workspace.is_contiguous(), "workspace: contiguous float32"
        assert workspace.numel() >= numel, f"workspace of {workspace.numel()} < {numel} elements"
        part = workspace[: S * H * num_splits * D]
        lse = workspace[S * H * num_splits * D : numel]

    # fp32 inputs need an exact (ieee) dot; 16-bit ones upcast are exact in tf32, at tensor-core speed.
    dot_precision = "ieee" if torch.float32 in (q.dtype, k_cache.dtype, v_cache.dtype) else "tf32"
    _decode_stage1_kernel[(S, hkv, num_splits)](
        q, k_cache, v_cache, block_tables, context_lens, out, part, lse,
        scale * LOG2E, sliding_window if sliding_window is not None else 0,
        *q.stride(), *k_cache.stride(), *v_cache.stride(), block_tables.stride(0), *out.stride()[:2],
        GROUP=group, HEAD_DIM=D, BLOCK_SIZE=block_size, BLOCK_G=block_g, BLOCK_D=block_d, BLOCK_N=block_n,
        USE_DOT=block_g >= 16, DOT_PRECISION=dot_precision, HAS_WINDOW=sliding_window is not None,
        DIRECT_OUT=num_splits == 1, num_warps=num_warps, num_stages=num_stages,
    )  # fmt: skip
    if num_splits > 1:
        block_p = triton.next_power_of_2(num_splits)
        chunk_p = max(1, min(block_p, 4096 // block_d))  # [CHUNK_P, BLOCK_D] partials per step
        _decode_stage2_kernel[(S, H)](
            part, lse, out, num_splits, *out.stride()[:2],
            HEAD_DIM=D, BLOCK_D=block_d, BLOCK_P=block_p, CHUNK_P=chunk_p, num_warps=4 if block_d >= 256 else 2,
        )  # fmt: skip
    return out
