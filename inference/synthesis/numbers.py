"""Numbers said as words in the voice's language (num2words), for checkpoints whose characters hold no digit: MMS-TTS's
read letters only, and transformers' tokenizer drops what they do not hold, so "at 3 pm" would be said "at pm".
Cardinals, decimals ("3.5": "three point five"), numbers with thousands marks as the language writes them ("1,200"
in English, "1.200" in German, "1 200" in Russian), amounts of money ("$5.50": "five dollars, fifty cents", "5 €":
"fünf Euro"; dollars, euros, pounds and roubles, where num2words names them in the language), in English ordinals
("5th", a day after its month) and decades ("the 1990s"), in English, German and Dutch years after a word that
announces one ("in 1999": "nineteen ninety-nine"), German days of a month ("am 3. Mai": "am dritten Mai"); a run of
more than 15 digits (a phone or card number) digit by digit. A language num2words does not know keeps its digits,
which the tokenizer then drops, as transformers does."""

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


CURRENCIES = {"$": "USD", "€": "EUR", "£": "GBP", "₽": "RUB"}  # a symbol before or after the amount
_MONTHS = r"January|February|March|April|May|June|July|August|September|October|November|December"
_GERMAN_MONTHS = r"januar|februar|märz|april|mai|juni|juli|august|september|oktober|november|dezember"


def _cues(words: str, months: str, day: str) -> re.Pattern:
    """After one of ``words`` or a month (and a day's date), a four-digit number is a year."""
    return re.compile(rf"(?:\b(?:{words}|{months})(?:\s+{day})?)\s+$", re.IGNORECASE)


# a four-digit number after a word that announces a year is said as one, where the language says years otherwise
# than other numbers: "in 1999": "nineteen ninety-nine", "im Jahr 1999": "neunzehnhundertneunundneunzig"
YEAR_CUES = {
    "en": _cues("in|since|until|till|by|from|of|year|circa|during|before|after|around|spring|summer|autumn|fall|"
                "winter", _MONTHS, r"\d{1,2}(?:st|nd|rd|th)?,?"),
    "de": _cues(r"im\s+jahre?|jahr|seit|bis|von|ab|um|vor|nach|anfang|ende|mitte|sommer|winter|frühjahr|herbst",
                _GERMAN_MONTHS, r"\d{1,2}\."),
    "nl": _cues("in|sinds|tot|van|vanaf|rond|voor|na|jaar|zomer|winter|lente|herfst",
                r"januari|februari|maart|april|mei|juni|juli|augustus|september|oktober|november|december",
                r"\d{1,2}"),
}  # fmt: skip
# German dates: "am 3. Mai" is "am dritten Mai" (after a preposition that takes the dative), "der 3. Mai" "der dritte"
GERMAN_DAY = re.compile(
    rf"(?<![0-9A-Za-z_.,])(?P<day>[1-9]|[12]\d|3[01])\.(?=\s+(?:{_GERMAN_MONTHS})\b)", re.IGNORECASE
)
GERMAN_DATIVE = re.compile(r"\b(?:am|vom|zum|dem|im)\s+$", re.IGNORECASE)
DAY_CUES = re.compile(rf"\b(?:{_MONTHS})\s+$")  # capitalized: "may 5 people" is no date
_SYMBOLS = "".join(CURRENCIES)


@cache
def _pattern(language: str) -> re.Pattern:
    """A number: its digits with the language's thousands marks, a decimal part, a currency's symbol before or after
    it, an English ordinal's or decade's suffix ("5th", "1990s"). Not one inside a Latin word ("v2"); one that a
    letter of another script follows is (Korean's counters: "3개")."""
    thousands, decimal = MARKS.get(language, (r"\.", ","))
    if language == "en":
        suffix = "(?:(?P<ordinal>st|nd|rd|th)|(?<=0)(?P<decade>'?s))?"  # a decade ends in 0 ("5s" is no decade)
    else:
        suffix = "(?P<ordinal>(?!))?(?P<decade>(?!))?"  # (?!): never
    return re.compile(rf"(?<![0-9A-Za-z_.,])(?:(?P<before>[{_SYMBOLS}])\s?)?"
                      rf"(?P<whole>\d{{1,3}}(?:{thousands}\d{{3}})+|\d+)(?:{decimal}(?P<part>\d+))?"
                      rf"(?:\s?(?P<after>[{_SYMBOLS}])|{suffix})(?![0-9A-Za-z_])")  # fmt: skip


