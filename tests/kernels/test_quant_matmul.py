"""kernels.quant_matmul against gguf.quants and reference.quant_matmul: dequantization bit for bit on real blocks
(Gemma 3's Q8_0 / Q5_0 / Q4_K / Q6_K and SmolLM2's Q4_1 from the packaged files; Q4_0 and Q5_1, which neither file
uses, quantized by gguf.quants from real Gemma weights) and on random ones (subnormal, huge and negative scales,
-0.0 results), the GEMV path (with and without a K split) and the GEMM path for every type and dtype, ragged N
and M, strided x.

The real GGUF is read with the repo's ``inference.loader.gguf.GGUFFile`` (its header and tensors are checked against
``gguf.GGUFReader`` in tests/inference): GGUFReader takes ~10 s to parse the 262k-token vocabulary."""

from __future__ import annotations

import gguf
import numpy as np
import pytest
import torch

from kernels import quant_matmul as qm
from kernels import reference
from tests.support.kernel_cases import DEVICE, DTYPES, QTYPES, QTYPES_32, random_blocks, shapes


def plant_negative_zero(blocks: torch.Tensor, qtype: str) -> torch.Tensor:
    """Weight 0 of block 0 of every row set to decode to -0.0 (a zero quant under a negative scale)."""
    b = blocks.clone()
    if qtype == "Q8_0":
        b[:, 1] |= 0x80  # d < 0
        b[:, 2] = 0  # q = 0
    elif qtype in ("Q4_0", "Q5_0"):
        b[:, 1] |= 0x80  # d < 0
        qs = 2 if qtype == "Q4_0" else 6
        b[:, qs] = (b[:, qs] & 0xF0) | (8 if qtype == "Q4_0" else 0)  # q - 8 = 0; Q5_0: low nibble 0 ...
        if qtype == "Q5_0":
            b[:, 2] |= 1  # ... with the fifth bit set: q - 16 = 0
    elif qtype in ("Q4_1", "Q5_1"):
        b[:, 1] |= 0x80  # d < 0, so d * 0 = -0.0 ...
        b[:, 2], b[:, 3] = 0, 0x80  # ... plus m = -0.0 stays -0.0
        b[:, 4] &= 0xF0 if qtype == "Q4_1" else 0xFE  # q = 0 (Q5_1: fifth bit clear ...)
        if qtype == "Q5_1":
            b[:, 8] &= 0xF0  # ... and low nibble 0)
    elif qtype == "Q4_K":
        b[:, 1] |= 0x80  # d < 0, so (d * sc) * 0 = -0.0 ...
        b[:, 4] |= 1  # ... with sc > 0
        b[:, 3] &= 0x7F  # dmin >= 0 and m = 0: -0.0 - (+0.0) = -0.0
        b[:, 8] &= 0xC0
        b[:, 16] &= 0xF0  # q = 0
    else:
        b[:, 209] |= 0x80  # d < 0
        b[:, 192] = 1  # scale > 0
        b[:, 0] &= 0xF0  # low 4 bits 0 ...
        b[:, 128] = (b[:, 128] & 0xFC) | 2  # ... high 2 bits 2: q - 32 = 0
    return b


def assert_bit_equal(ours: torch.Tensor, ref: np.ndarray) -> None:
    ours = ours.cpu().numpy()
    assert ours.dtype == np.float32 and ours.shape == ref.shape
    bad = ours.view(np.uint32) != ref.view(np.uint32)
    assert not bad.any(), f"{bad.sum()} weights differ, first at {np.argwhere(bad)[0]}"


# --- dequantize, bit for bit ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("qtype", QTYPES)
def test_dequantize_real_gguf_blocks_bit_for_bit(gemma_blocks, qtype):
    raw = gemma_blocks[qtype]
    ref = gguf.quants.dequantize(raw, gguf.GGMLQuantizationType[qtype])
    assert_bit_equal(qm.dequantize(torch.from_numpy(raw).to(DEVICE), qtype), ref)


@pytest.mark.parametrize("qtype", QTYPES)
@pytest.mark.parametrize("rows,k", [(1, 256), (5, 512), (19, 768)])
def test_dequantize_random_blocks_bit_for_bit(qtype, rows, k):
    g = torch.Generator().manual_seed(rows * 1000 + k)
    blocks = plant_negative_zero(random_blocks(rows, k, qtype, g), qtype)
    ref = gguf.quants.dequantize(blocks.numpy(), gguf.GGMLQuantizationType[qtype])
    # the case the bit comparison exists for: the planted signed zeros (the random bytes may add more)
    assert (np.signbit(ref[:, 0]) & (ref[:, 0] == 0)).all()
    assert_bit_equal(qm.dequantize(blocks.to(DEVICE), qtype), ref)
    assert_bit_equal(qm.dequantize(blocks.to(DEVICE), qtype), reference.dequantize(blocks, qtype).numpy())


