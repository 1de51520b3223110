"""OpenAI's deprecated function calling on chat completions (``functions``, ``function_call``), which OpenAI still
serves and older clients still send: read as tools, answered as functions.

The request: ``functions`` become ``tools``, ``function_call`` (``"none"``, ``"auto"`` or ``{"name": ...}``) the
``tool_choice``, at most one call per answer (``parallel_tool_calls: false``, as the legacy answer holds one); in
``messages`` an assistant's ``function_call`` becomes a tool call with an id of ours and a ``function`` message (its
``name`` and ``content``) the ``tool`` message answering the latest call of that name. The answer: the call as
``message.function_call`` (streamed: ``delta.function_call``, its name first, then its arguments in pieces) and
``finish_reason: "function_call"``, where the tool call and ``"tool_calls"`` were.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

from hub.api import validation
from hub.api.validation import missing, refuse, wrong_type

_CALL_ID = "call_fn{}"  # a past call's id in the request; no one sees it
_NAMES = (  # today's parameter -> the legacy one the client sent
    (re.compile(r"\btools\[(\d+)\]\.function\b"), r"functions[\1]"),
    (re.compile(r"\btools\b"), "functions"),
    (re.compile(r"\btool_choice\b"), "function_call"),
    (re.compile(r"\b(messages\[\d+\])\.tool_calls\[0\]\.function\b"), r"\1.function_call"),
)


def wanted(body: dict) -> bool:
    return body.get("functions") is not None or body.get("function_call") is not None


def as_tools(body: dict) -> dict:
    """The request in today's terms (``body`` unchanged). Refuses what OpenAI refuses, naming the legacy fields."""
    functions = body.get("functions")
    if functions is None:
        raise refuse("function_call", "'function_call' is only allowed when 'functions' are specified.")
    if body.get("tools") is not None:
        raise refuse("functions", "Use either 'functions' (deprecated) or 'tools', not both.")
    if not isinstance(functions, list):
        raise wrong_type("functions", "an array", functions)
    if not functions or len(functions) > validation.MAX_TOOLS:
        raise refuse("functions", f"'functions' must hold 1 to {validation.MAX_TOOLS} functions.")
    for i, function in enumerate(functions):
        if not isinstance(function, dict):
            raise wrong_type(f"functions[{i}]", "an object", function)
        if function.get("name") is None:
            raise missing(f"functions[{i}].name")
    out = {k: v for k, v in body.items() if k not in ("functions", "function_call")}
    out["tools"] = [{"type": "function", "function": function} for function in functions]
    out["tool_choice"] = _tool_choice(body.get("function_call"))
    out["parallel_tool_calls"] = False
    out["messages"] = _messages(body.get("messages"))
    return out


def _tool_choice(choice: Any) -> Any:
    if choice is None or choice in ("none", "auto"):
        return choice or "auto"
    if isinstance(choice, dict) and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise refuse("function_call", "'function_call' must be 'none', 'auto' or {'name': ...}.")


def _messages(messages: Any) -> Any:
    """Assistant ``function_call`` -> ``tool_calls``; ``function`` messages -> ``tool`` messages. Anything else is
    left for the chat request's own checks."""
    if not isinstance(messages, list):
        return messages
    out, calls = [], {}  # calls: a function's name -> the id of its latest call
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            out.append(message)
            continue
        role = message.get("role")
        if role == "assistant" and message.get("function_call") is not None:
            call = message["function_call"]
            if not isinstance(call, dict) or not isinstance(call.get("name"), str):
                raise wrong_type(f"messages[{i}].function_call", "an object with a 'name'", call)
            calls[call["name"]] = _CALL_ID.format(i)
            function = {"name": call["name"], "arguments": call.get("arguments", "")}
            message = {k: v for k, v in message.items() if k != "function_call"}
            message["tool_calls"] = [{"id": calls[call["name"]], "type": "function", "function": function}]
        elif role == "function":
            name = message.get("name")
            if not isinstance(name, str):
                raise missing(f"messages[{i}].name")
            message = {"role": "tool", "tool_call_id": calls.get(name, _CALL_ID.format(i)),
                       "content": message.get("content")}  # fmt: skip
        out.append(message)
    return out


def answer(completion: dict) -> dict:
    """A chat completion as the legacy client reads it: its (one) tool call as ``function_call``."""
    return _as_function_call(completion, "message", lambda f: {"name": f["name"], "arguments": f["arguments"]})


def chunk(event: dict) -> dict:
    """A streamed chunk likewise: a call's fragments (index 0: one call at most) as ``delta.function_call``, the
    name in the first only."""
    return _as_function_call(event, "delta", lambda f: {**({"name": f["name"]} if f.get("name") is not None else {}),
                                                       "arguments": f.get("arguments") or ""})  # fmt: skip


def _as_function_call(answer: dict, part: str, function_call: Callable[[dict], dict]) -> dict:
    """A copy of ``answer`` whose choices' ``part`` (message or delta) holds its first tool call's function as
    ``function_call``, and whose ``finish_reason`` says ``function_call`` where it said ``tool_calls``."""
    out = copy.deepcopy(answer)
    for choice in out.get("choices") or []:
        holder = choice.get(part) or {}
        calls = holder.pop("tool_calls", None)
        if calls:
            holder["function_call"] = function_call(calls[0].get("function") or {})
        if choice.get("finish_reason") == "tool_calls":
            choice["finish_reason"] = "function_call"
    return out


def rename(error: Any) -> None:
    """An error about the request in today's terms (``tools[0].function.parameters``), named as the client sent it
    (``functions[0].parameters``): the hub's checks and the service's run on the translated request."""
    for pattern, legacy in _NAMES:
        if error.param:
            error.param = pattern.sub(legacy, error.param)
        error.message = pattern.sub(legacy, error.message)
