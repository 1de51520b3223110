"""Build a ``tokenizers.Tokenizer`` from the vocabulary arrays of a GGUF file.

Two families, picked by ``tokenizer.ggml.model``:

* ``llama``: SentencePiece BPE with byte fallback (Gemma, Llama 2, ...). The file has pieces and scores
  but no merges; SentencePiece merges the adjacent pair whose result has the highest score, so the merge
  list is every split of every normal piece into two normal pieces, ranked by the result's score.
  Spaces become ``▁`` (with a leading one only when ``add_space_prefix`` says so), unknown characters
  fall back to ``<0xXX>`` byte pieces, and the decoder undoes both.
* ``gpt2``: byte-level BPE with the merges stored in the file, split first by the regex llama.cpp uses
  for the file's ``tokenizer.ggml.pre``.

Token types (llama.cpp): 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte. Control and
unknown tokens become special added tokens (never produced from text unless asked to), user-defined
ones become plain added tokens, matched whole in the raw text as SentencePiece and llama.cpp do.
"""

from __future__ import annotations

from typing import Any

from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import BPE

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
SPIECE_SPACE = "\u2581"  # ▁

# GPT-2's split; llama.cpp uses it (without the final ``|\s+``, which changes nothing) for these presets
_GPT2_SPLIT = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# Mistral's Tekken (Mistral-Nemo, Pixtral): cased words split at their capitals, digits alone; the tokenizer.json
# regex, which llama.cpp rewrites for its own regex engine
_TEKKEN_SPLIT = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
    r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# tokenizer.ggml.pre -> (split regexes applied in order, each "isolated"), from llama.cpp's llama-vocab.cpp
BYTE_LEVEL_PRESETS: dict[str, tuple[str, ...]] = {
    "default": (_GPT2_SPLIT,),
    "gpt-2": (_GPT2_SPLIT,),
    "gpt2": (_GPT2_SPLIT,),
    # \p{N} alone first: every digit is its own pre-token (HF SmolLM2 writes this as Digits(individual))
    "smollm": (r"\p{N}", _GPT2_SPLIT),
    "starcoder": (r"\p{N}", _GPT2_SPLIT),
    "refact": (r"\p{N}", _GPT2_SPLIT),
    "llama-bpe": (_LLAMA3_SPLIT,),
    "llama3": (_LLAMA3_SPLIT,),
    "llama-v3": (_LLAMA3_SPLIT,),
    # Qwen2 / 2.5 / 3 files; DeepSeek-R1's Qwen distillations name the same split their own way
    "qwen2": (_QWEN2_SPLIT,),
    "deepseek-r1-qwen": (_QWEN2_SPLIT,),
    "tekken": (_TEKKEN_SPLIT,),
}


class GGUFVocabError(ValueError):
    """The file's tokenizer is of a kind this module cannot rebuild; the message says which."""


def build_tokenizer(metadata: dict[str, Any]) -> Tokenizer:
    """The tokenizer the GGUF metadata describes (model, normalizer, pre-tokenizer, decoder, BOS/EOS)."""
    kind = metadata.get("tokenizer.ggml.model")
    if kind == "llama":
        tokenizer = _sentencepiece_bpe(metadata)
    elif kind == "gpt2":
        tokenizer = _byte_level_bpe(metadata)
    else:
        raise GGUFVocabError(f"tokenizer.ggml.model {kind!r} is not supported (supported: 'llama', 'gpt2')")
    _add_special_tokens(tokenizer, metadata)
    tokenizer.post_processor = _post_processor(metadata, kind)
    return tokenizer


def special_tokens(metadata: dict[str, Any]) -> dict[str, str | None]:
    """``{"bos_token": "<bos>", "eos_token": ..., "unk_token": ..., "pad_token": ...}`` (None when unset)."""
    tokens = metadata["tokenizer.ggml.tokens"]
    keys = {"bos_token": "bos_token_id", "eos_token": "eos_token_id", "unk_token": "unknown_token_id"}
    keys["pad_token"] = "padding_token_id"
    out: dict[str, str | None] = {}
    for name, key in keys.items():
        token_id = metadata.get(f"tokenizer.ggml.{key}")
        out[name] = tokens[int(token_id)] if token_id is not None and 0 <= int(token_id) < len(tokens) else None
    return out


def add_bos_eos(metadata: dict[str, Any]) -> tuple[bool, bool]:
    """Whether plain encoding prepends BOS / appends EOS. SentencePiece vocabularies default to BOS."""
    default_bos = metadata.get("tokenizer.ggml.model") == "llama"
    add_bos = bool(metadata.get("tokenizer.ggml.add_bos_token", default_bos))
    return add_bos, bool(metadata.get("tokenizer.ggml.add_eos_token", False))


def _types(metadata: dict[str, Any]) -> list[int]:
    tokens = metadata["tokenizer.ggml.tokens"]
    types = metadata.get("tokenizer.ggml.token_type")
    return [int(t) for t in types] if types is not None else [NORMAL] * len(tokens)


def _vocab(tokens: list[str]) -> dict[str, int]:
    vocab: dict[str, int] = {}
    for index, token in enumerate(tokens):
        if vocab.setdefault(token, index) != index:
            raise GGUFVocabError(f"token {token!r} appears twice in the vocabulary (ids {vocab[token]} and {index})")
    return vocab


