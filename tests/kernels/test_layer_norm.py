"""kernels.layer_norm against reference.layer_norm (BERT / MiniLM)."""

from __future__ import annotations

import pytest
import torch

from kernels import reference
from kernels.layer_norm import layer_norm
from tests.support.kernel_cases import DEVICE, DTYPES, ON_GPU, shapes

EPS = 1e-12  # BERT's


def _inputs(T: int, D: int, dtype: torch.dtype, seed: int = 0, grid: bool = False):
    gen = torch.Generator().manual_seed(seed)
    # in float32 a large common offset: a one-pass E[x²] - E[x]² variance would lose ~11 bits to cancellation
    x = torch.randn(T, D, generator=gen) * 2 + (100 if dtype == torch.float32 else 1)
    residual = torch.randn(T, D, generator=gen)
    if grid:
        # multiples of 1/16 below 8 in magnitude: x + residual is exact even in bf16
        x, residual = ((t.clamp(-7, 7) * 16).round() / 16 for t in (x, residual))
    weight = torch.randn(D, generator=gen) * 0.2 + 1
    bias = torch.randn(D, generator=gen) * 0.1
    return (t.to(DEVICE, dtype) for t in (x, residual, weight, bias))


@pytest.mark.parametrize("dtype, atol, rtol", DTYPES)
@pytest.mark.parametrize(
    "T, D", shapes([(1, 32), (3, 48), (17, 100), (4, 384)], [(512, 384), (512, 768), (8192, 1024)])
)
@pytest.mark.parametrize("with_residual", [False, True], ids=["plain", "residual"])
def test_layer_norm_matches_reference(dtype, atol, rtol, T, D, with_residual):
    # The interpreter's float32 → bfloat16 casts truncate (a GPU rounds to nearest even like torch): a bf16 sum
    # off by one ulp would be normalised into an error above the tolerance, so there the sum is kept exact.
    grid = with_residual and dtype == torch.bfloat16 and not ON_GPU
    x, residual, weight, bias = _inputs(T, D, dtype, grid=grid)
    got = layer_norm(x, weight, bias, EPS, residual if with_residual else None)
    want = reference.layer_norm(x + residual if with_residual else x, weight, bias, EPS)
    assert got.dtype == dtype and got.shape == (T, D)
    torch.testing.assert_close(got, want, atol=atol, rtol=rtol)


@pytest.mark.parametrize("dtype, atol, rtol", DTYPES)
def test_layer_norm_strided_rows_and_out(dtype, atol, rtol):
    x, _, weight, bias = _inputs(5, 70, dtype, seed=1)
    wide = torch.zeros(5, 96, dtype=dtype, device=DEVICE)
    wide[:, 10:80] = x
    view = wide[:, 10:80]  # row stride 96 > D
    out = torch.full_like(x, float("nan"))
    got = layer_norm(view, weight, bias, 1e-5, out=out)
    assert got is out
    torch.testing.assert_close(out, reference.layer_norm(x, weight, bias, 1e-5), atol=atol, rtol=rtol)
