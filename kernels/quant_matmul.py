"""Matmul with the weight kept in GGUF's quantized blocks (``reference.dequantize`` / ``reference.quant_matmul``).

The weight stays as the GGUF file stores it, [N, K / block_weights * block_bytes] uint8, one row of blocks per
output feature; it is dequantized in registers, never materialised as a float matrix:

- Q8_0: 34-byte blocks of 32 weights: fp16 d, 32 x int8 q; w = q * d.
- Q4_0 / Q4_1 / Q5_0 / Q5_1: 18- / 20- / 22- / 24-byte blocks of 32 weights: fp16 d, fp16 m (the _1 types), 4 bytes
  of fifth bits (the Q5 types), 16 bytes of nibbles (byte j: weight j low, weight j + 16 high); w = d * (q - 8 or
  16) for the _0 types, (d * q) + m for the _1 types.
- Q4_K: 144-byte super-blocks of 256 weights: fp16 d, fp16 dmin, 12 bytes of 6-bit (scale, min) for 8 sub-blocks of
  32, 128 bytes of nibbles (byte j of chunk c = j // 32 holds weight c*64 + j%32 low, c*64 + 32 + j%32 high);
  w = (d * sc) * q - (dmin * m).
- Q6_K: 210-byte super-blocks of 256 weights: 128 bytes ql (low 4 bits), 64 bytes qh (high 2 bits), 16 int8 scales
  (one per 16 weights), fp16 d; w = (d * scale) * (q - 32).

Block sizes are not multiples of 4 bytes (34, 18, 22, 210), so every field is read as uint8 and the fp16 scales are
built from their two bytes. Each helper below decodes a fixed group of 32-weight columns from the bytes it loads once
(a Q4_K byte chunk gives two groups, a Q6_K half super-block four); the kernels pair every group with the matching
32 columns of x, so the weight never needs re-interleaving. All arithmetic follows ``gguf.quants`` operation for
operation in float32, which makes ``dequantize`` bit for bit equal to it.

Two matmul paths:
- GEMV (decode, M <= GEMV_MAX_M): each program owns BLOCK_N output features for all M rows and streams its share of
  the weight exactly once (memory-bound: ~4.5 bits per weight read for Q4_K instead of 16). Products are summed
  into a [BLOCK_M, BLOCK_N, 32] float32 accumulator reduced once at the end. When N alone gives too few programs to
  fill the GPU, K is split across programs that write float32 partials, summed afterwards (deterministic, no atomics).
- GEMM (prefill): BLOCK_M x BLOCK_N tiles; each 32-deep slice of the weight tile is dequantized in registers,
  rounded to x's dtype and fed to ``tl.dot`` with float32 accumulation.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels import launch
from kernels.gguf_blocks import GGUF_BLOCKS

# rows of x up to which the GEMV path is taken: weights streamed once, all rows handled by every program
GEMV_MAX_M = 8
# K is walked in chunks of 256 weights: one Q4_K / Q6_K super-block, eight 32-weight blocks
CHUNK = 256


# --- dequantization helpers (shared by all kernels) -------------------------------------------------------------
# ``blk`` is a tensor of byte pointers to the start of a block (one per weight row, shape S: [BN, 1] or [1, BN]),
# ``i`` the column inside a 32-weight group ([1, 32] or [32, 1]), ``mask`` (shape S) the rows that exist. The
# decoded group has the broadcast shape of blk and i. Masked rows read zero bytes and decode to 0.0, never NaN.


@triton.jit
def _load_f16(ptr, mask):
    """Two little-endian bytes at ``ptr`` (any shape) → float32 (exact)."""
    lo = tl.load(ptr, mask=mask, other=0).to(tl.uint16)
    hi = tl.load(ptr + 1, mask=mask, other=0).to(tl.uint16)
    return ((hi << 8) | lo).to(tl.uint16).to(tl.float16, bitcast=True).to(tl.float32)


@triton.jit
def _q32(blk, i, mask, QTYPE: tl.constexpr):
    """A 32-weight block → its weights i. Q8_0: [d fp16][32 x int8], w = q * d. The 4/5-bit types: [d fp16]
    [m fp16: _1 types][qh: 4 bytes, bit j = weight j's fifth bit: Q5 types][16 bytes: weight j in the low nibble
    of byte j, weight j + 16 in the high one]; w = d * (q - 8 or 16) for _0 types, (d * q) + m for _1 types."""
    d = _load_f16(blk, mask)
    if QTYPE == "Q8_0":
        w = tl.load(blk + 2 + i, mask=mask, other=0).to(tl.int8, bitcast=True).to(tl.float32) * d
    else:
        qs = blk + 2
        if QTYPE == "Q4_1":
            qs = blk + 4
        if QTYPE == "Q5_0":
            qs = blk + 6
        if QTYPE == "Q5_1":
            qs = blk + 8
        q = (tl.load(qs + (i % 16), mask=mask, other=0).to(tl.int32) >> (4 * (i // 16))) & 0x0F
        if QTYPE == "Q5_0" or QTYPE == "Q5_1":
            high = tl.load(qs - 4 + (i // 8), mask=mask, other=0).to(tl.int32)
            q = q | (((high >> (i % 8)) & 1) << 4)
        if QTYPE == "Q4_0":
            w = d * (q - 8).to(tl.float32)
        elif QTYPE == "Q5_0":
            w = d * (q - 16).to(tl.float32)
        else:
            w = d * q.to(tl.float32) + _load_f16(blk + 2, mask)
    return w


@triton.jit
def _q4_k_scale_min(sc_ptr, S: tl.constexpr, mask):
    """(scale, min) of Q4_K sub-block S (0..7) from the 12 packed bytes at ``sc_ptr`` → two float32.

    Bytes 0-3: low 6 bits of scales 0-3, top 2 bits of scales 4-7; bytes 4-7: the same for the mins; bytes 8-11:
    low 4 bits of scale (low nibble) and min (high nibble) 4-7."""
    if S < 4:
        sc = tl.load(sc_ptr + S, mask=mask, other=0) & 0x3F
        m = tl.load(sc_ptr + (S + 4), mask=mask, other=0) & 0x3F
    else:
        sc_hi = tl.load(sc_ptr + (S - 4), mask=mask, other=0)
        m_hi = tl.load(sc_ptr + S, mask=mask, other=0)
        low = tl.load(sc_ptr + (S + 4), mask=mask, other=0)
        sc = (low & 0x0F) | ((sc_hi >> 2) & 0x30)
        m = (low >> 4) | ((m_hi >> 2) & 0x30)
    return sc.to(tl.float32), m.to(tl.float32)


@triton.jit
def _q4_k_chunk(blk, d, dmin, C: tl.constexpr, i, mask):
    """Q4_K super-block with decoded d, dmin → its weights C*64 + i (low nibbles, sub-block 2C) and C*64 + 32 + i
    (high nibbles, sub-block 2C + 1), from one load of the chunk's 32 bytes."""
    sc0, m0 = _q4_k_scale_min(blk + 4, 2 * C, mask)
    sc1, m1 = _q4_k_scale_min(blk + 4, 2 * C + 1, mask)
    qs = tl.load(blk + (16 + C * 32) + i, mask=mask, other=0)
    # gguf's order: (d * sc) * q - (dmin * m), two roundings after the products (no FMA: see dequantize)
    lo = (d * sc0) * (qs & 0x0F).to(tl.float32) - dmin * m0
    hi = (d * sc1) * (qs >> 4).to(tl.float32) - dmin * m1
    return lo, hi


