"""OpenAI's deprecated ``functions`` / ``function_call`` read as tools and answered as functions
(``hub/api/legacy_functions.py``); end to end on the packaged model in tests/e2e/test_gateway.py."""

from __future__ import annotations

import pytest

from hub.api import errors, legacy_functions
from hub.api.validation import check_body

F = {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}
ASK = [{"role": "user", "content": "Weather in Paris?"}]


def test_functions_become_tools_with_one_call_at_most():
    body = {"model": "m", "messages": ASK, "functions": [F], "function_call": {"name": "get_weather"}, "seed": 1}
    out = legacy_functions.as_tools(body)
    assert out == {"model": "m", "messages": ASK, "seed": 1, "tools": [{"type": "function", "function": F}],
                   "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
                   "parallel_tool_calls": False}  # fmt: skip
    assert "functions" in body  # the request as sent is left as it was (it is stored as sent)
    check_body("chat/completions", out)
    for choice, tool_choice in [(None, "auto"), ("auto", "auto"), ("none", "none")]:
        asked = {"model": "m", "messages": ASK, "functions": [F], **({"function_call": choice} if choice else {})}
        assert legacy_functions.as_tools(asked)["tool_choice"] == tool_choice


def test_a_past_call_and_its_result_become_a_tool_call_and_the_tool_message_answering_it():
    messages = [
        *ASK,
        {"role": "assistant", "content": None, "function_call": {"name": "get_weather", "arguments": '{"city": "a"}'}},
        {"role": "function", "name": "get_weather", "content": "sunny"},
        {"role": "assistant", "content": "Sunny. Rome?", "function_call": {"name": "get_weather", "arguments": "{}"}},
        {"role": "function", "name": "get_weather", "content": "rainy"},
        {"role": "function", "name": "other", "content": "?"},  # no call of that name: an id of its own
    ]
    out = legacy_functions.as_tools({"model": "m", "messages": messages, "functions": [F]})["messages"]
    first, second = out[1]["tool_calls"][0], out[3]["tool_calls"][0]
    assert first["function"] == {"name": "get_weather", "arguments": '{"city": "a"}'} and first["type"] == "function"
    assert "function_call" not in out[1] and out[3]["content"] == "Sunny. Rome?"
    assert out[2] == {"role": "tool", "tool_call_id": first["id"], "content": "sunny"}
    assert out[4] == {"role": "tool", "tool_call_id": second["id"], "content": "rainy"} and first["id"] != second["id"]
    assert out[5]["role"] == "tool" and out[5]["tool_call_id"] not in (first["id"], second["id"])
    check_body("chat/completions", {"model": "m", "messages": out, "tools": [{"type": "function", "function": F}]})


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"function_call": "auto"}, "function_call"),  # without functions
        ({"functions": [F], "tools": [{"type": "function", "function": F}]}, "functions"),
        ({"functions": {"name": "f"}}, "functions"),
        ({"functions": []}, "functions"),
        ({"functions": ["f"]}, "functions[0]"),
        ({"functions": [{"description": "x"}]}, "functions[0].name"),
        ({"functions": [F], "function_call": "required"}, "function_call"),
        ({"functions": [F], "function_call": {"name": 3}}, "function_call"),
        ({"functions": [F], "messages": [*ASK, {"role": "function", "content": "x"}]}, "messages[1].name"),
        ({"functions": [F], "messages": [*ASK, {"role": "assistant", "function_call": "f"}]},
         "messages[1].function_call"),
    ],
)  # fmt: skip
def test_what_openai_refuses_is_refused_naming_the_legacy_field(body, param):
    with pytest.raises(errors.InvalidRequest) as refused:
        legacy_functions.as_tools({"model": "m", "messages": ASK, **body})
    assert refused.value.param == param


def test_the_answer_holds_the_call_as_function_call():
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "a"}'}}
    message = {"role": "assistant", "content": None, "tool_calls": [call]}
    answer = {"id": "x", "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}]}
    out = legacy_functions.answer(answer)
    function_call = {"name": "get_weather", "arguments": '{"city": "a"}'}
    legacy = {"role": "assistant", "content": None, "function_call": function_call}
    assert out["choices"][0] == {"index": 0, "finish_reason": "function_call", "message": legacy}
    assert answer["choices"][0]["message"]["tool_calls"] == [call]  # a copy: the stored assembler's is untouched
    plain = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop"}]}
    assert legacy_functions.answer(plain) == plain


def test_a_streamed_call_comes_as_function_call_deltas():
    head = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
    piece = {"index": 0, "function": {"arguments": '{"ci'}}
    chunks = [{"choices": [{"index": 0, "delta": {"tool_calls": [head]}, "finish_reason": None}]},
              {"choices": [{"index": 0, "delta": {"tool_calls": [piece]}, "finish_reason": None}]},
              {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
              {"choices": [], "usage": {"prompt_tokens": 1}}]  # fmt: skip
    out = [legacy_functions.chunk(c) for c in chunks]
    assert out[0]["choices"][0]["delta"] == {"function_call": {"name": "get_weather", "arguments": ""}}
    assert out[1]["choices"][0]["delta"] == {"function_call": {"arguments": '{"ci'}}
    assert out[2]["choices"][0]["finish_reason"] == "function_call" and out[3] == chunks[3]


def test_an_error_on_the_tools_it_became_names_the_functions_sent():
    error = errors.InvalidRequest("Invalid type for 'tools[1].function.parameters': expected an object.",
                                  param="tools[1].function.parameters")  # fmt: skip
    legacy_functions.rename(error)
    assert error.param == "functions[1].parameters" and "'functions[1].parameters'" in error.message
    error = errors.InvalidRequest("Invalid value for 'tool_choice': no function named 'g' is in 'tools'.",
                                  param="tool_choice")  # fmt: skip
    legacy_functions.rename(error)
    assert (error.param, error.message) == ("function_call", "Invalid value for 'function_call': no function named "
                                            "'g' is in 'functions'.")  # fmt: skip
    error = errors.InvalidRequest("x", param="messages[2].tool_calls[0].function.arguments")
    legacy_functions.rename(error)
    assert error.param == "messages[2].function_call.arguments"
