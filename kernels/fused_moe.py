"""Fused mixture-of-experts MLP (``reference.fused_moe``): every token through its top-k experts, in two grouped
GEMMs over all experts at once.

1. ``align_by_expert`` (torch ops on the device, no host sync): the T*k (token, expert) pairs sorted by expert and
   each expert's run padded to a multiple of BLOCK_M, so that every BLOCK_M rows belong to one expert
   (``sorted_pairs``: pair index t*k + j, or T*k for padding; ``block_experts``: the expert of each row block, E
   for blocks past the end, which exit at once).
2. ``_gate_up_kernel``: per (row block, column block of I), the block's tokens gathered from x [T, H] times their
   expert's gate and up rows (w13 [E, 2I, H]), both accumulated in float32, then act(gate) * up written to the
   intermediate [P, I] at the rows' sorted positions: the activation never makes a round trip through memory.
3. ``_down_kernel``: per (row block, column block of H), the intermediate times the expert's w2 [E, H, I], scaled
   by each pair's routing weight, written to its pair's row of a float32 [T*k, H]; the k rows of a token are
   summed afterwards (in a fixed order, no atomics) and cast to x's dtype.

Weights are bf16 / fp16 / fp32 ([E, 2I, H] and [E, H, I] as the checkpoints store them); tl.dot takes the tiles in
their own dtype (float32 operands under the interpreter, whose tl.dot is wrong on bf16).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import triton
import triton.language as tl

from kernels import launch

ACTIVATIONS = ("silu", "gelu_tanh")
_SQRT_2_OVER_PI = tl.constexpr(0.7978845608028654)


def align_by_expert(ids: torch.Tensor, num_experts: int, block_m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """ids [T, k] → (sorted_pairs [P] int32, block_experts [P / block_m] int32), P = a multiple of block_m that
    bounds T*k plus each expert's padding (known without reading the counts back to the host)."""
    flat = ids.reshape(-1).to(torch.int64)
    n = flat.numel()
    # [E]; not torch.bincount, whose CUDA version reads the largest id back to size its output (a host sync, which
    # a CUDA graph capture refuses)
    counts = torch.zeros(num_experts, dtype=torch.int64, device=ids.device).scatter_add_(0, flat, torch.ones_like(flat))
    padded = (counts + block_m - 1) // block_m * block_m
    pad_end = torch.cumsum(padded, 0)
    order = torch.argsort(flat, stable=True)  # pair indices, grouped by expert, in token order within each
    expert = flat[order]
    rank = torch.arange(n, device=ids.device) - (torch.cumsum(counts, 0) - counts)[expert]  # place in its run
    bound = triton.cdiv(n + num_experts * (block_m - 1), block_m) * block_m
    sorted_pairs = torch.full((bound,), n, dtype=torch.int32, device=ids.device)
    sorted_pairs[(pad_end - padded)[expert] + rank] = order.to(torch.int32)
    starts = torch.arange(0, bound, block_m, device=ids.device)
    block_experts = torch.searchsorted(pad_end, starts, right=True).to(torch.int32)  # E past the last run
    return sorted_pairs, block_experts


class Plan(NamedTuple):
    """What both MoE launchers (dense and GGUF experts) set up before their two kernels."""

    sorted_pairs: torch.Tensor  # [P] int32: pair indices sorted by expert, padded (``align_by_expert``)
    block_experts: torch.Tensor  # [P / BLOCK_M] int32: each row block's expert
    intermediate: torch.Tensor  # [P, I] in x's dtype: act(gate) * up of every sorted row
    per_pair: torch.Tensor  # [T * k, H] float32: each pair's weighted output, summed per token afterwards
    precision: str  # tl.dot's: true float32 products for float32 x, tensor cores for 16-bit x


def plan(x: torch.Tensor, ids: torch.Tensor, num_experts: int, inter: int, block_m: int) -> Plan:
    sorted_pairs, block_experts = align_by_expert(ids, num_experts, block_m)
    return Plan(
        sorted_pairs, block_experts,
        torch.empty((sorted_pairs.numel(), inter), dtype=x.dtype, device=x.device),
        torch.empty((ids.numel(), x.shape[1]), dtype=torch.float32, device=x.device),
        "ieee" if x.dtype == torch.float32 else "tf32",
    )  # fmt: skip


@triton.jit
def _round(v, dtype: tl.constexpr, INTERPRET: tl.constexpr):
    """float32 v → dtype, to nearest even as on a GPU: the interpreter truncates to bfloat16, so there the bits are
    rounded first (v + 0x7FFF + the kept lowest bit, then the low half dropped: exact in bfloat16)."""
    if INTERPRET and dtype == tl.bfloat16:
        bits = v.to(tl.uint32, bitcast=True)
        bits = (bits + (0x7FFF + ((bits >> 16) & 1))) & 0xFFFF0000
        v = bits.to(tl.float32, bitcast=True)
    return v.to(dtype)


