"""What a chat request gives its model's chat template besides the conversation, read with vLLM's and OpenAI's
meanings: ``chat_template_kwargs``, ``documents``, ``reasoning_effort``, and whether the prompt opens the model's turn
or leaves the final message open (``add_generation_prompt``, ``continue_final_message``)."""

from __future__ import annotations

from typing import Any

from inference.errors import RequestError
from inference.server.errors import shown


def _flag(body: dict, name: str, default: bool | None) -> bool | None:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise RequestError(f"'{name}' must be a boolean.", param=name, code="invalid_type")
    return value


# the names the renderer gives the template itself, which a request's chat_template_kwargs may not replace
_TEMPLATE_NAMES = frozenset({
    "messages", "tools", "add_generation_prompt", "bos_token", "eos_token", "unk_token", "pad_token",
    "special_tokens", "raise_exception", "strftime_now", "parts", "placeholders",
})  # fmt: skip


def read_template_kwargs(body: dict) -> dict[str, Any]:
    """``chat_template_kwargs`` (vLLM's): extra variables for the chat template, e.g. ``{"enable_thinking": false}``
    for Qwen3. Names are identifiers; the template's own variables cannot be replaced."""
    raw = body.get("chat_template_kwargs") or {}
    if not isinstance(raw, dict):
        raise RequestError("'chat_template_kwargs' must be an object.", param="chat_template_kwargs",
                           code="invalid_type")  # fmt: skip
    for name in raw:
        if not name.isidentifier() or name in _TEMPLATE_NAMES:
            raise RequestError(f"chat_template_kwargs cannot set {shown(name)!r}.", param="chat_template_kwargs")
    return dict(raw)


def read_documents(body: dict, template_kwargs: dict[str, Any]) -> dict[str, Any]:
    """vLLM's ``documents``: texts a RAG template (Command R's, Granite's) shows the model, as transformers passes
    them (``{"title": ..., "text": ...}`` each); a template that reads none leaves them out, as with vLLM."""
    documents = body.get("documents")
    if documents is None:
        return template_kwargs
    if not isinstance(documents, list) or not all(
        isinstance(d, dict) and all(isinstance(v, str) for v in d.values()) for d in documents
    ):
        raise RequestError("'documents' must be a list of objects of strings.", param="documents", code="invalid_type")
    return {**template_kwargs, "documents": documents}


REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")  # OpenAI's


def read_reasoning_effort(body: dict, template_kwargs: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's ``reasoning_effort``, as vLLM reads it: a variable of the chat template (gpt-oss's templates read
    it), and ``none`` turns a model's thinking off (``enable_thinking: false``, as Qwen3's templates read it).
    What ``chat_template_kwargs`` sets itself wins."""
    effort = body.get("reasoning_effort")
    if effort is None:
        return template_kwargs
    if effort not in REASONING_EFFORTS:
        raise RequestError(f"Invalid value for 'reasoning_effort': {shown(effort)!r}. Supported values are: "
                           f"{', '.join(map(repr, REASONING_EFFORTS))}.", param="reasoning_effort")  # fmt: skip
    implied: dict[str, Any] = {"reasoning_effort": effort}
    if effort == "none":
        implied["enable_thinking"] = False
    return {**implied, **template_kwargs}


def read_turn(body: dict) -> tuple[bool, bool]:
    """(add_generation_prompt, continue_final_message): continuing the final message opens no new turn, so it
    leaves add_generation_prompt off unless the request asked for both (vLLM's 400)."""
    continues = _flag(body, "continue_final_message", False)
    opens = _flag(body, "add_generation_prompt", None)
    if continues and opens:
        raise RequestError("Cannot set both 'continue_final_message' and 'add_generation_prompt' to true.",
                           param="continue_final_message")  # fmt: skip
    return (not continues) if opens is None else opens, continues


def read_echo(body: dict, messages: list[dict]) -> str:
    """vLLM's chat ``echo``: the answer starts with the final message's text when that message is the assistant's
    (the one ``continue_final_message`` continues); otherwise nothing. ``messages``: ``read_messages``', in which an
    assistant's content is one string (None beside tool calls)."""
    if not _flag(body, "echo", False) or messages[-1]["role"] != "assistant":
        return ""
    return messages[-1]["content"] or ""
