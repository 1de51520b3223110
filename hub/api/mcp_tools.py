"""The Responses API's ``mcp`` tool: a remote MCP server's tools given to the model, called by the hub
(``mcp_client.py``), as OpenAI's remote MCP tool.

A request's ``mcp`` tools are checked here (``check_tool``); the relay (``responses_relay.py``) then, before the model
first runs (``prepare``): lists each server's tools, unless the context holds an ``mcp_list_tools`` item of its label
already (as OpenAI's: send it back, or continue with ``previous_response_id``, and it is not listed again), showing
each list as an ``mcp_list_tools`` item; gives the model the tools ``allowed_tools`` lets through, as functions; and
runs the calls this input approved (``mcp_approval_response`` with ``approve: true``). A call of the model's is run at
once, shown as an ``mcp_call`` item, and the model answers again with its output; or, where ``require_approval``
asks for it (OpenAI's default: ``always``), it is shown as an ``mcp_approval_request`` and the response ends, for the
client to approve or decline in the next. A call declined is told to the model as declined, never run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from hub.api import mcp_client, mcp_items, responses_chat
from hub.api.ids import new_id
from hub.api.mcp_client import McpFailed, McpServer
from hub.api.validation import _bool, _object, _string, missing, refuse
from hub.webhooks import addresses

MCP = "mcp"
LABEL = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
FUNCTION_NAME = re.compile(r"[^A-Za-z0-9_-]")
MAX_HEADERS = 32
CONNECTORS = ("connector_id", "tunnel_id")  # ChatGPT's connectors and OpenAI's tunnels: OpenAI's own services


def _filter(value: Any, param: str) -> None:
    """OpenAI's ``MCPToolFilter``: ``tool_names`` and ``read_only``."""
    for key in _object(value, param):
        if key not in ("tool_names", "read_only"):
            raise refuse(f"{param}.{key}", f"Unknown parameter: '{param}.{key}'.", "unknown_parameter")
    if value.get("tool_names") is not None:
        if not isinstance(value["tool_names"], list):
            raise refuse(f"{param}.tool_names", f"Invalid '{param}.tool_names': an array of tool names.")
        for i, name in enumerate(value["tool_names"]):
            _string(name, f"{param}.tool_names[{i}]", limit=256)
    _bool(value, "read_only", f"{param}.read_only")


def _header_safe(text: str) -> bool:
    """Whether ``text`` can go in an HTTP header as is: printable ASCII, spaces and tabs (no CR, LF or NUL)."""
    return all(" " <= c <= "~" or c == "\t" for c in text)


def check_tool(tool: dict, param: str) -> None:
    """An ``mcp`` tool of the request, in OpenAI's words."""
    label = tool.get("server_label")
    if label is None:
        raise missing(f"{param}.server_label")
    _string(label, f"{param}.server_label", limit=64)
    if not LABEL.match(label):
        raise refuse(f"{param}.server_label", f"Invalid '{param}.server_label': it must start with a letter and "
                      "hold only letters, digits, '-' and '_' (at most 64).")  # fmt: skip
    for name in CONNECTORS:
        if tool.get(name) is not None:
            raise refuse(f"{param}.{name}", f"'{name}' names OpenAI's own services, which this hub cannot reach: "
                          "give 'server_url'.", "unsupported_value")  # fmt: skip
    if tool.get("server_url") is None:
        raise missing(f"{param}.server_url")
    _string(tool["server_url"], f"{param}.server_url", limit=2048, empty=False)
    problem = addresses.url_problem(tool["server_url"], f"{param}.server_url", mcp_client.ALLOW_SETTING)
    if problem:
        raise refuse(f"{param}.server_url", problem)
    for name in ("authorization", "server_description"):
        if tool.get(name) is not None:
            _string(tool[name], f"{param}.{name}", limit=8192)
    if tool.get("authorization") is not None and not _header_safe(tool["authorization"]):
        raise refuse(f"{param}.authorization", f"Invalid '{param}.authorization': printable ASCII only (it is sent "
                     "in an HTTP header).")  # fmt: skip
    headers = tool.get("headers")
    if headers is not None:
        if len(_object(headers, f"{param}.headers")) > MAX_HEADERS:
            raise refuse(f"{param}.headers", f"Invalid '{param}.headers': at most {MAX_HEADERS} headers.")
        for key, value in headers.items():
            _string(value, f"{param}.headers.{key}", limit=8192)
            if not key or ":" in key or " " in key or not _header_safe(key + value):
                raise refuse(f"{param}.headers", f"Invalid header '{key[:40]}' in '{param}.headers': printable "
                             "ASCII only.")  # fmt: skip
    allowed = tool.get("allowed_tools")
    if isinstance(allowed, list):
        for i, name in enumerate(allowed):
            _string(name, f"{param}.allowed_tools[{i}]", limit=256)
    elif allowed is not None:
        _filter(allowed, f"{param}.allowed_tools")
    policy = tool.get("require_approval")
    if isinstance(policy, dict):
        for key in policy:
            if key not in ("always", "never"):
                raise refuse(f"{param}.require_approval.{key}", f"Unknown parameter: "
                              f"'{param}.require_approval.{key}'.", "unknown_parameter")  # fmt: skip
            _filter(policy[key], f"{param}.require_approval.{key}")
    elif policy not in (None, "always", "never"):
        raise refuse(f"{param}.require_approval", f"Invalid value for '{param}.require_approval': supported "
                      "values are 'always', 'never' and an object of 'always' and 'never' filters.")  # fmt: skip


