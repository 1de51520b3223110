"""BERT's LayerNorm (``reference.layer_norm``), with an optional fused residual add (post-norm encoders).

One program per row of x [T, D]: the row sits in registers, so the mean and the variance come from the same read.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _layer_norm_kernel(
    x_ptr,
    res_ptr,
    w_ptr,
    b_ptr,
    out_ptr,
    D,
    stride_x,
    stride_r,
    stride_o,
    eps,
    HAS_RESIDUAL: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK_D)
    mask = cols < D

    x = tl.load(x_ptr + row * stride_x + cols, mask=mask, other=0.0)
    if HAS_RESIDUAL:
        r = tl.load(res_ptr + row * stride_r + cols, mask=mask, other=0.0)
        # x + residual in x's dtype, as an eager ``layer_norm(x + residual)`` would see it
        x = (x.to(tl.float32) + r.to(tl.float32)).to(x_ptr.dtype.element_ty)
    xf = x.to(tl.float32)

    mean = tl.sum(xf, axis=0) / D
    # two-pass variance on the registers: no cancellation, unlike E[x²] - E[x]²
    diff = tl.where(mask, xf - mean, 0.0)
    var = tl.sum(diff * diff, axis=0) / D
    rstd = tl.div_rn(1.0, tl.sqrt_rn(var + eps))

    w = tl.load(w_ptr + cols, mask=mask, other=0.0).to(tl.float32)
    b = tl.load(b_ptr + cols, mask=mask, other=0.0).to(tl.float32)
    out = diff * rstd * w + b
    tl.store(out_ptr + row * stride_o + cols, out.to(out_ptr.dtype.element_ty), mask=mask)


def layer_norm(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    eps: float,
    residual: torch.Tensor | None = None,
    *,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """LayerNorm over the last axis: x [T, D], weight/bias [D] → [T, D] in x.dtype, statistics in float32.

    With ``residual`` [T, D], normalises ``x + residual`` (rounded to x.dtype) instead: BERT's post-norm
    ``LayerNorm(dense(h) + h)`` in one pass. ``out``: where to write the result (may be x or residual).
    """
    if x.dim() != 2:
        raise ValueError(f"expected x [T, D], got shape {tuple(x.shape)}")
    T, D = x.shape
    if weight.shape != (D,) or bias.shape != (D,):
        raise ValueError(f"weight and bias must be [{D}]")
    if residual is not None and (residual.shape != x.shape or residual.dtype != x.dtype):
        raise ValueError(f"residual {residual.shape} {residual.dtype} does not match x {x.shape} {x.dtype}")
    x = x if x.stride(-1) == 1 else x.contiguous()
    if residual is not None and residual.stride(-1) != 1:
        residual = residual.contiguous()
    if out is None:
        out = torch.empty_like(x, memory_format=torch.contiguous_format)
    if out.shape != x.shape or out.dtype != x.dtype or out.stride(-1) != 1:
        raise ValueError(f"out must be {tuple(x.shape)} {x.dtype} with a contiguous last axis")

    BLOCK_D = triton.next_power_of_2(D)
    if BLOCK_D > 65536:
        raise ValueError(f"layer_norm supports D up to 65536, got {D}")
    num_warps = 4 if BLOCK_D <= 1024 else 8 if BLOCK_D <= 4096 else 16
    r = residual if residual is not None else x
    if T > 0:
        _layer_norm_kernel[(T,)](
            x, r, weight.contiguous(), bias.contiguous(), out, D,
            x.stride(0), r.stride(0), out.stride(0), eps,
            HAS_RESIDUAL=residual is not None, BLOCK_D=BLOCK_D, num_warps=num_warps,
        )  # fmt: skip
    return out
