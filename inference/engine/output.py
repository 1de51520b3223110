"""Per-sequence output processing: incremental text, stop tokens, stop strings across token
boundaries (never part of the output), max_tokens, and the deltas a stream sends."""

from __future__ import annotations

from dataclasses import dataclass, field

from inference.engine.sequence import Sequence, TokenLogprob


@dataclass
class SeqDelta:
    request_id: str
    index: int
    text: str
    token_ids: list[int]
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # of the prompt, found in the prefix cache (not computed)
    prompt_logprobs: list[TokenLogprob | None] | None = None


@dataclass
class RequestFailed:
    """An engine's output for a request it failed: ``error`` is raised to the request's consumer."""

    request_id: str
    error: Exception
    finish_reason: str = "error"


class OutputProcessor:
    """Owns one sequence's detokenizer and the text held back while it may still be a stop string."""

    def __init__(self, seq: Sequence, detokenizer, stop_token_ids: set[int], max_model_len: int):
        self.seq = seq
        self.detok = detokenizer
        self.stop_ids = set(seq.params.stop_token_ids) | (set() if seq.params.ignore_eos else stop_token_ids)
        self.ends = sorted(self.stop_ids)  # the sampler's banned ids while short of min_tokens
        self.stops = seq.params.stop
        self.max_model_len = max_model_len
        self.pending = ""  # decoded, not yet sent: may be the start of a stop string
        self.sent_tokens = 0
        self.sent_logprobs = 0

    def _held_back(self, text: str) -> int:
        """Length of the longest suffix of ``text`` that is a proper prefix of a stop string."""
        best = 0
        for stop in self.stops:
            for k in range(min(len(stop) - 1, len(text)), 0, -1):
                if text.endswith(stop[:k]):
                    best = max(best, k)
                    break
        return best

    def banned(self, ends: bool = True) -> list[int]:
        """The ids the next token may not be: the stop ids while the sequence is short of ``min_tokens`` (if
        ``ends``), and each bad word's last token where the output ends with the rest of the word (vLLM's rule)."""
        seq = self.seq
        ids = self.ends if ends and len(seq.output_ids) < seq.params.min_tokens else []
        for word in seq.params.bad_words_ids:
            if len(word) == 1 or seq.output_ids[1 - len(word) :] == word[:-1]:
                ids = [*ids, word[-1]]
        return ids

    def on_token(self, token_id: int) -> SeqDelta:
        """Account for a newly sampled token; decide whether the sequence is finished."""
        seq = self.seq
        finish: str | None = None
        text = ""
        may_end = len(seq.output_ids) >= seq.params.min_tokens  # this token counted, as vLLM's stop checker
        if token_id in self.stop_ids and may_end:
            finish = "stop"
        else:
            self.pending += self.detok.add(token_id)
            found = [(i, s) for i, s in ((self.pending.find(s), s) for s in self.stops) if i >= 0] if may_end else []
            if found:
                cut, stop = min(found)
                if seq.params.include_stop_str_in_output:
                    cut += len(stop)
                text, self.pending, finish = self.pending[:cut], "", "stop"
            else:
                keep = self._held_back(self.pending)
                text, self.pending = self.pending[: len(self.pending) - keep], self.pending[len(self.pending) - keep :]
        if finish is None and (len(seq.output_ids) >= seq.params.max_tokens or seq.num_tokens >= self.max_model_len):
            finish = "length"
        if finish == "length":  # nothing more comes: release what was held back, incomplete bytes too
            text += self.pending + self.detok.flush()
            self.pending = ""
        return self._delta(text, finish)

    def finish_now(self, reason: str) -> SeqDelta:
        text, self.pending = self.pending + self.detok.flush(), ""
        return self._delta(text, reason)

    def _delta(self, text: str, finish: str | None) -> SeqDelta:
        seq = self.seq
        new_ids = seq.output_ids[self.sent_tokens :]
        self.sent_tokens = len(seq.output_ids)
        new_lp = seq.logprobs[self.sent_logprobs :]
        self.sent_logprobs = len(seq.logprobs)
        return SeqDelta(
            request_id=seq.request_id,
            index=seq.index,
            text=text,
            token_ids=new_ids,
            logprobs=new_lp,
            finish_reason=finish,
            prompt_tokens=seq.num_prompt,
            completion_tokens=len(seq.output_ids),
            cached_tokens=seq.cached_tokens or 0,
        )
