"""The Responses API's request (``POST /v1/responses``): checked in OpenAI's words, its input made into items with
ids (as ``input_items`` lists them and a stored response keeps them), and the whole context turned into a chat
completions request for our inference service, which does the work: the chat template, images, tools and their
grammars (``strict``), structured output, reasoning.

Items: messages (a string or ``input_text`` / ``input_image`` / ``input_file`` parts, files read by
``file_inputs.py``; an assistant's ``output_text``),
``function_call``, ``function_call_output`` (its ``call_id`` must name a call before it), ``reasoning`` (kept in
the history, not shown to the model again, as OpenAI and vLLM drop earlier reasoning), ``file_search_call`` (a
search this hub ran, sent back), ``compaction`` (a summary ``POST /responses/compact`` made), the ``mcp`` tool's
``mcp_list_tools``, ``mcp_call``, ``mcp_approval_request`` and ``mcp_approval_response`` (its ``approval_request_id``
must name a request before it) and ``item_reference`` (an item of the stored conversation, or of any stored
response of the tenant: a client sending the whole conversation each turn names the items the hub made by id).
Of the built-in tools the hub runs ``file_search`` over its vector stores (``hub/api/file_search.py``) and ``mcp``, a
remote MCP server's tools (``hub/api/mcp_tools.py``); the others (web search, computer use, code interpreter...) are
refused by name.
"""

from __future__ import annotations

import json
from typing import Any

from accounts.conversations import MAX_ITEM_ID
from hub.api import file_inputs, mcp_items, mcp_tools
from hub.api.ids import new_id
from hub.api.validation import (
    MAX_MESSAGES,
    MAX_STRING_CHARS,
    MAX_TOOLS,
    MAX_USER_CHARS,
    _array,
    _bool,
    _choice,
    _number,
    _object,
    _string,
    check_metadata,
    missing,
    refuse,
    wrong_type,
)
from hub.vector_stores import filters
from hub.vector_stores.search import hybrid_of

ITEM_TYPES = ("message", "function_call", "function_call_output", "reasoning", "file_search_call", "compaction",
              "mcp_list_tools", "mcp_call", "mcp_approval_request", "mcp_approval_response",
              "item_reference")  # fmt: skip
FILE_SEARCH = "file_search"  # the built-in tool the hub runs, and the function name the model calls it by
MAX_SEARCH_RESULTS = 50
ROLES = ("user", "assistant", "system", "developer")
BUILT_IN_TOOLS = {
    "web_search": "web search", "web_search_preview": "web search", "web_search_2025_08_26": "web search",
    "web_search_preview_2025_03_11": "web search", "computer_use_preview": "computer use",
    "computer": "computer use", "code_interpreter": "code interpreter", "image_generation": "image generation",
    "local_shell": "local shell", "shell": "shell", "apply_patch": "apply patch",
    "custom": "custom tools",
}  # fmt: skip
EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")


def _file_search_tool(tool: dict, param: str) -> None:
    ids = _array(tool.get("vector_store_ids"), f"{param}.vector_store_ids", 10)
    for j, store_id in enumerate(ids):
        _string(store_id, f"{param}.vector_store_ids[{j}]", limit=MAX_USER_CHARS, empty=False)
    _number(tool.get("max_num_results"), f"{param}.max_num_results", True, 1, MAX_SEARCH_RESULTS)
    if tool.get("filters") is not None:
        filters.check(tool["filters"], f"{param}.filters")
    options = tool.get("ranking_options")
    if options is not None:
        _number(_object(options, f"{param}.ranking_options").get("score_threshold"),
                f"{param}.ranking_options.score_threshold", False, 0, 1)  # fmt: skip
        hybrid_of(options, f"{param}.ranking_options")


def _type(value: Any, param: str, default: str | None = None) -> str | None:
    """An object's ``type`` (``default`` when it has none), a string or None: what names a tool, a tool choice, an
    item or a part is looked up by, and an object is no key."""
    kind = _object(value, param).get("type", default)
    if kind is not None and not isinstance(kind, str):
        raise wrong_type(f"{param}.type", "a string", kind)
    return kind


