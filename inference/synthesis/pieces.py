"""The text a request speaks, cut into pieces that are synthesized one at a time: each sentence, and a sentence
longer than ``MOST_CHARACTERS`` at its last space (or comma) before the limit. So a long text starts to play after
its first sentence, the model's attention never spans more than a piece, and a piece's audio depends on that piece
alone (the noise aside, which the request's own generator draws)."""

from __future__ import annotations

import re

MOST_CHARACTERS = 300
_SENTENCE_END = re.compile(r"(?<=[.!?。！？…])\s+|\n\s*\n")


def pieces(text: str, most: int = MOST_CHARACTERS) -> list[str]:
    """``text`` in order, each piece at most ``most`` characters, blank ones left out."""
    out = []
    for sentence in _SENTENCE_END.split(text):
        sentence = " ".join(sentence.split())
        while len(sentence) > most:
            cut = max(sentence.rfind(" ", 0, most + 1), sentence.rfind(",", 0, most) + 1)
            cut = cut if cut > 0 else most  # one word longer than a piece: cut inside it
            out.append(sentence[:cut].strip())
            sentence = sentence[cut:].strip()
        out.append(sentence)
    return [p for p in out if p]
