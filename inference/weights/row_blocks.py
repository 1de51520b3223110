"""The prefill GEMM, with rows that do not depend on how many there are (batch invariance, on every CPU).

oneDNN picks its bf16 kernel and blocking by the problem's shape. On CPUs with AMX (Intel Sapphire Rapids and
later) a row's result then follows the row count: on one (benchmarks/bench_row_blocks.py), 8 of 9 layer shapes
(K x N from 512 x 1536 to 4096 x 14336) gave some rows 1 to 4 bf16 ulps apart between a 700-row and a 33-row
product, at 1 thread as at 2. A prompt's last row, so its answer, would change with what shares its step, or with
how much of it the prefix cache held. There the product runs in calls of exactly ``ROW_BLOCK`` rows (the last one
padded with zeros): every row is computed by the same kernel at the same blocking wherever it sits, bit for bit
equal on all 9 shapes at 16 to 512 rows a block (the block's size itself changes the bits, so it is fixed). On
AVX-512 BF16 CPUs without AMX a row's bits never followed the count (the batch-invariance tests held there for
weeks, and do on this machine with oneDNN held to that ISA), so one call does, as fast as before.

fp32 (``float_linear``: prefill where bf16 is emulated, and every row under ``quantize = "none"``) is MKL's sgemm,
which rounds rows of some small products differently from the same rows of a big one, and from 12 rows on gives a row
the same bits whatever the count and offset (an AMD EPYC with AVX2, 1 and 2 threads, 12 to 4,096 rows, six layer
shapes). Under 12 it depends on the count and threads: on an AMD EPYC with AVX-512, 1 to 3 rows differ at 1 thread,
and all counts but 4 and 8 at 2. So a product is made in one call, padded to at least ``FLOAT_MIN_ROWS`` rows or to
a smaller count found to keep a row's bits, once a check on the layer's own shape at this thread count has found that
to hold (``one_call_holds``); elsewhere (another BLAS or CPU) in blocks of ``FLOAT_ROW_BLOCK``. A
chunk of a few prompt rows beside decoding sequences then costs a few rows' product, not 128's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from inference.layers.invariant_rows import FLOAT_ROW_BLOCK

FLOAT_MIN_ROWS = 16  # fp32 products are padded to this many rows (sgemm's small-count kernels stop at 11)
# Counts checked against the same rows of one product of more (``one_call_holds``), at two offsets
_CHECK_ROWS, _CHECK_OFFSETS = (16, 17, 31, 64, 127, 200), (0, 7)
# (out, in, dtype, threads) -> the counts under FLOAT_MIN_ROWS that keep a row's bits, then FLOAT_MIN_ROWS; None where
# one call does not keep them (``_small_counts``)
_CHECKED: dict[tuple, tuple[int, ...] | None] = {}


def _default_block() -> int:
    """128 where oneDNN runs bf16 on AMX, else 0 (one call). 128 against 64 and 256 (bench_row_blocks.py, this
    machine, SmolLM2's 120 prefill GEMMs): 16 rows 40 ms (plain 21), 512 rows 112 ms (plain 69), 2048 rows 497 ms
    (plain 197); 64 costs long prompts more (670 ms), 256 short ones (56 ms)."""
    return 128 if getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)() else 0


ROW_BLOCK = _default_block()


def linear_in_blocks(x: torch.Tensor, weight: torch.Tensor, block: int | None = None) -> torch.Tensor:
    """x [rows, in] @ weight [out, in].T -> [rows, out], in x's dtype (weight's): in calls of ``block`` rows
    (default ``ROW_BLOCK``), or in one call where that is 0."""
    block = ROW_BLOCK if block is None else block
    rows = x.shape[0]
    if block <= 0:
        if rows == 1:  # oneDNN's one-row GEMM (a GEMV) rounds differently from its many-row one: two rows
            return F.linear(torch.cat([x, x]), weight)[:1]
        return F.linear(x, weight)
    padded = x if rows % block == 0 else F.pad(x, (0, 0, 0, -rows % block))
    out = padded.new_empty(padded.shape[0], weight.shape[0])
    for start in range(0, padded.shape[0], block):  # torch.mm each time: one kernel for every block
        torch.mm(padded[start : start + block], weight.t(), out=out[start : start + block])
    return out[:rows]


def float_linear(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """x [rows, in] @ weight [out, in].T -> [rows, out] in fp32, a row's bits independent of the row count: one call,
    fewer rows than ``FLOAT_MIN_ROWS`` padded to the next count that keeps a row's bits (on an AMD EPYC with AVX-512
    4 or 8 at 2 threads, 4 and up at 1: a one-row decode step multiplies 4 rows, not 16, 0.7x the time on SmolLM2's
    projections; a one-row product, 0.3x, keeps no row's bits), where ``one_call_holds``; else blocks of
    ``FLOAT_ROW_BLOCK``."""
    counts = _small_counts(weight)  # one lookup a call: every layer of every step under ``none`` comes here
    if counts is None:
        return linear_in_blocks(x, weight, FLOAT_ROW_BLOCK)
    rows = x.shape[0]
    if rows >= FLOAT_MIN_ROWS:
        return F.linear(x, weight)
    padded = next(count for count in counts if count >= rows)
    return F.linear(F.pad(x, (0, 0, 0, padded - rows)), weight)[:rows]


def one_call_holds(weight: torch.Tensor) -> bool:
    """Whether one GEMM of ``FLOAT_MIN_ROWS`` rows or more gives each row the bits it has in any other on this CPU, at
    this thread count and ``weight``'s shape (``_small_counts``)."""
    return _small_counts(weight) is not None


def _small_counts(weight: torch.Tensor) -> tuple[int, ...] | None:
    """The row counts up to ``FLOAT_MIN_ROWS`` whose products give a row its bits in a product of 200, ending with
    ``FLOAT_MIN_ROWS``; None where counts of ``FLOAT_MIN_ROWS`` and more do not. Checked once per (shape, dtype,
    threads) on random rows, at two offsets (~10-90 ms a projection at a model's first prompt, seconds for a large
    head: ``unquantized.check_rows`` runs it at load; the kernel MKL picks follows the shape and threads, not the
    values)."""
    key = (*weight.shape, weight.dtype, torch.get_num_threads())
    if key not in _CHECKED:
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(max(_CHECK_ROWS) + max(_CHECK_OFFSETS) + 6, weight.shape[1], generator=generator)
        x = x.to(weight.dtype)
        whole = F.linear(x, weight)

        def keeps_bits(count: int) -> bool:
            return all(
                torch.equal(F.linear(x[at : at + count], weight), whole[at : at + count]) for at in _CHECK_OFFSETS
            )

        holds = all(keeps_bits(count) for count in _CHECK_ROWS)
        small = (*(count for count in range(1, FLOAT_MIN_ROWS) if keeps_bits(count)), FLOAT_MIN_ROWS)
        _CHECKED[key] = small if holds else None
    return _CHECKED[key]
