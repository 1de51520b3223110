"""Fused mixture-of-experts MLP on GGUF-quantized experts (``reference.fused_moe_gguf``): ``fused_moe``'s two grouped
GEMMs with each expert's weights kept in the file's blocks and dequantized in registers, as ``quant_matmul`` does.

llama.cpp stores a layer's experts stacked: ``ffn_gate_exps`` / ``ffn_up_exps`` [E, I, H] and ``ffn_down_exps``
[E, H, I], each row a run of blocks, so one expert's matrix is a [rows, K / block_weights * block_bytes] uint8 slice
of a [E, rows, ...] tensor. Gate and up may differ in type from down (a Q4_K_M file keeps some layers' down in
Q6_K), and in principle from each other: each of the three carries its own type.

- ``align_by_expert`` (from ``fused_moe``): the (token, expert) pairs sorted by expert, each run padded to BLOCK_M.
- ``_gate_up_kernel``: per (row block, column block of I), for each 32-weight group of K = H: the tokens' x slice
  [BM, 32], the gate and up slices [32, BN] decoded from their blocks, rounded to x's dtype and fed to ``tl.dot``
  with float32 accumulation; act(gate) * up written to the intermediate [P, I].
- ``_down_kernel``: the intermediate times the expert's down blocks over K = I, scaled by the routing weights, into
  a float32 [T*k, H] whose k rows per token are summed afterwards (fixed order, no atomics).

K must be a multiple of the type's block (256 weights for Q4_K / Q6_K, 32 for the others): GGUF files guarantee it,
since llama.cpp falls back to a 32-weight type where a row is not a multiple of 256 (DeepSeek-V2-Lite's I = 1408).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels import launch
from kernels.fused_moe import ACTIVATIONS, _round, _store_act, _tile, plan
from kernels.gguf_blocks import GGUF_BLOCKS
from kernels.quant_matmul import _load_f16, _q4_k_chunk, _q6_k_group, _q32

ExpertBlocks = tuple[torch.Tensor, str]  # ([E, rows, K / block_weights * block_bytes] uint8, GGUF type)


@triton.jit
def _group(rows, u, G: tl.constexpr, i, mask, K, QTYPE: tl.constexpr, NBYTES: tl.constexpr):
    """Weights u*256 + G*32 + i of the rows at byte pointers ``rows`` [1, BN] (i [32, 1]) → [32, BN] float32:
    group G (0..7) of 256-weight unit u, decoded as ``quant_matmul``'s helpers do (0.0 past K or past the rows)."""
    if QTYPE == "Q4_K":
        blk = rows + u * 144
        d = _load_f16(blk, mask)
        dmin = _load_f16(blk + 2, mask)
        lo, hi = _q4_k_chunk(blk, d, dmin, G // 2, i, mask)
        if G % 2 == 0:
            w = lo
        else:
            w = hi
    elif QTYPE == "Q6_K":
        blk = rows + u * 210
        d = _load_f16(blk + 208, mask)
        ql = tl.load(blk + ((G // 4) * 64 + (G % 2) * 32) + i, mask=mask, other=0)
        qh = tl.load(blk + (128 + (G // 4) * 32) + i, mask=mask, other=0)
        w = _q6_k_group(blk, d, ql, qh, G // 4, G % 4, i, mask)
    else:  # eight 32-weight blocks per unit
        w = _q32(rows + (u * 8 + G) * NBYTES, i, mask & (u * 256 + G * 32 < K), QTYPE)
    return w


@triton.jit
def _dot(acc, a, w, DOT_F32: tl.constexpr, PRECISION: tl.constexpr):
    """acc [BM, BN] += a [BM, 32] @ w [32, BN], w rounded to a's dtype (the tensor-core operand)."""
    w = _round(w, a.dtype, DOT_F32)
    if DOT_F32:  # the interpreter's tl.dot is wrong on bf16: the same operands, exact float32 products
        return tl.dot(a.to(tl.float32), w.to(tl.float32), acc, input_precision=PRECISION)
    return tl.dot(a, w, acc, input_precision=PRECISION)


@triton.jit
def _gate_up_kernel(
    x_ptr, g_ptr, u_ptr, inter_ptr, pairs_ptr, experts_ptr,
    num_pairs, num_experts, H, I,  # noqa: E741 - I: the experts' intermediate size, as in the docs
    stride_xt, stride_ge, stride_gn, stride_ue, stride_un, stride_ip,
    TOPK: tl.constexpr, G_TYPE: tl.constexpr, G_BYTES: tl.constexpr, U_TYPE: tl.constexpr, U_BYTES: tl.constexpr,
    GELU_TANH: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, DOT_F32: tl.constexpr,
    PRECISION: tl.constexpr,
):  # fmt: skip
    expert, rows, pairs, valid, cols = _tile(pairs_ptr, experts_ptr, num_pairs, I, BLOCK_M, BLOCK_N)
    if expert >= num_experts:
        return
    tokens = (pairs // TOPK).to(tl.int64)
    x_rows = x_ptr + tokens[:, None] * stride_xt  # [BM, 1]
    kx = tl.arange(0, 32)[None, :]  # [1, 32]: k of the x slice
    i = tl.arange(0, 32)[:, None]  # [32, 1]: k of the weight slice
    col_mask = (cols < I)[None, :]  # [1, BN]
    e = expert.to(tl.int64)
    g_rows = g_ptr + e * stride_ge + cols.to(tl.int64)[None, :] * stride_gn
    u_rows = u_ptr + e * stride_ue + cols.to(tl.int64)[None, :] * stride_un
    acc_g = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    acc_u = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for u in range(0, tl.cdiv(H, 256)):
        for G in tl.static_range(8):
            k0 = u * 256 + G * 32
            a = tl.load(x_rows + k0 + kx, mask=valid[:, None] & (k0 + kx < H), other=0.0)
            acc_g = _dot(acc_g, a, _group(g_rows, u, G, i, col_mask, H, G_TYPE, G_BYTES), DOT_F32, PRECISION)
            acc_u = _dot(acc_u, a, _group(u_rows, u, G, i, col_mask, H, U_TYPE, U_BYTES), DOT_F32, PRECISION)
    _store_act(acc_g, acc_u, inter_ptr, rows, cols, stride_ip, valid[:, None] & col_mask, GELU_TANH, DOT_F32)


@triton.jit
def _down_kernel(
    inter_ptr, w_ptr, out_ptr, pairs_ptr, experts_ptr, weights_ptr,
    num_pairs, num_experts, H, I,  # noqa: E741 - I: the experts' intermediate size, as in the docs
    stride_ip, stride_we, stride_wn, stride_op,
    W_TYPE: tl.constexpr, W_BYTES: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    DOT_F32: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    expert, rows, pairs, valid, cols = _tile(pairs_ptr, experts_ptr, num_pairs, H, BLOCK_M, BLOCK_N)
    if expert >= num_experts:
        return
    a_rows = inter_ptr + rows.to(tl.int64)[:, None] * stride_ip  # [BM, 1]
    kx = tl.arange(0, 32)[None, :]
    i = tl.arange(0, 32)[:, None]
    col_mask = (cols < H)[None, :]
    w_rows = w_ptr + expert.to(tl.int64) * stride_we + cols.to(tl.int64)[None, :] * stride_wn
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for u in range(0, tl.cdiv(I, 256)):
        for G in tl.static_range(8):
            k0 = u * 256 + G * 32
            a = tl.load(a_rows + k0 + kx, mask=valid[:, None] & (k0 + kx < I), other=0.0)
            acc = _dot(acc, a, _group(w_rows, u, G, i, col_mask, I, W_TYPE, W_BYTES), DOT_F32, PRECISION)
    scale = tl.load(weights_ptr + pairs, mask=valid, other=0.0).to(tl.float32)
    out_ptrs = out_ptr + pairs.to(tl.int64)[:, None] * stride_op + cols[None, :]
    tl.store(out_ptrs, acc * scale[:, None], mask=valid[:, None] & col_mask)


def _config(num_pairs: int) -> tuple[int, int, int, int]:
    """(BLOCK_M, BLOCK_N, num_warps, num_stages): decode's few tokens per expert in 16-row blocks, prefill in 64."""
    if num_pairs <= 64:
        return 16, 64, 4, 3
    return 64, 128, 8, 2


def _checked(name: str, experts: ExpertBlocks, num: int, rows: int) -> tuple[torch.Tensor, str, int]:
    """(blocks with a contiguous last axis, type, K) of one stacked projection, validated."""
    blocks, qtype = experts
    if qtype not in GGUF_BLOCKS:
        raise ValueError(f"{name}: GGUF type {qtype!r} is not supported (supported: {', '.join(GGUF_BLOCKS)})")
    weights, nbytes = GGUF_BLOCKS[qtype]
    if blocks.dtype != torch.uint8 or blocks.dim() != 3 or blocks.shape[:2] != (num, rows) or blocks.shape[2] % nbytes:
        raise ValueError(
            f"{name}: {qtype} blocks must be a [{num}, {rows}, K / {weights} * {nbytes}] uint8 tensor, "
            f"got {tuple(blocks.shape)} {blocks.dtype}"
        )
    return (blocks if blocks.stride(-1) == 1 else blocks.contiguous()), qtype, blocks.shape[2] // nbytes * weights


def fused_moe_gguf(
    x: torch.Tensor,
    gate: ExpertBlocks,
    up: ExpertBlocks,
    down: ExpertBlocks,
    weights: torch.Tensor,
    ids: torch.Tensor,
    activation: str = "silu",
    config: tuple[int, int, int, int] | None = None,
) -> torch.Tensor:
    """x [T, H] float32 / float16 / bfloat16; ``gate``, ``up``: ([E, I, H / bw * bb] uint8, type), ``down``:
    ([E, H, I / bw * bb] uint8, type), as GGUF stores ``ffn_{gate,up,down}_exps``; weights / ids [T, k] (the
    router's choice) → [T, H] in x.dtype, what ``fused_moe`` computes on the dequantized experts.
    ``config``: force (BLOCK_M >= 16, BLOCK_N >= 16, num_warps, num_stages)."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation {activation!r} is not supported ({', '.join(ACTIVATIONS)})")
    if x.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"x must be float32, float16 or bfloat16, got {x.dtype}")
    T, H = x.shape
    E, inter = gate[0].shape[:2]
    g_blocks, g_type, g_k = _checked("gate", gate, E, inter)
    u_blocks, u_type, u_k = _checked("up", up, E, inter)
    d_blocks, d_type, d_k = _checked("down", down, E, H)
    if g_k != H or u_k != H or d_k != inter or ids.shape != weights.shape or ids.shape[0] != T:
        raise ValueError(f"shapes do not agree: x {tuple(x.shape)}, gate / up K {g_k} / {u_k}, down K {d_k} "
                         f"(I = {inter}), weights {tuple(weights.shape)}, ids {tuple(ids.shape)}")  # fmt: skip
    topk = ids.shape[1]
    num_pairs = T * topk
    out = torch.zeros((T, H), dtype=x.dtype, device=x.device)
    if num_pairs == 0:
        return out
    x = x if x.stride(-1) == 1 else x.contiguous()
    BLOCK_M, BLOCK_N, num_warps, num_stages = config or _config(num_pairs)
    p = plan(x, ids, E, inter, BLOCK_M)
    blocks = p.block_experts.numel()
    launch.launch_fitting(
        _gate_up_kernel, (blocks * triton.cdiv(inter, BLOCK_N),),
        ("moe_gguf_gate_up", x.device, x.dtype, g_type, u_type, BLOCK_M, BLOCK_N, num_warps), num_stages,
        x, g_blocks, u_blocks, p.intermediate, p.sorted_pairs, p.block_experts, num_pairs, E, H, inter,
        x.stride(0), g_blocks.stride(0), g_blocks.stride(1), u_blocks.stride(0), u_blocks.stride(1),
        p.intermediate.stride(0), TOPK=topk, G_TYPE=g_type, G_BYTES=GGUF_BLOCKS[g_type][1], U_TYPE=u_type,
        U_BYTES=GGUF_BLOCKS[u_type][1], GELU_TANH=activation == "gelu_tanh", BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N,
        DOT_F32=launch.INTERPRET, PRECISION=p.precision, num_warps=num_warps,
    )  # fmt: skip
    launch.launch_fitting(
        _down_kernel, (blocks * triton.cdiv(H, BLOCK_N),),
        ("moe_gguf_down", x.device, x.dtype, d_type, BLOCK_M, BLOCK_N, num_warps), num_stages,
        p.intermediate, d_blocks, p.per_pair, p.sorted_pairs, p.block_experts, weights.reshape(-1).float().contiguous(),
        num_pairs, E, H, inter, p.intermediate.stride(0), d_blocks.stride(0), d_blocks.stride(1), p.per_pair.stride(0),
        W_TYPE=d_type, W_BYTES=GGUF_BLOCKS[d_type][1], BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, DOT_F32=launch.INTERPRET,
        PRECISION=p.precision, num_warps=num_warps,
    )  # fmt: skip
    return p.per_pair.view(T, topk, H).sum(dim=1).to(x.dtype)