def check_tools(mcps: list[dict]) -> None:
    labels = [t["server_label"] for t in mcps]
    if len(set(labels)) != len(labels):
        raise refuse("tools", "Each mcp tool needs a server_label of its own.")


def _matches(rule: dict, tool: dict) -> bool:
    """Whether ``tool`` (as listed) passes the filter ``rule``: every criterion given holds."""
    names, read_only = rule.get("tool_names"), rule.get("read_only")
    if names is not None and tool["name"] not in names:
        return False
    return read_only is None or ((tool.get("annotations") or {}).get("readOnlyHint") is True) == read_only


def allowed(config: dict, tool: dict) -> bool:
    rule = config.get("allowed_tools")
    if rule is None:
        return True
    return tool["name"] in rule if isinstance(rule, list) else _matches(rule, tool)


def needs_approval(config: dict, tool: dict) -> bool:
    """OpenAI's ``require_approval``: ``always`` unless said otherwise; with filters, ``never`` first."""
    policy = config.get("require_approval")
    if policy in (None, "always"):
        return True
    if policy == "never":
        return False
    if "never" in policy and _matches(policy["never"], tool):
        return False
    return True


def server_of(config: dict) -> McpServer:
    headers = dict(config.get("headers") or {})
    if config.get("authorization"):
        headers["Authorization"] = f"Bearer {config['authorization']}"
    return McpServer(config["server_label"], config["server_url"], headers)


@dataclass
class McpPlan:
    """A request's mcp tools: ``configs`` by label; ``listed``: the context's ``mcp_list_tools`` item of each label
    (the newest without an error); ``approved``: the approval requests this input approved that no ``mcp_call`` of
    the context answers yet; ``taken``: the function names the request's other tools use."""

    configs: dict[str, dict]
    listed: dict[str, dict]
    approved: list[dict]
    taken: set[str]
    new_lists: list[dict] = field(default_factory=list)  # listed for this response: its first output items
    functions: dict[str, tuple[str, dict]] = field(default_factory=dict)  # the model's name -> (label, tool)
    ran: list[tuple] = field(default_factory=list)  # the approved calls run: (request, output, error)
    ready: bool = False

    async def list_missing(self) -> None:
        """The servers whose tools the context does not hold, listed now; each list an ``mcp_list_tools`` item."""
        for label, config in self.configs.items():
            if label in self.listed:
                continue
            item = {"id": new_id("mcpl"), "type": "mcp_list_tools", "server_label": label, "tools": [], "error": None}
            try:
                item["tools"] = await mcp_client.list_tools(server_of(config))
            except McpFailed as failed:
                item["error"] = str(failed)
            self.new_lists.append(item)
            if item["error"] is None:
                self.listed[label] = item

    def chat_functions(self, labels: set[str] | None = None) -> list[dict]:
        """The tools the servers (``labels``: those only) let the model call, as chat functions; each named by its
        tool's name, or ``<label>_<name>`` where that is taken (another server's, the client's)."""
        out = []
        for label, item in self.listed.items():
            if labels is not None and label not in labels:
                continue
            for tool in item["tools"]:
                if not allowed(self.configs[label], tool):
                    continue
                name = FUNCTION_NAME.sub("_", tool["name"])[:64]
                if name in self.taken or name in self.functions:
                    name = FUNCTION_NAME.sub("_", f"{label}_{tool['name']}")[:64]
                self.functions[name] = (label, tool)
                schema = tool.get("input_schema") or {"type": "object", "properties": {}}
                function = {"name": name, "parameters": schema, "strict": False}
                if tool.get("description"):
                    function["description"] = tool["description"]
                out.append({"type": "function", "function": function})
        return out

    def function_of(self, label: str, name: str) -> str | None:
        return next((f for f, (lab, tool) in self.functions.items() if lab == label and tool["name"] == name), None)


