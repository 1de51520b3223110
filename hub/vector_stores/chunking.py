"""A file's text cut into chunks of tokens: windows of ``max_tokens`` of the embedding model's tokens, each starting
``max_tokens - overlap`` tokens after the one before (OpenAI's static chunking), each chunk the text from its first
token's start to its last token's end (so it keeps the text's own case and spacing, whatever the tokenizer does)."""

from __future__ import annotations

SEGMENT_CHARS = 200_000  # tokenized at most this much text per request to the model's deployment
CHARS_PER_TOKEN = 4  # an external deployment's tokens, which the hub cannot count: about four characters each


def segments(text: str, size: int = SEGMENT_CHARS) -> list[tuple[int, str]]:
    """``text`` in pieces of about ``size`` characters, cut at white space where there is some: (start, piece)."""
    out, start = [], 0
    while start < len(text):
        end = min(start + size, len(text))
        if end < len(text):
            space = max(text.rfind(" ", start, end), text.rfind("\n", start, end))
            end = space + 1 if space > start else end
        out.append((start, text[start:end]))
        start = end
    return out


def approximate_spans(text: str) -> list[tuple[int, int]]:
    """Token spans of about ``CHARS_PER_TOKEN`` characters, for a model the hub cannot tokenize with."""
    return [(i, min(i + CHARS_PER_TOKEN, len(text))) for i in range(0, len(text), CHARS_PER_TOKEN)]


def chunks(text: str, spans: list[tuple[int, int]], max_tokens: int, overlap: int) -> list[str]:
    """The chunks of ``text`` given its tokens' ``spans`` ([start, end) in characters, in order)."""
    if max_tokens < 1 or not 0 <= overlap < max_tokens:
        raise ValueError(f"chunks of {max_tokens} tokens cannot overlap by {overlap}")
    out = []
    step = max_tokens - overlap
    for first in range(0, len(spans), step):
        window = spans[first : first + max_tokens]
        out.append(text[window[0][0] : window[-1][1]])
        if first + max_tokens >= len(spans):
            break
    return out
