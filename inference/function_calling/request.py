"""``tools``, ``tool_choice``, ``parallel_tool_calls`` and ``response_format`` of a chat request, validated
with OpenAI's parameter names and messages."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from inference.errors import RequestError

_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
EMPTY_PARAMETERS: dict = {"type": "object", "properties": {}}


@dataclass
class Function:
    name: str
    description: str | None
    parameters: dict
    strict: bool
    param: str  # where it was in the request, for errors: "tools[0].function"

    def to_openai(self) -> dict:
        function: dict[str, Any] = {"name": self.name}
        if self.description:
            function["description"] = self.description
        function["parameters"] = self.parameters
        return {"type": "function", "function": function}


@dataclass
class ResponseFormat:
    type: str  # text | json_object | json_schema
    schema: dict | None = None
    strict: bool = False


@dataclass
class ToolRequest:
    tools: list[Function] = field(default_factory=list)
    choice: str = "none"  # none | auto | required | function (then ``function``)
    function: str | None = None  # the named tool of tool_choice {"type": "function", ...}
    only: frozenset[str] | None = None  # tool_choice {"type": "allowed_tools", ...}: the tools it may call
    parallel: bool = True
    response_format: ResponseFormat = field(default_factory=lambda: ResponseFormat("text"))

    @property
    def calls_tools(self) -> bool:
        return bool(self.tools) and self.choice != "none"

    @property
    def allowed(self) -> list[Function]:
        """The tools the answer may call."""
        if self.choice == "function":
            return [t for t in self.tools if t.name == self.function]
        if self.choice == "none":
            return []
        return self.tools if self.only is None else [t for t in self.tools if t.name in self.only]


def _error(message: str, param: str, code: str | None = "invalid_value") -> RequestError:
    return RequestError(message, param=param, code=code)


def check_schema(value: Any, param: str) -> dict:
    """``value`` if it is a valid JSON Schema (an object), else 400 naming ``param``."""
    if not isinstance(value, dict):
        raise _error(f"Invalid '{param}': expected an object (a JSON Schema).", param, "invalid_type")
    try:
        Draft202012Validator.check_schema(value)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.path)
        raise _error(f"Invalid schema for '{param}': {exc.message}" + (f" (at {where})" if where else ""), param)
    return value


def _function(tool: Any, i: int) -> Function:
    param = f"tools[{i}]"
    if not isinstance(tool, dict):
        raise _error(f"Invalid '{param}': expected an object.", param, "invalid_type")
    if tool.get("type") != "function":
        raise _error(f"Invalid value for '{param}.type': expected 'function'.", f"{param}.type")
    fn = tool.get("function")
    if not isinstance(fn, dict):
        raise _error(f"Missing required parameter: '{param}.function'.", f"{param}.function",
                     "missing_required_parameter")  # fmt: skip
    name = fn.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise _error(
            f"Invalid '{param}.function.name': string does not match pattern. Expected a string of 1 to 64 "
            "letters, digits, underscores or dashes.",
            f"{param}.function.name",
        )
    description = fn.get("description")
    if description is not None and not isinstance(description, str):
        raise _error(f"Invalid '{param}.function.description': expected a string.", f"{param}.function.description")
    parameters = fn.get("parameters")
    parameters = EMPTY_PARAMETERS if parameters is None else check_schema(parameters, f"{param}.function.parameters")
    strict = fn.get("strict") or False
    if not isinstance(strict, bool):
        raise _error(f"Invalid '{param}.function.strict': expected a boolean.", f"{param}.function.strict")
    return Function(name, description, parameters, strict, f"{param}.function")


def _choice(body: dict, request: ToolRequest) -> None:
    value = body.get("tool_choice")
    if value is None:
        request.choice = "auto" if request.tools else "none"
        return
    if not request.tools:
        raise _error("Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.",
                     "tool_choice")  # fmt: skip
    if value in ("none", "auto", "required"):
        request.choice = value
        return
    if isinstance(value, dict) and value.get("type") == "allowed_tools":
        return _allowed_tools(value.get("allowed_tools"), request)
    name = value.get("function", {}).get("name") if isinstance(value, dict) else None
    if not isinstance(value, dict) or value.get("type") != "function" or not isinstance(name, str):
        raise _error(
            "Invalid value for 'tool_choice': expected 'none', 'auto', 'required', "
            "{'type': 'function', 'function': {'name': ...}} or {'type': 'allowed_tools', 'allowed_tools': ...}.",
            "tool_choice",
        )
    if name not in {t.name for t in request.tools}:
        raise _error(f"Invalid value for 'tool_choice': no function named '{name}' is in 'tools'.", "tool_choice")
    request.choice, request.function = "function", name


def _allowed_tools(spec: Any, request: ToolRequest) -> None:
    """OpenAI's ``{"type": "allowed_tools", "allowed_tools": {"mode": "auto" | "required", "tools": [{"type":
    "function", "function": {"name": ...}}, ...]}}``: the answer may call only those; the prompt still shows every
    tool (what OpenAI keeps it for: the prompt, and so its cached prefix, stays the same whichever are allowed)."""
    param = "tool_choice.allowed_tools"
    if not isinstance(spec, dict):
        raise _error(f"Missing required parameter: '{param}'.", param, "missing_required_parameter")
    mode = spec.get("mode")
    if mode not in ("auto", "required"):
        raise _error(f"Invalid value for '{param}.mode': expected 'auto' or 'required'.", f"{param}.mode")
    tools = spec.get("tools")
    if not isinstance(tools, list) or not tools:
        raise _error(f"Invalid '{param}.tools': expected a non-empty array of tools.", f"{param}.tools")
    names = {t.name for t in request.tools}
    only: set[str] = set()
    for i, tool in enumerate(tools):
        where = f"{param}.tools[{i}]"
        function = tool.get("function") if isinstance(tool, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(name, str):
            raise _error(f"Invalid value for '{where}': expected {{'type': 'function', 'function': {{'name': ...}}}}.",
                         where)  # fmt: skip
        if name not in names:
            raise _error(f"Invalid value for '{where}': no function named '{name[:64]}' is in 'tools'.", where)
        only.add(name)
    request.choice, request.only = mode, frozenset(only)


def _response_format(value: Any) -> ResponseFormat:
    if value is None:
        return ResponseFormat("text")
    kind = value.get("type") if isinstance(value, dict) else None
    if kind in ("text", "json_object"):
        return ResponseFormat(kind)
    if kind != "json_schema":
        raise _error("Invalid value for 'response_format.type': expected 'text', 'json_object' or 'json_schema'.",
                     "response_format.type")  # fmt: skip
    spec = value.get("json_schema")
    if not isinstance(spec, dict):
        raise _error("Missing required parameter: 'response_format.json_schema'.", "response_format.json_schema",
                     "missing_required_parameter")  # fmt: skip
    name = spec.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise _error("Invalid 'response_format.json_schema.name': expected 1 to 64 letters, digits, '_' or '-'.",
                     "response_format.json_schema.name")  # fmt: skip
    schema = spec.get("schema")
    schema = {"type": "object"} if schema is None else check_schema(schema, "response_format.json_schema.schema")
    strict = spec.get("strict") or False
    if not isinstance(strict, bool):
        raise _error("Invalid 'response_format.json_schema.strict': expected a boolean.",
                     "response_format.json_schema.strict")  # fmt: skip
    return ResponseFormat("json_schema", schema, strict)


def read_tool_request(body: dict) -> ToolRequest:
    if body.get("functions") is not None or body.get("function_call") is not None:
        param = "functions" if body.get("functions") is not None else "function_call"
        raise _error(f"'{param}' is deprecated and not supported; use 'tools' and 'tool_choice'.", param)
    request = ToolRequest()
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise _error("Invalid type for 'tools': expected an array.", "tools", "invalid_type")
        if not tools:
            raise _error("Invalid 'tools': empty array. Expected an array with minimum length 1.", "tools",
                         "empty_array")  # fmt: skip
        request.tools = [_function(tool, i) for i, tool in enumerate(tools)]
        names = [t.name for t in request.tools]
        duplicate = next((n for n in names if names.count(n) > 1), None)
        if duplicate:
            raise _error(f"Invalid 'tools': the function name '{duplicate}' is used twice.", "tools")
    _choice(body, request)
    parallel = body.get("parallel_tool_calls")
    if parallel is not None:
        if not isinstance(parallel, bool):
            raise _error("Invalid type for 'parallel_tool_calls': expected a boolean.", "parallel_tool_calls",
                         "invalid_type")  # fmt: skip
        if not request.tools:
            raise _error("Invalid value for 'parallel_tool_calls': only allowed when 'tools' are specified.",
                         "parallel_tool_calls")  # fmt: skip
        request.parallel = parallel
    request.response_format = _response_format(body.get("response_format"))
    return request
