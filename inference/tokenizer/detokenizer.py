"""Incremental detokenization: text out as tokens come in, never half a character.

Decoding one token at a time is wrong for two reasons: a character may be spread over several byte
tokens (byte-level BPE, SentencePiece byte fallback), and whether a token starts with a space may depend
on what precedes it (SentencePiece's ``▁``, decoders that strip a leading space). So, as vLLM does, we
decode a short window twice: ``ids[prefix:read]`` (already emitted) and ``ids[prefix:]``; the new text
is the difference, emitted only once it does not end in U+FFFD (an unfinished byte sequence). The window
then slides: ``prefix, read = read, len(ids)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

# how many prompt tokens to decode as context for the first generated token (vLLM's value)
INITIAL_CONTEXT_TOKENS = 5
REPLACEMENT_CHAR = "\ufffd"


class _Decoder(Protocol):
    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str: ...


class IncrementalDetokenizer:
    """Feed generated ids with ``add``; the pieces it returns, plus ``flush()``, make up the full text."""

    def __init__(
        self, tokenizer: _Decoder, prompt_ids: Sequence[int] | None = None, skip_special_tokens: bool = True
    ) -> None:
        self.tokenizer = tokenizer
        self.skip_special_tokens = skip_special_tokens
        context = list(prompt_ids or [])[-INITIAL_CONTEXT_TOKENS:]
        self.ids: list[int] = context  # the decode window's tokens (prompt context, then generated ones)
        self.prefix_offset = 0  # start of the window decoded for context only
        self.read_offset = len(context)  # everything before this has been emitted (or is prompt)
        self.text = ""  # all text emitted so far
        # control tokens written out even when the others are skipped (a tool-call format's markers)
        self.keep_special_ids: frozenset[int] = frozenset()

    def _decode(self, ids: list[int]) -> str:
        if not self.keep_special_ids or self.keep_special_ids.isdisjoint(ids):
            return self.tokenizer.decode(ids, skip_special_tokens=self.skip_special_tokens)
        parts, start = [], 0
        for i, token in enumerate(ids):
            if token in self.keep_special_ids:
                parts.append(self.tokenizer.decode(ids[start:i], skip_special_tokens=self.skip_special_tokens))
                parts.append(self.tokenizer.decode([token], skip_special_tokens=False))
                start = i + 1
        parts.append(self.tokenizer.decode(ids[start:], skip_special_tokens=self.skip_special_tokens))
        return "".join(parts)

    def add(self, token_id: int) -> str:
        """Newly completed text after ``token_id`` (may be ``""`` while a character is incomplete)."""
        self.ids.append(int(token_id))
        prefix_text = self._decode(self.ids[self.prefix_offset : self.read_offset])
        new_text = self._decode(self.ids[self.prefix_offset :])
        if len(new_text) <= len(prefix_text) or new_text.endswith(REPLACEMENT_CHAR):
            return ""  # nothing new yet, or a multi-byte character is still arriving
        delta = new_text[len(prefix_text) :]
        self.prefix_offset, self.read_offset = self.read_offset, len(self.ids)
        self._trim()
        self.text += delta
        return delta

    def flush(self) -> str:
        """Whatever is still held back (e.g. bytes that never formed a character), at the end of a stream."""
        prefix_text = self._decode(self.ids[self.prefix_offset : self.read_offset])
        new_text = self._decode(self.ids[self.prefix_offset :])
        delta = new_text[len(prefix_text) :] if len(new_text) > len(prefix_text) else ""
        self.prefix_offset = self.read_offset = len(self.ids)
        self.text += delta
        return delta

    def _trim(self) -> None:
        # keep the window short: ids before prefix_offset are never decoded again
        if self.prefix_offset > 64:
            del self.ids[: self.prefix_offset]
            self.read_offset -= self.prefix_offset
            self.prefix_offset = 0
