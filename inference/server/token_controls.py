"""vLLM's token-level request controls, read and checked once with vLLM's meanings:

- ``allowed_token_ids``: the only ids an answer may hold (the sampler masks the rest; EOS too, unless listed);
- ``bad_words``: words never generated. Each is tokenized as written and with a leading space (so that it is
  banned at the start of the text and inside it), and its last token is banned wherever the answer ends with the
  rest of it (``OutputProcessor.banned``);
- ``truncate_prompt_tokens``: keep only the prompt's last k tokens (-1: the model's context length), the model's
  own special tokens (a BOS) kept on a text prompt. A prompt with images is not cut.
"""

from __future__ import annotations

from typing import Any

from inference.errors import RequestError
from inference.server.limits import MAX_BAD_WORDS


def read_allowed_token_ids(body: dict, vocab_size: int) -> list[int] | None:
    value = body.get("allowed_token_ids")
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in value):
        raise RequestError("'allowed_token_ids' must be a list of token ids.", param="allowed_token_ids",
                           code="invalid_type")  # fmt: skip
    if not value:
        raise RequestError("'allowed_token_ids' must not be empty.", param="allowed_token_ids")
    if any(not 0 <= t < vocab_size for t in value):
        raise RequestError("'allowed_token_ids' contains token ids outside the vocabulary.", param="allowed_token_ids")
    return sorted(set(value))


def read_bad_words(body: dict, tokenizer: Any) -> list[list[int]]:
    """The token ids of each bad word, as vLLM tokenizes them."""
    words = body.get("bad_words")
    if words is None:
        return []
    if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
        raise RequestError("'bad_words' must be a list of strings.", param="bad_words", code="invalid_type")
    if len(words) > MAX_BAD_WORDS:
        raise RequestError(f"'bad_words' may hold at most {MAX_BAD_WORDS} words.", param="bad_words")
    out: list[list[int]] = []
    for word in words:
        plain = tokenizer.encode(word.lstrip(), add_special_tokens=False)
        if not plain:
            raise RequestError("'bad_words' cannot hold an empty word.", param="bad_words")
        out.append(plain)
        # with a space before it, when that makes another first token and as many tokens (vLLM's rule)
        spaced = tokenizer.encode(" " + word.lstrip(), add_special_tokens=False)
        if spaced[0] != plain[0] and len(spaced) == len(plain):
            out.append(spaced)
    return out


def read_truncation(body: dict, max_model_len: int) -> int | None:
    """``truncate_prompt_tokens`` as the number of prompt tokens kept, or None (no cut)."""
    value = body.get("truncate_prompt_tokens")
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise RequestError("'truncate_prompt_tokens' must be an integer.", param="truncate_prompt_tokens",
                           code="invalid_type")  # fmt: skip
    if value == -1:
        return max_model_len
    if value < 1:
        raise RequestError("'truncate_prompt_tokens' must be -1 or at least 1.", param="truncate_prompt_tokens")
    if value > max_model_len:
        raise RequestError(f"'truncate_prompt_tokens' ({value}) is greater than the model's context length "
                           f"({max_model_len}): select a smaller truncation size.",
                           param="truncate_prompt_tokens")  # fmt: skip
    return value


def encode_kept(tokenizer: Any, prompt: str | list[int], keep: int | None) -> list[int]:
    """A prompt's ids, its last ``keep`` tokens only when given: a text is encoded with the model's special tokens
    and cut before them are added (they stay), token ids are cut as they are."""
    if isinstance(prompt, list):
        return prompt if keep is None else prompt[-keep:]
    return tokenizer.encode(prompt, add_special_tokens=True, keep_last=keep)


def cut_chat(ids: list[int], keep: int | None, images: bool) -> list[int]:
    """A rendered conversation's last ``keep`` tokens (its template's tokens are text, cut like the rest)."""
    if keep is None or len(ids) <= keep:
        return ids
    if images:
        raise RequestError("'truncate_prompt_tokens' cannot cut a prompt with images.", param="truncate_prompt_tokens")
    return ids[-keep:]