@pytest.mark.parametrize("qtype", QTYPES_32)
@pytest.mark.parametrize("rows,k", [(3, 32), (2, 96), (7, 288)])
def test_dequantize_32_weight_blocks_rows_of_odd_block_counts(qtype, rows, k):
    g = torch.Generator().manual_seed(k)
    blocks = random_blocks(rows, k, qtype, g)
    assert_bit_equal(qm.dequantize(blocks.to(DEVICE), qtype), reference.dequantize(blocks, qtype).numpy())


def test_dequantize_rejects_bad_blocks():
    with pytest.raises(ValueError, match="not supported"):
        qm.dequantize(torch.zeros(2, 84, dtype=torch.uint8, device=DEVICE), "Q2_K")
    with pytest.raises(ValueError, match="uint8"):
        qm.dequantize(torch.zeros(2, 143, dtype=torch.uint8, device=DEVICE), "Q4_K")
    with pytest.raises(ValueError, match="uint8"):
        qm.dequantize(torch.zeros(2, 34, dtype=torch.int8, device=DEVICE), "Q8_0")


# --- quant_matmul ----------------------------------------------------------------------------------------------------


def matmul_case(m: int, n: int, k: int, qtype: str, dtype: torch.dtype, seed: int = 0):
    """Blocks with moderate random scales and x scaled so that the outputs are O(1) (the tolerances are absolute
    too) → (x, blocks) on DEVICE."""
    g = torch.Generator().manual_seed(seed)
    halves = (torch.randn(4096, generator=g) * 1e-2).half()
    blocks = random_blocks(n, k, qtype, g, halves).to(DEVICE)
    rms = reference.dequantize(blocks, qtype).pow(2).mean().sqrt()
    x = (torch.randn(m, k, generator=g).to(DEVICE) / (rms * k**0.5)).to(dtype)
    return x, blocks


def check_matmul(out: torch.Tensor, x: torch.Tensor, blocks: torch.Tensor, qtype: str, atol: float, rtol: float):
    ref = reference.quant_matmul(x, blocks, qtype)
    assert out.dtype == x.dtype and out.shape == ref.shape
    # float32 rounding of a dot product grows ~sqrt(K): the tolerances hold for K up to 1024
    scale = max(1.0, (x.shape[-1] / 1024) ** 0.5)
    torch.testing.assert_close(out.float(), ref.float(), atol=atol * scale, rtol=rtol * scale)


# (M, N, K): M 1 and 3 take the GEMV path (K = 512: split over programs on the CPU), 33 the GEMM path
CASES = shapes(
    small=[
        pytest.param(m, n, k, id=f"m{m}-n{n}-k{k}")
        for m in (1, 3, 33)
        for n, k in ((1, 256), (17, 512), (64, 256), (64, 512))
    ],
    real=[
        pytest.param(m, n, k, id=f"llama8b-m{m}-n{n}-k{k}")
        for m in (1, 16, 512)
        for n, k in ((4096, 4096), (14336, 4096), (4096, 14336))
    ],
)


@pytest.mark.parametrize("dtype,atol,rtol", DTYPES)
@pytest.mark.parametrize("qtype", QTYPES)
@pytest.mark.parametrize("m,n,k", CASES)
def test_quant_matmul(m, n, k, qtype, dtype, atol, rtol):
    x, blocks = matmul_case(m, n, k, qtype, dtype, seed=m * n + k)
    check_matmul(qm.quant_matmul(x, blocks, qtype), x, blocks, qtype, atol, rtol)


@pytest.mark.parametrize("dtype,atol,rtol", DTYPES)
@pytest.mark.parametrize("qtype", QTYPES_32)
@pytest.mark.parametrize("m,n,k", [(1, 17, 32), (3, 64, 96), (33, 17, 96), (2, 5, 288)])
def test_quant_matmul_32_weight_blocks_small_k(m, n, k, qtype, dtype, atol, rtol):
    """32-weight blocks: K need not be a multiple of the 256-weight chunks the kernels walk."""
    x, blocks = matmul_case(m, n, k, qtype, dtype, seed=k)
    check_matmul(qm.quant_matmul(x, blocks, qtype), x, blocks, qtype, atol, rtol)


