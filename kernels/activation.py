"""Activations, in float32 inside the kernels and x.dtype out.

Gated MLP activations: x [T, 2I] = [gate | up] → act(gate) * up [T, I] (``reference.silu_and_mul`` and
``reference.gelu_tanh_and_mul``). Grid (T, cdiv(I, BLOCK)): each program reads BLOCK gates and the BLOCK ups
I columns further on, both coalesced.

Plain elementwise activations of any shape (``reference.gelu`` and ``reference.quick_gelu``; the CLIP vision
tower): exact GELU, tanh GELU and QuickGELU over the flattened tensor, grid cdiv(numel, BLOCK).
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


# MODE of _act_kernel
_GELU_ERF = 0  # HF "gelu": 0.5 * x * (1 + erf(x / sqrt(2)))
_GELU_TANH = 1  # HF "gelu_pytorch_tanh" / "gelu_new": 0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 x^3)))
_QUICK_GELU = 2  # HF "quick_gelu": x * sigmoid(1.702 x)


@triton.jit
def _act_kernel(x_ptr, out_ptr, n, MODE: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    if MODE == 0:  # _GELU_ERF; 1: _GELU_TANH, 2: _QUICK_GELU
        # tl.math.erf (fp32) runs compiled (lowered to libdevice) and under TRITON_INTERPRET=1 (math.erf), so no
        # approximation of our own. 1 + erf(..) goes to 0 for very negative x, never below: no nan, no overflow.
        act = 0.5 * x * (1.0 + tl.math.erf(x * 0.7071067811865476))
    else:
        if MODE == 1:
            # as in _act_and_mul_kernel: x * sigmoid(2y) instead of tanh (not in the interpreter)
            z = -2.0 * _SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)
        else:
            z = -1.702 * x
        # x / (1 + exp(z)) = x * sigmoid(-z), exp's argument capped so it stays finite (x * 1e-35 beyond 80)
        act = x / (1.0 + tl.exp(tl.minimum(z, 80.0)))
    tl.store(out_ptr + offs, act.to(out_ptr.dtype.element_ty), mask=mask)


def _act(x: torch.Tensor, out: torch.Tensor | None, mode: int) -> torch.Tensor:
    x = x.contiguous()  # a no-op when it already is; the kernel walks the flat storage
    if out is None:
        out = torch.empty_like(x, memory_format=torch.contiguous_format)
    if out.shape != x.shape or out.dtype != x.dtype or out.device != x.device or not out.is_contiguous():
        raise ValueError(f"out must be a contiguous {tuple(x.shape)} {x.dtype} tensor on {x.device}")
    n = x.numel()
    # 1024 elements per program: 8 per thread at 4 warps (16-byte accesses of 16-bit floats)
    BLOCK = 1024
    if n > 0:
        _act_kernel[(triton.cdiv(n, BLOCK),)](x, out, n, MODE=mode, BLOCK=BLOCK, num_warps=4)
    return out


def gelu(x: torch.Tensor, approximate: str = "none", out: torch.Tensor | None = None) -> torch.Tensor:
    """Elementwise GELU of x (any shape) in x.dtype: exact (erf, HF "gelu") for ``approximate="none"``, the
    tanh approximation (HF "gelu_pytorch_tanh" / "gelu_new") for ``"tanh"``, as ``F.gelu``. A non-contiguous x
    is copied first; ``out`` (contiguous, x's shape and dtype) is written into when given."""
    if approximate == "none":
        return _act(x, out, _GELU_ERF)
    if approximate == "tanh":
        return _act(x, out, _GELU_TANH)
    raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")


def quick_gelu(x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """Elementwise QuickGELU x * sigmoid(1.702 x) of x (any shape) in x.dtype (HF "quick_gelu", CLIP). A
    non-contiguous x is copied first; ``out`` (contiguous, x's shape and dtype) is written into when given."""
    return _act(x, out, _QUICK_GELU)
