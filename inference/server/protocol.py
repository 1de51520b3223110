"""Reading OpenAI requests into engine inputs, with OpenAI's parameter names in every error."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from inference.sampling_params import InvalidParam, SamplingParams
from inference.server.errors import ServiceError, shown


def _type_error(param: str, expected: str) -> ServiceError:
    return ServiceError(f"'{param}' must be {expected}.", param=param, code="invalid_type")


def _get(body: dict, name: str, kinds: tuple[type, ...], expected: str, default: Any = None) -> Any:
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) and bool not in kinds:
        raise _type_error(name, expected)
    if not isinstance(value, kinds):
        raise _type_error(name, expected)
    return value


def _stop(body: dict) -> list[str]:
    stop = body.get("stop")
    if stop is None:
        return []
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        return stop
    raise _type_error("stop", "a string or a list of strings")


def _logit_bias(body: dict, vocab_size: int) -> dict[int, float]:
    raw = _get(body, "logit_bias", (dict,), "an object mapping token ids to numbers", {})
    bias = {}
    for key, value in raw.items():
        try:
            token = int(key)
        except (TypeError, ValueError):
            raise ServiceError(f"logit_bias key {shown(key)!r} is not a token id.", param="logit_bias") from None
        if not 0 <= token < vocab_size:
            raise ServiceError(f"logit_bias token {token} is outside the vocabulary.", param="logit_bias")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _type_error("logit_bias", "an object mapping token ids to numbers")
        bias[token] = float(value)
    return bias


@dataclass
class GenerationRequest:
    params: SamplingParams
    max_tokens: int | None  # None: fill the context (capped by the model's output limit)
    n: int
    stream: bool
    include_usage: bool
    continuous_usage: bool  # vLLM's stream_options.continuous_usage_stats: usage so far in every chunk


def read_generation(body: dict, vocab_size: int, *, chat: bool) -> GenerationRequest:
    """The sampling part shared by chat completions and completions."""
    max_tokens = _get(body, "max_completion_tokens" if chat else "max_tokens", (int,), "an integer")
    if max_tokens is None:
        max_tokens = _get(body, "max_tokens", (int,), "an integer")
    number = (int, float)
    logprobs_flag: Any
    if chat:
        logprobs_flag = _get(body, "logprobs", (bool,), "a boolean", False)
        top = _get(body, "top_logprobs", (int,), "an integer")
        if top is not None and not logprobs_flag:
            raise ServiceError("'top_logprobs' requires 'logprobs' to be true.", param="top_logprobs")
        logprobs = (top or 0) if logprobs_flag else None
    else:
        logprobs = _get(body, "logprobs", (int,), "an integer")
        if logprobs is not None and logprobs > 5:
            raise ServiceError("'logprobs' must be between 0 and 5 for completions.", param="logprobs")
    stream = _get(body, "stream", (bool,), "a boolean", False)
    stream_options = _get(body, "stream_options", (dict,), "an object", {})
    if stream_options and not stream:
        raise ServiceError("'stream_options' is only allowed when 'stream' is true.", param="stream_options")
    n = _get(body, "n", (int,), "an integer", 1)
    if not 1 <= n <= 16:
        raise ServiceError("'n' must be between 1 and 16.", param="n")
    if max_tokens is not None and max_tokens < 1:
        raise ServiceError("'max_tokens' must be at least 1.", param="max_tokens")
    try:
        params = SamplingParams(
            max_tokens=max_tokens or 1,
            temperature=float(_get(body, "temperature", number, "a number", 1.0)),
            top_p=float(_get(body, "top_p", number, "a number", 1.0)),
            top_k=_get(body, "top_k", (int,), "an integer", 0),
            min_p=float(_get(body, "min_p", number, "a number", 0.0)),
            seed=_get(body, "seed", (int,), "an integer"),
            stop=_stop(body),
            stop_token_ids=_get(body, "stop_token_ids", (list,), "a list of token ids", []),
            ignore_eos=_get(body, "ignore_eos", (bool,), "a boolean", False),
            presence_penalty=float(_get(body, "presence_penalty", number, "a number", 0.0)),
            frequency_penalty=float(_get(body, "frequency_penalty", number, "a number", 0.0)),
            repetition_penalty=float(_get(body, "repetition_penalty", number, "a number", 1.0)),
            logit_bias=_logit_bias(body, vocab_size),
            logprobs=logprobs,
            prompt_logprobs=bool(not chat and body.get("echo") and logprobs is not None),
        )
    except InvalidParam as exc:
        raise ServiceError(str(exc), param=exc.param) from None
    return GenerationRequest(
        params=params,
        max_tokens=max_tokens,
        n=n,
        stream=stream,
        include_usage=bool(_get(stream_options, "include_usage", (bool,), "a boolean", False)),
        continuous_usage=bool(_get(stream_options, "continuous_usage_stats", (bool,), "a boolean", False)),
    )


def _tool_calls(value, i: int) -> list[dict]:
    """An assistant message's ``tool_calls``, as sent back in the history."""
    param = f"messages[{i}].tool_calls"
    if not isinstance(value, list):
        raise ServiceError(f"'{param}' must be a list.", param=param, code="invalid_type")
    calls = []
    for j, call in enumerate(value):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not isinstance(call.get("id"), str):
            raise ServiceError(
                f"'{param}[{j}]' must be {{'id': str, 'type': 'function', "
                "'function': {'name': str, 'arguments': str}}.",
                param=f"{param}[{j}]",
            )
        arguments = fn.get("arguments", "")
        if not isinstance(arguments, str):
            raise ServiceError(f"'{param}[{j}].function.arguments' must be a JSON string.",
                               param=f"{param}[{j}].function.arguments", code="invalid_type")  # fmt: skip
        calls.append({"id": call["id"], "type": "function", "function": {"name": fn["name"], "arguments": arguments}})
    return calls