@triton.jit
def _store_act(acc_g, acc_u, inter_ptr, rows, cols, stride_ip, mask, GELU_TANH: tl.constexpr, DOT_F32: tl.constexpr):
    """act(gate) * up of a [BM, BN] tile (float32 accumulators) → the intermediate's sorted rows, in its dtype."""
    if GELU_TANH:
        z = -2.0 * _SQRT_2_OVER_PI * (acc_g + 0.044715 * acc_g * acc_g * acc_g)
    else:
        z = -acc_g
    act = acc_g / (1.0 + tl.exp(tl.minimum(z, 80.0))) * acc_u
    out_ptrs = inter_ptr + rows.to(tl.int64)[:, None] * stride_ip + cols[None, :]
    tl.store(out_ptrs, _round(act, inter_ptr.dtype.element_ty, DOT_F32), mask=mask)


@triton.jit
def _dot(acc, a, b, DOT_F32: tl.constexpr, PRECISION: tl.constexpr):
    if DOT_F32:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision=PRECISION)
    return tl.dot(a, b.to(a.dtype), acc, input_precision=PRECISION)


@triton.jit
def _tile(pairs_ptr, experts_ptr, num_pairs, N, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """This program's tile: its row block's expert (E past the last run), its sorted rows, their pairs (which
    are real: ``valid``) and its output columns, of N."""
    tiles_n = tl.cdiv(N, BLOCK_N)
    pid_m = tl.program_id(0) // tiles_n
    pid_n = tl.program_id(0) % tiles_n
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    pairs = tl.load(pairs_ptr + rows)
    return tl.load(experts_ptr + pid_m), rows, pairs, pairs < num_pairs, pid_n * BLOCK_N + tl.arange(0, BLOCK_N)


@triton.jit
def _gate_up_kernel(
    x_ptr, w_ptr, inter_ptr, pairs_ptr, experts_ptr,
    num_pairs, num_experts, H, I,  # noqa: E741 - I: the experts' intermediate size, as in the docs
    stride_xt, stride_we, stride_wn, stride_ip,
    TOPK: tl.constexpr, GELU_TANH: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr, DOT_F32: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    expert, rows, pairs, valid, cols = _tile(pairs_ptr, experts_ptr, num_pairs, I, BLOCK_M, BLOCK_N)
    if expert >= num_experts:
        return
    tokens = (pairs // TOPK).to(tl.int64)
    k = tl.arange(0, BLOCK_K)
    a_ptrs = x_ptr + tokens[:, None] * stride_xt + k[None, :]  # [BM, BK]
    w_rows = w_ptr + expert.to(tl.int64) * stride_we + cols.to(tl.int64)[None, :] * stride_wn
    g_ptrs = w_rows + k[:, None]  # [BK, BN]: the gate rows, transposed
    u_ptrs = g_ptrs + I * stride_wn  # the up rows, I rows further
    acc_g = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    acc_u = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    col_mask = (cols < I)[None, :]
    for k0 in range(0, H, BLOCK_K):
        in_k = k + k0 < H
        a = tl.load(a_ptrs + k0, mask=valid[:, None] & in_k[None, :], other=0.0)
        g = tl.load(g_ptrs + k0, mask=in_k[:, None] & col_mask, other=0.0)
        u = tl.load(u_ptrs + k0, mask=in_k[:, None] & col_mask, other=0.0)
        acc_g = _dot(acc_g, a, g, DOT_F32, PRECISION)
        acc_u = _dot(acc_u, a, u, DOT_F32, PRECISION)
    _store_act(acc_g, acc_u, inter_ptr, rows, cols, stride_ip, valid[:, None] & col_mask, GELU_TANH, DOT_F32)


@triton.jit
def _down_kernel(
    inter_ptr, w_ptr, out_ptr, pairs_ptr, experts_ptr, weights_ptr,
    num_pairs, num_experts, H, I,  # noqa: E741 - I: the experts' intermediate size, as in the docs
    stride_ip, stride_we, stride_wn, stride_op,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, DOT_F32: tl.constexpr,
    PRECISION: tl.constexpr,
):  # fmt: skip
    expert, rows, pairs, valid, cols = _tile(pairs_ptr, experts_ptr, num_pairs, H, BLOCK_M, BLOCK_N)
    if expert >= num_experts:
        return
    k = tl.arange(0, BLOCK_K)
    a_ptrs = inter_ptr + rows.to(tl.int64)[:, None] * stride_ip + k[None, :]  # [BM, BK]
    w_ptrs = w_ptr + expert.to(tl.int64) * stride_we + cols.to(tl.int64)[None, :] * stride_wn + k[:, None]
    col_mask = (cols < H)[None, :]
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, I, BLOCK_K):
        in_k = k + k0 < I
        a = tl.load(a_ptrs + k0, mask=valid[:, None] & in_k[None, :], other=0.0)
        w = tl.load(w_ptrs + k0, mask=in_k[:, None] & col_mask, other=0.0)
        acc = _dot(acc, a, w, DOT_F32, PRECISION)
    scale = tl.load(weights_ptr + pairs, mask=valid, other=0.0).to(tl.float32)
    out_ptrs = out_ptr + pairs.to(tl.int64)[:, None] * stride_op + cols[None, :]
    tl.store(out_ptrs, acc * scale[:, None], mask=valid[:, None] & col_mask)


def _config(num_pairs: int) -> tuple[int, int, int, int, int]:
    """(BLOCK_M, BLOCK_N, BLOCK_K, num_warps, num_stages): small row blocks for decode (few tokens per expert),
    128-row tiles for prefill; the tiles fit an H100's shared memory at these stages."""
    if num_pairs <= 64:
        return 16, 64, 64, 4, 3
    return 64, 128, 64, 8, 3


def fused_moe(
    x: torch.Tensor,
    w13: torch.Tensor,
    w2: torch.Tensor,
    weights: torch.Tensor,
    ids: torch.Tensor,
    activation: str = "silu",
    config: tuple[int, int, int, int, int] | None = None,
) -> torch.Tensor:
    """x [T, H], w13 [E, 2I, H] (gate rows then up rows), w2 [E, H, I], weights [T, k] (the routing weights),
    ids [T, k] (the experts) → [T, H] in x.dtype: sum_j weights[t, j] * w2[e] @ act(gate_e x_t) * (up_e x_t).
    ``config``: force (BLOCK_M >= 16, BLOCK_N >= 16, BLOCK_K >= 16, num_warps, num_stages)."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation {activation!r} is not supported ({', '.join(ACTIVATIONS)})")
    T, H = x.shape
    E, two_i, _ = w13.shape
    inter = two_i // 2
    if w13.shape[2] != H or w2.shape != (E, H, inter) or ids.shape != weights.shape or ids.shape[0] != T:
        raise ValueError(f"shapes do not agree: x {tuple(x.shape)}, w13 {tuple(w13.shape)}, w2 {tuple(w2.shape)}, "
                         f"weights {tuple(weights.shape)}, ids {tuple(ids.shape)}")  # fmt: skip
    topk = ids.shape[1]
    num_pairs = T * topk
    out = torch.zeros((T, H), dtype=x.dtype, device=x.device)
    if num_pairs == 0:
        return out
    x, w13, w2 = (t if t.stride(-1) == 1 else t.contiguous() for t in (x, w13, w2))
    BLOCK_M, BLOCK_N, BLOCK_K, num_warps, num_stages = config or _config(num_pairs)
    p = plan(x, ids, E, inter, BLOCK_M)
    blocks = p.block_experts.numel()
    launch.launch_fitting(
        _gate_up_kernel, (blocks * triton.cdiv(inter, BLOCK_N),),
        ("moe_gate_up", x.device, x.dtype, w13.dtype, BLOCK_M, BLOCK_N, BLOCK_K, num_warps), num_stages,
        x, w13, p.intermediate, p.sorted_pairs, p.block_experts, num_pairs, E, H, inter,
        x.stride(0), w13.stride(0), w13.stride(1), p.intermediate.stride(0),
        TOPK=topk, GELU_TANH=activation == "gelu_tanh", BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, BLOCK_K=BLOCK_K,
        DOT_F32=launch.INTERPRET, PRECISION=p.precision, num_warps=num_warps,
    )  # fmt: skip
    launch.launch_fitting(
        _down_kernel, (blocks * triton.cdiv(H, BLOCK_N),),
        ("moe_down", x.device, x.dtype, w2.dtype, BLOCK_M, BLOCK_N, BLOCK_K, num_warps), num_stages,
        p.intermediate, w2, p.per_pair, p.sorted_pairs, p.block_experts, weights.reshape(-1).float().contiguous(),
        num_pairs, E, H, inter, p.intermediate.stride(0), w2.stride(0), w2.stride(1), p.per_pair.stride(0),
        BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, BLOCK_K=BLOCK_K, DOT_F32=launch.INTERPRET, PRECISION=p.precision,
        num_warps=num_warps,
    )  # fmt: skip
    return p.per_pair.view(T, topk, H).sum(dim=1).to(x.dtype)
