"""Tool calls out of a model's text, one parser per format (a model's config names its format, like LightLLM's
``--tool_call_parser``).

- ``hermes`` (alias ``qwen25``): ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``, repeatable;
- ``llama3``: a bare JSON object ``{"name": ..., "parameters": {...}}`` (optionally after ``<|python_tag|>``),
  several separated by ``;``;
- ``mistral``: ``[TOOL_CALLS] [{"name": ..., "arguments": {...}}, ...]``;
- ``json_block``: a fenced ```json block holding one call or a list of calls (what small instruct models
  write when shown tools in the system prompt), also the fallback of every other format.

A call counts only if it names one of the request's tools and its arguments are a JSON object; anything
else leaves the whole text as plain content (never an error). ``arguments`` come back as a JSON string,
as OpenAI returns them.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field


@dataclass
class ToolCall:
    name: str
    arguments: str  # a JSON object, serialised
    id: str = field(default_factory=lambda: "call_" + secrets.token_hex(12))

    def to_openai(self) -> dict:
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


@dataclass
class Parsed:
    content: str | None  # text outside the calls (None when there is none)
    tool_calls: list[ToolCall]


def _call(obj, tools: set[str], args_key: str = "arguments") -> ToolCall | None:
    """One ``{"name", "arguments"|"parameters"}`` object as a call, or None if it is not a valid one."""
    if not isinstance(obj, dict) or obj.get("name") not in tools:
        return None
    args = obj.get(args_key, obj.get("arguments", obj.get("parameters", {})))
    if isinstance(args, str):  # some models double-encode the arguments
        try:
            args = json.loads(args)
        except ValueError:
            return None
    if not isinstance(args, dict):
        return None
    return ToolCall(obj["name"], json.dumps(args, ensure_ascii=False))


def _calls(value, tools: set[str], args_key: str = "arguments") -> list[ToolCall] | None:
    """A call or a list of calls; None if any of them is not valid."""
    items = value if isinstance(value, list) else [value]
    calls = [_call(item, tools, args_key) for item in items]
    return calls if calls and all(c is not None for c in calls) else None


def _loads(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return None


def _rest(text: str, spans: list[tuple[int, int]]) -> str | None:
    """The text outside ``spans``, stripped; None when nothing is left."""
    out, last = [], 0
    for start, end in spans:
        out.append(text[last:start])
        last = end
    out.append(text[last:])
    rest = "".join(out).strip()
    return rest or None


_FENCE = re.compile(r"```(?:json)?\s*\n?(.*?)```", re.S)
_HERMES = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.S)
_MISTRAL = "[TOOL_CALLS]"
_PYTHON_TAG = "<|python_tag|>"


def parse_json_block(text: str, tools: set[str]) -> Parsed | None:
    """Fenced ```json blocks, each one call or a list of calls."""
    calls, spans = [], []
    for match in _FENCE.finditer(text):
        found = _calls(_loads(match.group(1).strip()), tools)
        if found is None:
            return None
        calls += found
        spans.append(match.span())
    return Parsed(_rest(text, spans), calls) if calls else None


def parse_hermes(text: str, tools: set[str]) -> Parsed | None:
    calls, spans = [], []
    for match in _HERMES.finditer(text):
        found = _calls(_loads(match.group(1)), tools)
        if found is None:
            return None
        calls += found
        spans.append(match.span())
    return Parsed(_rest(text, spans), calls) if calls else None


def parse_llama3(text: str, tools: set[str]) -> Parsed | None:
    body = text.strip()
    if body.startswith(_PYTHON_TAG):
        body = body[len(_PYTHON_TAG) :].strip()
    if not body.startswith("{"):
        return None
    calls = []
    decoder = json.JSONDecoder()
    pos = 0
    while pos < len(body):  # objects separated by ";" (and whitespace)
        try:
            obj, end = decoder.raw_decode(body, pos)
        except ValueError:
            return None
        found = _calls(obj, tools, "parameters")
        if found is None:
            return None
        calls += found
        pos = end
        while pos < len(body) and body[pos] in "; \n\t":
            pos += 1
    return Parsed(None, calls) if calls else None


def parse_mistral(text: str, tools: set[str]) -> Parsed | None:
    at = text.find(_MISTRAL)
    if at < 0:
        return None
    found = _calls(_loads(text[at + len(_MISTRAL) :].strip()), tools)
    if found is None:
        return None
    return Parsed(text[:at].strip() or None, found)


PARSERS = {
    "hermes": parse_hermes,
    "qwen25": parse_hermes,
    "llama3": parse_llama3,
    "mistral": parse_mistral,
    "json_block": parse_json_block,
}


def parse_tool_calls(text: str, tool_names: list[str], fmt: str = "json_block") -> Parsed:
    """The model's whole answer → content and tool calls in ``fmt`` (then the fenced-JSON fallback); plain
    content when no valid call is found."""
    if fmt not in PARSERS:
        raise ValueError(f"tool-call format {fmt!r} is not supported (supported: {', '.join(PARSERS)})")
    tools = set(tool_names)
    for parser in dict.fromkeys([PARSERS[fmt], parse_json_block]):
        parsed = parser(text, tools)
        if parsed is not None:
            return parsed
    return Parsed(text, [])
