"""Constrained decoding with llguidance: grammars compiled per request, one matcher per sequence, and the
token masks of a step computed on a side thread while the model runs its forward pass.

Why llguidance (over xgrammar and outlines-core): it has no dependencies (xgrammar pulls in transformers and
a torch of its own choosing, which would replace our pinned CPU torch), it compiles a grammar lazily in about a
millisecond (outlines-core builds a full index of the schema's regex up front, seconds for large schemas), its
masks take tens of microseconds per token over a 49k vocabulary, and its Lark grammars embed JSON schemas and
lazy triggers, which is what tool calls in a model's own format need. vLLM, SGLang and llama.cpp use it too.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor

import torch

from inference.engine.sequence import Sequence

log = logging.getLogger("inference.engine")


class GrammarError(ValueError):
    """A grammar (or a JSON schema in it) that llguidance cannot compile; the message says why."""


class Guide:
    """A compiled grammar; ``matcher()`` gives each sequence its own state."""

    def __init__(self, template, vocab_size: int) -> None:
        self._template = template
        self.vocab_size = vocab_size  # the width of its masks (the llguidance tokenizer's)

    def matcher(self):
        return self._template.deep_copy()


class GuideCompiler:
    """One model's tokenizer as llguidance sees it (built on first use, ~0.2 s) and its grammar compiler."""

    def __init__(self, tokenizer_json: str, stop_token_ids: list[int], vocab_size: int) -> None:
        self._json = tokenizer_json
        self._stop = list(stop_token_ids)
        self._vocab_size = vocab_size
        self._lock = threading.Lock()
        self._tokenizer = None

    @property
    def tokenizer(self):
        with self._lock:
            if self._tokenizer is None:
                import llguidance

                base = llguidance.LLTokenizer(self._json, eos_token=self._stop)
                # the model's logits may be wider than the tokenizer (padded vocabularies): those ids never match
                n_vocab = max(self._vocab_size, base.vocab_size)
                self._tokenizer = llguidance.LLTokenizer(self._json, n_vocab=n_vocab, eos_token=self._stop)
            return self._tokenizer

    def check(self, grammar: str) -> str:
        """An empty string if ``grammar`` compiles, else llguidance's reason."""
        import llguidance

        return llguidance.LLMatcher.validate_grammar(grammar, self.tokenizer)

    def compile(self, grammar: str) -> Guide:
        """Blocks for the compile (llguidance drops the GIL meanwhile): call it off the event loop."""
        import llguidance

        matcher = llguidance.LLMatcher(self.tokenizer, grammar, log_level=0)
        if matcher.is_error():
            raise GrammarError(matcher.get_error())
        return Guide(matcher, self.tokenizer.vocab_size)


def unpack_bitmask(bitmask: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """[R, ceil(V / 32)] int32 bit words → [R, V] bool, token t allowed iff bit t % 32 of word t // 32 is set."""
    shifts = torch.arange(32, dtype=torch.int32)
    bits = (bitmask.unsqueeze(-1) >> shifts) & 1
    return bits.reshape(bitmask.shape[0], -1)[:, :vocab_size].bool()


class MaskFiller:
    """Computes the next-token masks of a step's constrained sequences on a side thread, so that the work
    overlaps the forward pass instead of adding to it; unconstrained sequences are never waited for."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="grammar-masks")
        self._executor = None

    def start(self, matchers: list, vocab_size: int) -> Future:
        """Begin filling masks for ``matchers`` (in order); the future gives [len, vocab_size] bool on the CPU."""
        return self._pool.submit(self._fill, list(matchers), vocab_size)

    def _fill(self, matchers: list, vocab_size: int) -> torch.Tensor:
        import llguidance

        if self._executor is None:
            self._executor = llguidance.LLExecutor()
        words = (vocab_size + 31) // 32
        bitmask = torch.zeros(len(matchers), words, dtype=torch.int32)
        self._executor.unsafe_compute_mask_ptr(
            [(m, i) for i, m in enumerate(matchers)], bitmask.data_ptr(), words * 4, len(matchers)
        )
        return unpack_bitmask(bitmask, vocab_size)


# --- a step's constrained sequences (``LLMEngine.step``) ---


def never_empty(masks: torch.Tensor, stop_token_ids: set[int]) -> torch.Tensor:
    """A grammar at a dead end allows nothing: let those sequences stop instead of sampling from nothing."""
    empty = ~masks.any(dim=1)
    if bool(empty.any()):
        stops = torch.tensor(sorted(i for i in stop_token_ids if i < masks.shape[1]), dtype=torch.long)
        masks[empty.nonzero().flatten().unsqueeze(1), stops.unsqueeze(0)] = True
    return masks


def may_think(guided: list[Sequence], masks: torch.Tensor) -> torch.Tensor:
    """A reasoning model's first token may open its think block as well as start the grammar's answer."""
    for i, seq in enumerate(guided):
        if seq.guide_state == "undecided" and seq.params.think.start_id < masks.shape[1]:
            masks[i, seq.params.think.start_id] = True
    return masks


def advance(seq: Sequence, token: int) -> bool:
    """Feed the sampled token to the sequence's grammar; False when the grammar allows nothing more. Inside a
    think block the grammar waits: it starts with the token after the block's end."""
    if seq.guide_state != "on":
        think = seq.params.think
        if seq.guide_state == "undecided" and token == think.start_id:
            seq.guide_state = "thinking"
            return True
        if seq.guide_state == "thinking":
            if token == think.end_id:
                seq.guide_state = "on"
            return True
        seq.guide_state = "on"  # the answer began at once: this token is the grammar's
    if not seq.matcher.consume_token(token):
        log.warning("request %s: token %d rejected by its grammar: %s", seq.request_id, token, seq.matcher.get_error())
        return False
    return not seq.matcher.is_stopped()
