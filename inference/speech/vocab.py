"""Whisper's special tokens and languages, read from a checkpoint's ``generation_config.json`` and tokenizer.

Token layout (multilingual models): text tokens, then ``<|endoftext|>``, ``<|startoftranscript|>``, one token per
language in the order of ``LANGUAGES``, the task tokens, ``<|startofprev|>``, the no-speech token, ``<|notimestamps|>``
and 1501 timestamp tokens ``<|0.00|>`` .. ``<|30.00|>`` (0.02 s apart), which need not be in ``tokenizer.json``.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer

# Whisper's language codes and names, in the order of their tokens
LANGUAGES = {
    "en": "english",
    "zh": "chinese",
    "de": "german",
    "es": "spanish",
    "ru": "russian",
    "ko": "korean",
    "fr": "french",
    "ja": "japanese",
    "pt": "portuguese",
    "tr": "turkish",
    "pl": "polish",
    "ca": "catalan",
    "nl": "dutch",
    "ar": "arabic",
    "sv": "swedish",
    "it": "italian",
    "id": "indonesian",
    "hi": "hindi",
    "fi": "finnish",
    "vi": "vietnamese",
    "he": "hebrew",
    "uk": "ukrainian",
    "el": "greek",
    "ms": "malay",
    "cs": "czech",
    "ro": "romanian",
    "da": "danish",
    "hu": "hungarian",
    "ta": "tamil",
    "no": "norwegian",
    "th": "thai",
    "ur": "urdu",
    "hr": "croatian",
    "bg": "bulgarian",
    "lt": "lithuanian",
    "la": "latin",
    "mi": "maori",
    "ml": "malayalam",
    "cy": "welsh",
    "sk": "slovak",
    "te": "telugu",
    "fa": "persian",
    "lv": "latvian",
    "bn": "bengali",
    "sr": "serbian",
    "az": "azerbaijani",
    "sl": "slovenian",
    "kn": "kannada",
    "et": "estonian",
    "mk": "macedonian",
    "br": "breton",
    "eu": "basque",
    "is": "icelandic",
    "hy": "armenian",
    "ne": "nepali",
    "mn": "mongolian",
    "bs": "bosnian",
    "kk": "kazakh",
    "sq": "albanian",
    "sw": "swahili",
    "gl": "galician",
    "mr": "marathi",
    "pa": "punjabi",
    "si": "sinhala",
    "km": "khmer",
    "sn": "shona",
    "yo": "yoruba",
    "so": "somali",
    "af": "afrikaans",
    "oc": "occitan",
    "ka": "georgian",
    "be": "belarusian",
    "tg": "tajik",
    "sd": "sindhi",
    "gu": "gujarati",
    "am": "amharic",
    "yi": "yiddish",
    "lo": "lao",
    "uz": "uzbek",
    "fo": "faroese",
    "ht": "haitian creole",
    "ps": "pashto",
    "tk": "turkmen",
    "nn": "nynorsk",
    "mt": "maltese",
    "sa": "sanskrit",
    "lb": "luxembourgish",
    "my": "myanmar",
    "bo": "tibetan",
    "tl": "tagalog",
    "mg": "malagasy",
    "as": "assamese",
    "tt": "tatar",
    "haw": "hawaiian",
    "ln": "lingala",
    "ha": "hausa",
    "ba": "bashkir",
    "jw": "javanese",
    "su": "sundanese",
    "yue": "cantonese",
}
TIME_PRECISION = 0.02  # seconds per timestamp token


class VocabError(ValueError):
    """A Whisper checkpoint whose tokenizer lacks a special token we need."""


@dataclass(frozen=True)
class WhisperVocab:
    tokenizer: Tokenizer
    eot: int
    sot: int
    sot_prev: int
    transcribe: int
    translate: int
    no_timestamps: int
    no_speech: int
    languages: dict[str, int]  # language code -> its token id
    suppress: tuple[int, ...]  # never sampled (punctuation-like symbols that Whisper learned to misuse)
    begin_suppress: tuple[int, ...]  # not sampled first (a blank, the end of text)
    # (decoder layer, head) of the cross-attention heads that follow the speech (word timestamps), from
    # generation_config.json; empty: every head of the decoder's second half, as Whisper's default
    alignment_heads: tuple[tuple[int, int], ...] = ()

    @property
    def timestamp_begin(self) -> int:
        return self.no_timestamps + 1

    @functools.cached_property
    def never_sampled(self) -> torch.Tensor:
        """[n] int64: the suppressed tokens and every special token between the end of text and the timestamps
        (``<|notimestamps|>`` included: the decoder always runs with timestamps)."""
        return torch.tensor(sorted({*self.suppress, *range(self.eot + 1, self.timestamp_begin)}), dtype=torch.long)

    @classmethod
    def from_dir(cls, directory: Path) -> WhisperVocab:
        directory = Path(directory)
        tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        generation_path = directory / "generation_config.json"
        generation = json.loads(generation_path.read_text()) if generation_path.is_file() else {}

        def token(*names: str) -> int:
            for name in names:
                found = tokenizer.token_to_id(name)
                if found is not None:
                    return found
            raise VocabError(f"{directory}: the tokenizer has none of {', '.join(names)}")

        languages = {code: tokenizer.token_to_id(f"<|{code}|>") for code in LANGUAGES}
        return cls(
            tokenizer=tokenizer,
            eot=token("<|endoftext|>"),
            sot=token("<|startoftranscript|>"),
            sot_prev=token("<|startofprev|>"),
            transcribe=token("<|transcribe|>"),
            translate=token("<|translate|>"),
            no_timestamps=token("<|notimestamps|>"),
            no_speech=token("<|nospeech|>", "<|nocaptions|>"),
            languages={code: i for code, i in languages.items() if i is not None},
            suppress=tuple(generation.get("suppress_tokens") or ()),
            begin_suppress=tuple(generation.get("begin_suppress_tokens") or (token("Ġ"), token("<|endoftext|>"))),
            alignment_heads=tuple((int(layer), int(head)) for layer, head in generation.get("alignment_heads") or ()),
        )

    def language_code(self, language: str) -> str | None:
        """A request's ``language`` (ISO-639-1 code or English name, any case) -> a code this model knows."""
        wanted = language.strip().lower()
        by_name = {name: code for code, name in LANGUAGES.items()}
        code = wanted if wanted in LANGUAGES else by_name.get(wanted)
        return code if code in self.languages else None

    @functools.cached_property
    def _byte_of(self) -> dict[str, int]:
        """GPT-2's byte-level alphabet (Whisper's BPE): the character that stands for each byte, inverted."""
        printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
        shown, extra = {}, 0
        for byte in range(256):
            if byte in printable:
                shown[chr(byte)] = byte
            else:
                shown[chr(256 + extra)] = byte
                extra += 1
        return shown

    def token_bytes(self, token: int) -> bytes:
        """A text token's bytes (a piece of UTF-8, maybe not whole)."""
        return bytes(self._byte_of[c] for c in self.tokenizer.id_to_token(token))

    def encode_text(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode_text(self, ids: list[int]) -> str:
        """Text tokens only (special and timestamp tokens dropped)."""
        return self.tokenizer.decode([i for i in ids if i < self.eot], skip_special_tokens=False)
