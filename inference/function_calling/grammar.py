"""The llguidance grammar (Lark, with JSON schemas inline) that a chat request's answer must follow.

- ``tool_choice`` "required" / a named function: the answer is calls in the model's format, nothing else;
- "auto": free text, but from the moment the model opens a call (a lazy trigger on the format's marker) the
  call must be well formed and its arguments valid against the function's schema;
- ``response_format`` json_object / json_schema: the answer is that JSON (or, with "auto", a call instead).

Each call is ``{"name": <one of the allowed tools>, "arguments": <its parameters schema>}``, name first, so
that a stream can announce the call before its arguments. Objects that name their properties get only those
(:func:`closed`), as with vLLM's default backend.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from inference.errors import RequestError
from inference.function_calling.formats import ToolFormat
from inference.function_calling.request import Function, ToolRequest

# how the model writes JSON: json.dumps' separators, which is what models have seen most
JSON_STYLE = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
ANY_OBJECT: dict = {"type": "object"}


class SchemaUnsupported(RequestError):
    """A valid JSON Schema using what our grammars cannot enforce."""

    def __init__(self, message: str, param: str):
        super().__init__(message, param=param, code="invalid_schema")


# keywords beside "properties" through which an object may take properties it does not name itself: closing such an
# object would refuse those (in JSON Schema, additionalProperties sees only its sibling "properties")
_OPENING = ("additionalProperties", "patternProperties", "unevaluatedProperties", "allOf", "anyOf", "oneOf", "$ref",
            "if", "dependentSchemas")  # fmt: skip


def closed(schema: dict) -> dict:
    """The schema with every object that names its properties, and says nothing of others, closed to them
    (``additionalProperties: false``); a copy, the request's own schema untouched.

    JSON Schema lets such an object hold any other property, and the grammar would let the model write them: a small
    model invents one ("description") and fills it until ``max_tokens`` stops it. vLLM's default grammar backend
    (xgrammar, strict mode) and its llguidance option ``disable_additional_properties`` close them the same way. An
    explicit ``additionalProperties`` is kept, and objects whose properties may come from combinators or references
    are left open, as is a schema holding any ``allOf`` (closing the parts of an intersection empties it)."""
    if '"allOf"' in json.dumps(schema):
        return schema

    def walk(node: object, close: bool = True) -> object:
        if isinstance(node, list):
            return [walk(item) for item in node]
        if not isinstance(node, dict):
            return node
        out = {}
        for key, value in node.items():
            if key in ("properties", "$defs", "definitions") and isinstance(value, dict):
                out[key] = {name: walk(sub) for name, sub in value.items()}  # names, each to a schema
            elif key in ("anyOf", "oneOf"):  # alternatives: each may close, unless they add to the parent's properties
                out[key] = [walk(sub, close="properties" not in node) for sub in value]
            elif key in ("items", "prefixItems", "additionalProperties", "contains"):  # schemas of other values
                out[key] = walk(value)
            else:  # values (const, enum, default...), or schemas of this same value (not, then...), left as written
                out[key] = value
        if close and "properties" in node and not any(k in node for k in _OPENING):
            out["additionalProperties"] = False
        return out

    return walk(schema)


def json_rule(schema: dict) -> str:
    """A Lark rule body for JSON valid against ``schema``, written as ``json.dumps`` would."""
    return "%json " + json.dumps({**schema, "x-guidance": JSON_STYLE})


def _literal(text: str, special: dict[str, int]) -> str:
    """A Lark literal; a control token of the vocabulary by its id (text would never match it)."""
    if text in special:
        return f"<[{special[text]}]>"
    return json.dumps(text)


def _call_schema(fn: Function, args_schema: dict, args_key: str) -> dict:
    return {
        "type": "object",
        "properties": {"name": {"const": fn.name}, args_key: args_schema},
        "required": ["name", args_key],
        "additionalProperties": False,
    }


def _arguments_schema(fn: Function, args_key: str, check: Callable[[str], str]) -> dict:
    """The function's parameters schema if llguidance supports it; with ``strict`` an unsupported schema is an
    error, without it the arguments fall back to any JSON object."""
    parameters = closed(fn.parameters)
    error = check("start: " + json_rule(_call_schema(fn, parameters, args_key)))
    if not error:
        return parameters
    if fn.strict:
        raise SchemaUnsupported(f"Invalid schema for function '{fn.name}': {error}", f"{fn.param}.parameters")
    return ANY_OBJECT


def build_grammar(
    request: ToolRequest, fmt: ToolFormat, special: dict[str, int], check: Callable[[str], str]
) -> str | None:
    """The grammar of the answer, or None when it is free text. ``check(grammar)`` returns "" or why it fails."""
    answer = request.response_format
    json_answer = None
    if answer.type != "text":
        schema = closed(answer.schema) if answer.type == "json_schema" and answer.schema is not None else ANY_OBJECT
        error = check("start: " + json_rule(schema))
        if error:
            if answer.strict or answer.type == "json_object":
                raise SchemaUnsupported(f"Invalid schema for response_format: {error}", "response_format")
            schema = ANY_OBJECT
        json_answer = json_rule(schema)
    if not request.calls_tools:
        return None if json_answer is None else f"start: {json_answer}\n"

    rules = [
        f"call_{i}: " + json_rule(_call_schema(fn, _arguments_schema(fn, fmt.args_key, check), fmt.args_key))
        for i, fn in enumerate(request.allowed)
    ]
    rules.append("call: " + " | ".join(f"call_{i}" for i in range(len(request.allowed))))
    many = request.parallel and request.choice != "function"
    open_, close = _literal(fmt.open, special) if fmt.open else "", _literal(fmt.close, special) if fmt.close else ""
    if fmt.array:
        body = '"[" call (", " call)* "]"' if many else '"[" call "]"'
        rules.append(f"calls: {open_} {body} {close}")
        first_rest = f"{body} {close}"
    elif fmt.open:
        rules.append(f"section: {open_} call {close}")
        more = f" ({_literal(fmt.separator, special)} section)*" if many else ""
        rules.append(f"calls: section{more}")
        first_rest = f"call {close}{more}"
    else:  # llama3: bare objects
        rules.append(f"calls: call ({_literal(fmt.separator, special)} call)*" if many else "calls: call")
        first_rest = ""

    if request.choice in ("required", "function"):
        start = "start: calls"
    elif json_answer is not None:
        start = f"start: calls | {json_answer}"
    elif not fmt.open:  # llama3 in auto: a call is the whole answer, so text must not start like one
        start = "start: calls | TEXT_NOT_A_CALL"
        rules.append(r"TEXT_NOT_A_CALL: /([^{](.|\n)*)?/")
    else:  # auto: free text, then the call grammar from the moment the marker appears
        trigger = fmt.open.strip()
        rest = _literal(fmt.open[len(trigger) :], special) if fmt.open[len(trigger) :] else ""
        if trigger in special:
            start = f"start: TEXT | TEXT {_literal(trigger, special)} {rest} {first_rest}"
        else:
            rules.append(f"head[lazy]: TEXT {json.dumps(trigger)}")
            start = f"start: TEXT | head {rest} {first_rest}"
        rules.append(r"TEXT: /(.|\n)*/")
    return "%llguidance {}\n" + start + "\n" + "\n".join(rules) + "\n"