# what num2words raises where it says no amount: no such currency in the language (NotImplementedError, KeyError), no
# currencies at all (AttributeError: Vietnamese; TypeError: Swedish takes no currency), or an amount past its units
_NO_AMOUNT = (NotImplementedError, KeyError, AttributeError, TypeError, IndexError, OverflowError)


@cache
def _zero_cents(language: str, currency: str) -> str | None:
    """What num2words says after a whole amount ("…, zero cents", "… und null Cent"), to be left out; None where
    it says no amount in ``currency``."""
    from num2words import CONVERTER_CLASSES

    try:
        zero = CONVERTER_CLASSES[language].to_currency(Decimal(0), currency=currency)
    except _NO_AMOUNT:
        return None
    word = zero.split()[0]
    second = zero.find(f" {word} ", len(word))  # the cents' zero, after the connector ("," or "und", "et", "con")
    if second < 0:
        return ""
    head = zero[:second].rstrip()
    return zero[len(head) - 1 if head.endswith(",") else head.rfind(" ") :]


def _money(whole: str, part: str | None, language: str, currency: str) -> str | None:
    from num2words import CONVERTER_CLASSES

    tail = _zero_cents(language, currency)
    if tail is None:
        return None
    try:
        said = CONVERTER_CLASSES[language].to_currency(Decimal(f"{whole}.{part or 0}"), currency=currency)
    except _NO_AMOUNT:  # Romanian's fails past its largest unit: the number is said alone
        return None
    return said[: len(said) - len(tail)] if tail and not part and said.endswith(tail) else said


def _plural(words: str) -> str:
    """A decade: its number's last word in the plural ("nineteen ninety": "nineteen nineties")."""
    return words[:-1] + "ies" if words.endswith("y") else words + "s"


def _german_day(text: str, match: re.Match) -> str:
    from num2words import num2words

    day = num2words(int(match["day"]), lang="de", to="ordinal")
    return day + "n" if GERMAN_DATIVE.search(text, 0, match.start()) else day


def spoken_numbers(text: str, language: str | None) -> str:
    """``text`` with each number written out in ``language`` (ISO 639-3, as MMS-TTS names it; None or unknown:
    unchanged)."""
    code = LANGUAGES.get(language or "")
    if code is None or not any(c.isdigit() for c in text):
        return text
    from num2words import num2words

    if code == "de":
        text = GERMAN_DAY.sub(lambda m: _german_day(text, m), text)

    def said(match: re.Match) -> str:  # its neighbours are no letters or digits (the pattern): no space to add
        whole = re.sub(r"\D", "", match["whole"])
        symbol = match["before"] or match["after"]
        if len(whole) > LONGEST:
            return (symbol or "") + " ".join(num2words(int(d), lang=code) for d in whole)
        if symbol and (money := _money(whole, match["part"], code, CURRENCIES[symbol])) is not None:
            return money
        if match["ordinal"] or (code == "en" and len(whole) <= 2 and DAY_CUES.search(text, 0, match.start())):
            words = num2words(int(whole), lang=code, to="ordinal")
        elif match["part"]:  # "three point zero five": num2words reads a Decimal's digits after the mark one by one
            words = num2words(Decimal(f"{whole}.{match['part']}"), lang=code)
        elif (
            len(match["whole"]) == 4
            and 1100 <= int(whole) < 2100
            and (match["decade"] or (code in YEAR_CUES and YEAR_CUES[code].search(text, 0, match.start())))
        ):
            words = num2words(int(whole), lang=code, to="year")
        else:
            words = num2words(int(whole), lang=code)
        if match["decade"]:
            words = _plural(words)
        if match["before"]:
            return f"{match['before']} {words}"
        return f"{words} {match['after']}" if match["after"] else words

    return _pattern(code).sub(said, text)
