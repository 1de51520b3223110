"""KV caches past 2**31 elements, where an int32 offset would wrap.

The engine sizes the cache from the GPU's free memory: on an H200 about 100 GB, so one layer's cache of a small
model (few layers, little KV per token) passes 2**31 elements. The kernels that address it (store_kv, decode and
prefill attention) must compute slot offsets in int64. Here the sequences own the cache's last blocks, past 2**31
elements, and one block near its start. On the CPU the caches cost no memory but the slots written: ``torch.empty``
touches no page, and the interpreter hands the kernels the tensors' own memory.
"""

from __future__ import annotations

import pytest
import torch

from kernels import reference
from kernels.decode_attention import decode_attention
from kernels.kv_cache import store_kv
from kernels.prefill_attention import paged_attention
from tests.support.kernel_cases import DEVICE

HKV, H, D, BLOCK = 2, 4, 64, 16
ELEMENTS = 2**31 + 2**21  # per cache: [slots, HKV, D]
NUM_BLOCKS = -(-ELEMENTS // (BLOCK * HKV * D))
LENS = [37, 20]  # tokens per sequence: 3 blocks and 2
TABLES = [[NUM_BLOCKS - 1, 3, NUM_BLOCKS - 3], [NUM_BLOCKS - 2, NUM_BLOCKS - 4]]


def _slots(table: list[int], n: int) -> list[int]:
    return [table[p // BLOCK] * BLOCK + p % BLOCK for p in range(n)]


def _cache() -> torch.Tensor:
    """[slots, HKV, D] fp16, unfilled but for the blocks the tables hold, which are NaN until written: a read of a
    slot past a sequence's length shows. (The kernel tests' NaN fill of torch.empty, conftest.poisoned_empty, is
    held off: it would touch every page.)"""
    fill = torch.utils.deterministic.fill_uninitialized_memory
    torch.utils.deterministic.fill_uninitialized_memory = False
    try:
        cache = torch.empty(NUM_BLOCKS * BLOCK, HKV, D, dtype=torch.float16, device=DEVICE)
    finally:
        torch.utils.deterministic.fill_uninitialized_memory = fill
    for block in {b for table in TABLES for b in table}:
        cache[block * BLOCK : (block + 1) * BLOCK] = float("nan")
    return cache


@pytest.mark.parametrize("slot_dtype", [torch.int32, torch.int64])
def test_store_and_attend_past_2_31_elements(slot_dtype):
    assert NUM_BLOCKS * BLOCK * HKV * D > 2**31 and (NUM_BLOCKS - 4) * BLOCK * HKV * D > 2**31
    g = torch.Generator().manual_seed(0)
    k_cache, v_cache = _cache(), _cache()
    slots = [s for t, n in zip(TABLES, LENS, strict=True) for s in _slots(t, n)]
    slots = torch.tensor(slots, dtype=slot_dtype, device=DEVICE)  # the slot fits int32; slot * HKV * D does not
    k, v = (torch.randn(sum(LENS), HKV, D, generator=g).half().to(DEVICE) for _ in range(2))
    store_kv(k, v, k_cache, v_cache, slots)
    assert torch.equal(k_cache[slots], k) and torch.equal(v_cache[slots], v)

    tables = torch.tensor([TABLES[0], [*TABLES[1], 0]], dtype=torch.int32, device=DEVICE)  # ragged: padded
    lens = torch.tensor(LENS, dtype=torch.int32, device=DEVICE)
    scale = D**-0.5
    q = torch.randn(len(LENS), H, D, generator=g).half().to(DEVICE)
    for splits in (1, 3):
        out = decode_attention(q, k_cache, v_cache, tables, lens, BLOCK, scale, num_splits=splits)
        expected = reference.decode_attention(q, k_cache, v_cache, tables, lens, BLOCK, scale)
        torch.testing.assert_close(out, expected, atol=2e-3, rtol=2e-3)

    # a prefill chunk: each sequence's last 5 and 9 tokens, over the cache
    q_lens = [5, 9]
    cu = torch.tensor([0, 5, 14], dtype=torch.int32, device=DEVICE)
    q = torch.randn(sum(q_lens), H, D, generator=g).half().to(DEVICE)
    out = paged_attention(q, k_cache, v_cache, tables, cu, lens, BLOCK, scale)
    expected = reference.paged_attention(q, k_cache, v_cache, tables, cu, lens, BLOCK, scale)
    torch.testing.assert_close(out, expected, atol=2e-3, rtol=2e-3)