def _tool(tool: Any, param: str) -> None:
    kind = _type(tool, param)
    if kind == FILE_SEARCH:
        return _file_search_tool(tool, param)
    if kind == mcp_tools.MCP:
        return mcp_tools.check_tool(tool, param)
    if kind in BUILT_IN_TOOLS:
        raise refuse(f"{param}.type", f"The built-in tool '{kind}' ({BUILT_IN_TOOLS[kind]}) is not supported by this "
                     "hub: function tools ({'type': 'function', ...}), file_search and mcp are.",
                     "unsupported_tool")  # fmt: skip
    if kind != "function":
        raise refuse(f"{param}.type", f"Invalid value for '{param}.type': {errors_shown(kind)}. Supported values are: "
                     "'function', 'file_search' and 'mcp'.")  # fmt: skip
    _string(tool.get("name"), f"{param}.name", limit=64, empty=False)
    if tool.get("description") is not None:
        _string(tool["description"], f"{param}.description")
    if tool.get("parameters") is not None:
        _object(tool["parameters"], f"{param}.parameters")
    _bool(tool, "strict", f"{param}.strict")


def _mcp_choice(choice: dict, labels: set[str], param: str) -> None:
    """``{"type": "mcp", "server_label", "name"}``: a server of the request's (its tool ``name`` is checked once the
    server's tools are listed)."""
    label = choice.get("server_label")
    if label is None:
        raise missing(f"{param}.server_label")
    if label not in labels:
        raise refuse(f"{param}.server_label", f"Tool choice 'mcp' names the server '{errors_shown(label)}', which no "
                     "mcp tool in 'tools' has.")  # fmt: skip
    if choice.get("name") is not None:
        _string(choice["name"], f"{param}.name", limit=256)


def _tool_choice(choice: Any, names: set[str], file_search: bool, labels: set[str]) -> None:
    if choice is None or choice in ("auto", "none", "required"):
        return
    if isinstance(choice, dict) and choice.get("type") == FILE_SEARCH:
        if not file_search:
            raise refuse("tool_choice", "Tool choice 'file_search' needs a file_search tool in 'tools'.")
        return
    if isinstance(choice, dict) and choice.get("type") == mcp_tools.MCP:
        return _mcp_choice(choice, labels, "tool_choice")
    if isinstance(choice, str):
        return _choice(choice, "tool_choice", ("auto", "none", "required"))
    kind = _type(choice, "tool_choice")
    if kind is None:  # an object names its kind: OpenAI answers a missing one with a 400 too
        raise missing("tool_choice.type")
    if kind in BUILT_IN_TOOLS:
        message = f"The built-in tool '{kind}' is not supported by this hub."
        raise refuse("tool_choice.type", message, "unsupported_tool")
    if kind == "function":
        if choice.get("name") not in names:
            raise refuse("tool_choice.name", f"Tool choice '{errors_shown(choice.get('name'))}' not found in 'tools'.")
    elif kind == "allowed_tools":
        _choice(choice.get("mode"), "tool_choice.mode", ("auto", "required"))
        for i, tool in enumerate(_array(choice.get("tools"), "tool_choice.tools", MAX_TOOLS)):
            if _object(tool, f"tool_choice.tools[{i}]").get("type") == FILE_SEARCH and file_search:
                continue
            if tool.get("type") == mcp_tools.MCP:
                _mcp_choice(tool, labels, f"tool_choice.tools[{i}]")
                continue
            if tool.get("name") not in names:
                message = f"Tool '{errors_shown(tool.get('name'))}' not found in 'tools'."
                raise refuse(f"tool_choice.tools[{i}]", message)
    else:
        _choice(kind, "tool_choice.type", ("function", "allowed_tools"))


def errors_shown(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)[:40]


def _text_format(text: Any) -> None:
    _choice(_object(text, "text").get("verbosity"), "text.verbosity", ("low", "medium", "high"))  # echoed back
    fmt = text.get("format")
    if fmt is None:
        return
    kind = _object(fmt, "text.format").get("type")
    _choice(kind, "text.format.type", ("text", "json_object", "json_schema"))
    if kind is None:
        raise missing("text.format.type")
    if kind == "json_schema":
        _string(fmt.get("name"), "text.format.name", limit=64, empty=False)
        if fmt.get("schema") is None:
            raise missing("text.format.schema")
        _object(fmt["schema"], "text.format.schema")
        _bool(fmt, "strict", "text.format.strict")


def conversation_id(body: dict) -> str | None:
    """``conversation``: a conversation's id, or ``{"id": ...}``."""
    value = body.get("conversation")
    if value is None:
        return None
    if isinstance(value, dict):
        if value.get("id") is None:
            raise missing("conversation.id")
        _string(value["id"], "conversation.id", limit=MAX_USER_CHARS, empty=False)
        return value["id"]
    if not isinstance(value, str):
        raise wrong_type("conversation", "a string or an object with an 'id'", value)
    _string(value, "conversation", limit=MAX_USER_CHARS, empty=False)
    return value


