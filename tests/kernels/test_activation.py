"""kernels.activation against reference.silu_and_mul, reference.gelu_tanh_and_mul, reference.gelu and
reference.quick_gelu (and those two references against torch's own GELU and CLIP's QuickGELU)."""

from __future__ import annotations

from functools import partial

import pytest
import torch
import torch.nn.functional as F

from inference.layers.activation import ACTIVATIONS, Activation
from kernels import reference
from kernels.activation import gelu, gelu_tanh_and_mul, quick_gelu, silu_and_mul
from tests.support.kernel_cases import DEVICE, DTYPES, shapes

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


# --- plain elementwise activations (CLIP vision tower) ---------------------------------------------------------

# (kernel, its reference, torch's own definition)
ACTS = [
    pytest.param(gelu, reference.gelu, F.gelu, id="gelu"),
    pytest.param(
        partial(gelu, approximate="tanh"),
        partial(reference.gelu, approximate="tanh"),
        partial(F.gelu, approximate="tanh"),
        id="gelu_tanh",
    ),
    pytest.param(quick_gelu, reference.quick_gelu, lambda x: x * torch.sigmoid(1.702 * x), id="quick_gelu"),
]

# odd shapes, ragged 1024-element blocks (7000 = 6 full + 1 partial), 3-d, and empty
ACT_SHAPES = [(1, 1), (3, 17), (7, 1000), (2, 3, 5), (0, 8)]


def _act_x(shape: tuple, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen) * 4
    flat = x.view(-1)
    # large magnitudes, where exp(-x) overflows or x^3 is huge: the limits (x and -0), never inf or nan
    flat[::5] = 30.0
    flat[2::5] = -30.0
    return x.to(DEVICE, dtype)


@pytest.mark.parametrize("op, ref, _torch", ACTS)
@pytest.mark.parametrize("dtype, atol, rtol", DTYPES)
@pytest.mark.parametrize("shape", ACT_SHAPES, ids=str)
def test_act_matches_reference(op, ref, _torch, dtype, atol, rtol, shape):
    x = _act_x(shape, dtype)
    got = op(x)
    assert got.shape == x.shape and got.dtype == dtype
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, ref(x), atol=atol, rtol=rtol)


@pytest.mark.parametrize("op, ref, _torch", ACTS)
def test_act_extreme_inputs(op, ref, _torch):
    x = torch.tensor([-1e4, -100.0, -30.0, -10.0, -5.0, -3.0, -1e-3, 0.0, 1e-3, 3.0, 5.0, 10.0, 30.0, 100.0, 1e4])
    got = op(x.to(DEVICE))
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, ref(x.to(DEVICE)), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("_op, ref, torch_op", ACTS)
@pytest.mark.parametrize("dtype, atol, rtol", DTYPES)
def test_act_reference_matches_torch(_op, ref, torch_op, dtype, atol, rtol):
    # the references are written out from the definitions: check them against torch's GELU / CLIP's QuickGELU
    x = _act_x((5, 300), torch.float32, seed=2)
    torch.testing.assert_close(ref(x), torch_op(x), atol=1e-6, rtol=1e-6)
    # in a low dtype the reference computes in float32 and rounds once
    xd = x.to(dtype)
    torch.testing.assert_close(ref(xd), torch_op(xd.float()).to(dtype), atol=atol, rtol=rtol)


@pytest.mark.parametrize("op, ref, _torch", ACTS)
@pytest.mark.parametrize("dtype, atol, rtol", DTYPES)
def test_act_non_contiguous_and_out(op, ref, _torch, dtype, atol, rtol):
    x = _act_x((6, 40), dtype, seed=1)[::2, 3:30].t()  # strided both ways
    assert not x.is_contiguous()
    got = op(x)
    assert got.shape == x.shape
    torch.testing.assert_close(got, ref(x), atol=atol, rtol=rtol)
    out = torch.full(x.shape, float("nan"), dtype=dtype, device=DEVICE)
    assert op(x, out=out) is out
    torch.testing.assert_close(out, ref(x), atol=atol, rtol=rtol)


def test_act_bad_arguments():
    x = torch.randn(4, 8, device=DEVICE)
    with pytest.raises(ValueError, match="approximate"):
        gelu(x, approximate="erf")
    with pytest.raises(ValueError, match="out must be"):
        quick_gelu(x, out=torch.empty(4, 9, device=DEVICE))
    with pytest.raises(ValueError, match="out must be"):
        gelu(x, out=torch.empty(8, 4, device=DEVICE).t())


@pytest.mark.parametrize("name", ["gelu", "gelu_pytorch_tanh", "gelu_new", "quick_gelu", "relu"])
def test_activation_layer_kernels_match_torch(name):
    layer = Activation(name)
    assert layer.extra_repr() == name
    x = _act_x((3, 2, 50), torch.float32, seed=3)
    want = layer(x)
    torch.testing.assert_close(want, ACTIVATIONS[name](x), atol=0, rtol=0)
    layer.kernels = True
    torch.testing.assert_close(layer(x), want, atol=1e-5, rtol=1e-5)
