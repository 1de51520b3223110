"""What Whisper may write next: the logit rules of OpenAI's decoder, applied to a batch of rows in place.

- never the suppressed tokens, nor ``<|notimestamps|>`` or the other special tokens past the end of text (the
  decoder runs with timestamps, which the long-form algorithm needs);
- first a timestamp, at most 1 s into the window, and not a blank or the end;
- timestamps come in pairs (a segment's end, the next one's start) and never go back; after a lone timestamp
  only another timestamp or the end may follow;
- when the timestamps together are likelier than any single text token, a timestamp.
"""

from __future__ import annotations

import torch

from inference.sampling_params import GREEDY_BELOW
from inference.speech.vocab import WhisperVocab

MAX_INITIAL_TIMESTAMP_INDEX = 50  # 1.0 s: a window's first segment starts within its first second


def apply_rules(logits: torch.Tensor, sampled: list[list[int]], vocab: WhisperVocab) -> torch.Tensor:
    """logits [B, V] float32 (changed in place and returned); ``sampled[b]``: row b's tokens after its prefix."""
    ts, eot = vocab.timestamp_begin, vocab.eot
    inf = float("-inf")
    logits[:, vocab.never_sampled.to(logits.device)] = inf
    for b, seq in enumerate(sampled):
        row = logits[b]
        if not seq:
            row[list(vocab.begin_suppress)] = inf
            row[:ts] = inf  # the first token is a timestamp
            row[ts + MAX_INITIAL_TIMESTAMP_INDEX + 1 :] = inf
            continue
        last_ts = seq[-1] >= ts
        penultimate_ts = len(seq) < 2 or seq[-2] >= ts
        if last_ts:
            if penultimate_ts:
                row[ts:] = inf  # a pair just closed: text next
            else:
                row[:eot] = inf  # a lone timestamp: its partner or the end next
        stamps = [t for t in seq if t >= ts]
        if stamps:
            # never backwards, and a segment has a length (a closing timestamp may repeat the opening one's time)
            floor = stamps[-1] if last_ts and not penultimate_ts else stamps[-1] + 1
            row[ts:floor] = inf
    logprobs = torch.log_softmax(logits, dim=-1)
    stamp_mass = logprobs[:, ts:].logsumexp(dim=-1)
    best_text = logprobs[:, :ts].max(dim=-1).values
    logits[stamp_mass > best_text, :ts] = inf
    return logits


def sample(
    logits: torch.Tensor, temperatures: list[float], generators: list[torch.Generator | None]
) -> tuple[list[int], list[float]]:
    """(token, its log-probability) per row of ruled logits [B, V]: argmax at temperature 0 (and below
    ``GREEDY_BELOW``, as the chat sampler: logits / 1e-222 overflow to inf and the softmax to NaN), else a draw from
    softmax(logits / T) with the row's generator. The log-probability is the ruled distribution's at T = 1, which
    Whisper's average-logprob fallback test reads."""
    logprobs = torch.log_softmax(logits, dim=-1)
    tokens: list[int] = []
    for b, temperature in enumerate(temperatures):
        if temperature < GREEDY_BELOW:
            tokens.append(int(logits[b].argmax()))
        else:
            probs = torch.softmax(logits[b] / temperature, dim=-1)
            tokens.append(int(torch.multinomial(probs, 1, generator=generators[b])))
    chosen = logprobs[torch.arange(len(tokens)), torch.tensor(tokens)]
    return tokens, chosen.tolist()
