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
    # Batch invariance (the CPU path, set by the model runner): each sequence's prompt length. With it every row
    # is computed the same way whatever else is in the step: prompt rows as a prefill (linear layers on their
    # bf16 weights, attention in blocks of absolute positions), generated rows one by one (the decode kernels,
    # attention over their own keys); see ``inference/layers/invariant_attention.py``. Encoders give every row as a
    # prompt row (``for_prompts(..., roles=True)``). None (tests): layers choose by row count.
    prompt_lens: list[int] | None = None
    # LoRA (inference/layers/lora.py): each token's adapter slot, -1 for none; None when no row has an adapter
    lora_ids: list[int] | None = None

    @property
    def num_seqs(self) -> int:
        return len(self.context_lens)

    @property
    def num_tokens(self) -> int:
        return self.cu_seqlens_q[-1]

    def row_roles(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(prompt rows, generated rows) of the flat batch as index tensors [n] int64, None where there are none."""
        roles = self.cache.get("roles")
        if roles is None:
            prompt: list[int] = []
            generated: list[int] = []
            for i in range(self.num_seqs):
                s, e = self.cu_seqlens_q[i], self.cu_seqlens_q[i + 1]
                cut = s + self._prompt_rows(i)  # [s, cut): prompt rows
                prompt.extend(range(s, cut))
                generated.extend(range(cut, e))
            device = self.slot_mapping.device if self.slot_mapping is not None else None
            roles = self.cache["roles"] = tuple(
                torch.tensor(rows, dtype=torch.long, device=device) if rows else None for rows in (prompt, generated)
            )
        return roles

    def lora_rows(self) -> dict[int, torch.Tensor]:
        """Adapter slot -> the rows of the flat batch that use it ([n] int64), for the slots in this step."""
        groups = self.cache.get("lora")
        if groups is None:
            rows: dict[int, list[int]] = {}
            for row, slot in enumerate(self.lora_ids or ()):
                if slot >= 0:
                    rows.setdefault(slot, []).append(row)
            device = self.slot_mapping.device if self.slot_mapping is not None else None
            groups = self.cache["lora"] = {s: torch.tensor(r, dtype=torch.long, device=device) for s, r in rows.items()}
        return groups

    def _prompt_rows(self, i: int) -> int:
        """How many of sequence i's rows in this step are prompt rows (they come first)."""
        s, e = self.cu_seqlens_q[i], self.cu_seqlens_q[i + 1]
        return min(max(self.prompt_lens[i] - (self.context_lens[i] - (e - s)), 0), e - s)

    def prompt_only(self) -> ForwardContext:
        """The step restricted to its prompt rows (each sequence's rows before its first generated one), as a step
        of its own: the fused CPU decode runs them through the model before the generated rows."""
        cu, lens, kept = [0], [], []
        for i in range(self.num_seqs):
            rows = self._prompt_rows(i)
            if rows:
                e = self.cu_seqlens_q[i + 1] - self.cu_seqlens_q[i]
                cu.append(cu[-1] + rows)
                lens.append(self.context_lens[i] - e + rows)
                kept.append(i)
        prompt, _ = self.row_roles()
        return ForwardContext(
            cu_seqlens_q=cu,
            context_lens=lens,
            slot_mapping=self.slot_mapping[prompt],
            context_slots=self.context_slots[kept],
            prompt_lens=[self.prompt_lens[i] for i in kept],
            lora_ids=None if self.lora_ids is None else [self.lora_ids[r] for r in prompt.tolist()],
        )

    @staticmethod
    def for_prompts(lengths: list[int], causal: bool = True, roles: bool = False) -> ForwardContext:
        """No cache: each sequence attends to its own ``lengths[i]`` tokens (tests, encoders). ``roles``: every row a
        prompt row (``prompt_lens``), so that quantized layers run each row alike whatever the count (an embedding
        does not depend on the batch); without, they choose by row count."""
        cu = [0]
        for n in lengths:
            cu.append(cu[-1] + n)
        return ForwardContext(cu_seqlens_q=cu, context_lens=list(lengths), causal=causal,
                              prompt_lens=list(lengths) if roles else None)  # fmt: skip


_CONTEXT: ForwardContext | None = None


def current_context() -> ForwardContext | None:
    """The step's context, or None outside a forward pass (the output head runs after it)."""
    return _CONTEXT


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
