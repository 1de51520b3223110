"""kernels.rotary against reference.rotary_embedding (rotate-half convention)."""

from __future__ import annotations

import pytest
import torch

from kernels import reference
from kernels.rotary import rotary_embedding
from tests.support.kernel_cases import DEVICE, DTYPES, shapes


def _inv_freq(D: int, base: float, factor: float = 1.0) -> torch.Tensor:
    """HF's default inv_freq [D/2], with linear scaling (Gemma 3's global layers: base 1e6, factor 8)."""
    return (1.0 / base ** (torch.arange(0, D, 2, dtype=torch.float32) / D) / factor).to(DEVICE)


def _positions(T: int, seed: int) -> torch.Tensor:
    """Out of order, with long-context ones (where fast hardware cos/sin break down) among small ones."""
    gen = torch.Generator().manual_seed(seed)
    pos = torch.randint(0, 4096, (T,), generator=gen)
    pos[: min(T, 4)] = torch.tensor([100000, 7, 131071, 0])[: min(T, 4)]
    return pos[torch.randperm(T, generator=gen)].to(DEVICE)


def _qk(T: int, H: int, Hkv: int, D: int, dtype: torch.dtype, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    q, k = torch.randn(T, H, D, generator=gen), torch.randn(T, Hkv, D, generator=gen)
    return q.to(DEVICE, dtype), k.to(DEVICE, dtype)


INV_FREQS = [
    pytest.param(10000.0, 1.0, id="base1e4"),
    pytest.param(1e6, 8.0, id="base1e6x8"),
]


@pytest.mark.parametrize("dtype, atol, rtol", DTYPES)
@pytest.mark.parametrize(
    "T, H, Hkv, D",
    shapes(
        [(1, 4, 1, 32), (3, 3, 3, 64), (5, 4, 1, 256), (6, 2, 1, 48)],
        [(512, 32, 8, 128), (1, 32, 8, 128), (512, 4, 1, 256), (4096, 8, 4, 256), (300, 14, 2, 64)],
    ),
)
@pytest.mark.parametrize("base, factor", INV_FREQS)
def test_rotary_matches_reference(dtype, atol, rtol, T, H, Hkv, D, base, factor):
    q, k = _qk(T, H, Hkv, D, dtype)
    positions, inv_freq = _positions(T, seed=T), _inv_freq(D, base, factor)
    q_before, k_before = q.clone(), k.clone()
    got_q, got_k = rotary_embedding(q, k, positions, inv_freq)
    want_q, want_k = reference.rotary_embedding(q, k, positions, inv_freq)
    assert got_q.shape == q.shape and got_k.shape == k.shape and got_q.dtype == got_k.dtype == dtype
    torch.testing.assert_close(got_q, want_q, atol=atol, rtol=rtol)
    torch.testing.assert_close(got_k, want_k, atol=atol, rtol=rtol)
    assert torch.equal(q, q_before) and torch.equal(k, k_before)  # not in place by default


@pytest.mark.parametrize("dtype, atol, rtol", DTYPES)
@pytest.mark.parametrize("T, H, Hkv, D", shapes([(3, 4, 1, 32), (2, 2, 2, 64)], [(512, 32, 8, 128)]))
def test_rotary_inplace_on_fused_qkv_views(dtype, atol, rtol, T, H, Hkv, D):
    # the engine's use: q and k are views of the fused projection [T, (H + 2 Hkv) * D], rows strided past H * D
    gen = torch.Generator().manual_seed(1)
    qkv = torch.randn(T, (H + 2 * Hkv) * D, generator=gen).to(DEVICE, dtype)
    before = qkv.clone()
    q = qkv[:, : H * D].view(T, H, D)
    k = qkv[:, H * D : (H + Hkv) * D].view(T, Hkv, D)
    positions, inv_freq = _positions(T, seed=2), _inv_freq(D, 10000.0)
    want_q, want_k = reference.rotary_embedding(q, k, positions, inv_freq)
    got_q, got_k = rotary_embedding(q, k, positions, inv_freq, inplace=True)
    assert got_q is q and got_k is k
    torch.testing.assert_close(q, want_q, atol=atol, rtol=rtol)
    torch.testing.assert_close(k, want_k, atol=atol, rtol=rtol)
    assert torch.equal(qkv[:, (H + Hkv) * D :], before[:, (H + Hkv) * D :])  # v untouched


def test_rotary_int32_positions_up_to_a_million():
    # float32 throughout: the kernel's angles must be the reference's float32 products, reduced without error
    T, H, Hkv, D = 6, 2, 1, 64
    q, k = _qk(T, H, Hkv, D, torch.float32, seed=3)
    positions = torch.tensor([1_000_000, 524_287, 65_536, 12_345, 1, 999_999], dtype=torch.int32, device=DEVICE)
    inv_freq = _inv_freq(D, 10000.0)
    got = rotary_embedding(q, k, positions, inv_freq)
    want = reference.rotary_embedding(q, k, positions, inv_freq)
    torch.testing.assert_close(got[0], want[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got[1], want[1], atol=1e-5, rtol=1e-5)