def check_create(body: dict) -> None:
    """The create request's fields (``input``'s items are checked as they are read, by ``read_input``)."""
    if body.get("prompt") is not None:  # before input: a request made for a stored prompt may have none
        raise refuse("prompt", "Reusable prompts ('prompt') are not supported by this hub: send the input.",
                     "unsupported_parameter")  # fmt: skip
    if body.get("input") is None:
        raise missing("input")
    if not isinstance(body["input"], (str, list)):
        raise wrong_type("input", "a string or an array of input items", body["input"])
    if body.get("instructions") is not None:
        _string(body["instructions"], "instructions")
    _number(body.get("max_output_tokens"), "max_output_tokens", True, 1, None)
    _number(body.get("temperature"), "temperature", False, 0, 2)
    _number(body.get("top_p"), "top_p", False, 0, 1)
    _number(body.get("top_logprobs"), "top_logprobs", True, 0, 20)
    _number(body.get("max_tool_calls"), "max_tool_calls", True, 1, None)
    for name in ("stream", "store", "parallel_tool_calls", "background"):
        _bool(body, name)
    if body.get("background") is True and body.get("store") is False:
        raise refuse("background", "A background response is stored: 'background' needs 'store' true.",
                     "invalid_request")  # fmt: skip
    if body.get("previous_response_id") is not None:
        _string(body["previous_response_id"], "previous_response_id", limit=MAX_USER_CHARS, empty=False)
    if conversation_id(body) is not None and body.get("previous_response_id") is not None:
        raise refuse("conversation", "'conversation' and 'previous_response_id' cannot be used together: a "
                     "response continues one or the other.", "invalid_request")  # fmt: skip
    check_metadata(body.get("metadata"))
    for name in ("user", "safety_identifier", "prompt_cache_key"):
        if body.get(name) is not None:
            _string(body[name], name, limit=MAX_USER_CHARS)
    _choice(body.get("truncation"), "truncation", ("auto", "disabled"))
    if body.get("include") is not None and not (
        isinstance(body["include"], list) and all(isinstance(v, str) for v in body["include"])
    ):
        raise wrong_type("include", "an array of strings", body["include"])
    if body.get("reasoning") is not None:
        _choice(_object(body["reasoning"], "reasoning").get("effort"), "reasoning.effort", EFFORTS)
    if body.get("text") is not None:
        _text_format(body["text"])
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise wrong_type("tools", "an array", tools)
        if len(tools) > MAX_TOOLS:
            raise refuse("tools", f"Invalid 'tools': at most {MAX_TOOLS} tools.", "array_above_max_length")
        for i, tool in enumerate(tools):
            _tool(tool, f"tools[{i}]")
    functions = [t for t in tools or [] if t.get("type") == "function"]
    searches = len([t for t in tools or [] if t.get("type") == FILE_SEARCH])
    mcps = [t for t in tools or [] if t.get("type") == mcp_tools.MCP]
    if searches > 1:
        raise refuse("tools", "At most one file_search tool per request.")
    if searches and FILE_SEARCH in {t["name"] for t in functions}:
        raise refuse("tools", "A function named 'file_search' cannot be given beside the file_search tool.")
    mcp_tools.check_tools(mcps)
    _tool_choice(body.get("tool_choice"), {t["name"] for t in functions}, bool(searches),
                 {t["server_label"] for t in mcps})  # fmt: skip


# --- input items -------------------------------------------------------------------------------------------------


