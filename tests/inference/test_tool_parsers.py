"""Tool-call parsers on canned model outputs of each format: good ones, several calls, and malformed ones
(which must come back as plain content, never raise)."""

from __future__ import annotations

import json

import pytest

from inference.tools.parsers import PARSERS, parse_tool_calls

TOOLS = ["get_current_weather", "calculate"]
WEATHER = {"location": "Hamburg", "format": "celsius"}


def calls(parsed) -> list[tuple[str, dict]]:
    return [(c.name, json.loads(c.arguments)) for c in parsed.tool_calls]


GOOD = [
    ("hermes", '<tool_call>\n{"name": "get_current_weather", "arguments": {"location": "Hamburg", '
               '"format": "celsius"}}\n</tool_call>', None),
    ("qwen25", 'Let me check.\n<tool_call>{"name": "get_current_weather", "arguments": '
               '{"location": "Hamburg", "format": "celsius"}}</tool_call>', "Let me check."),
    ("llama3", '{"name": "get_current_weather", "parameters": {"location": "Hamburg", "format": "celsius"}}', None),
    ("llama3", '<|python_tag|>{"name": "get_current_weather", "parameters": {"location": "Hamburg", '
               '"format": "celsius"}}', None),
    ("mistral", '[TOOL_CALLS] [{"name": "get_current_weather", "arguments": {"location": "Hamburg", '
                '"format": "celsius"}}]', None),
    ("json_block", 'Sure:\n```json\n{"name": "get_current_weather", "arguments": {"location": "Hamburg", '
                   '"format": "celsius"}}\n```', "Sure:"),
    # every format falls back to a fenced block (small models answer that way whatever they were shown)
    ("hermes", '```json\n{"name": "get_current_weather", "arguments": "{\\"location\\": \\"Hamburg\\", '
               '\\"format\\": \\"celsius\\"}"}\n```', None),
]  # fmt: skip


@pytest.mark.parametrize("fmt, text, content", GOOD)
def test_a_call_in_each_format(fmt, text, content):
    parsed = parse_tool_calls(text, TOOLS, fmt)
    assert calls(parsed) == [("get_current_weather", WEATHER)]
    assert parsed.content == content
    call = parsed.tool_calls[0].to_openai()
    assert call["type"] == "function" and call["id"].startswith("call_") and len(call["id"]) == 29
    assert isinstance(call["function"]["arguments"], str)


@pytest.mark.parametrize(
    "fmt, text",
    [
        ("hermes", '<tool_call>{"name": "calculate", "arguments": {"expression": "2+2"}}</tool_call>\n'
                   '<tool_call>{"name": "get_current_weather", "arguments": {"location": "Paris"}}</tool_call>'),
        ("llama3", '{"name": "calculate", "parameters": {"expression": "2+2"}}; '
                   '{"name": "get_current_weather", "parameters": {"location": "Paris"}}'),
        ("mistral", '[TOOL_CALLS] [{"name": "calculate", "arguments": {"expression": "2+2"}}, '
                    '{"name": "get_current_weather", "arguments": {"location": "Paris"}}]'),
        ("json_block", '```json\n[{"name": "calculate", "arguments": {"expression": "2+2"}}, '
                       '{"name": "get_current_weather", "arguments": {"location": "Paris"}}]\n```'),
    ],
)  # fmt: skip
def test_parallel_calls_keep_their_order_and_get_distinct_ids(fmt, text):
    parsed = parse_tool_calls(text, TOOLS, fmt)
    assert calls(parsed) == [("calculate", {"expression": "2+2"}), ("get_current_weather", {"location": "Paris"})]
    assert len({c.id for c in parsed.tool_calls}) == 2 and parsed.content is None


MALFORMED = [
    ("hermes", '<tool_call>{"name": "get_current_weather", "arguments": {"location": </tool_call>'),  # cut JSON
    ("hermes", '<tool_call>{"name": "launch_rockets", "arguments": {}}</tool_call>'),  # not a tool of the request
    ("hermes", '<tool_call>{"name": "calculate", "arguments": [1, 2]}</tool_call>'),  # arguments not an object
    ("llama3", '{"name": "calculate", "parameters": {"expression": "1"}} and then some prose'),
    ("llama3", "The weather in Hamburg is usually mild."),
    ("mistral", "[TOOL_CALLS] not json"),
    ("json_block", "```json\n{\"temperature\": 12}\n```"),  # JSON, but not a call
    ("json_block", "```json\n[]\n```"),
    ("json_block", ""),
]  # fmt: skip


@pytest.mark.parametrize("fmt, text", MALFORMED)
def test_malformed_output_is_plain_content(fmt, text):
    parsed = parse_tool_calls(text, TOOLS, fmt)
    assert parsed.tool_calls == [] and parsed.content == text


def test_unknown_format_names_the_supported_ones():
    with pytest.raises(ValueError, match="hermes, qwen25, llama3, mistral, json_block"):
        parse_tool_calls("x", TOOLS, "pythonic")
    assert set(PARSERS) == {"hermes", "qwen25", "llama3", "mistral", "json_block"}
