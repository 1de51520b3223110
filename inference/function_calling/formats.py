"""The tool-call formats models are trained on, like LightLLM's ``--tool_call_parser``: how a call is written,
so that it can be parsed out of the answer, rendered back into a conversation and enforced by a grammar.

- ``hermes`` (alias ``qwen25``): ``<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>``, one block per
  call (Hermes, Qwen 2.5, and our system prompt for templates without tool support);
- ``llama3``: the answer is a bare ``{"name": ..., "parameters": {...}}`` (after ``<|python_tag|>`` at times),
  several separated by ``;``;
- ``mistral``: ``[TOOL_CALLS][{"name": ..., "arguments": {...}}, ...]``;
- ``json_block``: a fenced ```json block holding one call or a list of calls: what small instruct models write,
  and the fallback every other format also accepts.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class ToolFormat:
    name: str
    open: str  # written before each call (before the list when ``array``); "" for llama3
    close: str  # written after each call (after the list when ``array``)
    args_key: str  # "arguments" or "parameters"
    array: bool = False  # the calls are one JSON array after ``open``
    separator: str = "\n"  # between calls that are not in an array
    at_start: bool = False  # the calls must be the whole answer (no text before them)

    def render(self, calls: list[tuple[str, object]]) -> str:
        """Calls as the model writes them: for conversations replayed to a template that knows no tools."""
        objects = [json.dumps({"name": name, self.args_key: args}, ensure_ascii=False) for name, args in calls]
        if self.array:
            return f"{self.open}[{', '.join(objects)}]{self.close}"
        return self.separator.join(f"{self.open}{obj}{self.close}" for obj in objects)

    def example(self) -> str:
        """The shape of one call, for the system prompt."""
        if self.array:
            return f'{self.open}[{{"name": <function name>, "{self.args_key}": <arguments as a JSON object>}}]'
        return f'{self.open}{{"name": <function name>, "{self.args_key}": <arguments as a JSON object>}}{self.close}'


FORMATS: dict[str, ToolFormat] = {
    "hermes": ToolFormat("hermes", "<tool_call>\n", "\n</tool_call>", "arguments"),
    "llama3": ToolFormat("llama3", "", "", "parameters", separator="; ", at_start=True),
    "mistral": ToolFormat("mistral", "[TOOL_CALLS]", "", "arguments", array=True),
    "json_block": ToolFormat("json_block", "```json\n", "\n```", "arguments"),
}
ALIASES = {"qwen25": "hermes"}
FORMAT_NAMES = ("auto", "hermes", "qwen25", "llama3", "mistral", "json_block")


def get_format(name: str) -> ToolFormat:
    name = ALIASES.get(name, name)
    if name not in FORMATS:
        raise ValueError(f"tool-call format {name!r} is not supported (supported: {', '.join(FORMAT_NAMES[1:])})")
    return FORMATS[name]


def template_supports_tools(template: str | None) -> bool:
    """Whether a chat template renders ``tools`` itself (Qwen 2.5, Llama 3.1, Mistral, Hermes templates do)."""
    return bool(template) and re.search(r"\btools\b", template) is not None


def detect_format(template: str | None) -> str:
    """The format a chat template's model was trained on; ``hermes`` for templates without tool support,
    since our system prompt asks for it there."""
    text = template or ""
    if "[TOOL_CALLS]" in text:
        return "mistral"
    if "<|python_tag|>" in text or "ipython" in text:
        return "llama3"
    return "hermes"
