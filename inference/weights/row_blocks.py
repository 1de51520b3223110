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
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


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
