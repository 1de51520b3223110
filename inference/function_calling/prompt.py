"""A conversation with tools, made ready for the model's chat template.

A template that renders ``tools`` itself (Qwen 2.5, Llama 3.1, Mistral...) gets them as given, and the history's
tool calls with their arguments as objects (what HF templates expect). A template without tool support (SmolLM2,
Gemma 3) gets our documented system-prompt format instead (docs/function-calling.md):

- a system message that lists the tools in ``<tools></tools>`` and shows how to call one in the model's format;
- for each of the first three tools, one example exchange: the tool's description as the user's request and
  a call to it as the answer (small models follow an example far better than an instruction);
- earlier calls replayed as the text the model would have written, and tool results as user turns
  ``<tool_response>...</tool_response>`` (the Hermes convention).
"""

from __future__ import annotations

import json
import re
from typing import Any

from inference.function_calling.formats import ToolFormat, template_supports_tools
from inference.function_calling.request import Function, ToolRequest

MAX_EXAMPLES = 3
_EG = re.compile(r"\be\.g\.,?\s*([^.;()]+?)\s*(?:[.;)]|$)")


def tools_system_prompt(tools: list[Function], fmt: ToolFormat) -> str:
    listed = "\n".join(json.dumps(t.to_openai()["function"], ensure_ascii=False) for t in tools)
    return (
        "You can call functions. They are listed, as JSON schemas, within <tools></tools> tags:\n"
        f"<tools>\n{listed}\n</tools>\n"
        "When a function can answer the user's request, call it: answer only with\n"
        f"{fmt.example()}\n"
        "Otherwise answer in plain text."
    )


def _example_value(schema: Any, description: str = "") -> Any:
    """A plausible value for a schema, for the example calls."""
    if not isinstance(schema, dict):
        return "..."
    for key in ("const", "default"):
        if key in schema:
            return schema[key]
    if schema.get("examples"):
        return schema["examples"][0]
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type")
    kind = kind[0] if isinstance(kind, list) and kind else kind
    if kind == "object":
        props = schema.get("properties") or {}
        required = schema.get("required") or list(props)
        return {k: _example_value(v, v.get("description", "") if isinstance(v, dict) else "")
                for k, v in props.items() if k in required}  # fmt: skip
    if kind == "array":
        return [_example_value(schema.get("items"))]
    if kind in ("integer", "number"):
        return 1
    if kind == "boolean":
        return True
    found = _EG.search(description or schema.get("description", ""))
    return found.group(1).strip().strip("'\"") if found else "..."


def example_exchanges(tools: list[Function], fmt: ToolFormat) -> list[dict]:
    messages = []
    for tool in tools[:MAX_EXAMPLES]:
        request = (tool.description or f"Use {tool.name}.").strip()
        call = fmt.render([(tool.name, _example_value(tool.parameters))])
        messages += [{"role": "user", "content": request}, {"role": "assistant", "content": call}]
    return messages


def _arguments(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _native(message: dict) -> dict:
    """HF templates read ``tool_call.function.arguments`` (or ``tool_call.arguments``) as an object."""
    if not message.get("tool_calls"):
        return message
    calls = [
        {**c, "function": {**c["function"], "arguments": _arguments(c["function"]["arguments"])}}
        for c in message["tool_calls"]
    ]
    return {**message, "tool_calls": calls}


def _replayed(messages: list[dict], fmt: ToolFormat) -> list[dict]:
    out: list[dict] = []
    for message in messages:
        if message["role"] == "tool":
            text = f"<tool_response>\n{message['content']}\n</tool_response>"
            if out and out[-1]["role"] == "user" and out[-1].get("tool_results"):  # results of parallel calls
                out[-1]["content"] += "\n" + text
            else:
                out.append({"role": "user", "content": text, "tool_results": True})
            continue
        if message["role"] == "assistant" and message.get("tool_calls"):
            calls = [(c["function"]["name"], _arguments(c["function"]["arguments"])) for c in message["tool_calls"]]
            content = ((message.get("content") or "") + "\n").lstrip() + fmt.render(calls)
            out.append({"role": "assistant", "content": content})
            continue
        out.append({"role": message["role"], "content": message.get("content") or ""})
    return [{"role": m["role"], "content": m["content"]} for m in out]


def _add_system(messages: list[dict], text: str) -> list[dict]:
    if messages and messages[0]["role"] == "system":
        return [{"role": "system", "content": text + "\n\n" + messages[0]["content"]}, *messages[1:]]
    return [{"role": "system", "content": text}, *messages]


def _json_instruction(request: ToolRequest) -> str | None:
    answer = request.response_format
    if answer.type == "json_object":
        return "Answer with a JSON object."
    if answer.type == "json_schema":
        return "Answer with a JSON object that follows this JSON schema:\n" + json.dumps(answer.schema)
    return None


def prepare(
    messages: list[dict], request: ToolRequest, template: str | None, fmt: ToolFormat
) -> tuple[list[dict], list[dict] | None]:
    """(messages for the template, ``tools`` for the template or None)."""
    instruction = _json_instruction(request)
    if template_supports_tools(template):
        out = [_native(m) for m in messages]
        if instruction:
            out = _add_system(out, instruction)
        return out, [t.to_openai() for t in request.tools] if request.calls_tools else None
    out = _replayed(messages, fmt)
    if instruction:
        out = _add_system(out, instruction)
    if request.calls_tools:
        system = tools_system_prompt(request.tools, fmt)
        out = _add_system(out, system)
        out = out[:1] + example_exchanges(request.tools, fmt) + out[1:]
    return out, None
