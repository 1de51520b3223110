"""uroman's romanization (isi-nlp's universal romanizer, the ``uroman`` package): what MMS-TTS voices whose tokenizer
says ``is_uroman`` were trained on. Their text in another script (Cyrillic, Devanagari, Hangul, Arabic, Han, ...) is
read in Latin letters, as transformers' ``VitsTokenizer`` does when uroman is installed: the whole string, no
language code (MMS's own recipe runs uroman with ``-l xxx``, none either).

Uroman's tables take ~2.5 s to load: once per process, when the first such voice loads (``romanizer()``), not on a
request."""

from __future__ import annotations

import functools
import re
import threading

_NON_ROMAN = re.compile(r"[^\x00-\x7F]")  # transformers' ``has_non_roman_characters``: anything past ASCII
_LOCK = threading.Lock()  # uroman fills caches and counters on its instance as it goes: one string at a time (~1 ms)


@functools.cache
def romanizer():
    import uroman

    return uroman.Uroman()


def romanized(text: str) -> str:
    """``text`` in Latin letters (unchanged where it is ASCII already)."""
    if not _NON_ROMAN.search(text):
        return text
    with _LOCK:
        return romanizer().romanize_string(text)