def _part(part: Any, param: str, role: str) -> dict:
    kind = _type(part, param)
    if kind in ("input_text", "output_text", "text"):
        _string(part.get("text"), f"{param}.text")
        if role == "assistant":
            return {"type": "output_text", "text": part["text"], "annotations": part.get("annotations") or [],
                    "logprobs": part.get("logprobs") or []}  # fmt: skip
        return {"type": "input_text", "text": part["text"]}
    if kind == "refusal":
        _string(part.get("refusal"), f"{param}.refusal")
        return {"type": "refusal", "refusal": part["refusal"]}
    if kind == "input_image":
        _choice(part.get("detail"), f"{param}.detail", ("auto", "low", "high"))
        if part.get("image_url") is None:
            if part.get("file_id") is None:
                raise missing(f"{param}.image_url")
            _string(part["file_id"], f"{param}.file_id", empty=False)  # read by the gateway (file_inputs.py)
            return {"type": "input_image", "image_url": None, "file_id": part["file_id"],
                    "detail": part.get("detail") or "auto"}  # fmt: skip
        _string(part["image_url"], f"{param}.image_url", limit=None, empty=False)
        return {"type": "input_image", "image_url": part["image_url"], "detail": part.get("detail") or "auto"}
    if kind == "input_file":  # read by the gateway (hub/api/file_inputs.py)
        return _file(part, param)
    if kind == "input_audio":
        raise refuse(f"{param}.type", f"'{kind}' content is not supported by this hub.", "unsupported_value")
    if kind is None:
        raise missing(f"{param}.type")
    raise refuse(f"{param}.type", f"Invalid value for '{param}.type': {errors_shown(kind)}. Supported values are: "
                 "'input_text', 'input_image', 'input_file', 'output_text' and 'refusal'.")  # fmt: skip


def _file(part: dict, param: str) -> dict:
    """An ``input_file``: one of ``file_id``, ``file_data`` (base64) or ``file_url``, and maybe its ``filename``."""
    found = {"type": "input_file"}
    for name in file_inputs.FILE_FIELDS:
        if part.get(name) is not None:
            _string(part[name], f"{param}.{name}", limit=None if name == "file_data" else MAX_STRING_CHARS,
                    empty=False)  # fmt: skip
            found[name] = part[name]
    sources = [name for name in ("file_id", "file_data", "file_url") if name in found]
    if not sources:
        raise refuse(param, f"'{param}' needs one of 'file_id', 'file_data' or 'file_url'.",
                     "missing_required_parameter")  # fmt: skip
    if len(sources) > 1:
        raise refuse(param, f"'{param}' takes one of 'file_id', 'file_data' or 'file_url', not "
                     f"{' and '.join(map(repr, sources))}.")  # fmt: skip
    if part.get("detail") is not None:  # how a vision model gets a PDF's pages (file_inputs.PAGE_PIXELS)
        _choice(part["detail"], f"{param}.detail", ("auto", "low", "high"))
        found["detail"] = part["detail"]
    return found


def _message(item: dict, param: str) -> dict:
    role = item.get("role")
    if role is None:
        raise missing(f"{param}.role")
    _choice(role, f"{param}.role", ROLES)
    content = item.get("content")
    if isinstance(content, str):
        _string(content, f"{param}.content", limit=MAX_STRING_CHARS)
        kind = "output_text" if role == "assistant" else "input_text"
        parts = [
            {"type": kind, "text": content, **({"annotations": [], "logprobs": []} if role == "assistant" else {})}
        ]
    elif isinstance(content, list):
        parts = [_part(p, f"{param}.content[{j}]", role) for j, p in enumerate(content)]
    elif content is None:
        raise missing(f"{param}.content")
    else:
        raise wrong_type(f"{param}.content", "a string or an array of content parts", content)
    return {"id": item.get("id") or new_id("msg"), "type": "message", "role": role, "content": parts,
            "status": "completed"}  # fmt: skip


