"""What one forward pass needs to know about its batch, set by the model runner, read by Attention.

A step runs a *flat* batch of T tokens from S sequences: sequence i contributes the tokens
``cu_seqlens_q[i]:cu_seqlens_q[i+1]`` (a prefill chunk, or one token when decoding) whose
positions end at ``context_lens[i] - 1``. K/V of those tokens are written into the paged cache
at ``slot_mapping`` (slot = block_id * block_size + offset); attention then reads the first
``context_lens[i]`` slots of the sequence through its block table.

Without a cache (``slot_mapping is None``) every sequence is attended on its own tokens only:
that is how encoders and the model tests run.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import torch


@dataclass
class ForwardContext:
    cu_seqlens_q: list[int]  # S + 1 offsets into the flat token batch
    context_lens: list[int]  # S: tokens in the cache for each sequence after this step
    slot_mapping: torch.Tensor | None = None  # [T] int64, where each new token's K/V goes
    # [S, max_context] int64: the cache slot of every position of each sequence (padded with 0)
    context_slots: torch.Tensor | None = None
    is_decode: bool = False  # every sequence contributes exactly one token
    causal: bool = True
    # the Triton kernels' view of the same batch (set by the model runner when the model runs on kernels)
    block_tables: torch.Tensor | None = None  # [S, max_blocks] int32
    context_lens_t: torch.Tensor | None = None  # [S] int32, context_lens on the device
    cu_seqlens_q_t: torch.Tensor | None = None  # [S + 1] int32
    max_seqlen_q: int = 0
    block_size: int = 0
    # per-step values every layer would otherwise rebuild (attention masks per window)
    cache: dict = field(default_factory=dict)

    @property
    def num_seqs(self) -> int:
        return len(self.context_lens)

    @staticmethod
    def for_prompts(lengths: list[int], causal: bool = True) -> ForwardContext:
        """No cache: each sequence attends to its own ``lengths[i]`` tokens (tests, encoders)."""
        cu = [0]
        for n in lengths:
            cu.append(cu[-1] + n)
        return ForwardContext(cu_seqlens_q=cu, context_lens=list(lengths), causal=causal)


_CONTEXT: ForwardContext | None = None


def get_context() -> ForwardContext:
    if _CONTEXT is None:
        raise RuntimeError("no ForwardContext set: run the model inside `with forward_context(ctx):`")
    return _CONTEXT


@contextmanager
def forward_context(ctx: ForwardContext):
    global _CONTEXT
    previous, _CONTEXT = _CONTEXT, ctx
    try:
        yield ctx
    finally:
        _CONTEXT = previous
