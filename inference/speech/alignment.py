"""Word timestamps, as OpenAI's Whisper finds them (``whisper/timing.py``): the window's text is decoded once more
after ``<|notimestamps|>``, and the cross-attention of the model's alignment heads (which attend to the audio
being spoken) says where each token is heard. Per head, the attention over the window's audio positions is
normalised along the tokens and median-filtered along time; the heads' mean is a cost matrix that dynamic time
warping crosses monotonically from the first token at the start to the last at the end. A word starts where the
path first reaches its first token, and ends where the next word starts.

This file holds the arithmetic on the scores; the engine runs the decoder pass (``cross_attention_scores``) and
``Transcription.place_words`` the rules that fit the words into their segments.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from inference.speech.vocab import WhisperVocab

MEDIAN_FILTER_WIDTH = 7
AUDIO_POSITIONS_PER_SECOND = 50  # the encoder's positions: 1500 per 30 s
NO_SPACE_LANGUAGES = {"zh", "ja", "th", "lo", "my", "yue"}  # words are split at characters, not at spaces


@dataclass
class Word:
    """A word of a segment, as answered: its text (with its leading space) and its times in the recording."""

    word: str
    start: float
    end: float


@dataclass
class WordTiming:
    word: str  # with its leading space, as decoded
    tokens: list[int]
    start: float  # seconds from the window's start
    end: float


def median_filter(x: torch.Tensor, width: int) -> torch.Tensor:
    """The median of ``width`` (odd) neighbours along the last axis, the edges mirrored (``a b c | b a``)."""
    pad = width // 2
    if x.shape[-1] <= pad:  # too short to mirror: as Whisper, unfiltered
        return x
    flat = x.reshape(-1, 1, x.shape[-1])  # reflect padding wants [N, C, W]
    padded = F.pad(flat, (pad, pad), mode="reflect")
    return padded.unfold(-1, width, 1).median(dim=-1).values.reshape(x.shape)


def dtw(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The cheapest monotonic path through ``cost`` [N, M] from (0, 0) to (N-1, M-1), each step one row, one column
    or both -> (rows, columns) of its cells in order. Ties go as in Whisper's ``dtw_cpu`` (the diagonal only when
    strictly cheapest, then the row step, else the column step). The cells of one anti-diagonal depend only on the
    two before it, so each is computed at once: N + M steps of numpy instead of N x M of Python."""
    N, M = cost.shape
    total = np.full((N + 1, M + 1), np.inf, dtype=np.float32)
    trace = np.full((N + 1, M + 1), -1, dtype=np.int8)
    total[0, 0] = 0
    x = cost.astype(np.float32)
    for d in range(2, N + M + 1):
        i = np.arange(max(1, d - M), min(N, d - 1) + 1)
        j = d - i
        c0, c1, c2 = total[i - 1, j - 1], total[i - 1, j], total[i, j - 1]
        step = np.where((c0 < c1) & (c0 < c2), 0, np.where((c1 < c0) & (c1 < c2), 1, 2)).astype(np.int8)
        total[i, j] = x[i - 1, j - 1] + np.choose(step, [c0, c1, c2])
        trace[i, j] = step
    trace[0, :], trace[:, 0] = 2, 1
    path, i, j = [], N, M
    while i > 0 or j > 0:
        path.append((i - 1, j - 1))
        t = trace[i, j]
        if t == 0:
            i, j = i - 1, j - 1
        elif t == 1:
            i -= 1
        else:
            j -= 1
    cells = np.array(path[::-1]).T
    return cells[0], cells[1]


def split_words(tokens: list[int], vocab: WhisperVocab, language: str | None) -> tuple[list[str], list[list[int]]]:
    """Text tokens -> words and their tokens: first into whole characters (a token may hold part of one), then, in
    languages written with spaces, characters joined until a space or a punctuation mark starts the next word."""
    pieces, piece_tokens, pending, raw = [], [], [], b""
    for token in tokens:
        pending.append(token)
        raw += vocab.token_bytes(token) if token < vocab.eot else b""
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            continue  # a character continues in the next token
        pieces.append(text)
        piece_tokens.append(pending)
        pending, raw = [], b""
    if pending:
        pieces.append(raw.decode("utf-8", errors="replace"))
        piece_tokens.append(pending)
    if language in NO_SPACE_LANGUAGES:
        return pieces, piece_tokens
    words: list[str] = []
    word_tokens: list[list[int]] = []
    for piece, ids in zip(pieces, piece_tokens, strict=True):
        if not words or ids[0] >= vocab.eot or piece.startswith(" ") or piece.strip() in string.punctuation:
            words.append(piece)
            word_tokens.append(list(ids))
        else:
            words[-1] += piece
            word_tokens[-1].extend(ids)
    return words, word_tokens