def _sentencepiece_bpe(metadata: dict[str, Any]) -> Tokenizer:
    tokens: list[str] = metadata["tokenizer.ggml.tokens"]
    scores = metadata.get("tokenizer.ggml.scores")
    if scores is None:
        raise GGUFVocabError("a SentencePiece ('llama') vocabulary needs tokenizer.ggml.scores")
    types = _types(metadata)
    vocab = _vocab(tokens)
    unk_id = metadata.get("tokenizer.ggml.unknown_token_id")
    unk = tokens[int(unk_id)] if unk_id is not None else None
    merges = _merges_from_scores(tokens, scores, types)
    tokenizer = Tokenizer(BPE(vocab=vocab, merges=merges, unk_token=unk, fuse_unk=True, byte_fallback=True))
    steps = [decoders.Replace(SPIECE_SPACE, " "), decoders.ByteFallback(), decoders.Fuse()]
    if metadata.get("tokenizer.ggml.add_space_prefix", True):
        # SentencePiece's dummy prefix: always one more ▁ before the text (Metaspace would skip it when the
        # text already starts with a space), dropped again when decoding
        tokenizer.normalizer = normalizers.Sequence(
            [normalizers.Prepend(SPIECE_SPACE), normalizers.Replace(" ", SPIECE_SPACE)]
        )
        steps.append(decoders.Strip(content=" ", left=1, right=0))
    else:
        tokenizer.normalizer = normalizers.Replace(" ", SPIECE_SPACE)
    tokenizer.decoder = decoders.Sequence(steps)
    return tokenizer


def _merges_from_scores(tokens: list[str], scores: Any, types: list[int]) -> list[tuple[str, str]]:
    """Every (left, right) whose concatenation is a normal piece, best result score first.

    Only normal pieces take part: control, byte and user-defined pieces are never merged into or out of
    by SentencePiece (user-defined symbols are matched whole before BPE runs). Ties are ordered as in
    transformers' ``generate_merges`` (longer left part first): SentencePiece takes the leftmost pair
    instead, which only differs when two different pairs building equal-score pieces overlap.
    """
    normal = {token: index for index, token in enumerate(tokens) if types[index] == NORMAL}
    ranked: list[tuple[float, int, int, int, str, str]] = []
    for piece, index in normal.items():
        score = float(scores[index])
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            left_id, right_id = normal.get(left), normal.get(right)
            if left_id is not None and right_id is not None:
                ranked.append((-score, -len(left), left_id, right_id, left, right))
    ranked.sort()
    return [(left, right) for *_, left, right in ranked]


def _byte_level_bpe(metadata: dict[str, Any]) -> Tokenizer:
    tokens: list[str] = metadata["tokenizer.ggml.tokens"]
    raw_merges = metadata.get("tokenizer.ggml.merges")
    if raw_merges is None:
        raise GGUFVocabError("a byte-level ('gpt2') vocabulary needs tokenizer.ggml.merges")
    merges = []
    for merge in raw_merges:
        left, sep, right = merge.partition(" ")
        if not sep:
            raise GGUFVocabError(f"malformed merge {merge!r}")
        merges.append((left, right))
    pre = metadata.get("tokenizer.ggml.pre", "default")
    if pre not in BYTE_LEVEL_PRESETS:
        raise GGUFVocabError(
            f"tokenizer.ggml.pre {pre!r} is not supported (supported: {', '.join(sorted(BYTE_LEVEL_PRESETS))})"
        )
    tokenizer = Tokenizer(BPE(vocab=_vocab(tokens), merges=merges, unk_token=None))
    splits = [pre_tokenizers.Split(Regex(pattern), behavior="isolated") for pattern in BYTE_LEVEL_PRESETS[pre]]
    # the regexes did the splitting; ByteLevel only maps bytes to its printable alphabet
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [*splits, pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
    )
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def _add_special_tokens(tokenizer: Tokenizer, metadata: dict[str, Any]) -> None:
    tokens = metadata["tokenizer.ggml.tokens"]
    types = _types(metadata)
    special = [
        AddedToken(tokens[i], special=True, normalized=False)
        for i, kind in enumerate(types)
        if kind in (CONTROL, UNKNOWN, UNUSED) and tokens[i]
    ]
    plain = [
        AddedToken(tokens[i], special=False, normalized=False) for i, kind in enumerate(types) if kind == USER_DEFINED
    ]
    # add_tokens keeps the vocabulary's own id for content already in it, which all of these are
    tokenizer.add_special_tokens(special)
    tokenizer.add_tokens(plain)


def _post_processor(metadata: dict[str, Any], kind: str) -> processors.PostProcessor | None:
    add_bos, add_eos = add_bos_eos(metadata)
    tokens = metadata["tokenizer.ggml.tokens"]
    bos_id, eos_id = metadata.get("tokenizer.ggml.bos_token_id"), metadata.get("tokenizer.ggml.eos_token_id")
    bos = tokens[int(bos_id)] if add_bos and bos_id is not None else None
    eos = tokens[int(eos_id)] if add_eos and eos_id is not None else None
    if bos is None and eos is None:
        # nothing to add; byte-level keeps its offsets-only processor, as HF's own files do
        return processors.ByteLevel(trim_offsets=False) if kind == "gpt2" else None

    def template(seq: str, type_id: int) -> list[str]:
        return (
            [f"{bos}:{type_id}"] * (bos is not None) + [f"${seq}:{type_id}"] + [f"{eos}:{type_id}"] * (eos is not None)
        )

    ids = [(tokens[int(i)], int(i)) for t, i in ((bos, bos_id), (eos, eos_id)) if t is not None]
    return processors.TemplateProcessing(
        single=template("A", 0), pair=template("A", 0) + template("B", 1), special_tokens=list(dict.fromkeys(ids))
    )