def plan(body: dict, context: list[dict], items: list[dict]) -> McpPlan | None:
    """The request's mcp tools (None without any); ``context``: the stored conversation and this input."""
    configs = {t["server_label"]: t for t in body.get("tools") or [] if t.get("type") == MCP}
    approvals = [(n, i) for n, i in enumerate(items) if i.get("type") == "mcp_approval_response" and i["approve"]]
    if not configs and not approvals:  # most requests: the context is not read
        return None
    requests = {i["id"]: i for i in context if i.get("type") == "mcp_approval_request"}
    answered = {i.get("approval_request_id") for i in context if i.get("type") == "mcp_call"}
    approved = []
    for n, item in approvals:
        request = requests[item["approval_request_id"]]  # read_items checked that it is in the context
        if request["server_label"] not in configs:
            raise refuse(f"input[{n}]", f"The approved call of '{request['name']}' is on the MCP server "
                         f"'{request['server_label']}', which no mcp tool of this request names.")  # fmt: skip
        if request["id"] not in answered:
            answered.add(request["id"])
            approved.append(request)
    listed = {}
    for item in context:
        if item.get("type") == "mcp_list_tools" and item.get("server_label") in configs and not item.get("error"):
            listed[item["server_label"]] = item
    taken = {t["name"] for t in body.get("tools") or [] if t.get("type") == "function"} | {"file_search"}
    return McpPlan(configs, listed, approved, taken)


async def call(config: dict, name: str, arguments: str) -> tuple[str | None, dict | None]:
    """The tool ``name`` of ``config``'s server called: (its output, None) or (None, the error)."""
    try:
        return await mcp_client.call_tool(server_of(config), name, arguments), None
    except McpFailed as failed:
        return None, failed.error


def _choice(mcp: McpPlan, choice: dict) -> str | dict:
    """``tool_choice: {"type": "mcp", ...}`` in chat's terms: the named tool's function, or any tool."""
    if choice.get("name") is None:
        return "required"
    function = mcp.function_of(choice["server_label"], choice["name"])
    if function is None:
        raise refuse("tool_choice.name", f"Tool choice '{choice['name'][:64]}' is not a tool the MCP server "
                      f"'{choice['server_label']}' lets the model call.")  # fmt: skip
    return {"type": "function", "function": {"name": function}}


async def prepare(mcp: McpPlan, body: dict, chat: dict, run: bool = True) -> None:
    """Before the model first runs, once: the servers' tools listed where the context lacks them, given to the
    model as functions in ``chat`` (the chat request), and (``run``) the calls this input approved run, their
    outputs added to ``chat``'s messages."""
    if mcp.ready:
        return
    await mcp.list_missing()
    choice = body.get("tool_choice")
    labels = None
    if isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        labels = {t["server_label"] for t in choice["tools"] if t.get("type") == MCP}
    functions = mcp.chat_functions(labels)
    if functions:
        chat["tools"] = [*chat.get("tools", []), *functions]
        responses_chat.parallel_calls(body, chat)
        if labels is not None:
            chat["tool_choice"] = choice.get("mode") or "auto"
        elif isinstance(choice, str):  # chat_body leaves it out where the request had no other tools
            chat["tool_choice"] = choice
    if isinstance(choice, dict) and choice.get("type") == MCP:
        chat["tool_choice"] = _choice(mcp, choice)
    for request in mcp.approved if run else []:
        output, error = await call(mcp.configs[request["server_label"]], request["name"], request["arguments"])
        mcp.ran.append((request, output, error))
        function = mcp.function_of(request["server_label"], request["name"]) or request["name"]
        shown = mcp_items.said("call_" + request["id"], function, request["arguments"],
                               mcp_items.call_output(output, error))  # fmt: skip
        chat["messages"] = [*chat["messages"], *shown]
    if mcp.ran:
        if chat.get("tool_choice") not in (None, "auto", "none"):  # the call asked for was made: now free
            chat["tool_choice"] = "auto"
        if body.get("max_tool_calls") is not None and len(mcp.ran) >= body["max_tool_calls"]:
            chat["tool_choice"] = "none"  # they were this response's calls of the hub's tools: no more
    mcp.ready = True