def _item(item: Any, param: str) -> dict:
    kind = _type(item, param, "message" if isinstance(item, dict) and "role" in item else None)
    if kind == "message":
        return _message(item, param)
    if kind == "function_call":
        for name in ("call_id", "name", "arguments"):
            _string(item.get(name), f"{param}.{name}", empty=name != "call_id")
        return {"id": item.get("id") or new_id("fc"), "type": kind, "call_id": item["call_id"], "name": item["name"],
                "arguments": item["arguments"], "status": "completed"}  # fmt: skip
    if kind == "function_call_output":
        _string(item.get("call_id"), f"{param}.call_id", empty=False)
        output = item.get("output")
        if isinstance(output, list):
            output = [_part(p, f"{param}.output[{j}]", "tool") for j, p in enumerate(output)]
        else:
            _string(output, f"{param}.output")
        return {"id": item.get("id") or new_id("fco"), "type": kind, "call_id": item["call_id"], "output": output,
                "status": "completed"}  # fmt: skip
    if kind == "reasoning":
        return {**item, "id": item.get("id") or new_id("rs"), "summary": item.get("summary") or []}
    if kind == "file_search_call":
        queries = _array(item.get("queries"), f"{param}.queries", None) if item.get("queries") else []
        for j, query in enumerate(queries):
            _string(query, f"{param}.queries[{j}]")
        results = item.get("results")
        if results is not None:
            for j, result in enumerate(_array(results, f"{param}.results", MAX_SEARCH_RESULTS)):
                _string(_object(result, f"{param}.results[{j}]").get("text"), f"{param}.results[{j}].text")
        return {"id": item.get("id") or new_id("fs"), "type": kind, "status": item.get("status") or "completed",
                "queries": list(queries), "results": results}  # fmt: skip
    if kind in mcp_items.READERS:
        return mcp_items.READERS[kind](item, param)
    if kind == "compaction":  # POST /responses/compact's (compaction_items.py reads it)
        _string(item.get("encrypted_content"), f"{param}.encrypted_content", limit=None, empty=False)
        return {"id": item.get("id") or new_id("cmp"), "type": kind, "encrypted_content": item["encrypted_content"]}
    if kind == "item_reference":
        _string(item.get("id"), f"{param}.id", empty=False)
        return {"type": kind, "id": item["id"]}
    if kind is None:
        raise missing(f"{param}.type")
    raise refuse(f"{param}.type", f"Invalid value for '{param}.type': {errors_shown(kind)}. Supported item types "
                 f"are: {', '.join(map(repr, ITEM_TYPES))}.", "unsupported_value")  # fmt: skip


def read_input(body: dict, history: list[dict], stored: dict[str, dict] | None = None) -> list[dict]:
    """This request's input as items with ids (see ``read_items``)."""
    raw = body["input"]
    if isinstance(raw, str):
        return [{"id": new_id("msg"), "type": "message", "role": "user",
                 "content": [{"type": "input_text", "text": raw}], "status": "completed"}]  # fmt: skip
    raw = _array(raw, "input", MAX_MESSAGES, "a string or an array of input items")
    return read_items(raw, history, "input", stored)


def references(raw: object, history: list[dict]) -> set[str]:
    """The ids that the ``item_reference`` items of ``raw`` (``input``, or a conversation's new ``items``) name
    beyond ``history``: looked up among the tenant's stored responses before the items are read (``read_items``'
    ``stored``)."""
    entries = raw if isinstance(raw, list) else []
    named = {e["id"] for e in entries if isinstance(e, dict) and e.get("type") == "item_reference"
             and isinstance(e.get("id"), str)}  # fmt: skip
    return named - {item.get("id") for item in history}


def read_items(raw: list, history: list[dict], name: str, stored: dict[str, dict] | None = None) -> list[dict]:
    """Items with ids (``name``: the field they came in, for errors). ``item_reference`` resolves against
    ``history`` (the stored conversation), the items before it and ``stored`` (items of the tenant's stored
    responses by id, as OpenAI resolves a reference to any stored item); a ``function_call_output`` must answer a
    call made before it. An id given is at most MAX_ITEM_ID characters, without NUL (a conversation's column)."""
    items: list[dict] = []
    known = {**(stored or {}), **{i.get("id"): i for i in history if i.get("id")}}
    calls = {i["call_id"] for i in history if i.get("type") == "function_call"}
    for n, entry in enumerate(raw):
        item = _item(entry, f"{name}[{n}]")
        if not isinstance(item["id"], str) or len(item["id"]) > MAX_ITEM_ID or "\x00" in item["id"]:
            raise refuse(f"{name}[{n}].id", f"Invalid '{name}[{n}].id': a string of at most {MAX_ITEM_ID} "
                         "characters, without NUL.")  # fmt: skip
        if item["type"] == "item_reference":
            if item["id"] not in known:
                raise refuse(f"{name}[{n}].id", f"Item with id '{errors_shown(item['id'])}' not found.")
            item = known[item["id"]]
        if item["type"] == "function_call":
            calls.add(item["call_id"])
        elif item["type"] == "function_call_output" and item["call_id"] not in calls:
            raise refuse(name, f"No tool call found for function call output with call_id "
                         f"{errors_shown(item['call_id'])}.")  # fmt: skip
        elif item["type"] == "mcp_approval_response":
            request = known.get(item["approval_request_id"])
            if request is None or request.get("type") != "mcp_approval_request":
                raise refuse(f"{name}[{n}].approval_request_id", f"No MCP approval request found with id "
                             f"'{errors_shown(item['approval_request_id'])}'.")  # fmt: skip
        known[item["id"]] = item
        items.append(item)
    return items
