"""Function calling and structured outputs over HTTP, with the OpenAI SDK and its helpers as the client."""

from __future__ import annotations

import json

import httpx
import jsonschema
import openai
import pytest
from openai import OpenAI
from pydantic import BaseModel

from tests.support.inference import inference_service
from tests.support.samples import CALC, HISTORY, TOOLS, WEATHER

pytestmark = [pytest.mark.real_model, pytest.mark.live]

CHAT = "smollm2"
ASK = [{"role": "user", "content": "What's the weather like today in Hamburg?"}]
# OpenAI's allowed_tools: asked about the weather, the model may only call the calculator
ONLY_CALC = {"type": "allowed_tools", "allowed_tools": {"mode": "required", "tools": [CALC]}}
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}


@pytest.fixture(scope="module")
def service():
    with inference_service("--model", f"{CHAT}=packaged:smollm2:chat") as url:
        yield url


@pytest.fixture
def client(service) -> OpenAI:
    return OpenAI(base_url=f"{service}/v1", api_key="unused", max_retries=0)


def _calls(message) -> list[tuple[str, dict]]:
    calls = []
    for call in message.tool_calls or []:
        assert call.type == "function" and call.id.startswith("call_")
        arguments = json.loads(call.function.arguments)
        jsonschema.validate(arguments, SCHEMAS[call.function.name])
        calls.append((call.function.name, arguments))
    return calls


@pytest.mark.parametrize(
    "options",
    [
        {"tool_choice": "required", "temperature": 0.7, "seed": 11},
        {"tool_choice": "required", "temperature": 1.0, "seed": 5, "parallel_tool_calls": True},
        {"tool_choice": {"type": "function", "function": {"name": "calculate"}}, "temperature": 0.7, "seed": 2},
        {"tool_choice": "auto", "temperature": 0},
        {"tool_choice": ONLY_CALC, "temperature": 0.7, "seed": 3},
    ],
    ids=["required", "required-t1", "named", "auto-greedy", "allowed-tools"],
)
def test_streamed_tool_calls_assemble_to_the_non_streamed_answer(client, options):
    kwargs = dict(model=CHAT, messages=ASK, tools=TOOLS, max_tokens=120, **options)
    whole = client.chat.completions.create(**kwargs)
    choice = whole.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    assert choice.message.content is None
    calls = _calls(choice.message)
    assert calls
    if isinstance(options["tool_choice"], dict):
        assert {name for name, _ in calls} == {"calculate"}

    chunks = []
    with client.chat.completions.stream(**kwargs) as stream:  # the SDK's helper assembles the deltas
        for event in stream:
            if event.type == "chunk":
                chunks.append(event.chunk)
        final = stream.get_final_completion()
    streamed = final.choices[0]
    assert streamed.finish_reason == "tool_calls"
    assert streamed.message.content is None
    got = [(c.function.name, c.function.arguments) for c in streamed.message.tool_calls]
    assert got == [(c.function.name, c.function.arguments) for c in choice.message.tool_calls]

    # every tool-call delta has its index; id, type and name come once, in the first fragment of each call
    fragments = [tc for c in chunks for ch in c.choices for tc in (ch.delta.tool_calls or [])]
    assert fragments and all(f.index is not None for f in fragments)
    for index in {f.index for f in fragments}:
        mine = [f for f in fragments if f.index == index]
        assert mine[0].id and mine[0].type == "function" and mine[0].function.name
        assert all(f.id is None and f.function.name is None for f in mine[1:])
    assert len(fragments) > len(got)  # the arguments came in pieces
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


def test_tool_results_in_the_history_get_a_plain_answer(client):
    messages = HISTORY + [{"role": "user", "content": "So where is it warmer?"}]
    response = client.chat.completions.create(model=CHAT, messages=messages, tools=TOOLS, tool_choice="none",
                                              max_tokens=30, temperature=0)  # fmt: skip
    choice = response.choices[0]
    assert choice.message.tool_calls is None and choice.message.content and choice.finish_reason in ("stop", "length")


def test_tool_choice_none_and_no_tools_answer_in_text(client):
    response = client.chat.completions.create(model=CHAT, messages=ASK, max_tokens=20, temperature=0)
    assert response.choices[0].message.tool_calls is None and response.choices[0].message.content


class Weather(BaseModel):
    city: str
    celsius: float
    sunny: bool


def test_structured_output_with_the_sdk_parse_helper(client):
    completion = client.chat.completions.parse(model=CHAT, messages=ASK, response_format=Weather, max_tokens=80,
                                               temperature=0.7, seed=4)  # fmt: skip
    message = completion.choices[0].message
    assert completion.choices[0].finish_reason == "stop"
    assert isinstance(message.parsed, Weather), message.content


def test_json_object_answers_are_json_objects(client):
    for seed in (1, 2, 3):
        response = client.chat.completions.create(model=CHAT, messages=ASK, response_format={"type": "json_object"},
                                                  max_tokens=60, temperature=0.7, seed=seed)  # fmt: skip
        choice = response.choices[0]
        if choice.finish_reason == "stop":
            assert isinstance(json.loads(choice.message.content), dict)
        else:
            assert choice.finish_reason == "length" and choice.message.content.startswith("{")


@pytest.mark.parametrize(
    "extra, param",
    [
        ({"tools": []}, "tools"),
        ({"tools": [{"type": "function", "function": {"name": "a b"}}]}, "tools[0].function.name"),
        ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "calculate"}}}, "tool_choice"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tools": [CALC], "tool_choice": "sometimes"}, "tool_choice"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nope"}}}},
         "response_format.json_schema.schema"),
        ({"messages": [{"role": "tool", "content": "12 C"}]}, "messages[0].tool_call_id"),
        ({"messages": [{"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": {}}}]}]},
         "messages[0].tool_calls[0].function.arguments"),
    ],
)  # fmt: skip
def test_bad_tool_requests_are_openai_errors(service, extra, param):
    body = {"model": CHAT, "messages": ASK, "max_tokens": 5, **extra}
    response = httpx.post(f"{service}/v1/chat/completions", json=body, timeout=60)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error" and error["message"]


def test_the_sdk_raises_bad_request_for_an_invalid_tool(client):
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model=CHAT, messages=ASK, tools=[{"type": "function", "function": {}}])
    assert raised.value.body["param"] == "tools[0].function.name"


def test_an_assistant_turn_with_refusal_parts_reads_as_its_text(client):
    """OpenAI's assistant content parts are ``text`` and ``refusal``: a history holding a refusal part (another
    provider's answer, replayed) is read as that text, the same prompt as the joined string."""

    def answer(content) -> str:
        messages = [*ASK, {"role": "assistant", "content": content}, {"role": "user", "content": "Why not?"}]
        completion = client.chat.completions.create(model=CHAT, messages=messages, max_tokens=12, temperature=0)
        return completion.choices[0].message.content

    parts = [{"type": "text", "text": "Sorry."}, {"type": "refusal", "refusal": "I cannot check the weather."}]
    assert answer(parts) == answer("Sorry.\nI cannot check the weather.")
    with pytest.raises(openai.BadRequestError) as raised:
        answer([{"type": "refusal", "refusal": 7}])
    assert raised.value.body["param"] == "messages[1].content[0].refusal"
