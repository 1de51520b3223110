"""kernels.fused_moe against reference.fused_moe (itself checked against the definition, token by token, in
tests/inference/test_moe.py): odd token, expert, hidden and intermediate counts, experts with no tokens, every
dtype, both activations, tiles forced small so that every dimension spans several; and the expert alignment."""

from __future__ import annotations

import pytest
import torch

from inference.layers.moe import route
from kernels import reference
from kernels.fused_moe import align_by_expert, fused_moe
from tests.support.kernel_cases import DEVICE, DTYPES, shapes


def _case(T: int, E: int, k: int, H: int, inter: int, dtype: torch.dtype, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(T, H, generator=gen)
    w13 = torch.randn(E, 2 * inter, H, generator=gen) / H**0.5
    w2 = torch.randn(E, H, inter, generator=gen) / inter**0.5
    logits = torch.randn(T, E, generator=gen)
    if E > 2:
        logits[:, E - 1] = -1e4  # the last expert gets no token: its blocks must not exist
    weights, ids = route(logits, k, renormalize=True)
    to = {"device": DEVICE}
    return x.to(**to, dtype=dtype), w13.to(**to, dtype=dtype), w2.to(**to, dtype=dtype), weights.to(**to), ids.to(**to)


@pytest.mark.parametrize("dtype, atol, rtol", DTYPES)
@pytest.mark.parametrize(
    "T, E, k, H, inter",
    shapes(
        [(1, 3, 1, 24, 20), (5, 8, 2, 40, 36), (19, 5, 3, 72, 24), (33, 16, 4, 16, 40)],
        [(1, 8, 2, 4096, 14336), (256, 8, 2, 4096, 14336), (512, 128, 8, 2048, 768), (7, 64, 6, 2048, 1408)],
    ),
)
def test_fused_moe_matches_reference(dtype, atol, rtol, T, E, k, H, inter):
    x, w13, w2, weights, ids = _case(T, E, k, H, inter, dtype)
    got = fused_moe(x, w13, w2, weights, ids)
    assert got.shape == (T, H) and got.dtype == dtype
    torch.testing.assert_close(got, reference.fused_moe(x, w13, w2, weights, ids), atol=atol, rtol=rtol)


@pytest.mark.parametrize("activation", ["silu", "gelu_tanh"])
def test_small_tiles_span_every_dimension(activation):
    """16-row, 16-column, 16-deep tiles: several row blocks per expert, several column and depth steps."""
    x, w13, w2, weights, ids = _case(41, 6, 2, 50, 35, torch.float32, seed=3)
    got = fused_moe(x, w13, w2, weights, ids, activation, config=(16, 16, 16, 4, 2))
    expected = reference.fused_moe(x, w13, w2, weights, ids, activation)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_a_token_does_not_depend_on_the_others():
    x, w13, w2, weights, ids = _case(23, 7, 3, 40, 24, torch.float32, seed=5)
    together = fused_moe(x, w13, w2, weights, ids)
    alone = torch.cat([fused_moe(x[t : t + 1], w13, w2, weights[t : t + 1], ids[t : t + 1]) for t in range(3)])
    torch.testing.assert_close(alone, together[:3], atol=1e-5, rtol=1e-5)


def test_alignment_puts_every_pair_once_in_blocks_of_one_expert():
    ids = torch.tensor([[2, 0], [2, 1], [0, 2], [4, 2], [2, 0]], device=DEVICE)  # expert 3 unused
    pairs, experts = align_by_expert(ids, num_experts=5, block_m=4)
    n = ids.numel()
    real = pairs[pairs < n].tolist()
    assert sorted(real) == list(range(n))  # every pair exactly once
    flat = ids.reshape(-1).tolist()
    for b, expert in enumerate(experts.tolist()):
        block = [p for p in pairs[b * 4 : (b + 1) * 4].tolist() if p < n]
        if expert >= 5:
            assert not block  # past the last run: padding only
        else:
            assert all(flat[p] == expert for p in block)
    # expert 2 has 5 pairs: two blocks; 0 has 3, 1 and 4 one each: one block each; 3 none
    assert sorted(e for e in experts.tolist() if e < 5) == [0, 1, 2, 2, 4]


def test_bad_shapes_and_activations_are_refused():
    x, w13, w2, weights, ids = _case(3, 4, 2, 16, 8, torch.float32)
    with pytest.raises(ValueError, match="activation"):
        fused_moe(x, w13, w2, weights, ids, "relu")
    with pytest.raises(ValueError, match="shapes do not agree"):
        fused_moe(x, w13, w2[:, :8], weights, ids)
