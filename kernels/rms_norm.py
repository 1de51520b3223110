"""RMSNorm with an optional fused residual add, Llama and Gemma conventions (``reference.rms_norm``).

One program per row: the whole row (D ≤ 65536) sits in registers, so x is read once and the statistics need no
second pass. Rows are the tokens of x [T, D], or the (token, head) pairs of x [T, H, D] for the per-head q/k norms
of Gemma 3 and Qwen3, which may be strided views of a fused qkv projection.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _rms_norm_kernel(
    x_ptr,
    res_ptr,
    w_ptr,
    out_ptr,
    sum_ptr,
    D,
    stride_xt,
    stride_xh,
    stride_rt,
    stride_rh,
    stride_ot,
    stride_oh,
    stride_st,
    stride_sh,
    eps,
    HAS_RESIDUAL: tl.constexpr,
    GEMMA: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    # int64 row offsets: T * stride can pass 2**31 for long prefills of wide models
    t = tl.program_id(0).to(tl.int64)
    h = tl.program_id(1).to(tl.int64)
    cols = tl.arange(0, BLOCK_D)
    mask = cols < D

    x = tl.load(x_ptr + t * stride_xt + h * stride_xh + cols, mask=mask, other=0.0)
    if HAS_RESIDUAL:
        r = tl.load(res_ptr + t * stride_rt + h * stride_rh + cols, mask=mask, other=0.0)
        # the sum is rounded to x's dtype first: that rounded value is both the next residual and what is normalised
        x = (x.to(tl.float32) + r.to(tl.float32)).to(x_ptr.dtype.element_ty)
        tl.store(sum_ptr + t * stride_st + h * stride_sh + cols, x, mask=mask)
    xf = x.to(tl.float32)

    # one scalar per row: the precise sqrt and division cost nothing and keep rstd identical to torch's
    mean_sq = tl.sum(xf * xf, axis=0) / D
    rstd = tl.div_rn(1.0, tl.sqrt_rn(mean_sq + eps))
    normed = xf * rstd

    w = tl.load(w_ptr + cols, mask=mask, other=0.0).to(tl.float32)
    if GEMMA:
        # zero-centred weight, product in float32, one rounding
        out = normed * (1.0 + w)
    else:
        # Llama: round the normalised row to x's dtype, then multiply by the weight (second rounding at the store);
        # the product of two 16-bit floats is exact in float32, so this is bit for bit torch's half-precision multiply
        out = normed.to(x_ptr.dtype.element_ty).to(tl.float32) * w
    tl.store(out_ptr + t * stride_ot + h * stride_oh + cols, out.to(out_ptr.dtype.element_ty), mask=mask)


def _num_warps(block_d: int) -> int:
    # enough threads that each holds at most ~16 elements of the row
    if block_d <= 1024:
        return 4
    if block_d <= 4096:
        return 8
    return 16


def _rows(t: torch.Tensor) -> torch.Tensor:
    """[T, D] → a [T, 1, D] view; [T, H, D] as is."""
    if t.dim() == 2:
        return t.unsqueeze(1)
    if t.dim() == 3:
        return t
    raise ValueError(f"expected a [T, D] or [T, H, D] tensor, got shape {tuple(t.shape)}")


def rms_norm(
    x: torch.Tensor,
    weight: torch.Tensor,
    eps: float,
    residual: torch.Tensor | None = None,
    gemma: bool = False,
    *,
    out: torch.Tensor | None = None,
    inplace: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """RMSNorm over the last axis: x [T, D] or [T, H, D] (per-head), weight [D] → out, shaped as x.

    Llama convention: ``weight * norm(x).to(x.dtype)`` (out dtype: x's and weight's promoted). Gemma convention
    (``gemma=True``): ``(norm(x) * (1 + weight)).to(x.dtype)``. With ``residual`` (shaped as x) the row is
    ``x + residual`` rounded to x.dtype, and ``(out, x + residual)`` is returned.

    ``out``: where to write the result (may be x itself). ``inplace=True``: the result overwrites x (unless ``out``
    is given) and the sum overwrites ``residual`` — the fused add of a pre-norm decoder layer, no allocation.
    Inputs may be strided views as long as their last axis is contiguous (else they are copied, which
    ``inplace`` refuses).
    """
    out_dtype = x.dtype if gemma else torch.promote_types(x.dtype, weight.dtype)
    D = x.shape[-1]
    if weight.shape != (D,):
        raise ValueError(f"weight must be [{D}], got {tuple(weight.shape)}")
    if residual is not None and (residual.shape != x.shape or residual.dtype != x.dtype):
        raise ValueError(f"residual {residual.shape} {residual.dtype} does not match x {x.shape} {x.dtype}")
    if inplace and (x.stride(-1) != 1 or (residual is not None and residual.stride(-1) != 1)):
        raise ValueError("inplace needs x and residual with a contiguous last axis")
    x = x if x.stride(-1) == 1 else x.contiguous()
    if residual is not None and residual.stride(-1) != 1:
        residual = residual.contiguous()
    weight = weight.contiguous()

    if out is None:
        out = x if inplace else torch.empty(x.shape, dtype=out_dtype, device=x.device)
    if out.shape != x.shape or out.dtype != out_dtype or out.stride(-1) != 1:
        raise ValueError(f"out must be {tuple(x.shape)} {out_dtype} with a contiguous last axis")
    if residual is not None:
        summed = residual if inplace else torch.empty_like(x)
    else:
        summed = out  # unused (HAS_RESIDUAL=False), any pointer will do

    BLOCK_D = triton.next_power_of_2(D)
    if BLOCK_D > 65536:
        raise ValueError(f"rms_norm supports D up to 65536, got {D}")
    x3, o3, s3 = _rows(x), _rows(out), _rows(summed)
    r3 = _rows(residual) if residual is not None else x3
    T, H = x3.shape[0], x3.shape[1]
    if T > 0 and H > 0:
        _rms_norm_kernel[(T, H)](
            x3, r3, weight, o3, s3, D,
            x3.stride(0), x3.stride(1), r3.stride(0), r3.stride(1),
            o3.stride(0), o3.stride(1), s3.stride(0), s3.stride(1),
            eps,
            HAS_RESIDUAL=residual is not None, GEMMA=gemma, BLOCK_D=BLOCK_D, num_warps=_num_warps(BLOCK_D),
        )  # fmt: skip
    return (out, summed) if residual is not None else out
