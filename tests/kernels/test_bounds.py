"""The interpreter's out-of-bounds check (tests/support/triton_bounds.py), which every kernel test runs under on the
CPU: a planted overrun fails, the masked idiom passes, and the report names the argument it overran. The check is
the interpreter's, so the GPU run leaves this file out (benchmarks/gpu/run_issue5.sh)."""

from __future__ import annotations

import pytest
import torch
import triton
import triton.language as tl

from tests.support import triton_bounds


@triton.jit
def _copy(src, dst, n, stop, BLOCK: tl.constexpr):
    """dst[i] = src[i] for i < stop, BLOCK a program; n is the length the mask guards the load with."""
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    values = tl.load(src + offsets, mask=offsets < n, other=0.0)
    tl.store(dst + offsets, values, mask=offsets < stop)


@triton.jit
def _strided_sum(x, out, rows, cols, stride, BLOCK: tl.constexpr):
    """out[r] = sum of x[r, :cols], rows `stride` elements apart."""
    r = tl.program_id(0)
    c = tl.arange(0, BLOCK)
    tl.store(out + r, tl.sum(tl.load(x + r * stride + c, mask=c < cols, other=0.0)))


def test_in_bounds_and_masked_tails_pass():
    src = torch.randn(37)
    dst = torch.full((37,), float("nan"))
    _copy[(triton.cdiv(37, 16),)](src, dst, 37, 37, BLOCK=16)  # the last program's pointers run past the end
    assert torch.equal(dst, src)


def test_a_load_past_the_end_fails_naming_the_argument():
    src, dst = torch.randn(37), torch.zeros(48)
    with pytest.raises(Exception, match=r"_copy \(program \(2, 0, 0\)\): load of 11 of 16 .* past the end of 'src'"):
        _copy[(3,)](src, dst, 48, 48, BLOCK=16)  # the load's mask admits 48 elements of a 37-element src


def test_a_store_past_the_end_fails():
    src, dst = torch.randn(48), torch.zeros(40)
    with pytest.raises(Exception, match=r"store of 8 of 16 .*'dst'"):
        _copy[(3,)](src, dst, 48, 48, BLOCK=16)


def test_a_view_is_bounded_by_what_it_reaches_not_its_storage():
    """A kernel given rows 2..3 of a matrix may not read row 4, though the storage holds it (on a GPU that read
    returns another tensor's data without a fault)."""
    x = torch.randn(6, 8)
    out = torch.zeros(2)
    _strided_sum[(2,)](x[2:4], out, 2, 8, 8, BLOCK=8)
    torch.testing.assert_close(out, x[2:4].sum(1))
    with pytest.raises(Exception, match="past the end of 'x'"):
        _strided_sum[(3,)](x[2:4], torch.zeros(3), 3, 8, 8, BLOCK=8)


def test_a_failed_launch_leaves_no_spans_behind():
    src, dst = torch.randn(37), torch.zeros(48)
    with pytest.raises(Exception, match="outside every tensor argument"):  # noqa: B017 (Triton wraps it)
        _copy[(3,)](src, dst, 48, 48, BLOCK=16)
    assert triton_bounds._current == []
    _copy[(3,)](torch.randn(48), dst, 48, 48, BLOCK=16)


def test_span_follows_strides():
    x = torch.randn(4, 6)
    base = x.data_ptr()
    assert triton_bounds.span("t", x.t()) == triton_bounds.Span("t", base, base + 24 * 4)
    assert triton_bounds.span("c", x[:, 2]) == triton_bounds.Span("c", base + 8, base + (2 + 3 * 6 + 1) * 4)
    assert triton_bounds.span("e", x[:0]) is None
