"""A chat request's ``messages``, read into the conversation the prompt is built from, with OpenAI's parameter
names in every error."""

from __future__ import annotations

from inference.errors import RequestError
from inference.server.errors import shown
from inference.server.limits import IMAGE_DETAILS, ROLES


def _tool_calls(value, i: int) -> list[dict]:
    """An assistant message's ``tool_calls``, as sent back in the history."""
    param = f"messages[{i}].tool_calls"
    if not isinstance(value, list):
        raise RequestError(f"'{param}' must be a list.", param=param, code="invalid_type")
    calls = []
    for j, call in enumerate(value):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not isinstance(call.get("id"), str):
            raise RequestError(
                f"'{param}[{j}]' must be {{'id': str, 'type': 'function', "
                "'function': {'name': str, 'arguments': str}}.",
                param=f"{param}[{j}]",
            )
        arguments = fn.get("arguments", "")
        if not isinstance(arguments, str):
            raise RequestError(f"'{param}[{j}].function.arguments' must be a JSON string.",
                               param=f"{param}[{j}].function.arguments", code="invalid_type")  # fmt: skip
        calls.append({"id": call["id"], "type": "function", "function": {"name": fn["name"], "arguments": arguments}})
    return calls


def _text(content, i: int, role: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for j, part in enumerate(content):
            if role == "assistant" and isinstance(part, dict) and part.get("type") == "refusal":
                # OpenAI's assistant parts are text and refusal: a refusal is what the assistant said (as vLLM reads it)
                if not isinstance(part.get("refusal"), str):
                    raise RequestError(f"messages[{i}].content[{j}].refusal must be a string.",
                                       param=f"messages[{i}].content[{j}].refusal", code="invalid_type")  # fmt: skip
                part = {"type": "text", "text": part["refusal"]}
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise RequestError(
                    f"messages[{i}].content[{j}]: content parts of type {shown(kind)!r} are not supported here; "
                    "only text parts are.",
                    param=f"messages[{i}].content[{j}]",
                )
            texts.append(part["text"])
        return "\n".join(texts)  # as vLLM joins them (and the Responses API's parts, hub/api/responses_chat.py)
    raise RequestError(f"messages[{i}].content must be a string or a list of parts.", param=f"messages[{i}]")


def _image_part(part: dict, i: int, j: int) -> dict:
    """``{"type": "image_url", "image_url": {"url", "detail"}}`` (a bare URL string is accepted too)."""
    param = f"messages[{i}].content[{j}].image_url"
    value = part.get("image_url")
    if isinstance(value, str):
        value = {"url": value}
    if not isinstance(value, dict) or not isinstance(value.get("url"), str) or not value["url"]:
        raise RequestError(f"'{param}' must be an object with a 'url' (an http(s) or data: URL).", param=param)
    detail = value.get("detail", "auto")
    if detail not in IMAGE_DETAILS:
        raise RequestError(f"'{param}.detail' must be one of {', '.join(IMAGE_DETAILS)}.", param=f"{param}.detail")
    return {"type": "image_url", "url": value["url"], "detail": detail}


def _parts(content, i: int, role: str, model: str, images: bool) -> str | list[dict]:
    """A content that may hold images: a string, or a list of text and image parts (``image_url``)."""
    if not isinstance(content, list) or not any(isinstance(p, dict) and p.get("type") == "image_url" for p in content):
        return _text(content, i, role)
    j = next(j for j, p in enumerate(content) if isinstance(p, dict) and p.get("type") == "image_url")
    if not images:
        raise RequestError(
            f"The model '{model}' does not accept images (messages[{i}].content[{j}] is an image_url part). Send "
            "text only, or use a vision model (listed under /vision/models).",
            param=f"messages[{i}].content[{j}]", code="image_input_not_supported",
        )  # fmt: skip
    if role not in ("system", "user"):
        raise RequestError(f"messages[{i}]: images are allowed in system and user messages only, not in {shown(role)} "
                           "messages.", param=f"messages[{i}].content[{j}]")  # fmt: skip
    out = []
    for j, part in enumerate(content):
        if isinstance(part, dict) and part.get("type") == "image_url":
            out.append(_image_part(part, i, j))
        elif isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
            out.append({"type": "text", "text": part["text"]})
        else:
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            raise RequestError(f"messages[{i}].content[{j}]: content parts of type {shown(kind)!r} are not supported; "
                               "use text and image_url parts.", param=f"messages[{i}].content[{j}]")  # fmt: skip
    return out


def read_messages(body: dict, images: bool = False) -> list[dict]:
    """The conversation: ``{"role", "content"}``, plus ``tool_calls`` on assistant turns that called tools and
    ``tool_call_id`` on tool results. Developer messages are system messages. ``images``: the model takes them;
    then a system or user content may be a list of ``{"type": "text", "text"}`` and ``{"type": "image_url",
    "url", "detail"}`` parts. Otherwise an image part is a 400 that says so."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError("'messages' must be a non-empty list.", param="messages")
    out = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise RequestError(
                f"messages[{i}] needs a role of system, developer, user, assistant or tool.",
                param=f"messages[{i}].role",
            )
        role = "system" if message["role"] == "developer" else message["role"]
        content = message.get("content")
        item: dict = {"role": role}
        if role == "assistant" and message.get("tool_calls"):
            item["tool_calls"] = _tool_calls(message["tool_calls"], i)
            item["content"] = _text(content, i, role) if content is not None else None
        else:
            model = str(body.get("model"))
            item["content"] = "" if content is None and role == "assistant" else _parts(content, i, role, model, images)
        if role == "tool":
            if not isinstance(message.get("tool_call_id"), str):
                raise RequestError(f"messages[{i}]: a tool message needs 'tool_call_id', the id of the call it "
                                   "answers.", param=f"messages[{i}].tool_call_id",
                                   code="missing_required_parameter")  # fmt: skip
            item["tool_call_id"] = message["tool_call_id"]
        out.append(item)
    return out
