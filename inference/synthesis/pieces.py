"""The text a request speaks, cut into pieces that are synthesized one at a time: each sentence, and a sentence
longer than ``MOST_CHARACTERS`` at its last space (or comma) before the limit. So a long text starts to play after
its first sentence, the model's attention never spans more than a piece, and a piece's audio depends on that piece
alone (the noise aside, which the request's own generator draws)."""

from __future__ import annotations

import re

MOST_CHARACTERS = 300
_SENTENCE_END = re.compile(r"(?<=[.!?。！？…])\s+|\n\s*\n")
# a period that ends no sentence: after a day's or a rank's number (German "am 3. Mai", "der 2. Platz") or a title,
# or before a word in lower case ("at 5 p.m. today"; an ellipsis still ends one: "Wait... what?")
_TITLES = r"mr|mrs|ms|dr|prof|st|jr|sr|vs|nr|hr|fr|ca|bzw|z\.b|e\.g|i\.e"
_NO_END_BEFORE = re.compile(rf"(?:(?<![\d.,])\d{{1,2}}|\b(?:{_TITLES}))\.$", re.IGNORECASE)


def _sentences(text: str) -> list[str]:
    out, start = [], 0
    for end in _SENTENCE_END.finditer(text):
        before = text[start : end.start()]
        following = text[end.end() : end.end() + 1]
        if not end.group().startswith("\n") and (
            _NO_END_BEFORE.search(before) or (following.islower() and before.endswith(".") and before[-2:] != "..")
        ):
            continue
        out.append(before)
        start = end.end()
    return [*out, text[start:]]


def pieces(text: str, most: int = MOST_CHARACTERS) -> list[str]:
    """``text`` in order, each piece at most ``most`` characters, blank ones left out."""
    out = []
    for sentence in _sentences(text):
        sentence = " ".join(sentence.split())
        while len(sentence) > most:
            cut = max(sentence.rfind(" ", 0, most + 1), sentence.rfind(",", 0, most) + 1)
            cut = cut if cut > 0 else most  # one word longer than a piece: cut inside it
            out.append(sentence[:cut].strip())
            sentence = sentence[cut:].strip()
        out.append(sentence)
    return [p for p in out if p]
