"""Numbers said as words in the voice's language (num2words), for checkpoints whose characters hold no digit: MMS-TTS's
read letters only, and transformers' tokenizer drops what they do not hold, so "at 3 pm" would be said "at pm".
Cardinals, decimals ("3.5": "three point five"), numbers with thousands marks as the language writes them ("1,200"
in English, "1.200" in German, "1 200" in Russian) and English ordinals ("5th"); a run of more than 15 digits (a
phone or card number) digit by digit. A language num2words does not know keeps its digits, which the tokenizer then
drops, as transformers does."""

from __future__ import annotations

import re
from decimal import Decimal
from functools import cache

# MMS-TTS's tokenizer_config.json names its language in ISO 639-3; num2words in ISO 639-1
LANGUAGES = {"eng": "en", "deu": "de", "fra": "fr", "spa": "es", "ita": "it", "por": "pt", "nld": "nl", "pol": "pl",
             "ces": "cs", "dan": "da", "fin": "fi", "hun": "hu", "ind": "id", "lit": "lt", "lav": "lv", "nob": "no",
             "ron": "ro", "slk": "sk", "slv": "sl", "swe": "sv", "tur": "tr", "vie": "vi", "cat": "ca", "cym": "cy",
             "isl": "is",
             # in other scripts: their words written in it, which a uroman voice reads romanized (``romanize.py``)
             "rus": "ru", "ukr": "uk", "bel": "be", "kaz": "kz", "tgk": "tg", "srp": "sr", "kor": "ko", "heb": "he",
             "ben": "bn", "tha": "th", "fas": "fa", "pes": "fa", "azj": "az", "aze": "az"}  # fmt: skip
# (thousands mark, decimal mark) as regular expressions, by num2words' code; the others: German's "1.200,5"
_ENGLISH_MARKS, _SPACED_MARKS = (",", r"\."), (r"[ \u00a0\u202f]", ",")
MARKS = {"en": _ENGLISH_MARKS, "ko": _ENGLISH_MARKS, "he": _ENGLISH_MARKS, "bn": _ENGLISH_MARKS,
         "th": _ENGLISH_MARKS, "fa": _ENGLISH_MARKS, "ru": _SPACED_MARKS, "uk": _SPACED_MARKS, "be": _SPACED_MARKS,
         "kz": _SPACED_MARKS, "tg": _SPACED_MARKS}  # fmt: skip
LONGEST = 15  # digits said as one number; a longer run is said digit by digit


@cache
def _pattern(language: str) -> re.Pattern:
    """A number: its digits with the language's thousands marks, a decimal part, an English ordinal's suffix. Not
    one inside a Latin word ("v2"); one that a letter of another script follows is (Korean's counters: "3개")."""
    thousands, decimal = MARKS.get(language, (r"\.", ","))
    ordinal = "(?P<ordinal>st|nd|rd|th)?" if language == "en" else "(?P<ordinal>(?!))?"  # (?!): never, elsewhere
    return re.compile(rf"(?<![0-9A-Za-z_.,])(?P<whole>\d{{1,3}}(?:{thousands}\d{{3}})+|\d+)"
                      rf"(?:{decimal}(?P<part>\d+))?{ordinal}(?![0-9A-Za-z_])")  # fmt: skip


def spoken_numbers(text: str, language: str | None) -> str:
    """``text`` with each number written out in ``language`` (ISO 639-3, as MMS-TTS names it; None or unknown:
    unchanged)."""
    code = LANGUAGES.get(language or "")
    if code is None or not any(c.isdigit() for c in text):
        return text
    from num2words import num2words

    def said(match: re.Match) -> str:  # its neighbours are no letters or digits (the pattern): no space to add
        whole = re.sub(r"\D", "", match["whole"])
        if len(whole) > LONGEST:
            return " ".join(num2words(int(d), lang=code) for d in whole)
        if match["ordinal"]:
            return num2words(int(whole), lang=code, to="ordinal")
        if match["part"]:  # "three point zero five": num2words reads a Decimal's digits after the mark one by one
            return num2words(Decimal(f"{whole}.{match['part']}"), lang=code)
        return num2words(int(whole), lang=code)

    return _pattern(code).sub(said, text)
