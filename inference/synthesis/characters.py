"""A VITS checkpoint's tokenizer (HF ``VitsTokenizer``, MMS-TTS's): one token a character of ``vocab.json``, the
text lower-cased and stripped to the vocabulary, a blank (id 0) between and around the characters.

A checkpoint trained on uroman's romanization (``is_uroman``) reads text in any script romanized first
(``romanize.py``). One that reads espeak phonemes (``phonemize``) is refused when the model loads: we do not make
them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from inference.env import ConfigError
from inference.synthesis.numbers import spoken_numbers
from inference.synthesis.romanize import romanized, romanizer


@dataclass(frozen=True)
class CharacterTokenizer:
    vocab: dict[str, int]
    add_blank: bool = True
    normalize: bool = True
    romanized: bool = False  # the checkpoint reads uroman's romanization: other scripts are romanized first
    language: str | None = None
    unk_token: str = "<unk>"

    @cached_property  # once per voice, not per piece of every request
    def reads_digits(self) -> bool:
        return any(c.isdigit() for entry in self.vocab for c in entry)

    @classmethod
    def from_dir(cls, directory: Path, model: str = "model") -> CharacterTokenizer:
        try:
            vocab = json.loads((Path(directory) / "vocab.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{model}: a VITS checkpoint needs its vocab.json") from None
        config_path = Path(directory) / "tokenizer_config.json"
        config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
        if config.get("phonemize", True) and config_path.is_file():
            raise ConfigError(f"{model}: its tokenizer reads espeak phonemes (phonemize = true), which this service "
                              "does not make; MMS-TTS checkpoints read characters")  # fmt: skip
        tokenizer = cls(vocab=vocab, add_blank=bool(config.get("add_blank", True)),
                        normalize=bool(config.get("normalize", True)), romanized=bool(config.get("is_uroman", False)),
                        language=config.get("language"), unk_token=config.get("unk_token") or "<unk>")  # fmt: skip
        if tokenizer.romanized:
            romanizer()  # its tables loaded now, with the model, not on the first request
        return tokenizer

    def _lowered(self, text: str) -> str:
        """Lower-cased, except where a vocabulary entry matches as written (transformers' ``normalize_text``)."""
        out, i = [], 0
        while i < len(text):
            match = next((entry for entry in self.vocab if entry and text.startswith(entry, i)), None)
            if match is None:
                out.append(text[i].lower())
                i += 1
            else:
                out.append(match)
                i += len(match)
        return "".join(out)

    def characters(self, text: str) -> str:
        """The characters the model reads of ``text``: its numbers said in words where the vocabulary has no digit
        (``numbers.py``), then transformers' steps: lower-cased, romanized for a uroman voice, stripped to the
        vocabulary."""
        if not self.reads_digits:
            text = spoken_numbers(text, self.language)
        if self.normalize:
            text = self._lowered(text)
        if self.language == "ron":
            text = text.replace("ț", "ţ")
        if self.romanized:
            text = romanized(text)
        if self.normalize:
            text = "".join(c for c in text if c in self.vocab).strip()
        return text

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (no characters: an empty list)."""
        unknown = self.vocab.get(self.unk_token, 0)
        ids = [self.vocab.get(c, unknown) for c in self.characters(text)]
        if not ids or not self.add_blank:
            return ids
        spaced = [0] * (2 * len(ids) + 1)
        spaced[1::2] = ids
        return spaced
