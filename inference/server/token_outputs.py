"""The token-level outputs of the generation routes: logprobs in OpenAI's shapes (a chat's, a completion's), and
vLLM's token outputs, read once and written in vLLM's shapes:

- ``prompt_logprobs`` (k, 0 to 20): each prompt token's logprob, its rank in the model's distribution and the top k
  there: a list over the prompt, null for its first token (nothing predicts it), else ``{token_id: {"logprob",
  "rank", "decoded_token"}}`` (the prompt's token first). A chat answer carries it at its top level, a completion
  in each choice. Not streamed (vLLM's 400), and a prompt with it is computed whole (the prefix cache has no
  logits);
- ``return_tokens_as_token_ids``: logprobs name each token ``token_id:<id>``, so that a token that is no whole UTF-8
  text (a byte of a character) reads back exactly;
- ``return_token_ids``: the prompt's ids (``prompt_token_ids``) and each choice's generated ids (``token_ids``),
  in every chunk of a stream too (the prompt's in the first).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from inference.engine.output import SeqDelta
from inference.engine.sequence import TokenLogprob
from inference.errors import RequestError
from inference.server.limits import MAX_TOP_LOGPROBS


@dataclass(frozen=True)
class TokenOutputs:
    prompt_logprobs: int | None = None
    as_ids: bool = False  # return_tokens_as_token_ids
    token_ids: bool = False  # return_token_ids


def _flag(body: dict, name: str) -> bool:
    value = body.get(name)
    if value is not None and not isinstance(value, bool):
        raise RequestError(f"'{name}' must be a boolean.", param=name, code="invalid_type")
    return bool(value)


def read_token_outputs(body: dict) -> TokenOutputs:
    k = body.get("prompt_logprobs")
    if k is not None:
        if not isinstance(k, int) or isinstance(k, bool):
            raise RequestError("'prompt_logprobs' must be an integer.", param="prompt_logprobs", code="invalid_type")
        if not 0 <= k <= MAX_TOP_LOGPROBS:
            raise RequestError(f"'prompt_logprobs' must be between 0 and {MAX_TOP_LOGPROBS}.", param="prompt_logprobs")
        if body.get("stream"):
            raise RequestError("'prompt_logprobs' are not available when 'stream' is true.", param="prompt_logprobs")
    return TokenOutputs(k, _flag(body, "return_tokens_as_token_ids"), _flag(body, "return_token_ids"))


def namer(tokenizer: Any, as_ids: bool) -> Callable[[int], str]:
    """How logprobs name a token: its text (control tokens written out), or ``token_id:<id>``."""
    if as_ids:
        return lambda token_id: f"token_id:{token_id}"
    return lambda token_id: tokenizer.decode([token_id], skip_special_tokens=False)


def prompt_logprobs(items: list[TokenLogprob | None], k: int, name: Callable[[int], str]) -> list[dict | None]:
    """vLLM's ``prompt_logprobs`` from the engine's (the first prompt token's is None)."""
    out: list[dict | None] = []
    for lp in items:
        if lp is None:
            out.append(None)
            continue
        entry = {str(lp.token_id): {"logprob": lp.logprob, "rank": lp.rank, "decoded_token": name(lp.token_id)}}
        for rank, (token_id, logprob) in enumerate(lp.top[:k], start=1):
            entry.setdefault(str(token_id), {"logprob": logprob, "rank": rank, "decoded_token": name(token_id)})
        out.append(entry)
    return out


def logprobs_chat(delta: SeqDelta, tokenizer, as_ids: bool = False) -> dict | None:
    if not delta.logprobs:
        return None
    name = namer(tokenizer, as_ids)

    def entry(token_id: int, logprob: float) -> dict:
        text = name(token_id)
        return {"token": text, "logprob": logprob, "bytes": list(text.encode())}

    return {
        "content": [
            {**entry(lp.token_id, lp.logprob), "top_logprobs": [entry(t, v) for t, v in lp.top]}
            for lp in delta.logprobs
        ],
        "refusal": None,
    }


def logprobs_completion(
    items, tokenizer, text_offset: int, as_ids: bool = False, k: int | None = None, first: int | None = None
) -> dict:
    """``k``: the top logprobs each item shows (None: all it has), the item's own token among them. ``first``:
    with echo, the prompt's first token, whose item is None: it is listed with a null logprob, as OpenAI and vLLM
    list it, so that the i-th entry is the i-th token (lm-eval-harness reads a continuation's logprobs by
    position). ``text_offset``: where the first token's text starts in the choice's text; each token moves it by
    its text as the choice shows it (a special token, not shown, by nothing)."""
    tokens, token_logprobs, top, offsets = [], [], [], []
    name = namer(tokenizer, as_ids)
    for lp in items:
        if lp is None and first is None:
            continue
        if lp is None:
            token_id, logprob, its_top = first, None, None
        else:  # the top k and the chosen token ("up to logprobs + 1" in OpenAI's words; vLLM's too): with
            # logprobs 0, the chosen one alone (it was null, which OpenAI's schema does not allow)
            token_id, logprob, its_top = lp.token_id, lp.logprob, {name(t): v for t, v in lp.top[:k]}
            its_top.setdefault(name(token_id), logprob)
        tokens.append(name(token_id))
        token_logprobs.append(logprob)
        top.append(its_top)
        offsets.append(text_offset)
        text_offset += len(tokenizer.decode([token_id], skip_special_tokens=True))
    return {"tokens": tokens, "token_logprobs": token_logprobs, "top_logprobs": top, "text_offset": offsets}


def prompt_outputs(wanted: TokenOutputs, prompt_ids: list[int], items, tokenizer) -> dict:
    """vLLM's prompt_token_ids and prompt_logprobs, where asked for."""
    out: dict = {"prompt_token_ids": prompt_ids} if wanted.token_ids else {}
    if wanted.prompt_logprobs is not None:
        out["prompt_logprobs"] = prompt_logprobs(items or [], wanted.prompt_logprobs, namer(tokenizer, wanted.as_ids))
    return out
