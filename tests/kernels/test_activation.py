"""kernels.activation against reference.silu_and_mul and reference.gelu_tanh_and_mul."""

from __future__ import annotations

import pytest
import torch

from kernels import reference
from kernels.activation import gelu_tanh_and_mul, silu_and_mul
from tests.kernels.conftest import DEVICE, DTYPES, shapes

OPS = [
    pytest.param(silu_and_mul, reference.silu_and_mul, id="silu"),
    pytest.param(gelu_tanh_and_mul, reference.gelu_tanh_and_mul, id="gelu_tanh"),
]


def _x(T: int, inter: int, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(T, 2 * inter, generator=gen) * 3).to(DEVICE, dtype)


@pytest.mark.parametrize("op, ref", OPS)
@pytest.mark.parametrize("dtype, atol, rtol", DTYPES)
@pytest.mark.parametrize(
    "T, inter",
    # 1030: more than one 1024-column block per row, the last one ragged
    shapes([(1, 1), (3, 7), (17, 130), (2, 1030)], [(512, 14336), (1, 14336), (512, 10240), (256, 6912)]),
)
def test_act_and_mul_matches_reference(op, ref, dtype, atol, rtol, T, inter):
    x = _x(T, inter, dtype)
    got = op(x)
    assert got.shape == (T, inter) and got.dtype == dtype
    torch.testing.assert_close(got, ref(x), atol=atol, rtol=rtol)


@pytest.mark.parametrize("op, ref", OPS)
def test_act_and_mul_extreme_gates(op, ref):
    # exp(-g) overflows for very negative gates: the result must be the limit (-0), never nan
    gate = torch.tensor([-1e4, -100.0, -30.0, -10.0, -3.0, -1e-3, 0.0, 1e-3, 3.0, 10.0, 30.0, 100.0, 1e4])
    up = torch.linspace(-2, 2, gate.numel())
    x = torch.stack([torch.cat([gate, up]), torch.cat([gate, -up])]).to(DEVICE)
    got = op(x)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, ref(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("op, ref", OPS)
@pytest.mark.parametrize("dtype, atol, rtol", DTYPES)
def test_act_and_mul_strided_rows_and_out(op, ref, dtype, atol, rtol):
    T, inter = 4, 9
    wide = _x(T, inter + 3, dtype, seed=1)
    x = wide[:, : 2 * inter]  # row stride 2I + 6
    out = torch.full((T, inter), float("nan"), dtype=dtype, device=DEVICE)
    assert op(x, out=out) is out
    torch.testing.assert_close(out, ref(x), atol=atol, rtol=rtol)
