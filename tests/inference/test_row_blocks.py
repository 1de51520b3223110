"""The prefill GEMM (inference/weights/row_blocks.py): a row's bits do not depend on how many rows are multiplied
with it, or where among them it sits, in row blocks of any size on any CPU (oneDNN's AMX kernels round by the row
count: the blocks are what keeps prompts batch-invariant there), and in the way this machine runs it by default
(blocks with AMX, one call without); the product is the GEMM's. In fp32 (prefill where bf16 is emulated) too: one
call of at least 16 rows where a check on the shape finds that keeps a row's bits, else blocks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from inference.layers.invariant_rows import FLOAT_ROW_BLOCK, in_row_blocks
from inference.weights import row_blocks
from inference.weights.row_blocks import ROW_BLOCK, float_linear, linear_in_blocks

# K x N of the packaged models' layers and Whisper base's, and an odd one
SHAPES = [(576, 960), (576, 3072), (1536, 576), (640, 2048), (2048, 640), (512, 1536), (100, 37)]


@pytest.mark.parametrize("block", [None, 64, 128])  # None: ROW_BLOCK, this machine's way
@pytest.mark.parametrize(("k", "n"), SHAPES)
def test_a_rows_result_is_the_same_whatever_the_row_count(k, n, block):
    generator = torch.Generator().manual_seed(k * n)
    weight = torch.randn(n, k, generator=generator).bfloat16()
    size = block or ROW_BLOCK or 128
    x = torch.randn(2 * size + 61, k, generator=generator).bfloat16()
    whole = linear_in_blocks(x, weight, block)
    assert whole.shape == (x.shape[0], n) and whole.dtype == torch.bfloat16
    for count in (1, 2, 7, 33, size - 1, size, size + 1, 2 * size + 60):
        assert torch.equal(linear_in_blocks(x[-count:], weight, block), whole[-count:]), count
        assert torch.equal(linear_in_blocks(x[:count], weight, block), whole[:count]), count
    reference = F.linear(x.float(), weight.float())
    torch.testing.assert_close(whole.float(), reference, atol=0.05 * reference.abs().max().item(), rtol=0.02)


def test_other_block_sizes_and_exact_multiples():
    weight = torch.randn(48, 32).bfloat16()
    x = torch.randn(64, 32).bfloat16()
    for block in (0, 1, 16, 64):
        torch.testing.assert_close(linear_in_blocks(x, weight, block).float(), F.linear(x, weight).float(),
                                   atol=0.1, rtol=0.02)  # fmt: skip
    assert linear_in_blocks(x[:0], weight, 16).shape == (0, 48)


def test_a_batched_product_in_row_blocks_does_not_follow_the_row_count():
    """``in_row_blocks`` (DeepSeek-V2's absorbed up-projections, an fp32 bmm over the rows): the same bits for a row
    however many rows share the call and wherever it sits; the same product as one call, within fp32's rounding."""
    generator = torch.Generator().manual_seed(11)
    weights = torch.randn(4, 48, 80, generator=generator)  # [heads, n, l]
    x = torch.randn(301, 4, 48, generator=generator)  # [rows, heads, n]

    def absorb(rows: torch.Tensor) -> torch.Tensor:
        return torch.einsum("thn,hnl->thl", rows, weights)

    whole = in_row_blocks(absorb, x)
    assert whole.shape == (301, 4, 80)
    for start, count in ((0, 1), (0, 2), (3, 5), (10, 11), (40, 33), (0, 128), (7, 129), (0, 301)):
        assert torch.equal(in_row_blocks(absorb, x[start : start + count]), whole[start : start + count]), count
    torch.testing.assert_close(whole, absorb(x), rtol=1e-5, atol=1e-4)
    assert in_row_blocks(absorb, x[:0]).shape == (0, 4, 80)


@pytest.mark.parametrize(("k", "n"), SHAPES)
def test_an_fp32_rows_result_is_the_same_whatever_the_row_count(k, n):
    """fp32 prefill (``float_linear``): a row's bits at any count from 0 to 300 and any offset, few rows included
    (sgemm rounds rows 2 to 11 of a product of under 12 differently here: one plain call fails this)."""
    generator = torch.Generator().manual_seed(k + n)
    weight = torch.randn(n, k, generator=generator)
    x = torch.randn(300, k, generator=generator)
    whole = float_linear(x, weight)
    assert whole.shape == (300, n) and whole.dtype == torch.float32
    for count in (*range(0, 40), 63, 64, 127, 128, 129, 200, 299):
        for at in (0, 3, 300 - count):
            assert torch.equal(float_linear(x[at : at + count], weight), whole[at : at + count]), (count, at)
    torch.testing.assert_close(whole, F.linear(x, weight), rtol=1e-5, atol=1e-4)


def test_where_one_call_does_not_hold_the_fp32_product_goes_in_blocks(monkeypatch):
    """A BLAS that rounds a row by the count (here: F.linear made to, from 40 rows on) fails the shape's check, and
    the product then runs in blocks of ``FLOAT_ROW_BLOCK``, bit for bit; the answer is cached per shape and threads."""
    weight = torch.randn(24, 20)
    x = torch.randn(150, 20)
    plain = F.linear

    def drifting(rows: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        out = plain(rows, w)
        return out + out.abs() * 2**-20 if rows.shape[0] >= 40 else out

    monkeypatch.setattr(row_blocks, "_CHECKED", {})
    assert row_blocks.one_call_holds(weight)
    monkeypatch.setattr(row_blocks, "_CHECKED", {})
    monkeypatch.setattr(row_blocks.F, "linear", drifting)
    assert not row_blocks.one_call_holds(weight)
    assert list(row_blocks._CHECKED.values()) == [None]
    assert torch.equal(float_linear(x, weight), linear_in_blocks(x, weight, FLOAT_ROW_BLOCK))
    monkeypatch.setattr(row_blocks.F, "linear", plain)
    assert not row_blocks.one_call_holds(weight)  # remembered, not checked again
