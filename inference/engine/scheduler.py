"""Continuous batching: which sequences run in the next step, and how many tokens each.

Every step has a token budget. Running sequences decode one token each first (they keep their
latency), then waiting sequences prefill in order of priority, then arrival (vLLM's priority policy: a lower
``priority`` first), a prompt split into chunks when it does not fit the rest of the budget; a prompt whose first
blocks are in the prefix cache starts after them. Sequences join and leave between steps. When the KV cache is full
the most recently started sequence of the lowest priority is preempted and later recomputed (its prompt's blocks,
kept in the prefix cache, are found again unless evicted meanwhile). A waiting sequence that finds no free slot or
blocks preempts running sequences of a lower priority (a batch's, behind an interactive request) to get them.
With equal priorities (the default) this is first come, first served.
"""

from __future__ import annotations

import bisect
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
        self.waiting: list[Sequence] = []  # in admission order: (priority, seq_id)
        self.running: list[Sequence] = []  # in the order they started

    @staticmethod
    def _order(seq: Sequence) -> tuple[int, int]:
        # seq_id follows arrival, so a preempted sequence goes back ahead of those that arrived after it
        return seq.params.priority, seq.seq_id

    def add(self, seq: Sequence) -> None:
        bisect.insort(self.waiting, seq, key=self._order)

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

    def _victim(self, below: int | None = None) -> Sequence | None:
        """The running sequence to preempt: the most recently started of the lowest priority; with ``below``, only
        one of a priority lower than that (a larger value), else None."""
        if not self.running:
            return None
        victim = max(reversed(self.running), key=lambda s: s.params.priority)  # ties: the last started
        return victim if below is None or victim.params.priority > below else None

    def _preempt(self, victim: Sequence, step: ScheduledStep) -> int:
        """``victim`` back to waiting, its blocks freed; taken out of ``step`` if it was in it: the budget it had."""
        self.running.remove(victim)
        self.blocks.free(victim)
        victim.reset_for_recompute()
        self.add(victim)
        if victim in step.seqs:
            i = step.seqs.index(victim)
            step.seqs.pop(i)
            return step.num_new_tokens.pop(i)
        return 0

    def _fits(self, seq: Sequence, budget: int) -> tuple[list[int], int, int] | None:
        """Where ``seq`` would start (its cached prefix blocks), how many tokens it computes now, or None when there
        is no slot or not enough free blocks for them."""
        if len(self.running) >= self.max_num_seqs:
            return None
        hits = self.blocks.match(seq) if seq.params.prompt_logprobs is None else []
        start = len(hits) * self.blocks.block_size
        n = min(seq.num_tokens - start, budget)
        if -(-(start + n) // self.blocks.block_size) - len(hits) + self.blocks.revived(hits) > self.blocks.num_free:
            return None
        return hits, start, n

    def schedule(self, only: str | None = None) -> ScheduledStep:
        """The next step; ``only``: a request id, the only request in it (a failed step's retry, ``quarantine.py``)."""
        step = ScheduledStep(seqs=[], num_new_tokens=[])
        budget = self.max_batched_tokens

        # 1. decode (or finish the prefill of) running sequences
        for seq in list(self.running):
            if seq not in self.running or (only is not None and seq.request_id != only):  # preempted below
                continue
            n = min(seq.num_tokens - seq.num_computed, budget)
            if n <= 0:
                continue
            while not self.blocks.can_grow(seq, seq.num_computed + n):
                victim = self._victim()
                budget += self._preempt(victim, step)
                if victim is seq:
                    break
            if seq not in self.running:
                continue
            self.blocks.grow(seq, seq.num_computed + n)
            step.seqs.append(seq)
            step.num_new_tokens.append(n)
            budget -= n

        # 2. admit waiting sequences in order while budget, slots and blocks allow, preempting running sequences of a
        # lower priority for them; a prompt starts on the cached blocks of its prefix (not for prompt logprobs,
        # which need every prompt position's logits)
        for seq in list(self.waiting):
            if budget <= 0:
                break
            if seq.waits_for_leader or (only is not None and seq.request_id != only):
                continue  # n > 1: behind its first sequence, which computes the prompt for all
            while (fit := self._fits(seq, budget)) is None and only is None:
                victim = self._victim(below=seq.params.priority)
                if victim is None:
                    break
                budget += self._preempt(victim, step)
            if fit is None:
                break
            hits, start, n = fit
            self.waiting.remove(seq)
            if seq.cached_tokens is None:  # the first admission (not a recompute): what the request is told
                seq.cached_tokens = start
                self.blocks.count_lookup(seq.num_prompt, start)
            self.blocks.take(seq, hits)
            self.blocks.grow(seq, start + n)
            seq.status = Status.RUNNING
            self.running.append(seq)
            step.seqs.append(seq)
            step.num_new_tokens.append(n)
            budget -= n
        return step
