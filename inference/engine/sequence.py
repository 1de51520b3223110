"""One generated sequence: its tokens, its KV blocks, its sampling state and its output text."""

from __future__ import annotations

import enum
import itertools
from dataclasses import dataclass, field

import torch

from inference.models.inputs import MultiModalPrompt
from inference.sampling_params import SamplingParams

_ids = itertools.count()


class Status(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


@dataclass
class TokenLogprob:
    token_id: int
    logprob: float
    top: list[tuple[int, float]] = field(default_factory=list)
    rank: int | None = None  # a prompt token's: 1 + how many tokens were likelier


class Sequence:
    def __init__(
        self,
        request_id: str,
        index: int,
        prompt_ids: list[int],
        params: SamplingParams,
        mm: MultiModalPrompt | None = None,
    ):
        self.seq_id = next(_ids)
        self.request_id = request_id
        self.index = index  # choice index within the request (n > 1)
        self.prompt_ids = list(prompt_ids)
        self.output_ids: list[int] = []
        self.params = params
        self.mm = mm  # its images (their tokens are in prompt_ids), shared by the request's n sequences
        self.status = Status.WAITING
        self.block_table: list[int] = []
        self.num_computed = 0  # tokens whose K/V are in the cache
        self.finish_reason: str | None = None
        self.logprobs: list[TokenLogprob] = []
        self.prompt_logprobs: list[TokenLogprob | None] = []
        self.generator: torch.Generator | None = None
        if params.seed is not None:
            self.generator = torch.Generator().manual_seed(params.seed + index)
        # its grammar state (an llguidance matcher) when the request constrains the output
        self.matcher = params.guide.matcher() if params.guide is not None else None
        # where a reasoning model stands with its grammar: "on" (it applies), "thinking" (inside the think block:
        # free text until its end token), "undecided" (the first token may open the block, or start the answer)
        think = params.think if self.matcher is not None else None
        self.guide_state = "on" if think is None else "thinking" if think.opened else "undecided"
        self.arrival = 0.0
        self.first_token_at: float | None = None
        # prefix cache: prompt blocks registered so far; the prompt tokens the cache gave at admission (usage)
        self.num_registered = 0
        self.cached_tokens: int | None = None
        # n > 1: the request's first sequence, which computes the prompt the others then find cached
        self.leader: Sequence | None = None
        self._prefix_keys: list[tuple] | None = None

    @property
    def num_tokens(self) -> int:
        return len(self.prompt_ids) + len(self.output_ids)

    @property
    def num_prompt(self) -> int:
        return len(self.prompt_ids)

    def token_at(self, i: int) -> int:
        n = len(self.prompt_ids)
        return self.prompt_ids[i] if i < n else self.output_ids[i - n]

    @property
    def last_token(self) -> int:
        return self.output_ids[-1] if self.output_ids else self.prompt_ids[-1]

    @property
    def is_finished(self) -> bool:
        return self.status is Status.FINISHED

    def prefix_keys(self, block_size: int) -> list[tuple]:
        """The prefix cache's key of each full prompt block: (hash of the previous key, the block's tokens, the
        images' content for a vision prompt, the LoRA adapter, the request's cache salt), so a key stands for
        everything before the block's end (an adapter's keys and values differ from the base model's for the same
        tokens), and prompts of different salts share no block."""
        if self._prefix_keys is None:
            extra = self.mm.content_key() if self.mm is not None else None
            if self.params.lora_id is not None:
                extra = ("lora", self.params.lora_id, extra)
            if self.params.cache_salt is not None:
                extra = ("salt", self.params.cache_salt, extra)
            keys: list[tuple] = []
            parent = hash(extra)
            for start in range(0, len(self.prompt_ids) - block_size + 1, block_size):
                keys.append((parent, tuple(self.prompt_ids[start : start + block_size]), extra))
                parent = hash(keys[-1])
            self._prefix_keys = keys
        return self._prefix_keys

    @property
    def waits_for_leader(self) -> bool:
        """n > 1: the siblings start once the first sequence has computed the prompt (then cached for them)."""
        leader = self.leader
        return leader is not None and not leader.is_finished and leader.num_computed < leader.num_prompt

    def reset_for_recompute(self) -> None:
        """Preempted: its blocks are gone, so everything is recomputed as one longer prompt."""
        self.block_table = []
        self.num_computed = 0
        self.num_registered = 0
        self.status = Status.WAITING
