"""The OpenAPI schemas of the Responses API's ``mcp`` tool (``hub/api/mcp_tools.py``): the tool, its items and its
tool choice, as ``openapi_responses.py`` uses them."""

from __future__ import annotations

from hub.api.openapi_schemas import _BOOL, _INT, _NULLABLE_STR, _STR, _obj

_NULL = {"type": "null"}
_FILTER = _obj(
    {"tool_names": {"type": "array", "items": _STR}, "read_only": {**_BOOL, "description": "Tools annotated (or not) "
                                                                   "with MCP's `readOnlyHint`."}},
    description="Tools by name and by `read_only`; every criterion given must hold.",
)  # fmt: skip
_ALLOWED = {"oneOf": [{"type": "array", "items": _STR}, _FILTER, _NULL]}

MCP_TOOL = _obj(
    {
        "type": {"const": "mcp"},
        "server_label": {**_STR, "pattern": "^[A-Za-z][A-Za-z0-9_-]{0,63}$", "description": "Unique per request."},
        "server_url": {
            **_STR,
            "format": "uri",
            "maxLength": 2048,
            "description": "An http(s) URL of a Streamable HTTP MCP server. A loopback, private or link-local address "
            "only where the operator allows it (`HUB_MCP_ALLOW_PRIVATE_URLS`).",
        },
        "authorization": {**_STR, "description": "Sent as `Authorization: Bearer ...`; never echoed."},
        "headers": {"type": ["object", "null"], "additionalProperties": _STR, "description": "Never echoed."},
        "server_description": _STR,
        "allowed_tools": {**_ALLOWED, "description": "The server's tools the model may call (default: all)."},
        "require_approval": {
            "oneOf": [{"enum": ["always", "never"]}, _obj({"always": _FILTER, "never": _FILTER}), _NULL],
            "default": "always",
            "description": "A call that needs approval ends the response as an `mcp_approval_request`; answer it "
            "with an `mcp_approval_response` input item.",
        },
    },
    ("type", "server_label", "server_url"),
    description="A remote MCP server's tools, listed by the hub (once per context: an `mcp_list_tools` item) and "
    "called by it when the model calls them (`mcp_call` items); on the hub's own deployments.",
)
MCP_TOOL_ECHO = _obj(
    {
        "type": {"const": "mcp"},
        "server_label": _STR,
        "server_url": _STR,
        "server_description": _STR,
        "allowed_tools": _ALLOWED,
        "headers": _NULL,
        "require_approval": {"oneOf": [{"enum": ["always", "never"]}, {"type": "object"}]},
    },
    ("type", "server_label"),
)
MCP_CHOICE = _obj(
    {"type": {"const": "mcp"}, "server_label": _STR, "name": _NULLABLE_STR},
    ("type", "server_label"),
    description="Call a tool of that server (`name`: that one).",
)
_LISTED_TOOL = _obj(
    {"name": _STR, "description": _NULLABLE_STR, "input_schema": {"type": "object"},
     "annotations": {"type": ["object", "null"]}},
    ("name", "input_schema"),
)  # fmt: skip
MCP_LIST_TOOLS = _obj(
    {
        "type": {"const": "mcp_list_tools"},
        "id": _STR,
        "server_label": _STR,
        "tools": {"type": "array", "items": _LISTED_TOOL},
        "error": {**_NULLABLE_STR, "description": "Why the server's tools could not be listed."},
    },
    ("type", "id", "server_label", "tools"),
    description="A server's tools as listed for the model.",
)
_ERROR = {
    "oneOf": [
        _obj({"type": {"const": "mcp_protocol_error"}, "code": _INT, "message": _STR}, ("type", "code", "message")),
        _obj({"type": {"const": "mcp_tool_execution_error"}, "content": {"type": "array"}}, ("type", "content")),
        _obj({"type": {"const": "http_error"}, "code": _INT, "message": _STR}, ("type", "code", "message")),
        _NULL,
    ]
}
MCP_CALL = _obj(
    {
        "type": {"const": "mcp_call"},
        "id": _STR,
        "server_label": _STR,
        "name": _STR,
        "arguments": _STR,
        "output": _NULLABLE_STR,
        "error": _ERROR,
        "status": {"enum": ["in_progress", "completed", "incomplete", "calling", "failed"]},
        "approval_request_id": _NULLABLE_STR,
    },
    ("type", "id", "server_label", "name", "arguments"),
    description="A call of a server's tool the hub made, with its output or error.",
)
MCP_APPROVAL_REQUEST = _obj(
    {"type": {"const": "mcp_approval_request"}, "id": _STR, "server_label": _STR, "name": _STR, "arguments": _STR},
    ("type", "id", "server_label", "name", "arguments"),
    description="A call the model made that waits for the client's approval.",
)
MCP_APPROVAL_RESPONSE = _obj(
    {"type": {"const": "mcp_approval_response"}, "id": _STR, "approval_request_id": _STR, "approve": _BOOL,
     "reason": _NULLABLE_STR},
    ("type", "approval_request_id", "approve"),
    description="The client's answer to an `mcp_approval_request` of the context: approved, the call runs before the "
    "model answers; declined, the model is told.",
)  # fmt: skip