@pytest.mark.parametrize("qtype", QTYPES)
@pytest.mark.parametrize("m", [qm.GEMV_MAX_M, qm.GEMV_MAX_M + 1, 5])
def test_quant_matmul_either_side_of_the_gemv_gemm_switch(qtype, m):
    x, blocks = matmul_case(m, 24, 256, qtype, torch.bfloat16, seed=m)
    check_matmul(qm.quant_matmul(x, blocks, qtype), x, blocks, qtype, 2e-2, 2e-2)


@pytest.mark.parametrize("qtype", QTYPES)
@pytest.mark.parametrize("splits", [1, 2, 3, 5])
def test_gemv_k_split(qtype, splits):
    """Partials of uneven (and, asked for 5 of 3 chunks, clamped) K splits sum to the product."""
    x, blocks = matmul_case(2, 40, 768, qtype, torch.float32, seed=splits)
    check_matmul(qm._gemv(x, blocks, qtype, splits=splits), x, blocks, qtype, 1e-5, 1e-5)


@pytest.mark.parametrize("qtype", QTYPES)
@pytest.mark.parametrize("config", [(16, 8), (32, 4), (128, 8)], ids=["16x8", "32x4", "128x8"])
def test_gemv_forced_configs(qtype, config):
    """The GPU's tiles (the interpreter's are wider: _gemv_config) and the others benchmarks/bench_tune.py sweeps
    there: column tiles narrower and wider than N = 40 (ragged last tiles, or one tile mostly masked), 3 rows padded
    to 4, K split 3 ways."""
    x, blocks = matmul_case(3, 40, 768, qtype, torch.float32, seed=config[0])
    check_matmul(qm._gemv(x, blocks, qtype, splits=3, config=config), x, blocks, qtype, 1e-5, 1e-5)


@pytest.mark.parametrize("qtype", QTYPES)
def test_gemm_grouped_tile_order(qtype):
    """More row tiles than GROUP_M (10 of 16 rows, the last ragged) times 3 column tiles: every tile exactly once."""
    x, blocks = matmul_case(150, 40, 256, qtype, torch.float16, seed=150)
    check_matmul(qm._gemm(x, blocks, qtype, config=(16, 16, 4, 3)), x, blocks, qtype, 2e-3, 2e-3)


@pytest.mark.parametrize("m", [2, 20])
def test_quant_matmul_strided_and_batched_x(m):
    """x a column slice of a wider buffer (row stride != K), then with leading batch dims."""
    x, blocks = matmul_case(m, 17, 256, "Q4_K", torch.float16, seed=m)
    wide = torch.zeros(m, 300, dtype=x.dtype, device=DEVICE)
    wide[:, 20:276] = x
    check_matmul(qm.quant_matmul(wide[:, 20:276], blocks, "Q4_K"), x, blocks, "Q4_K", 2e-3, 2e-3)
    out = qm.quant_matmul(x.reshape(2, m // 2, 256), blocks, "Q4_K")
    assert out.shape == (2, m // 2, 17)
    check_matmul(out.reshape(m, 17), x, blocks, "Q4_K", 2e-3, 2e-3)


@pytest.mark.parametrize("qtype", QTYPES)
@pytest.mark.parametrize("m", [1, 20])
def test_quant_matmul_real_gguf_blocks(gemma_blocks, qtype, m):
    blocks = torch.from_numpy(gemma_blocks[qtype]).to(DEVICE)
    k = blocks.shape[1] // reference.GGUF_BLOCKS[qtype][1] * reference.GGUF_BLOCKS[qtype][0]
    x = torch.randn(m, k, generator=torch.Generator().manual_seed(m)).to(DEVICE, torch.bfloat16)
    check_matmul(qm.quant_matmul(x, blocks, qtype), x, blocks, qtype, 2e-2, 2e-2)


def test_quant_matmul_rejects_mismatched_x():
    blocks = torch.zeros(4, 144, dtype=torch.uint8, device=DEVICE)
    with pytest.raises(ValueError, match="columns"):
        qm.quant_matmul(torch.zeros(1, 128, device=DEVICE), blocks, "Q4_K")
    with pytest.raises(ValueError, match="float32, float16 or bfloat16"):
        qm.quant_matmul(torch.zeros(1, 256, dtype=torch.float64, device=DEVICE), blocks, "Q4_K")
