"""``POST /v1/responses/input_tokens`` on the packaged chat model, with the OpenAI SDK
(``client.responses.input_tokens.count``): the count is the ``usage.input_tokens`` the same request gets when it
runs (instructions and a function tool in the prompt; a stored conversation continued), nothing is metered, and bad
requests get OpenAI's errors."""

from __future__ import annotations

import openai
import pytest

from tests.support.live import CHAT, EMBED, barrier, rows

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

TOOL = {"type": "function", "name": "get_weather", "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}  # fmt: skip


def test_the_count_is_what_the_request_uses_when_it_runs_and_is_not_metered(hub):
    client = hub()
    request = {"model": CHAT, "input": "What is the weather in Rome?", "instructions": "Answer briefly.",
               "tools": [TOOL]}  # fmt: skip
    counted = client.responses.input_tokens.with_raw_response.count(**request)
    assert counted.parse().object == "response.input_tokens"
    first = client.responses.create(**request, max_output_tokens=4, temperature=0)
    assert counted.parse().input_tokens == first.usage.input_tokens > 20  # the tool's description is in it

    follow_up = {"model": CHAT, "previous_response_id": first.id, "input": "And in Paris?", "tools": [TOOL]}
    count = client.responses.input_tokens.count(**follow_up).input_tokens
    second = client.responses.create(**follow_up, max_output_tokens=4, temperature=0)
    assert count == second.usage.input_tokens > first.usage.input_tokens  # the stored turn is counted

    barrier(hub)
    assert rows(0, request_id=counted.headers["x-request-id"]) == []  # a count runs nothing: no usage row


def test_bad_counts_get_openai_errors(hub):
    client = hub()
    with pytest.raises(openai.BadRequestError) as missing:
        client.responses.input_tokens.count(input="hi")
    assert missing.value.body["param"] == "model"
    with pytest.raises(openai.NotFoundError):
        client.responses.input_tokens.count(model="no-such-model", input="hi")
    with pytest.raises(openai.BadRequestError) as wrong:
        client.responses.input_tokens.count(model=EMBED, input="hi")
    assert "embedding" in wrong.value.message
    with pytest.raises(openai.NotFoundError):  # as POST /responses: no such stored response
        client.responses.input_tokens.count(model=CHAT, input="hi", previous_response_id="resp_nope")
