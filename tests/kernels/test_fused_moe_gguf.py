"""kernels.fused_moe_gguf against reference.fused_moe_gguf (the dequantized experts through reference.fused_moe):
every GGUF type the kernels read, gate / up / down of different types as Q4_K_M files mix them, odd expert, token
and block counts (a 32-weight type's K need not fill a 256-weight unit), experts with no tokens, every dtype, both
activations, tiles forced small; and the blocks a file holds for real (a packaged model's tensors, stacked)."""

from __future__ import annotations

import pytest
import torch

from inference.layers.moe import route
from kernels import reference
from kernels.fused_moe_gguf import fused_moe_gguf
from tests.support.kernel_cases import DEVICE, DTYPES, QTYPES, QTYPES_32, random_blocks, shapes


def _experts(e: int, rows: int, k: int, qtype: str, g: torch.Generator) -> tuple[torch.Tensor, str]:
    """[e, rows, k / bw * bb] blocks whose weights have an rms of 1 / sqrt(k), so that products with unit x stay
    O(1) (the tolerances are absolute too): random scales, then the same bytes again with the scales rescaled
    (every type's weights are linear in its fp16 fields)."""
    seed = int(torch.randint(0, 1 << 30, (1,), generator=g))
    halves = (torch.randn(4096, generator=torch.Generator().manual_seed(seed)) * 1e-2).half()
    blocks = random_blocks(e * rows, k, qtype, torch.Generator().manual_seed(seed), halves)
    rms = reference.dequantize(blocks, qtype).pow(2).mean().sqrt()
    halves = (halves.float() / (rms * k**0.5)).half()
    blocks = random_blocks(e * rows, k, qtype, torch.Generator().manual_seed(seed), halves)
    return blocks.view(e, rows, -1).to(DEVICE), qtype


