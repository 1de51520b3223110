"""A Responses API request as the chat completions request our inference service runs, and the service's errors
named in the Responses API's parameters.

``instructions`` become the first (system) message; the context's items become messages in order: consecutive
``function_call`` items one assistant turn with ``tool_calls`` (joined to the assistant message before them),
each ``function_call_output`` a ``tool`` message, reasoning items dropped; a ``file_search_call`` the model's call of
the ``file_search`` function and a ``tool`` message with its results (``hub/api/file_search.py``); the mcp tool's
items as ``mcp_items.py`` shows them. The file_search tool is that function; the mcp tool's functions are added once
its servers' tools are known (``mcp_tools.py``, before the model runs). Function tools take chat's nested
shape (``strict`` defaults to true, as OpenAI's Responses API has it); ``text.format`` becomes
``response_format``; ``max_output_tokens`` ``max_completion_tokens``; ``reasoning.effort: "none"`` closes the
think block of a model that reasons (Qwen3's ``enable_thinking: false``).
"""

from __future__ import annotations

import json
import re

from hub.api import compaction_items, file_inputs, mcp_items
from hub.api.file_search import FILE_SEARCH_FUNCTION, results_text

LOGPROBS_INCLUDE = "message.output_text.logprobs"


_FILE_PARTS = ("input_image", "input_file")  # parts that stay parts (a file is read by file_inputs.py)


def _text(parts: list[dict]) -> str:
    return "\n".join(p.get("text") or p.get("refusal") or "" for p in parts if p["type"] not in _FILE_PARTS)


def chat_part(part: dict) -> dict:
    """A Responses API content part as chat's."""
    if part["type"] == "input_file":
        names = (*file_inputs.FILE_FIELDS, "detail")
        return {"type": "file", "file": {k: part[k] for k in names if part.get(k) is not None}}
    if part["type"] == "input_image" and part.get("image_url") is None:  # by file_id: file_inputs.py reads it
        return {"type": "image_url", "image_url": {"file_id": part["file_id"], "detail": part.get("detail", "auto")}}
    if part["type"] == "input_image":
        return {"type": "image_url", "image_url": {"url": part["image_url"], "detail": part.get("detail", "auto")}}
    return {"type": "text", "text": part.get("text") or part.get("refusal") or ""}


def _content(parts: list[dict]) -> str | list[dict]:
    if not any(p["type"] in _FILE_PARTS for p in parts):
        return _text(parts)
    return [chat_part(p) for p in parts]


def messages(instructions: str | None, items: list[dict], summaries: dict[str, str] | None = None) -> list[dict]:
    """The context as chat messages; ``summaries``: the compaction items' (``compaction_items.summaries``)."""
    out: list[dict] = [{"role": "system", "content": instructions}] if instructions else []
    for item in items:
        kind = item["type"]
        if kind == "compaction":
            out.append(compaction_items.shown((summaries or {})[item["encrypted_content"]]))
        elif kind == "message":
            out.append({"role": item["role"], "content": _content(item["content"])})
        elif kind == "function_call":
            call = {"id": item["call_id"], "type": "function",
                    "function": {"name": item["name"], "arguments": item["arguments"]}}  # fmt: skip
            last = out[-1] if out else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
                if last.get("content") == "":
                    last["content"] = None
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "file_search_call":
            call_id = "call_" + item["id"]
            arguments = json.dumps({"queries": item.get("queries") or []})
            call = {"id": call_id, "type": "function", "function": {"name": "file_search", "arguments": arguments}}
            out.append({"role": "assistant", "content": None, "tool_calls": [call]})
            out.append({"role": "tool", "tool_call_id": call_id, "content": results_text(item.get("results"))})
        elif kind in mcp_items.READERS:
            out += mcp_items.messages(item, items)
        elif kind == "function_call_output":
            output = item["output"]
            out.append({"role": "tool", "tool_call_id": item["call_id"],
                        "content": output if isinstance(output, str) else _content(output)})  # fmt: skip
    return out


def _tool(tool: dict) -> dict:
    if tool.get("type") == "file_search":
        return FILE_SEARCH_FUNCTION
    function = {"name": tool["name"], "parameters": tool.get("parameters") or {"type": "object", "properties": {}}}
    if tool.get("description"):
        function["description"] = tool["description"]
    function["strict"] = tool.get("strict") is not False
    return {"type": "function", "function": function}