def _text(content, i: int) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for j, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise ServiceError(
                    f"messages[{i}].content[{j}]: content parts of type {shown(kind)!r} are not supported here; "
                    "only text parts are.",
                    param=f"messages[{i}].content[{j}]",
                )
            texts.append(part["text"])
        return "".join(texts)
    raise ServiceError(f"messages[{i}].content must be a string or a list of parts.", param=f"messages[{i}]")


DETAILS = ("auto", "low", "high")


def _image_part(part: dict, i: int, j: int) -> dict:
    """``{"type": "image_url", "image_url": {"url", "detail"}}`` (a bare URL string is accepted too)."""
    param = f"messages[{i}].content[{j}].image_url"
    value = part.get("image_url")
    if isinstance(value, str):
        value = {"url": value}
    if not isinstance(value, dict) or not isinstance(value.get("url"), str) or not value["url"]:
        raise ServiceError(f"'{param}' must be an object with a 'url' (an http(s) or data: URL).", param=param)
    detail = value.get("detail", "auto")
    if detail not in DETAILS:
        raise ServiceError(f"'{param}.detail' must be one of {', '.join(DETAILS)}.", param=f"{param}.detail")
    return {"type": "image_url", "url": value["url"], "detail": detail}


def _parts(content, i: int, role: str, model: str, images: bool) -> str | list[dict]:
    """A content that may hold images: a string, or a list of text and image parts (``image_url``)."""
    if not isinstance(content, list) or not any(isinstance(p, dict) and p.get("type") == "image_url" for p in content):
        return _text(content, i)
    j = next(j for j, p in enumerate(content) if isinstance(p, dict) and p.get("type") == "image_url")
    if not images:
        raise ServiceError(
            f"The model '{model}' does not accept images (messages[{i}].content[{j}] is an image_url part). Send "
            "text only, or use a vision model (listed under /vision/models).",
            param=f"messages[{i}].content[{j}]", code="image_input_not_supported",
        )  # fmt: skip
    if role not in ("system", "user"):
        raise ServiceError(f"messages[{i}]: images are allowed in system and user messages only, not in {shown(role)} "
                           "messages.", param=f"messages[{i}].content[{j}]")  # fmt: skip
    out = []
    for j, part in enumerate(content):
        if isinstance(part, dict) and part.get("type") == "image_url":
            out.append(_image_part(part, i, j))
        elif isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
            out.append({"type": "text", "text": part["text"]})
        else:
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            raise ServiceError(f"messages[{i}].content[{j}]: content parts of type {shown(kind)!r} are not supported; "
                               "use text and image_url parts.", param=f"messages[{i}].content[{j}]")  # fmt: skip
    return out


ROLES = ("system", "developer", "user", "assistant", "tool")


def read_messages(body: dict, images: bool = False) -> list[dict]:
    """The conversation: ``{"role", "content"}``, plus ``tool_calls`` on assistant turns that called tools and
    ``tool_call_id`` on tool results. Developer messages are system messages. ``images``: the model takes them;
    then a system or user content may be a list of ``{"type": "text", "text"}`` and ``{"type": "image_url",
    "url", "detail"}`` parts. Otherwise an image part is a 400 that says so."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ServiceError("'messages' must be a non-empty list.", param="messages")
    out = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise ServiceError(
                f"messages[{i}] needs a role of system, developer, user, assistant or tool.",
                param=f"messages[{i}].role",
            )
        role = "system" if message["role"] == "developer" else message["role"]
        content = message.get("content")
        item: dict = {"role": role}
        if role == "assistant" and message.get("tool_calls"):
            item["tool_calls"] = _tool_calls(message["tool_calls"], i)
            item["content"] = _text(content, i) if content is not None else None
        else:
            model = str(body.get("model"))
            item["content"] = "" if content is None and role == "assistant" else _parts(content, i, role, model, images)
        if role == "tool":
            if not isinstance(message.get("tool_call_id"), str):
                raise ServiceError(f"messages[{i}]: a tool message needs 'tool_call_id', the id of the call it "
                                   "answers.", param=f"messages[{i}].tool_call_id",
                                   code="missing_required_parameter")  # fmt: skip
            item["tool_call_id"] = message["tool_call_id"]
        out.append(item)
    return out


def read_prompts(body: dict) -> list[str | list[int]]:
    """Completions' ``prompt``: a string, a list of strings, token ids, or lists of token ids."""
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list) and prompt:
        if all(isinstance(p, str) for p in prompt):
            return list(prompt)
        if all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
            return [list(prompt)]
        if all(isinstance(p, list) and p and all(isinstance(t, int) for t in p) for p in prompt):
            return [list(p) for p in prompt]
    raise ServiceError(
        "'prompt' must be a string, a list of strings, a list of token ids or a list of lists of token ids.",
        param="prompt",
    )


def read_embedding_inputs(body: dict) -> list[str | list[int]]:
    value = body.get("input")
    if isinstance(value, str):
        if not value:
            raise ServiceError("'input' cannot be an empty string.", param="input")
        return [value]
    if isinstance(value, list) and value:
        if all(isinstance(v, str) and v for v in value):
            return list(value)
        if all(isinstance(t, int) and not isinstance(t, bool) for t in value):
            return [list(value)]
        if all(isinstance(v, list) and v and all(isinstance(t, int) for t in v) for v in value):
            return [list(v) for v in value]
    raise ServiceError(
        "'input' must be a non-empty string, a list of strings, token ids, or lists of token ids.", param="input"
    )