def _case(T, E, k, H, inter, types, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    gate, up, down = (
        _experts(E, inter, H, types[0], g), _experts(E, inter, H, types[1], g), _experts(E, H, inter, types[2], g)
    )  # fmt: skip
    x = torch.randn(T, H, generator=g).to(DEVICE, dtype)
    logits = torch.randn(T, E, generator=g)
    if E > 2:
        logits[:, E - 1] = -1e4  # the last expert gets no token: its blocks must not exist
    weights, ids = route(logits, k, renormalize=True)
    return x, gate, up, down, weights.to(DEVICE), ids.to(DEVICE)


def _check(got, x, gate, up, down, weights, ids, atol, rtol, activation="silu"):
    expected = reference.fused_moe_gguf(x, gate, up, down, weights, ids, activation)
    assert got.shape == x.shape and got.dtype == x.dtype
    torch.testing.assert_close(got.float(), expected.float(), atol=atol, rtol=rtol)


# every type exactly (fp32), the engine's bf16 and fp16 on a few; (1, 3, 1): a decode step's single pair
TYPE_CASES = [(q, "fp32") for q in QTYPES] + [("Q4_K", "bf16"), ("Q6_K", "bf16"), ("Q4_1", "bf16"), ("Q8_0", "fp16")]
TOLERANCES = {p.id: p.values for p in DTYPES}


@pytest.mark.parametrize("qtype, dtype_id", TYPE_CASES)
@pytest.mark.parametrize("T, E, k", shapes([(9, 5, 2)], [(4, 8, 2), (300, 8, 2), (37, 64, 6)]))
def test_every_type_matches_reference(qtype, dtype_id, T, E, k):
    dtype, atol, rtol = TOLERANCES[dtype_id]
    H, inter = (256, 256) if DEVICE.type != "cuda" else (4096, 1024)
    x, *rest = _case(T, E, k, H, inter, (qtype,) * 3, dtype, seed=T * E)
    _check(fused_moe_gguf(x, *rest), x, *rest, atol, rtol)


def test_a_decode_step_single_pair():
    x, *rest = _case(1, 3, 1, 256, 256, ("Q4_K", "Q4_K", "Q6_K"), torch.bfloat16, seed=1)
    _check(fused_moe_gguf(x, *rest), x, *rest, 2e-2, 2e-2)


@pytest.mark.parametrize("qtype", QTYPES_32)
def test_32_weight_types_with_k_not_a_multiple_of_256(qtype):
    """H = 96 (3 blocks of 32), I = 160 (5): the groups past K inside a 256-weight unit read nothing."""
    x, *rest = _case(7, 4, 2, 96, 160, (qtype,) * 3, torch.float32, seed=3)
    _check(fused_moe_gguf(x, *rest), x, *rest, 1e-5, 1e-5)


@pytest.mark.parametrize(
    "types, H, inter",
    [(("Q5_0", "Q8_0", "Q4_1"), 96, 160), (("Q6_K", "Q4_K", "Q5_1"), 512, 96)],
)
def test_gate_up_and_down_of_different_types(types, H, inter):
    x, *rest = _case(11, 5, 2, H, inter, types, torch.bfloat16, seed=5)
    _check(fused_moe_gguf(x, *rest), x, *rest, 2e-2, 2e-2)


@pytest.mark.parametrize("activation", ["silu", "gelu_tanh"])
def test_small_tiles_span_every_dimension(activation):
    """16-row, 16-column tiles: several row blocks per expert and several column blocks of I and H."""
    x, *rest = _case(41, 6, 2, 64, 96, ("Q8_0", "Q4_0", "Q5_1"), torch.float32, seed=7)
    got = fused_moe_gguf(x, *rest, activation=activation, config=(16, 16, 4, 2))
    _check(got, x, *rest, 1e-5, 1e-5, activation)


def test_a_token_does_not_depend_on_the_others():
    x, gate, up, down, weights, ids = _case(7, 5, 2, 256, 64, ("Q4_K", "Q4_K", "Q8_0"), torch.float32, seed=9)
    together = fused_moe_gguf(x, gate, up, down, weights, ids)
    alone = torch.cat([fused_moe_gguf(x[t : t + 1], gate, up, down, weights[t : t + 1], ids[t : t + 1])
                       for t in range(3)])  # fmt: skip
    torch.testing.assert_close(alone, together[:3], atol=1e-5, rtol=1e-5)


def test_real_gguf_blocks(gemma_blocks):
    """Gate and up of two experts of 16 from real rows (the packaged Gemma's Q4_K attn_output, H = 1024), down of
    random Q8_0 blocks: the file's own scale and quant patterns."""
    real = torch.from_numpy(gemma_blocks["Q4_K"]).to(DEVICE)
    rows = torch.cat([real, real[:8]])  # I = 32 rows
    gate, up = (rows.repeat(2, 1).view(2, 32, -1), "Q4_K"), (rows.flip(0).repeat(2, 1).view(2, 32, -1), "Q4_K")
    H = real.shape[1] // 144 * 256
    g = torch.Generator().manual_seed(2)
    down = _experts(2, H, 32, "Q8_0", g)
    x = torch.randn(6, H, generator=g).to(DEVICE, torch.bfloat16)
    weights, ids = (t.to(DEVICE) for t in route(torch.randn(6, 2, generator=g), 1, renormalize=True))
    _check(fused_moe_gguf(x, gate, up, down, weights, ids), x, gate, up, down, weights, ids, 2e-2, 2e-2)


def test_bad_blocks_and_activations_are_refused():
    x, gate, up, down, weights, ids = _case(3, 4, 2, 64, 32, ("Q8_0",) * 3, torch.float32)
    with pytest.raises(ValueError, match="activation"):
        fused_moe_gguf(x, gate, up, down, weights, ids, "relu")
    with pytest.raises(ValueError, match="not supported"):
        fused_moe_gguf(x, gate, up, (down[0], "Q2_K"), weights, ids)
    with pytest.raises(ValueError, match="down: Q8_0 blocks must be"):
        fused_moe_gguf(x, gate, up, (down[0][:, :10], "Q8_0"), weights, ids)
    with pytest.raises(ValueError, match="shapes do not agree"):
        fused_moe_gguf(x, gate, up, down, weights[:, :1], ids)
