"""The tool-call parser on canned model outputs of each format: good ones, several calls, and malformed ones
(which must come back as plain content, never raise); fed whole or in any chunks, the same result."""

from __future__ import annotations

import json

import pytest

from inference.function_calling.formats import FORMAT_NAMES
from inference.function_calling.parsers import CallDelta, Content, ToolCallParser, assemble, parse_tool_calls

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
    ("mistral", '[TOOL_CALLS]{"name": "get_current_weather", "arguments": {"location":"Hamburg",'
                '"format":"celsius"}}', None),
    # SmolLM2's own training format: a list inside the tags
    ("hermes", '<tool_call>[{"name": "get_current_weather", "arguments": {"location": "Hamburg", '
               '"format": "celsius"}}]</tool_call>', None),
    ("json_block", 'Sure:\n```json\n{"name": "get_current_weather", "arguments": {"location": "Hamburg", '
                   '"format": "celsius"}}\n```', "Sure:"),
    # every format falls back to a fenced block (small models answer that way whatever they were shown)
    ("hermes", '```json\n{"name": "get_current_weather", "arguments": "{\\"location\\": \\"Hamburg\\", '
               '\\"format\\": \\"celsius\\"}"}\n```', None),
]  # fmt: skip


@pytest.mark.parametrize("live", [False, True], ids=["held", "live"])
@pytest.mark.parametrize("fmt, text, content", GOOD)
def test_a_call_in_each_format(fmt, text, content, live):
    parsed = parse_tool_calls(text, TOOLS, fmt, live=live)
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
@pytest.mark.parametrize("live", [False, True], ids=["held", "live"])
def test_parallel_calls_keep_their_order_and_get_distinct_ids(fmt, text, live):
    parsed = parse_tool_calls(text, TOOLS, fmt, live=live)
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
    ("json_block", "Here is code:\n```python\nprint({'a': 1})\n```\nDone."),
    ("hermes", "Plain prose with a < sign and ``` ticks."),
    ("hermes", '<tool_call>{"name": "calculate", "arguments": {"expression": "1"}}'),  # never closed
    ("mistral", '[TOOL_CALLS] [{"name": "calculate", "arguments": {"expression": "1"}}'),  # cut short
]  # fmt: skip


@pytest.mark.parametrize("fmt, text", MALFORMED)
def test_malformed_output_is_plain_content(fmt, text):
    parsed = parse_tool_calls(text, TOOLS, fmt)
    assert parsed.tool_calls == [] and parsed.content == (text or None)


def test_unknown_format_names_the_supported_ones():
    with pytest.raises(ValueError, match="hermes, qwen25, llama3, mistral, json_block"):
        parse_tool_calls("x", TOOLS, "pythonic")
    assert FORMAT_NAMES == ("auto", "hermes", "qwen25", "llama3", "mistral", "json_block")


def _chunked(fmt: str, text: str, live: bool, size: int) -> tuple[list, object]:
    parser = ToolCallParser(fmt, TOOLS, live)
    events = []
    for i in range(0, len(text), size):
        events += parser.feed(text[i : i + size])
    events += parser.finish()
    return events, assemble(events)


CASES = [(f, t) for f, t, _ in GOOD] + [(f, t) for f, t in MALFORMED] + [
    ("hermes", 'Checking.  \n<tool_call>\n{"name": "calculate", "arguments": {"expression": "\\"}\"{"}}\n</tool_call>'),
    ("hermes", "An answer that ends in whitespace.\n\n"),
]  # fmt: skip


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
@pytest.mark.parametrize("live", [False, True], ids=["held", "live"])
@pytest.mark.parametrize("fmt, text", CASES)
def test_any_chunking_gives_the_whole_answer_result(fmt, text, live, size):
    whole = parse_tool_calls(text, TOOLS, fmt, live=live)
    events, streamed = _chunked(fmt, text, live, size)
    assert streamed.content == whole.content
    assert [(c.name, c.arguments) for c in streamed.tool_calls] == [(c.name, c.arguments) for c in whole.tool_calls]
    if not whole.tool_calls:  # plain text passes through unchanged
        assert whole.content == (text or None)


def test_live_calls_announce_the_name_first_then_stream_the_arguments_in_pieces():
    text = (
        'Sure.\n<tool_call>\n{"name": "get_current_weather", "arguments": {"location": "Hamburg", '
        '"format": "celsius"}}\n</tool_call>'
    )
    events, parsed = _chunked("hermes", text, live=True, size=4)
    calls = [e for e in events if isinstance(e, CallDelta)]
    first = calls[0]
    assert first.index == 0 and first.name == "get_current_weather" and first.id.startswith("call_")
    pieces = [e.arguments for e in calls[1:]]
    assert len(pieces) > 5 and all(e.name is None and e.id is None for e in calls[1:])
    assert "".join(pieces) == '{"location": "Hamburg", "format": "celsius"}' == parsed.tool_calls[0].arguments
    # content comes before the call, without the whitespace that separated them
    assert "".join(e.text for e in events if isinstance(e, Content)) == "Sure."


@pytest.mark.parametrize("cut", ["<tool_", "<tool_call>", '<tool_call>\n{"na', '<tool_call>\n{"name": "calc'])
@pytest.mark.parametrize("size", [1, 3, 1000])
def test_a_forced_call_cut_before_its_name_leaves_no_markup_in_the_content(cut, size):
    """Found under make run: tool_choice "required" or a named function (a grammar makes the whole answer calls),
    cut by max_tokens before the call's name was whole, answered the markup ("<tool_") as content. Now there is no
    content, and a named function is shown called, its arguments unwritten; an unforced answer's text stays."""
    for named, calls in [(None, []), ("calculate", [("calculate", "")])]:
        parser = ToolCallParser("hermes", TOOLS, live=True, forced=True, named=named)
        events = [e for i in range(0, len(cut), size) for e in parser.feed(cut[i : i + size])] + parser.finish()
        parsed = assemble(events)
        assert parsed.content is None and [(c.name, c.arguments) for c in parsed.tool_calls] == calls, named
    assert parse_tool_calls(cut, TOOLS, "hermes", live=True).content == cut.strip()


def test_held_sections_wait_for_their_end():
    parser = ToolCallParser("hermes", TOOLS, live=False)
    assert parser.feed('<tool_call>{"name": "calculate", "arguments": {"expr') == []
    events = parser.feed('ession": "2"}}</tool_call>')
    assert len(events) == 1 and events[0].name == "calculate" and events[0].arguments == '{"expression": "2"}'


def test_a_live_call_cut_short_keeps_what_was_written():
    """max_tokens reached inside the arguments: as OpenAI, the call stays with its partial arguments."""
    parsed = parse_tool_calls('<tool_call>\n{"name": "calculate", "arguments": {"expression": "2 +', TOOLS, "hermes",
                              live=True)  # fmt: skip
    assert parsed.content is None and [(c.name, c.arguments) for c in parsed.tool_calls] == [
        ("calculate", '{"expression": "2 +')
    ]
