"""The ``mcp`` tool's items (``mcp_tools.py``): read from a request's input, and shown to the model as the chat
messages of its context (``responses_chat.py``).

``mcp_list_tools`` gives the model nothing to read (its tools become functions); an ``mcp_call`` is the model's call
and the tool's output (or error); an ``mcp_approval_request`` declined (by an ``mcp_approval_response`` in the
context with ``approve: false``) is the call and the news that it was declined. One approved is shown by the
``mcp_call`` that ran it, and one not answered yet is not shown.
"""

from __future__ import annotations

from hub.api.ids import new_id
from hub.api.validation import _bool, _object, _string, missing, wrong_type


def _mcp_list_tools(item: dict, param: str) -> dict:
    _string(item.get("server_label"), f"{param}.server_label", limit=64)
    tools = item.get("tools") or []
    if not isinstance(tools, list):
        raise wrong_type(f"{param}.tools", "an array", tools)
    for j, tool in enumerate(tools):
        _string(_object(tool, f"{param}.tools[{j}]").get("name"), f"{param}.tools[{j}].name", limit=256)
        _object(tool.get("input_schema") or {}, f"{param}.tools[{j}].input_schema")
    kept = [{"name": t["name"], "description": t.get("description"), "input_schema": t.get("input_schema") or {},
             "annotations": t.get("annotations")} for t in tools]  # fmt: skip
    return {"id": item.get("id") or new_id("mcpl"), "type": "mcp_list_tools", "server_label": item["server_label"],
            "tools": kept, "error": item.get("error")}  # fmt: skip


def _mcp_call(item: dict, param: str) -> dict:
    for name in ("server_label", "name", "arguments"):
        _string(item.get(name), f"{param}.{name}")
    if item.get("output") is not None:
        _string(item["output"], f"{param}.output")
    return {"id": item.get("id") or new_id("mcp"), "type": "mcp_call", "server_label": item["server_label"],
            "name": item["name"], "arguments": item["arguments"], "output": item.get("output"),
            "error": item.get("error"), "status": item.get("status") or "completed",
            "approval_request_id": item.get("approval_request_id")}  # fmt: skip


def _mcp_approval_request(item: dict, param: str) -> dict:
    for name in ("server_label", "name", "arguments"):
        _string(item.get(name), f"{param}.{name}")
    return {"id": item.get("id") or new_id("mcpr"), "type": "mcp_approval_request",
            "server_label": item["server_label"], "name": item["name"], "arguments": item["arguments"]}  # fmt: skip


def _mcp_approval_response(item: dict, param: str) -> dict:
    _string(item.get("approval_request_id"), f"{param}.approval_request_id", empty=False)
    if item.get("approve") is None:
        raise missing(f"{param}.approve")
    _bool(item, "approve", f"{param}.approve")
    if item.get("reason") is not None:
        _string(item["reason"], f"{param}.reason")
    return {"id": item.get("id") or new_id("mcpa"), "type": "mcp_approval_response",
            "approval_request_id": item["approval_request_id"], "approve": item["approve"],
            "reason": item.get("reason")}  # fmt: skip


READERS = {"mcp_list_tools": _mcp_list_tools, "mcp_call": _mcp_call, "mcp_approval_request": _mcp_approval_request,
             "mcp_approval_response": _mcp_approval_response}  # fmt: skip


def said(call_id: str, name: str, arguments: str, output: str) -> list[dict]:
    """A call of the function ``name`` and what it answered, as the model reads them."""
    call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
    return [{"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": call_id, "content": output}]  # fmt: skip


def call_output(output: str | None, error) -> str:
    """What the model reads of an ``mcp_call``: its output, or its error."""
    return (output or "") if error is None else _error_text(error)


def _error_text(error) -> str:
    """An ``mcp_call``'s error as the model reads it."""
    if isinstance(error, dict):
        if error.get("type") == "mcp_tool_execution_error":
            parts = error.get("content") or []
            said = "\n".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in parts)
            return f"The tool failed: {said}"
        return f"The tool could not be called: {error.get('message')}"
    return f"The tool failed: {error}"


def messages(item: dict, context: list[dict]) -> list[dict]:
    """The chat messages an MCP item of ``context`` is to the model."""
    kind = item["type"]
    if kind == "mcp_call":
        return said("call_" + item["id"], item["name"], item["arguments"],
                    call_output(item["output"], item.get("error")))  # fmt: skip
    if kind == "mcp_approval_request":
        answer = next((i for i in context if i.get("type") == "mcp_approval_response"
                       and i.get("approval_request_id") == item["id"]), None)  # fmt: skip
        if answer is None or answer["approve"]:
            return []
        declined = "The user declined this call" + (f": {answer['reason']}" if answer.get("reason") else ".")
        return said("call_" + item["id"], item["name"], item["arguments"], declined)
    return []