def find_words(
    scores: torch.Tensor, text_tokens: list[int], start: int, frames: int, vocab: WhisperVocab, language: str | None
) -> list[WordTiming]:
    """``scores`` [heads, T, positions]: the alignment heads' cross-attention logits for the decoded sequence
    ``prefix + text_tokens + [eot]``, whose text starts at ``start`` (the prefix's length); ``frames``: the window's
    mel frames of audio (the positions past ``frames // 2`` are padding) -> each word with its times in the
    window."""
    if not text_tokens:
        return []
    weights = scores[:, :, : max(frames // 2, 1)].float().softmax(dim=-1)
    std, mean = torch.std_mean(weights, dim=-2, keepdim=True, unbiased=False)
    # a window of one audio position gives every token the same weights (std 0): zero costs, not NaN's
    weights = median_filter((weights - mean) / std.clamp_min(1e-12), MEDIAN_FILTER_WIDTH)
    # the rows whose queries predict each text token and the end: the one before the text .. the last text token
    matrix = weights.mean(dim=0)[start - 1 : start + len(text_tokens)]
    rows, columns = dtw(-matrix.double().cpu().numpy())
    words, word_tokens = split_words([*text_tokens, vocab.eot], vocab, language)
    if len(word_tokens) <= 1:
        return []
    boundaries = np.pad(np.cumsum([len(t) for t in word_tokens[:-1]]), (1, 0))
    jumps = np.pad(np.diff(rows), (1, 0), constant_values=1).astype(bool)  # where the path reaches each token
    jump_times = columns[jumps] / AUDIO_POSITIONS_PER_SECOND
    return [
        WordTiming(word, tokens, float(jump_times[lo]), float(jump_times[hi]))
        for word, tokens, lo, hi in zip(words[:-1], word_tokens[:-1], boundaries[:-1], boundaries[1:], strict=True)
    ]


PREPEND_PUNCTUATION = "\"'“¿([{-"
APPEND_PUNCTUATION = "\"'.。,，!！?？:：”)]}、"
SENTENCE_ENDS = ".。!！?？"


def merge_punctuation(words: list[WordTiming]) -> None:
    """An opening mark joins the word after it, a closing one the word before it (their times are the word's);
    the emptied entries stay, with no text and no tokens."""
    i, j = len(words) - 2, len(words) - 1
    while i >= 0:
        previous, following = words[i], words[j]
        if previous.word.startswith(" ") and previous.word.strip() in PREPEND_PUNCTUATION:
            following.word, following.tokens = previous.word + following.word, previous.tokens + following.tokens
            previous.word, previous.tokens = "", []
        else:
            j = i
        i -= 1
    i, j = 0, 1
    while j < len(words):
        previous, following = words[i], words[j]
        if not previous.word.endswith(" ") and following.word in APPEND_PUNCTUATION:
            previous.word, previous.tokens = previous.word + following.word, previous.tokens + following.tokens
            following.word, following.tokens = "", []
        else:
            i = j
        j += 1


def _median_duration(words: list[WordTiming]) -> float:
    durations = np.array([w.end - w.start for w in words])
    durations = durations[durations.nonzero()]
    return min(0.7, float(np.median(durations))) if len(durations) else 0.0


def place_words(segments: list, words: list[WordTiming], offset: float, last_speech: float, eot: int) -> float:
    """Give each of a window's ``segments`` (``Segment``) its words (``words``: the window's, in order, times from
    its start at ``offset`` seconds), with Whisper's corrections: a word longer than twice the median word is cut
    at a sentence's end and after a pause; a segment's start and end move to its words', unless a word runs far
    past the segment's own timestamp. Returns the end of the last speech, which the next window's corrections
    read."""
    median = _median_duration(words)
    longest = median * 2
    if median > 0:
        for i in range(1, len(words)):
            if words[i].end - words[i].start > longest:
                if words[i].word in SENTENCE_ENDS:
                    words[i].end = words[i].start + longest
                elif words[i - 1].word in SENTENCE_ENDS:
                    words[i].start = words[i].end - longest
    merge_punctuation(words)
    index = 0
    for segment in segments:
        text_tokens = sum(1 for t in segment.tokens if t < eot)
        taken, placed = 0, []
        while index < len(words) and taken < text_tokens:
            timing = words[index]
            if timing.word:
                placed.append(Word(timing.word, round(offset + timing.start, 2), round(offset + timing.end, 2)))
            taken += len(timing.tokens)
            index += 1
        if placed:
            last_speech = _fit(segment, placed, median, longest, last_speech)
        segment.words = placed
    return last_speech


def _fit(segment, words: list[Word], median: float, longest: float, last_speech: float) -> float:
    """Whisper's corrections at a segment's edges (in place); returns the segment's end."""
    first = words[0]
    # after a pause, the first word (or the first two) spans no more than a long word
    if first.end - last_speech > median * 4 and (
        first.end - first.start > longest or (len(words) > 1 and words[1].end - first.start > longest * 2)
    ):
        if len(words) > 1 and words[1].end - words[1].start > longest:
            boundary = max(words[1].end / 2, words[1].end - longest)
            first.end = words[1].start = boundary
        first.start = max(0.0, first.end - longest)
    # the segment's timestamps where the first / last word runs far past them, else the words' times
    if segment.start < first.end and segment.start - 0.5 > first.start:
        first.start = max(0.0, min(first.end - median, segment.start))
    else:
        segment.start = first.start
    last = words[-1]
    if segment.end > last.start and segment.end + 0.5 < last.end:
        last.end = max(last.start + median, segment.end)
    else:
        segment.end = last.end
    return segment.end
