"""Per-request sampling settings, validated once, with the OpenAI parameter names in errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class InvalidParam(ValueError):
    def __init__(self, param: str, message: str):
        super().__init__(message)
        self.param = param


MAX_PRIORITY = 1_000_000
GREEDY_BELOW = 1e-5  # temperatures below this sample greedily


@dataclass(frozen=True)
class ThinkMarks:
    """A reasoning model's think block (Qwen3's ``<think>`` ... ``</think>``): a grammar shapes the answer after it,
    never the reasoning. ``opened``: the prompt itself opened the block (DeepSeek-R1's templates), so the model
    starts inside it; else the model may open it with its first token, or answer at once."""

    start_id: int
    end_id: int
    opened: bool = False


@dataclass
class SamplingParams:
    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0 or -1: off
    min_p: float = 0.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    ignore_eos: bool = False
    # vLLM's: no end (EOS, stop_token_ids, stop strings) before this many tokens; a stop string kept in the text
    min_tokens: int = 0
    include_stop_str_in_output: bool = False
    skip_special_tokens: bool = True  # vLLM's: false writes the control tokens a model generates into the text
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    logit_bias: dict[int, float] = field(default_factory=dict)
    allowed_token_ids: list[int] | None = None  # vLLM's: the only ids an answer may hold (None: any)
    bad_words_ids: list[list[int]] = field(default_factory=list)  # vLLM's bad_words, tokenized: never generated
    logprobs: int | None = None  # None: none; k >= 0: the chosen token's plus the top k
    # the prompt's logprobs, each with its top k (None: none): completions' echo + logprobs, vLLM's prompt_logprobs
    prompt_logprobs: int | None = None
    # constrained decoding: a compiled grammar (inference.engine.guided.Guide) every sequence follows
    guide: Any = None
    # control tokens decoded into the text anyway: a tool-call format's markers (e.g. Mistral's [TOOL_CALLS])
    keep_special_ids: frozenset[int] = frozenset()
    # a reasoning model's think block, when it may think: the guide waits for the end of it
    think: ThinkMarks | None = None
    # vLLM's request priority: lower runs first (admitted first, preempted last); equal priorities in arrival order
    priority: int = 0
    # vLLM's cache_salt: the prompt's blocks are cached under it too, so prompts of different salts share none (the
    # hub sends each tenant's own: no tenant can tell from another's speed or cached_tokens what it sent)
    cache_salt: str | None = None
    # the LoRA adapter's slot in the engine (inference/loader/lora.py), set by the service from the model name
    lora_id: int | None = None

    def __post_init__(self) -> None:
        if self.top_k == -1:
            self.top_k = 0
        checks = [
            ("max_tokens", self.max_tokens >= 1, "must be at least 1"),
            ("min_tokens", self.min_tokens >= 0, "must be at least 0"),
            # a torch generator's seed is 64 bits (2**80 failed the request in the sampler, a 500)
            ("seed", self.seed is None or -(2**63) <= self.seed < 2**63, "must be a 64-bit integer"),
            ("temperature", 0.0 <= self.temperature <= 2.0, "must be between 0 and 2"),
            ("top_p", 0.0 <= self.top_p <= 1.0, "must be in [0, 1]"),
            ("top_k", self.top_k >= 0, "must be -1, 0 or positive"),
            ("min_p", 0.0 <= self.min_p <= 1.0, "must be between 0 and 1"),
            ("presence_penalty", -2.0 <= self.presence_penalty <= 2.0, "must be between -2 and 2"),
            ("frequency_penalty", -2.0 <= self.frequency_penalty <= 2.0, "must be between -2 and 2"),
            ("repetition_penalty", 0.0 < self.repetition_penalty <= 10.0, "must be in (0, 10]"),
            ("logprobs", self.logprobs is None or 0 <= self.logprobs <= 20, "must be between 0 and 20"),
            ("prompt_logprobs", self.prompt_logprobs is None or 0 <= self.prompt_logprobs <= 20, "must be in [0, 20]"),
            ("priority", abs(self.priority) <= MAX_PRIORITY, f"must be between -{MAX_PRIORITY} and {MAX_PRIORITY}"),
            ("allowed_token_ids", self.allowed_token_ids is None or len(self.allowed_token_ids) > 0, "must hold ids"),
            ("bad_words", all(self.bad_words_ids), "must be non-empty words"),
            ("cache_salt", self.cache_salt is None or len(self.cache_salt) > 0, "must be a non-empty string"),
            ("stop", len(self.stop) <= 4 and all(isinstance(s, str) and s for s in self.stop), "up to 4 strings"),
        ]
        for param, ok, message in checks:
            if not ok:
                raise InvalidParam(param, f"'{param}' {message}.")
        for token, bias in self.logit_bias.items():
            if not -100.0 <= bias <= 100.0:
                raise InvalidParam("logit_bias", f"logit_bias for token {token} must be between -100 and 100.")

    @property
    def greedy(self) -> bool:
        # Below this, dividing the logits by the temperature overflows to inf and the softmax to NaN; the draw
        # would be the argmax anyway (vLLM treats such temperatures as greedy too).
        return self.temperature < GREEDY_BELOW

    @property
    def needs_penalties(self) -> bool:
        return self.presence_penalty != 0.0 or self.frequency_penalty != 0.0 or self.repetition_penalty != 1.0
