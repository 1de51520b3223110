"""Paged KV cache bookkeeping: fixed-size blocks handed out to sequences and taken back, and the prefix cache.

Automatic prefix caching (vLLM's, on by default): a full block of a prompt is keyed by its tokens chained to the
key of the block before it (and anything else that changes its KV: a vision prompt's image content), so a key
names the whole prefix up to the block's end. Once computed, a prompt block is registered under its key; a later
prompt that starts with the same blocks takes them as they are (their reference count grows) instead of computing
them. A finished sequence's blocks keep their keys: they sit in the free queue, least recently freed first, and
lose their key only when the queue hands them out again (eviction, LRU).

Only prompt blocks are keyed: on the CPU a generated token's KV is computed on the int kernels and a prompt
token's on the bf16 copies (each exact whatever the batch, but not equal to each other), so a block decoded by
one request would not be bit for bit the block another request's prompt computes.
"""

from __future__ import annotations

from collections import OrderedDict

from inference.engine.sequence import Sequence

BlockKey = tuple  # (the previous block's key hash, this block's token ids, extra: e.g. the images' content)


class BlockManager:
    def __init__(self, num_blocks: int, block_size: int, caching: bool = True):
        if num_blocks < 1 or block_size < 1:
            raise ValueError("num_blocks and block_size must be positive")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.caching = caching
        # free blocks, the least recently freed first: never-used ones, then cached ones in the order they were freed
        self.free_blocks: OrderedDict[int, None] = OrderedDict.fromkeys(range(num_blocks))
        self.ref_count = [0] * num_blocks
        self.block_key: list[BlockKey | None] = [None] * num_blocks
        self.cached: dict[BlockKey, int] = {}
        # counters (``/metrics``): prompt tokens looked up, found cached, cached blocks evicted
        self.queried_tokens = self.hit_tokens = self.evictions = 0

    @property
    def num_free(self) -> int:
        """Blocks that can be handed out: never used, or holding only cached KV no sequence uses."""
        return len(self.free_blocks)

    @property
    def num_in_use(self) -> int:
        """Blocks some sequence holds."""
        return self.num_blocks - len(self.free_blocks)

    def occupancy(self) -> dict:
        """What ``/health`` shows of the cache: blocks, in use, holding a cached prefix, and the hit rate so far."""
        return {
            "blocks": self.num_blocks, "block_size": self.block_size, "in_use": self.num_in_use,
            "cached_prefix_blocks": self.num_cached, "prefix_caching": self.caching,
            "prefix_hit_rate": round(self.hit_tokens / self.queried_tokens, 4) if self.queried_tokens else None,
        }  # fmt: skip

    @property
    def num_cached(self) -> int:
        """Blocks holding a registered prefix (in use or not)."""
        return len(self.cached)

    def blocks_needed(self, seq: Sequence, num_tokens: int) -> int:
        """Extra blocks ``seq`` needs to hold ``num_tokens`` tokens in total."""
        needed = -(-num_tokens // self.block_size)
        return max(0, needed - len(seq.block_table))

    def can_grow(self, seq: Sequence, num_tokens: int) -> bool:
        return self.blocks_needed(seq, num_tokens) <= self.num_free

    def _allocate(self) -> int:
        block, _ = self.free_blocks.popitem(last=False)
        key = self.block_key[block]
        if key is not None:  # the least recently used cached block: its prefix is forgotten
            del self.cached[key]
            self.block_key[block] = None
            self.evictions += 1
        self.ref_count[block] = 1
        return block

    def grow(self, seq: Sequence, num_tokens: int) -> None:
        for _ in range(self.blocks_needed(seq, num_tokens)):
            seq.block_table.append(self._allocate())

    def free(self, seq: Sequence) -> None:
        # the last blocks first: a prefix's tail is evicted before its head, which more prompts share
        for block in reversed(seq.block_table):
            self.ref_count[block] -= 1
            if self.ref_count[block] == 0:
                self.free_blocks[block] = None
        seq.block_table = []
        seq.num_registered = 0

    def slot(self, seq: Sequence, position: int) -> int:
        return seq.block_table[position // self.block_size] * self.block_size + position % self.block_size

    # --- the prefix cache ----------------------------------------------------------------------------------

    def match(self, seq: Sequence) -> list[int]:
        """The cached blocks that hold ``seq``'s prompt from its start, at most up to its last token but one (the
        step that computes the rest needs a token to compute, whose logits give the first sample)."""
        if not self.caching:
            return []
        limit = (seq.num_tokens - 1) // self.block_size
        blocks = []
        for key in seq.prefix_keys(self.block_size)[:limit]:
            block = self.cached.get(key)
            if block is None:
                break
            blocks.append(block)
        return blocks

    def revived(self, blocks: list[int]) -> int:
        """How many of ``blocks`` taking them would remove from the free queue."""
        return sum(1 for b in blocks if self.ref_count[b] == 0)

    def take(self, seq: Sequence, blocks: list[int]) -> None:
        """``seq`` (with no blocks yet) starts on the cached ``blocks``: their tokens count as computed."""
        for block in blocks:
            if self.ref_count[block] == 0:
                del self.free_blocks[block]
            self.ref_count[block] += 1
        seq.block_table = list(blocks)
        seq.num_computed = len(blocks) * self.block_size
        seq.num_registered = len(blocks)

    def register(self, seq: Sequence) -> None:
        """Key ``seq``'s prompt blocks computed since the last call, so that later prompts can share them."""
        done = min(seq.num_computed, seq.num_prompt) // self.block_size
        if not self.caching or seq.num_registered >= done:  # decode steps: the prompt's blocks are registered
            return
        keys = seq.prefix_keys(self.block_size)
        for i in range(seq.num_registered, done):
            block = seq.block_table[i]
            if keys[i] not in self.cached and self.block_key[block] is None:
                self.cached[keys[i]] = block
                self.block_key[block] = keys[i]
        seq.num_registered = max(seq.num_registered, done)

    def count_lookup(self, prompt_tokens: int, hit_tokens: int) -> None:
        self.queried_tokens += prompt_tokens
        self.hit_tokens += hit_tokens
