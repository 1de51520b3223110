"""Continuous batching: which sequences run in the next step, and how many tokens each.

Every step has a token budget. Running sequences decode one token each first (they keep their
latency), then waiting sequences prefill in arrival order, a prompt split into chunks when it
does not fit the rest of the budget; a prompt whose first blocks are in the prefix cache starts after them.
Sequences join and leave between steps. When the KV cache is full the most recently started sequence is preempted
and later recomputed (its prompt's blocks, kept in the prefix cache, are found again unless evicted meanwhile).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from inference.engine.block_manager import BlockManager
from inference.engine.sequence import Sequence, Status


@dataclass
class ScheduledStep:
    seqs: list[Sequence]
    num_new_tokens: list[int]  # tokens each sequence computes in this step

    @property
    def is_decode(self) -> bool:
        return all(
            seq.num_computed + n == seq.num_tokens and n == 1
            for seq, n in zip(self.seqs, self.num_new_tokens, strict=True)
        )


class Scheduler:
    def __init__(self, blocks: BlockManager, max_num_seqs: int, max_batched_tokens: int):
        self.blocks = blocks
        self.max_num_seqs = max_num_seqs
        self.max_batched_tokens = max_batched_tokens
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []

    def add(self, seq: Sequence) -> None:
        self.waiting.append(seq)

    @property
    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def finish(self, seq: Sequence, reason: str) -> None:
        seq.status = Status.FINISHED
        seq.finish_reason = reason
        self.blocks.free(seq)
        if seq in self.running:
            self.running.remove(seq)
        else:
            try:
                self.waiting.remove(seq)
            except ValueError:
                pass

    def _preempt_last(self) -> Sequence:
        victim = self.running.pop()
        self.blocks.free(victim)
        victim.reset_for_recompute()
        self.waiting.appendleft(victim)
        return victim

    def schedule(self, only: str | None = None) -> ScheduledStep:
        """The next step; ``only``: a request id, the only request in it (a failed step's retry, ``quarantine.py``)."""
        seqs: list[Sequence] = []
        counts: list[int] = []
        budget = self.max_batched_tokens

        # 1. decode (or finish the prefill of) running sequences
        for seq in list(self.running):
            if seq not in self.running or (only is not None and seq.request_id != only):  # preempted below
                continue
            n = min(seq.num_tokens - seq.num_computed, budget)
            if n <= 0:
                continue
            while not self.blocks.can_grow(seq, seq.num_computed + n):
                victim = self._preempt_last()
                if victim is seq:
                    break
            if seq not in self.running:
                continue
            self.blocks.grow(seq, seq.num_computed + n)
            seqs.append(seq)
            counts.append(n)
            budget -= n

        # 2. admit waiting sequences in arrival order while budget, slots and blocks allow; a prompt starts on the
        # cached blocks of its prefix (not for prompt logprobs, which need every prompt position's logits)
        for seq in list(self.waiting):
            if budget <= 0 or len(self.running) >= self.max_num_seqs:
                break
            if seq.waits_for_leader or (only is not None and seq.request_id != only):
                continue  # n > 1: behind its first sequence, which computes the prompt for all
            hits = self.blocks.match(seq) if not seq.params.prompt_logprobs else []
            start = len(hits) * self.blocks.block_size
            n = min(seq.num_tokens - start, budget)
            if -(-(start + n) // self.blocks.block_size) - len(hits) + self.blocks.revived(hits) > self.blocks.num_free:
                break
            self.waiting.remove(seq)
            if seq.cached_tokens is None:  # the first admission (not a recompute): what the request is told
                seq.cached_tokens = start
                self.blocks.count_lookup(seq.num_prompt, start)
            self.blocks.take(seq, hits)
            self.blocks.grow(seq, start + n)
            seq.status = Status.RUNNING
            self.running.append(seq)
            seqs.append(seq)
            counts.append(n)
            budget -= n
        return ScheduledStep(seqs=seqs, num_new_tokens=counts)