def _tools(body: dict) -> tuple[list[dict], object]:
    """(chat tools, chat tool_choice)."""
    tools = [_tool(t) for t in body.get("tools") or [] if t.get("type") != "mcp"]  # mcp's: mcp_tools.py
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "mcp":  # the server's functions are not known yet
        return tools, None
    if isinstance(choice, dict) and choice.get("type") == "function":
        return tools, {"type": "function", "function": {"name": choice["name"]}}
    if isinstance(choice, dict) and choice.get("type") == "file_search":
        return tools, {"type": "function", "function": {"name": "file_search"}}
    if isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        allowed = {
            t.get("name") or t.get("type") for t in choice["tools"] if t.get("type") != "mcp"
        }  # file_search's has no name
        return [t for t in tools if t["function"]["name"] in allowed], choice.get("mode") or "auto"
    return tools, choice


def _response_format(body: dict) -> dict | None:
    fmt = (body.get("text") or {}).get("format")
    if not fmt or fmt.get("type") == "text":
        return None
    if fmt["type"] == "json_object":
        return {"type": "json_object"}
    schema = {"name": fmt["name"], "schema": fmt["schema"]}
    for name in ("strict", "description"):
        if fmt.get(name) is not None:
            schema[name] = fmt[name]
    return {"type": "json_schema", "json_schema": schema}


def parallel_calls(body: dict, chat: dict) -> None:
    """``parallel_tool_calls`` goes to a chat request that has tools: a response's is its default (true) and is
    allowed without tools (OpenAI's Responses API echoes it), where chat's is a 400."""
    if body.get("parallel_tool_calls") is not None:
        chat["parallel_tool_calls"] = body["parallel_tool_calls"]


def chat_body(body: dict, items: list[dict], summaries: dict[str, str] | None = None) -> dict:
    """The chat completions request for ``items`` (the whole context: the stored conversation and this input)."""
    chat: dict = {"model": body["model"], "messages": messages(body.get("instructions"), items, summaries),
                  "stream": True}  # fmt: skip
    for name in ("temperature", "top_p", "user"):
        if body.get(name) is not None:
            chat[name] = body[name]
    if body.get("max_output_tokens") is not None:
        chat["max_completion_tokens"] = body["max_output_tokens"]
    tools, choice = _tools(body)
    if tools:
        chat["tools"] = tools
        parallel_calls(body, chat)
    if choice is not None and (tools or choice == "none"):
        chat["tool_choice"] = choice
    if (fmt := _response_format(body)) is not None:
        chat["response_format"] = fmt
    top = body.get("top_logprobs")
    if top or LOGPROBS_INCLUDE in (body.get("include") or []):
        chat["logprobs"], chat["top_logprobs"] = True, top or 0
    if (body.get("reasoning") or {}).get("effort") == "none":
        chat["chat_template_kwargs"] = {"enable_thinking": False}
    return chat


_PARAMS = (
    (re.compile(r"^tools\[(\d+)\]\.function\."), r"tools[\1]."),
    (re.compile(r"^max_completion_tokens$"), "max_output_tokens"),
    (re.compile(r"^max_tokens$"), "max_output_tokens"),
    (re.compile(r"^response_format(\.json_schema)?"), "text.format"),
    (re.compile(r"^messages(\[\d+\].*)?$"), "input"),
    (re.compile(r"^top_logprobs$"), "top_logprobs"),
)


# the service names the chat message's part; the client sent an input item, whose index may differ (instructions)
_IMAGE_PART = re.compile(r"messages\[\d+\]\.content\[\d+\] is an image_url part")


def response_message(message: str) -> str:
    """A chat request's error message as the Responses API's client reads it."""
    return _IMAGE_PART.sub("the input has an input_image part", message)


def response_param(param: str | None) -> str | None:
    """A chat request's parameter as the Responses API names it (``tools[0].function.parameters`` ->
    ``tools[0].parameters``), for the service's errors."""
    if not param:
        return param
    for pattern, replacement in _PARAMS:
        if pattern.search(param):
            return pattern.sub(replacement, param)
    return param
