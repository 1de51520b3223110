"""vLLM's structured outputs on chat completions and completions: ``structured_outputs`` with one of ``json``,
``regex``, ``choice``, ``grammar`` or ``json_object`` (vLLM 0.10.2 on), and the older top-level ``guided_json``,
``guided_regex``, ``guided_choice`` and ``guided_grammar`` that clients written for earlier vLLM still send. The
answer is made to match by the same llguidance grammars as ``response_format`` (``grammar.py``).

- ``json``: a JSON Schema (an object, or its JSON text), the answer that JSON, objects closed as with
  ``response_format`` unless ``disable_additional_properties`` is false;
- ``regex``: the answer matches the regular expression (Rust's ``regex`` syntax, as vLLM's backends);
- ``choice``: the answer is exactly one of the strings;
- ``grammar``: a Lark grammar (llguidance's, vLLM's ``guidance`` backend) or a GBNF one (llama.cpp's, xgrammar's),
  converted to Lark;
- ``json_object``: any JSON object.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from llguidance.gbnf_to_lark import GbnfToLarkError, any_to_lark

from inference.errors import RequestError
from inference.function_calling.grammar import ANY_OBJECT, closed, json_rule
from inference.function_calling.request import check_schema

KINDS = ("json", "regex", "choice", "grammar", "json_object")
LEGACY = {"guided_json": "json", "guided_regex": "regex", "guided_choice": "choice", "guided_grammar": "grammar"}
# vLLM's other fields of structured_outputs: how its backends write JSON, which llguidance's grammars here fix
_OPTIONS = ("disable_fallback", "disable_any_whitespace", "disable_additional_properties", "whitespace_pattern")


@dataclass(frozen=True)
class Structured:
    kind: str  # one of KINDS
    value: Any  # json: the schema (dict); regex, grammar: the text; choice: the strings; json_object: True
    param: str  # where the request named it, for errors
    close_objects: bool = True  # json: objects that name their properties take no others (grammar.closed)

    def grammar(self) -> str:
        """The llguidance grammar (Lark) of the answer."""
        if self.kind == "json":
            return "start: " + json_rule(closed(self.value) if self.close_objects else self.value) + "\n"
        if self.kind == "json_object":
            return "start: " + json_rule(ANY_OBJECT) + "\n"
        if self.kind == "choice":
            return "start: " + " | ".join(json.dumps(c) for c in self.value) + "\n"
        if self.kind == "regex":
            return "start: /" + self.value.replace("/", "\\/") + "/\n"
        try:
            return any_to_lark(self.value)
        except (GbnfToLarkError, ValueError) as exc:  # GBNF that the converter cannot read
            raise _error(f"Invalid grammar in '{self.param}': {exc}", self.param) from None


def _error(message: str, param: str, code: str = "invalid_value") -> RequestError:
    return RequestError(message, param=param, code=code)


def _checked(kind: str, value: Any, param: str) -> Any:
    if kind == "json":
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise _error(f"Invalid '{param}': not a JSON Schema (its text is not JSON).", param) from None
        return check_schema(value, param)
    if kind in ("regex", "grammar"):
        if not isinstance(value, str) or not value.strip():
            raise _error(f"Invalid '{param}': expected a non-empty string.", param, "invalid_type")
        return value
    if kind == "choice":
        if not isinstance(value, list) or not value or not all(isinstance(c, str) and c for c in value):
            raise _error(f"Invalid '{param}': expected a non-empty array of non-empty strings.", param,
                         "invalid_type")  # fmt: skip
        return list(dict.fromkeys(value))
    if value is not True:
        raise _error(f"Invalid '{param}': expected true.", param, "invalid_type")
    return True


def read_structured(body: dict) -> Structured | None:
    """The request's structured output, or None; 400 when it names none, several, or a bad value."""
    found: list[tuple[str, Any, str]] = []
    close = True
    options = body.get("structured_outputs")
    if options is not None:
        if not isinstance(options, dict):
            raise _error("Invalid type for 'structured_outputs': expected an object.", "structured_outputs",
                         "invalid_type")  # fmt: skip
        for name, value in options.items():
            param = f"structured_outputs.{name}"
            if name in KINDS:
                if value is not None and value is not False:
                    found.append((name, value, param))
            elif name == "structural_tag":
                raise _error("'structured_outputs.structural_tag' is not supported; use tools for tool calls.",
                             param)  # fmt: skip
            elif name not in _OPTIONS:
                raise _error(f"Unknown parameter: '{param}'.", param, "unknown_parameter")
        close = options.get("disable_additional_properties") is not False
    found += [(kind, body[name], name) for name, kind in LEGACY.items() if body.get(name) is not None]
    if len(found) > 1:
        names = ", ".join(f"'{p}'" for _, _, p in found)
        raise _error(f"Only one structured output may be asked for; the request names {names}.", found[1][2])
    if not found:
        if options is not None:
            raise _error("'structured_outputs' must name one of: " + ", ".join(KINDS) + ".", "structured_outputs")
        return None
    kind, value, param = found[0]
    return Structured(kind, _checked(kind, value, param), param, close)