@triton.jit
def _q6_k_group(blk, d, ql, qh, H: tl.constexpr, T: tl.constexpr, i, mask):
    """Q6_K weights H*128 + T*32 + i (T in 0..3) of a super-block, from its loaded bytes ``ql`` (ql[H*64 + (T%2)*32
    + i]) and ``qh`` (qh[H*32 + i]): low nibble (T // 2 picks which) | 2 high bits (T picks which) << 4, minus 32."""
    q = ((ql >> (4 * (T // 2))) & 0x0F) | (((qh >> (2 * T)) & 0x03) << 4)
    q = (q.to(tl.int32) - 32).to(tl.float32)
    # 16 weights per scale: this group spans scales H*8 + T*2 and the next
    s_ptr = blk + (192 + H * 8 + T * 2)
    s0 = tl.load(s_ptr, mask=mask, other=0).to(tl.int8, bitcast=True).to(tl.float32)
    s1 = tl.load(s_ptr + 1, mask=mask, other=0).to(tl.int8, bitcast=True).to(tl.float32)
    return tl.where(i < 16, d * s0, d * s1) * q


@triton.jit
def _q6_k_half(blk, d, H: tl.constexpr, i, mask):
    """The 4 groups of 32 weights of half H of a Q6_K super-block: each ql / qh byte is loaded once."""
    ql0 = tl.load(blk + H * 64 + i, mask=mask, other=0)
    ql1 = tl.load(blk + (H * 64 + 32) + i, mask=mask, other=0)
    qh = tl.load(blk + (128 + H * 32) + i, mask=mask, other=0)
    w0 = _q6_k_group(blk, d, ql0, qh, H, 0, i, mask)
    w1 = _q6_k_group(blk, d, ql1, qh, H, 1, i, mask)
    w2 = _q6_k_group(blk, d, ql0, qh, H, 2, i, mask)
    w3 = _q6_k_group(blk, d, ql1, qh, H, 3, i, mask)
    return w0, w1, w2, w3


# --- dequantize --------------------------------------------------------------------------------------------------


@triton.jit
def _dequantize_kernel(
    w_ptr, out_ptr, N, K, stride_wn, stride_on, QTYPE: tl.constexpr, NBYTES: tl.constexpr, BLOCK_N: tl.constexpr
):
    # grid (cdiv(N, BLOCK_N), cdiv(K, CHUNK)): BLOCK_N rows x one 256-weight chunk per program
    u = tl.program_id(1)
    offs_n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    mask = (offs_n < N)[:, None]  # [BN, 1]
    rows = w_ptr + offs_n.to(tl.int64)[:, None] * stride_wn
    out = out_ptr + offs_n.to(tl.int64)[:, None] * stride_on + u * 256
    i = tl.arange(0, 32)[None, :]  # [1, 32]
    if QTYPE == "Q4_K":
        blk = rows + u * 144
        d = _load_f16(blk, mask)
        dmin = _load_f16(blk + 2, mask)
        for c in tl.static_range(4):
            lo, hi = _q4_k_chunk(blk, d, dmin, c, i, mask)
            tl.store(out + c * 64 + i, lo, mask=mask)
            tl.store(out + (c * 64 + 32) + i, hi, mask=mask)
    elif QTYPE == "Q6_K":
        blk = rows + u * 210
        d = _load_f16(blk + 208, mask)
        for h in tl.static_range(2):
            w0, w1, w2, w3 = _q6_k_half(blk, d, h, i, mask)
            tl.store(out + h * 128 + i, w0, mask=mask)
            tl.store(out + (h * 128 + 32) + i, w1, mask=mask)
            tl.store(out + (h * 128 + 64) + i, w2, mask=mask)
            tl.store(out + (h * 128 + 96) + i, w3, mask=mask)
    else:  # eight 32-weight blocks
        for j in tl.static_range(8):
            ok = mask & (u * 256 + j * 32 < K)
            tl.store(out + j * 32 + i, _q32(rows + (u * 8 + j) * NBYTES, i, ok, QTYPE), mask=ok)


def _check(blocks: torch.Tensor, qtype: str) -> tuple[int, int]:
    """Validates the block tensor → (N, K)."""
    if qtype not in GGUF_BLOCKS:
        raise ValueError(f"GGUF type {qtype!r} is not supported (supported: {', '.join(GGUF_BLOCKS)})")
    weights, nbytes = GGUF_BLOCKS[qtype]
    if blocks.dtype != torch.uint8 or blocks.dim() != 2 or blocks.shape[1] % nbytes:
        raise ValueError(
            f"{qtype} blocks must be a [N, K / {weights} * {nbytes}] uint8 tensor, got {tuple(blocks.shape)} "
            f"{blocks.dtype}"
        )
    return blocks.shape[0], blocks.shape[1] // nbytes * weights


def dequantize(blocks: torch.Tensor, qtype: str) -> torch.Tensor:
    """GGUF blocks [N, K / block_weights * block_bytes] uint8 → the weight [N, K] float32, bit for bit
    ``gguf.quants.dequantize`` (``reference.dequantize``). ``qtype``: a key of ``GGUF_BLOCKS``."""
    N, K = _check(blocks, qtype)
    if blocks.stride(1) != 1:
        blocks = blocks.contiguous()
    out = torch.empty((N, K), dtype=torch.float32, device=blocks.device)
    if N == 0 or K == 0:
        return out
    BLOCK_N = 16
    grid = (triton.cdiv(N, BLOCK_N), triton.cdiv(K, CHUNK))
    # enable_fp_fusion=False: no mul + add may be contracted into an FMA (LLVM and ptxas both do so by default), since
    # an FMA rounds once where numpy rounds twice: Q4_1 / Q5_1's (d * q) + m would differ in the last bit (Q4_K's
    # (d * sc) * q - dmin * m happens to be exact, its product fitting in float32). Fusion buys nothing here anyway.
    _dequantize_kernel[grid](
        blocks, out, N, K, blocks.stride(0), out.stride(0), QTYPE=qtype, NBYTES=GGUF_BLOCKS[qtype][1], BLOCK_N=BLOCK_N,
        num_warps=4, enable_fp_fusion=False,
    )  # fmt: skip
    return out


# --- GEMV (decode) -----------------------------------------------------------------------------------------------


@triton.jit
def _gemv_fma(acc, x_rows, x_mask, k, w):
    """acc [BM, BN, 32] += x[:, k] [BM, 32] (x) w [BN, 32], in float32."""
    x = tl.load(x_rows + k, mask=x_mask, other=0.0).to(tl.float32)
    return acc + x[:, None, :] * w[None, :, :]


@triton.jit
def _gemv_kernel(
    x_ptr,
    w_ptr,
    out_ptr,
    M,
    N,
    K,
    stride_xm,
    stride_wn,
    stride_os,
    stride_om,
    units_per_split,
    QTYPE: tl.constexpr,
    NBYTES: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    # grid (cdiv(N, BLOCK_N), splits): BLOCK_N features x all M rows x chunks [pid_k * units_per_split, +units)
    pid_k = tl.program_id(1)
    offs_n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    mask = (offs_n < N)[:, None]  # [BN, 1]
    rows = w_ptr + offs_n.to(tl.int64)[:, None] * stride_wn
    offs_m = tl.arange(0, BLOCK_M)
    x_mask = (offs_m < M)[:, None]  # [BM, 1]
    x_rows = x_ptr + offs_m[:, None] * stride_xm  # [BM, 1]
    i = tl.arange(0, 32)[None, :]  # [1, 32]
    # products summed per (row, feature, lane): one reduction over the 32 lanes at the end, none in the loop
    acc = tl.zeros((BLOCK_M, BLOCK_N, 32), dtype=tl.float32)

    u_start = pid_k * units_per_split
    u_end = tl.minimum(u_start + units_per_split, tl.cdiv(K, 256))
    for u in range(u_start, u_end):
        k0 = u * 256
        if QTYPE == "Q4_K":
            blk = rows + u * 144
            d = _load_f16(blk, mask)
            dmin = _load_f16(blk + 2, mask)
            for c in tl.static_range(4):
                lo, hi = _q4_k_chunk(blk, d, dmin, c, i, mask)
                acc = _gemv_fma(acc, x_rows, x_mask, k0 + c * 64 + i, lo)
                acc = _gemv_fma(acc, x_rows, x_mask, k0 + (c * 64 + 32) + i, hi)
        elif QTYPE == "Q6_K":
            blk = rows + u * 210
            d = _load_f16(blk + 208, mask)
            for h in tl.static_range(2):
                w0, w1, w2, w3 = _q6_k_half(blk, d, h, i, mask)
                acc = _gemv_fma(acc, x_rows, x_mask, k0 + h * 128 + i, w0)
                acc = _gemv_fma(acc, x_rows, x_mask, k0 + (h * 128 + 32) + i, w1)
                acc = _gemv_fma(acc, x_rows, x_mask, k0 + (h * 128 + 64) + i, w2)
                acc = _gemv_fma(acc, x_rows, x_mask, k0 + (h * 128 + 96) + i, w3)
        else:  # eight 32-weight blocks; K need only be a multiple of 32
            for j in tl.static_range(8):
                in_k = k0 + j * 32 < K
                w = _q32(rows + (u * 8 + j) * NBYTES, i, mask & in_k, QTYPE)
                acc = _gemv_fma(acc, x_rows, x_mask & in_k, k0 + j * 32 + i, w)

    out = tl.sum(acc, axis=2)  # [BM, BN]
    out_ptrs = out_ptr + pid_k * stride_os + offs_m[:, None] * stride_om + offs_n[None, :]
    tl.store(out_ptrs, out.to(out_ptr.dtype.element_ty), mask=x_mask & (offs_n < N)[None, :])


def _gemv_config(block_m: int) -> tuple[int, int]:
    """(BLOCK_N, num_warps) for ``block_m`` rows: at most 16 floats of the [BLOCK_M, BLOCK_N, 32] accumulator and
    8 weights of each decoded [BLOCK_N, 32] group a thread.

    Compiled for sm_90 (``benchmarks/bench_tune.py --compile``), the registers follow those shares, and a
    memory-bound stream wants the warps that fewer registers let an SM hold. The earlier choice, 4 warps over 64 /
    64 / 32 / 16 columns at 1 / 2 / 4 / 8 rows (16 weights a thread at one or two rows, 32 accumulator floats at
    two to eight), took 72-239 registers by type under Triton 3.7 (Q6_K 181-239 at one or two rows) and 76-255
    under 3.6, so 8-28 warps fitted on an SM; these take 48-119 (3.6: 48-168), and 12-40 warps fit.
    ``benchmarks/bench_tune.py`` times both, and the alternatives, on a GPU (docs/benchmarks.md has every type).

    The interpreter (the CPU tests) has no registers to save and pays for every program: it keeps the earlier,
    wider tiles, which halve the suite's GEMV time; narrower ones are tested there as forced configurations."""
    if launch.INTERPRET:
        return (64 if block_m <= 2 else 32 if block_m <= 4 else 16), 4
    if block_m <= 2:
        return 32, 4
    return (16, 4) if block_m == 4 else (16, 8)


def gemv_splits(units: int, programs_n: int, device: torch.device, per_sm: int = 4) -> int:
    """How many ways the GEMV splits K's ``units`` (256-weight chunks) over ``programs_n`` column tiles: enough
    programs for ``per_sm`` per SM, since a memory-bound stream needs many loads in flight. The interpreter (no SM
    count) gets few programs, which keeps the CPU tests fast; a small N still splits K there."""
    sms = launch.sm_count(device) or 4
    return max(1, min(units, triton.cdiv(per_sm * sms, programs_n)))


def _gemv(
    x: torch.Tensor,
    blocks: torch.Tensor,
    qtype: str,
    splits: int | None = None,
    config: tuple[int, int] | None = None,
) -> torch.Tensor:
    """x [M, K] (M <= GEMV_MAX_M, contiguous last axis) → [M, N] in x.dtype. ``splits``: force the K split;
    ``config``: force (BLOCK_N, num_warps)."""
    M, K = x.shape
    N = blocks.shape[0]
    BLOCK_M = triton.next_power_of_2(M)
    BLOCK_N, num_warps = config or _gemv_config(BLOCK_M)
    programs_n = triton.cdiv(N, BLOCK_N)
    units = triton.cdiv(K, CHUNK)
    if splits is None:
        splits = gemv_splits(units, programs_n, x.device)
    units_per_split = triton.cdiv(units, max(1, min(splits, units)))
    splits = triton.cdiv(units, units_per_split)  # no empty splits
    if splits == 1:
        out = torch.empty((M, N), dtype=x.dtype, device=x.device)
    else:
        out = torch.empty((splits, M, N), dtype=torch.float32, device=x.device)
    _gemv_kernel[(programs_n, splits)](
        x, blocks, out, M, N, K, x.stride(0), blocks.stride(0), out.stride(0) if splits > 1 else 0, out.stride(-2),
        units_per_split, QTYPE=qtype, NBYTES=GGUF_BLOCKS[qtype][1], BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N,
        num_warps=num_warps,
    )  # fmt: skip
    return out if splits == 1 else out.sum(0).to(x.dtype)


# --- GEMM (prefill) ----------------------------------------------------------------------------------------------


@triton.jit
def _gemm_dot(acc, x_rows, x_mask, k, w, DOT_F32: tl.constexpr, PRECISION: tl.constexpr):
    """acc [BM, BN] += x[:, k] [BM, 32] @ w [32, BN], w rounded to x's dtype (the tensor-core operand)."""
    x = tl.load(x_rows + k, mask=x_mask, other=0.0)
    w = w.to(x.dtype)
    if DOT_F32:
        # the interpreter's tl.dot is wrong on bf16: same operands, exact float32 products
        return tl.dot(x.to(tl.float32), w.to(tl.float32), acc, input_precision=PRECISION)
    return tl.dot(x, w, acc, input_precision=PRECISION)


@triton.jit
def _gemm_kernel(
    x_ptr,
    w_ptr,
    out_ptr,
    M,
    N,
    K,
    stride_xm,
    stride_wn,
    stride_om,
    QTYPE: tl.constexpr,
    NBYTES: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    GROUP_M: tl.constexpr,
    DOT_F32: tl.constexpr,
    PRECISION: tl.constexpr,
):
    # grouped launch order: GROUP_M row tiles share each column tile, so the weight is re-read from L2, not HBM
    pid = tl.program_id(0)
    tiles_m = tl.cdiv(M, BLOCK_M)
    tiles_n = tl.cdiv(N, BLOCK_N)
    per_group = GROUP_M * tiles_n
    first_m = (pid // per_group) * GROUP_M
    group_m = tl.minimum(tiles_m - first_m, GROUP_M)
    pid_m = first_m + (pid % per_group) % group_m
    pid_n = (pid % per_group) // group_m

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    x_mask = (offs_m < M)[:, None]  # [BM, 1]
    x_rows = x_ptr + offs_m.to(tl.int64)[:, None] * stride_xm
    kx = tl.arange(0, 32)[None, :]  # [1, 32]: k of the x slice
    mask = (offs_n < N)[None, :]  # [1, BN]
    rows = w_ptr + offs_n.to(tl.int64)[None, :] * stride_wn
    i = tl.arange(0, 32)[:, None]  # [32, 1]: k of the weight slice, which is [32, BN]
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)

    for u in range(0, tl.cdiv(K, 256)):
        k0 = u * 256
        if QTYPE == "Q4_K":
            blk = rows + u * 144
            d = _load_f16(blk, mask)
            dmin = _load_f16(blk + 2, mask)
            for c in tl.static_range(4):
                lo, hi = _q4_k_chunk(blk, d, dmin, c, i, mask)
                acc = _gemm_dot(acc, x_rows, x_mask, k0 + c * 64 + kx, lo, DOT_F32, PRECISION)
                acc = _gemm_dot(acc, x_rows, x_mask, k0 + (c * 64 + 32) + kx, hi, DOT_F32, PRECISION)
        elif QTYPE == "Q6_K":
            blk = rows + u * 210
            d = _load_f16(blk + 208, mask)
            for h in tl.static_range(2):
                w0, w1, w2, w3 = _q6_k_half(blk, d, h, i, mask)
                acc = _gemm_dot(acc, x_rows, x_mask, k0 + h * 128 + kx, w0, DOT_F32, PRECISION)
                acc = _gemm_dot(acc, x_rows, x_mask, k0 + (h * 128 + 32) + kx, w1, DOT_F32, PRECISION)
                acc = _gemm_dot(acc, x_rows, x_mask, k0 + (h * 128 + 64) + kx, w2, DOT_F32, PRECISION)
                acc = _gemm_dot(acc, x_rows, x_mask, k0 + (h * 128 + 96) + kx, w3, DOT_F32, PRECISION)
        else:  # eight 32-weight blocks
            for j in tl.static_range(8):
                in_k = k0 + j * 32 < K
                w = _q32(rows + (u * 8 + j) * NBYTES, i, mask & in_k, QTYPE)
                acc = _gemm_dot(acc, x_rows, x_mask & in_k, k0 + j * 32 + kx, w, DOT_F32, PRECISION)

    out_ptrs = out_ptr + offs_m.to(tl.int64)[:, None] * stride_om + offs_n[None, :]
    tl.store(out_ptrs, acc.to(out_ptr.dtype.element_ty), mask=x_mask & mask)


def _gemm_config(M: int) -> tuple[int, int, int, int]:
    """(BLOCK_M, BLOCK_N, num_warps, num_stages) for x [M, K], for an H100: the 128 x 128 tile
    takes 2 stages, its 3 would need 232-320 KiB of shared memory (the limit is 227; ``kernels.cuda_compile``
    reports each). Smaller GPUs drop stages at launch (``launch_fitting``)."""
    block_m = min(128, max(16, triton.next_power_of_2(M)))
    if block_m == 128:
        return 128, 128, 8, 2
    return block_m, 64, 4, 3


def _gemm(
    x: torch.Tensor, blocks: torch.Tensor, qtype: str, config: tuple[int, int, int, int] | None = None
) -> torch.Tensor:
    """x [M, K] (contiguous last axis) → [M, N] in x.dtype. ``config``: force (BLOCK_M >= 16, BLOCK_N >= 16,
    num_warps, num_stages)."""
    M, K = x.shape
    N = blocks.shape[0]
    BLOCK_M, BLOCK_N, num_warps, num_stages = config or _gemm_config(M)
    out = torch.empty((M, N), dtype=x.dtype, device=x.device)
    grid = (triton.cdiv(M, BLOCK_M) * triton.cdiv(N, BLOCK_N),)
    launch.launch_fitting(
        _gemm_kernel, grid, ("gemm", x.device, x.dtype, qtype, BLOCK_M, BLOCK_N, num_warps), num_stages,
        x, blocks, out, M, N, K, x.stride(0), blocks.stride(0), out.stride(0), QTYPE=qtype,
        NBYTES=GGUF_BLOCKS[qtype][1], BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, GROUP_M=8, DOT_F32=launch.INTERPRET,
        # float32 x: true float32 products (TF32 would lose ~3 decimal digits); 16-bit x: tensor cores
        PRECISION="ieee" if x.dtype == torch.float32 else "tf32", num_warps=num_warps,
    )  # fmt: skip
    return out


def quant_matmul(x: torch.Tensor, blocks: torch.Tensor, qtype: str) -> torch.Tensor:
    """x [..., K] float32 / float16 / bfloat16 @ the GGUF weight [N, K] (``blocks`` [N, K / block_weights *
    block_bytes] uint8, as stored) transposed → [..., N] in x.dtype, accumulated in float32.

    ``qtype``: a key of ``GGUF_BLOCKS``; K must be a multiple of the type's block (32 or 256 weights). Up to
    GEMV_MAX_M rows take the streaming GEMV path, more the tensor-core GEMM path."""
    N, K = _check(blocks, qtype)
    if x.shape[-1] != K:
        raise ValueError(f"x has {x.shape[-1]} columns but the {qtype} weight has K = {K}")
    if x.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"x must be float32, float16 or bfloat16, got {x.dtype}")
    lead = x.shape[:-1]
    x2 = x.reshape(-1, K)
    if x2.stride(-1) != 1:
        x2 = x2.contiguous()
    if blocks.stride(1) != 1:
        blocks = blocks.contiguous()
    M = x2.shape[0]
    if M == 0 or N == 0:
        out = torch.empty((M, N), dtype=x.dtype, device=x.device)
    elif K == 0:
        out = torch.zeros((M, N), dtype=x.dtype, device=x.device)
    elif M <= GEMV_MAX_M:
        out = _gemv(x2, blocks, qtype)
    else:
        out = _gemm(x2, blocks, qtype)
    return out.reshape(*lead, N)
