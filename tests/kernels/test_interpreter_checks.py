"""The interpreter's out-of-bounds and race checks (tests/support/interpreter_checks.py), which every kernel test runs
under on the CPU: a planted overrun fails, the masked idiom passes, and the report names the argument it overran;
programs that share an element one of them writes fail, in-place work on a program's own elements passes. The check is
the interpreter's, so the GPU run leaves this file out (benchmarks/gpu/run_issue5.sh)."""

from __future__ import annotations

import pytest
import torch
import triton
import triton.language as tl

from tests.support import interpreter_checks


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
    assert interpreter_checks._current == []
    _copy[(3,)](torch.randn(48), dst, 48, 48, BLOCK=16)


def test_span_follows_strides():
    x = torch.randn(4, 6)
    base = x.data_ptr()
    assert interpreter_checks.span("t", x.t()) == interpreter_checks.Span("t", base, base + 24 * 4)
    assert interpreter_checks.span("c", x[:, 2]) == interpreter_checks.Span("c", base + 8, base + (2 + 3 * 6 + 1) * 4)
    assert interpreter_checks.span("e", x[:0]) is None


@triton.jit
def _shift(x, n, BLOCK: tl.constexpr, SHIFT: tl.constexpr):
    """In place: x[i] = 2 * x[i + SHIFT] (SHIFT 0: each program on its own elements)."""
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    values = tl.load(x + offsets + SHIFT, mask=offsets + SHIFT < n, other=0.0)
    tl.store(x + offsets, 2 * values, mask=offsets < n)


@triton.jit
def _total(x, out, n, BLOCK: tl.constexpr):
    """Every program stores its block's sum to the same out[0]: a lost update on a GPU."""
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(out, tl.sum(tl.load(x + offsets, mask=offsets < n, other=0.0)))


def test_in_place_work_on_a_programs_own_elements_passes():
    x = torch.randn(40)
    expected = 2 * x
    _shift[(3,)](x, 40, BLOCK=16, SHIFT=0)
    assert torch.equal(x, expected)


def test_reading_what_another_program_writes_is_a_race():
    """Program 0 reads x[16] which program 1 overwrites: here always before, on a GPU in either order."""
    race = r"_shift: programs \(0, 0, 0\) and \(1, 0, 0\) .* byte 64 of 'x'"
    with pytest.raises(interpreter_checks.Race, match=race):
        _shift[(3,)](torch.randn(40), 40, BLOCK=16, SHIFT=1)


def test_programs_writing_one_element_are_a_race():
    with pytest.raises(interpreter_checks.Race, match="'out'"):
        _total[(3,)](torch.randn(40), torch.zeros(1), 40, BLOCK=16)
    _total[(1,)](torch.randn(16), torch.zeros(1), 16, BLOCK=16)  # one program: no one to race
