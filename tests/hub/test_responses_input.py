"""The Responses API's input as ``responses_input`` checks it (the conversations' items route reads items too): an
item, a part, a tool or a tool choice whose ``type`` is not a string is OpenAI's 400 naming it, never a 500 (the fuzz
found an item's ``type`` object looked up among the mcp items' readers; tools had the same flaw)."""

from __future__ import annotations

import pytest

from hub.api import errors
from hub.api.responses_input import check_create, read_items


@pytest.mark.parametrize("kind", [{"a": 1}, ["message"], 3, True])
def test_an_item_type_that_is_not_a_string_is_a_400_naming_it(kind):
    with pytest.raises(errors.ApiError) as caught:
        read_items([{"type": "message", "role": "user", "content": "Hi"}, {"type": kind}], [], "items")
    assert caught.value.status == 400 and caught.value.param == "items[1].type"


def test_a_message_without_a_type_is_still_a_message():
    [item] = read_items([{"role": "user", "content": "Hi"}], [], "input")
    assert item["type"] == "message" and item["content"] == [{"type": "input_text", "text": "Hi"}]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"tools": [{"type": {"a": 1}}]}, "tools[0].type"),
        ({"tool_choice": {"type": ["file_search"]}}, "tool_choice.type"),
    ],
)
def test_a_tool_or_a_choice_whose_type_is_not_a_string_is_a_400(body, param):
    with pytest.raises(errors.ApiError) as caught:
        check_create({"model": "m", "input": "Hi", **body})
    assert caught.value.status == 400 and caught.value.param == param and caught.value.code == "invalid_type"


def test_a_part_whose_type_is_not_a_string_is_a_400():
    with pytest.raises(errors.ApiError) as caught:
        read_items([{"role": "user", "content": [{"type": {"a": 1}, "text": "Hi"}]}], [], "input")
    assert caught.value.param == "input[0].content[0].type" and caught.value.code == "invalid_type"


def test_a_reusable_prompt_without_input_is_refused_by_name():
    """OpenAI's ``prompt`` (a prompt stored in its dashboard) may come without ``input``: the refusal names the
    parameter this hub lacks, not the input (it said "Missing required parameter: 'input'")."""
    with pytest.raises(errors.ApiError) as caught:
        check_create({"model": "m", "prompt": {"id": "pmpt_1", "variables": {"x": "y"}}})
    assert (caught.value.param, caught.value.code) == ("prompt", "unsupported_parameter")


@pytest.mark.parametrize("verbosity", ["loud", 5, ["low"]])
def test_a_verbosity_outside_low_medium_high_is_a_400(verbosity):
    with pytest.raises(errors.ApiError) as caught:
        check_create({"model": "m", "input": "Hi", "text": {"verbosity": verbosity}})
    assert caught.value.status == 400 and caught.value.param == "text.verbosity"


def test_the_response_echoes_the_verbosity_asked_for():
    """As OpenAI's does (a small model is not told it: the field is kept, as ``chat.completions``' is)."""
    from hub.api.responses_output import response_object

    for text, echoed in [({"verbosity": "low"}, "low"), ({}, "medium"), (None, "medium")]:
        body = {"model": "m", "input": "Hi", **({"text": text} if text is not None else {})}
        check_create(body)
        assert response_object("resp_1", body, "m", 0, "default")["text"]["verbosity"] == echoed


def test_the_service_s_refusal_of_an_image_reads_in_the_responses_api_s_terms():
    """Our service names the chat message's part (``messages[2].content[1] is an image_url part``); a Responses
    client sent ``input[1]`` (instructions became message 0), so the relay names the input's part kind instead."""
    from hub.api.responses_chat import response_message, response_param
    from inference.errors import RequestError
    from inference.server.messages import _parts

    content = [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": "data:,"}}]
    with pytest.raises(RequestError) as refused:
        _parts(content, 2, "user", "small", images=False)
    message = response_message(str(refused.value))
    assert "messages[" not in message and "image_url" not in message and "input_image" in message, message
    assert message.startswith("The model 'small' does not accept images") and "vision model" in message
    assert response_param(refused.value.param) == "input"
