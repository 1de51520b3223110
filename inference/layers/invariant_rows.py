"""Products over a batch's rows whose rows do not depend on how many rows share the call (batch invariance on the
CPU). fp32 sgemm picks its kernel by the row count: on an AMD EPYC (AVX2), rows 2 to 11 of a product came out a few
ulps from the same rows of a 700-row one (2 threads; 2 and 3 at 1 thread). In calls of exactly ``FLOAT_ROW_BLOCK``
rows (the last padded with zeros) every row is computed by the same kernel wherever it sits: none differed, at any
offset, at ~15% of a 512-row product's time (``benchmarks/bench_prefill.py``). The prefill GEMM itself is cheaper
padded to 16 rows in one call where that is checked to hold (``inference/weights/row_blocks.float_linear``); these
blocks are its fallback, and DeepSeek-V2's absorbed einsums'."""

from __future__ import annotations

from collections.abc import Callable

import torch

FLOAT_ROW_BLOCK = 128


def in_row_blocks(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                  block: int = FLOAT_ROW_BLOCK) -> torch.Tensor:  # fmt: skip
    """``fn(x)`` for a row-wise ``fn`` (x [rows, ...] -> [rows, ...]), in calls of exactly ``block`` rows on the CPU;
    one call on other devices (their kernels' invariance is measured apart: ``benchmarks/bench_invariance.py``)."""
    rows = x.shape[0]
    if x.device.type != "cpu" or rows == 0:
        return fn(x)
    padded = x if rows % block == 0 else torch.cat([x, x.new_zeros(-rows % block, *x.shape[1:])])
    return torch.cat([fn(padded[start : start + block]) for start in range(0, padded.shape[0], block)])[:rows]
