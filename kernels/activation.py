"""Gated MLP activations: x [T, 2I] = [gate | up] → act(gate) * up [T, I] (``reference.silu_and_mul`` and
``reference.gelu_tanh_and_mul``), in float32.

Grid (T, cdiv(I, BLOCK)): each program reads BLOCK gates and the BLOCK ups I columns further on, both coalesced.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

# sqrt(2 / pi), the constant of the tanh approximation of GELU
_SQRT_2_OVER_PI = tl.constexpr(0.7978845608028654)


@triton.jit
def _act_and_mul_kernel(
    x_ptr,
    out_ptr,
    inter,
    stride_x,
    stride_o,
    GELU_TANH: tl.constexpr,
    BLOCK: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < inter

    gate = tl.load(x_ptr + row * stride_x + cols, mask=mask, other=0.0).to(tl.float32)
    up = tl.load(x_ptr + row * stride_x + inter + cols, mask=mask, other=0.0).to(tl.float32)
    if GELU_TANH:
        # 0.5 * g * (1 + tanh(y)) = g * sigmoid(2y) = g / (1 + exp(-2y)): no tanh (not in tl; libdevice's is not
        # in the interpreter), and no cancellation in 1 + tanh(y) for very negative g
        y = _SQRT_2_OVER_PI * (gate + 0.044715 * gate * gate * gate)
        z = -2.0 * y
    else:
        z = -gate  # silu(g) = g * sigmoid(g) = g / (1 + exp(-g))
    # exp's argument capped so it stays finite: beyond 80 the result is ~g * 1e-35, zero for every purpose
    act = gate / (1.0 + tl.exp(tl.minimum(z, 80.0)))
    tl.store(out_ptr + row * stride_o + cols, (act * up).to(out_ptr.dtype.element_ty), mask=mask)


def _act_and_mul(x: torch.Tensor, out: torch.Tensor | None, gelu_tanh: bool) -> torch.Tensor:
    if x.dim() != 2 or x.shape[1] % 2:
        raise ValueError(f"expected x [T, 2I], got shape {tuple(x.shape)}")
    T, inter = x.shape[0], x.shape[1] // 2
    x = x if x.stride(-1) == 1 else x.contiguous()
    if out is None:
        out = torch.empty((T, inter), dtype=x.dtype, device=x.device)
    if out.shape != (T, inter) or out.dtype != x.dtype or out.stride(-1) != 1:
        raise ValueError(f"out must be ({T}, {inter}) {x.dtype} with a contiguous last axis")
    # 1024 columns per program: 8 per thread at 4 warps (16-byte loads of 16-bit floats), and inter = 14336 still
    # gives 14 programs per token for decode batches
    BLOCK = min(triton.next_power_of_2(inter), 1024)
    if T > 0 and inter > 0:
        _act_and_mul_kernel[(T, triton.cdiv(inter, BLOCK))](
            x, out, inter, x.stride(0), out.stride(0), GELU_TANH=gelu_tanh, BLOCK=BLOCK, num_warps=4
        )
    return out


def silu_and_mul(x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """x [T, 2I] = [gate | up] → silu(gate) * up [T, I] in x.dtype (Llama, Qwen2, SmolLM2). x may have a row
    stride above 2I; ``out`` [T, I] is written into when given."""
    return _act_and_mul(x, out, gelu_tanh=False)


def gelu_tanh_and_mul(x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """x [T, 2I] = [gate | up] → gelu(gate, approximate="tanh") * up [T, I] in x.dtype (Gemma). x may have a row
    stride above 2I; ``out`` [T, I] is written into when given."""
    return _act_and_mul(x, out, gelu_tanh=True)
