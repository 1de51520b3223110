"""OpenAI's Responses API through a live hub to the real models, with the OpenAI SDK: ``responses.create`` (text,
an image on a vision model, a function tool that must be called and its output sent back, ``json_schema``),
``responses.stream`` (the events in order, each valid against OpenAI's schemas), ``responses.parse``, a
conversation over ``previous_response_id``, the stored responses' routes, tenancy, metering and bad input; a remote
MCP server's tool called by the model (the ``mcp`` tool's gateway behaviour: ``test_responses_mcp.py``)."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from pydantic import BaseModel

from accounts import services
from tests.openai_spec import assert_valid
from tests.support.live import CHAT, VISION_15, rows
from tests.support.mcp_server import mcp_server

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}
COLOUR = {
    "type": "object",
    "properties": {"colour": {"type": "string", "maxLength": 12}, "warm": {"type": "boolean"}},
    "required": ["colour", "warm"],
    "additionalProperties": False,
}


def post(hub, body: dict, key=None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {(key or hub.everything).secret}"}
    return httpx.post(f"{hub.url}/v1/responses", json=body, headers=headers, timeout=120)


def stream_events(hub, body: dict) -> list[dict]:
    headers = {"Authorization": f"Bearer {hub.everything.secret}"}
    with httpx.stream("POST", f"{hub.url}/v1/responses", json={**body, "stream": True}, headers=headers,
                      timeout=120) as response:  # fmt: skip
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = "".join(response.iter_text())
    events = []
    for block in raw.strip().split("\n\n"):
        name, data = block.split("\n")
        event = json.loads(data.removeprefix("data: "))
        assert name == f"event: {event['type']}"
        events.append(event)
    return events


def assert_row_matches(response_id_or_usage, **filters):
    """The usage row of the response equals the usage the client saw."""
    usage = response_id_or_usage
    [row] = rows(route="responses", **filters)
    assert (row.prompt_tokens, row.completion_tokens, row.cached_tokens) == (
        usage.input_tokens, usage.output_tokens, usage.input_tokens_details.cached_tokens,
    )  # fmt: skip
    return row


def test_text_answer_in_openais_shape_stored_and_metered(hub):
    answer = hub().responses.create(model=CHAT, input="Name a colour.", instructions="Answer in one word.",
                                    max_output_tokens=8, temperature=0, metadata={"case": "text"})  # fmt: skip
    assert answer.object == "response" and answer.id.startswith("resp_") and answer.model == CHAT
    assert answer.status in ("completed", "incomplete") and answer.output_text
    [message] = answer.output
    assert message.type == "message" and message.role == "assistant" and message.content[0].type == "output_text"
    assert answer.metadata == {"case": "text"} and answer.instructions == "Answer in one word."
    assert answer.usage.total_tokens == answer.usage.input_tokens + answer.usage.output_tokens
    assert_row_matches(answer.usage)
    headers = {"Authorization": f"Bearer {hub.everything.secret}"}
    raw = httpx.get(f"{hub.url}/v1/responses/{answer.id}", headers=headers).json()
    assert_valid("Response", raw)
    assert [o["id"] for o in raw["output"]] == [o.id for o in answer.output]
    assert raw["usage"]["input_tokens"] == answer.usage.input_tokens


def test_raw_answer_and_cut_at_max_output_tokens_are_valid(hub):
    answer = post(hub, {"model": CHAT, "input": "Tell me a long story about a dragon.", "max_output_tokens": 3,
                        "temperature": 0})  # fmt: skip
    assert answer.status_code == 200
    body = answer.json()
    assert_valid("Response", body)
    assert body["status"] == "incomplete" and body["incomplete_details"] == {"reason": "max_output_tokens"}
    assert body["usage"]["output_tokens"] == 3 and body["output"][0]["status"] == "incomplete"


def test_parallel_tool_calls_is_taken_with_or_without_tools(hub):
    """A response's ``parallel_tool_calls`` is its default (true), echoed back: allowed without tools, unlike chat's."""
    for parallel in (True, False):
        answer = hub().responses.create(model=CHAT, input="Hi.", parallel_tool_calls=parallel, max_output_tokens=2)
        assert answer.parallel_tool_calls is parallel and answer.status in ("completed", "incomplete")
    called = hub().responses.create(model=CHAT, input="Weather in Oslo and in Rome?", tools=[WEATHER],
                                    tool_choice="required", parallel_tool_calls=False,
                                    max_output_tokens=60)  # fmt: skip
    assert [o.type for o in called.output] == ["function_call"] and called.parallel_tool_calls is False


def test_image_input_on_a_vision_model(hub, images):
    content = [{"type": "input_text", "text": "What is in the picture?"},
               {"type": "input_image", "image_url": f"{images.url}/photo.jpg"}]  # fmt: skip
    answer = hub().responses.create(model=VISION_15, input=[{"role": "user", "content": content}],
                                    max_output_tokens=5, temperature=0)  # fmt: skip
    picture = {"type": "image_url", "image_url": {"url": f"{images.url}/photo.jpg"}}
    messages = [{"role": "user", "content": [{"type": "text", "text": "What is in the picture?"}, picture]}]
    chat = hub().chat.completions.create(model=VISION_15, max_tokens=5, temperature=0, messages=messages)
    text = hub().responses.create(model=VISION_15, input="What is in the picture?", max_output_tokens=5,
                                  temperature=0)  # fmt: skip
    # the picture's tokens were read, as chat completions reads them: the same prompt, the same greedy answer
    assert answer.usage.input_tokens == chat.usage.prompt_tokens > text.usage.input_tokens
    assert answer.output_text == chat.choices[0].message.content and answer.usage.output_tokens == 5


def test_required_function_call_and_its_output_round_trip(hub):
    client = hub()
    question = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = client.responses.create(model=CHAT, input=question, tools=[WEATHER], tool_choice="required",
                                    max_output_tokens=64, temperature=0)  # fmt: skip
    [call] = [item for item in first.output if item.type == "function_call"]
    assert call.name == "get_weather" and call.call_id and call.id.startswith("fc_")
    assert set(json.loads(call.arguments)) == {"city"}
    output = {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny, 21 C."}
    # stateless: the whole conversation sent back, as the Agents SDK does
    second = client.responses.create(model=CHAT, input=[*question, call.model_dump(exclude_none=True), output],
                                     tools=[WEATHER], max_output_tokens=24, temperature=0, store=False)  # fmt: skip
    # stateful: only the tool's output, continuing the stored first response
    third = client.responses.create(model=CHAT, previous_response_id=first.id, input=[output], tools=[WEATHER],
                                    max_output_tokens=24, temperature=0)  # fmt: skip
    assert second.output_text and second.output[-1].type == "message"
    # the same context either way: the same prompt, the same greedy answer
    assert third.usage.input_tokens == second.usage.input_tokens and third.output_text == second.output_text
    assert third.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens
    assert len(rows(3, route="responses")) == 3
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(second.id)  # store: false


def test_the_model_calls_a_remote_mcp_servers_tool(hub):
    """SmolLM2, made to call the server's ``add`` (a named ``mcp`` tool choice): the hub lists the server's tools,
    runs the model's call on the server and lets the model answer with its output, in one response."""
    client = hub()
    with mcp_server() as server:
        tool = {"type": "mcp", "server_label": "calculator", "server_url": server.url, "require_approval": "never",
                "allowed_tools": ["add"]}  # fmt: skip
        raw = client.responses.with_raw_response.create(
            model=CHAT, input="What is 17 plus 25?", tools=[tool], max_output_tokens=48, temperature=0,
            tool_choice={"type": "mcp", "server_label": "calculator", "name": "add"},
        )  # fmt: skip
    body = raw.http_response.json()
    assert_valid("Response", body)
    listed, call, *rest = body["output"]
    assert listed["type"] == "mcp_list_tools" and [t["name"] for t in listed["tools"]] == [
        "add",
        "remember",
        "wait",
        "fail",
    ]
    assert call["type"] == "mcp_call" and call["name"] == "add", call
    arguments = json.loads(call["arguments"])
    assert server.calls == [("add", arguments)] and call["output"] == str(arguments["a"] + arguments["b"])
    assert call["status"] == "completed" and rest and rest[-1]["type"] == "message"
    [row] = rows(request_id=raw.headers["x-request-id"])
    assert (
        row.prompt_tokens == body["usage"]["input_tokens"] and row.completion_tokens == body["usage"]["output_tokens"]
    )


def test_named_function_choice_and_streamed_call_events(hub):
    body = {"model": CHAT, "input": "Weather in Rome?", "tools": [WEATHER], "max_output_tokens": 64,
            "tool_choice": {"type": "function", "name": "get_weather"}, "temperature": 0}  # fmt: skip
    events = stream_events(hub, body)
    for event in events:
        assert_valid("ResponseStreamEvent", event)
    kinds = [e["type"] for e in events]
    assert kinds[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert "response.function_call_arguments.delta" in kinds and kinds[-1] == "response.completed"
    done = next(e for e in events if e["type"] == "response.function_call_arguments.done")
    deltas = "".join(e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta")
    assert done["arguments"] == deltas and json.loads(deltas)["city"] and done["name"] == "get_weather"
    final = events[-1]["response"]
    assert final["output"][0]["type"] == "function_call" and final["output"][0]["arguments"] == deltas


def test_json_schema_output_is_valid_json(hub):
    fmt = {"type": "json_schema", "name": "colour", "schema": COLOUR, "strict": True}
    answer = hub().responses.create(model=CHAT, input="Pick a colour.", text={"format": fmt},
                                    max_output_tokens=40, temperature=0)  # fmt: skip
    value = json.loads(answer.output_text)
    assert set(value) == {"colour", "warm"} and isinstance(value["warm"], bool)
    assert answer.text.format.type == "json_schema"


class Colour(BaseModel):
    colour: str
    warm: bool


def test_parse_with_a_pydantic_model(hub):
    parsed = hub().responses.parse(model=CHAT, input="Pick a colour.", text_format=Colour, max_output_tokens=40,
                                   temperature=0)  # fmt: skip
    assert isinstance(parsed.output_parsed, Colour)


def test_stream_events_in_order_and_valid(hub):
    events = stream_events(hub, {"model": CHAT, "input": "Say hello.", "max_output_tokens": 6, "temperature": 0})
    for event in events:
        assert_valid("ResponseStreamEvent", event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    kinds = [e["type"] for e in events]
    deltas = kinds.count("response.output_text.delta")
    assert kinds == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        *["response.output_text.delta"] * deltas, "response.output_text.done", "response.content_part.done",
        "response.output_item.done", "response.incomplete" if events[-1]["response"]["status"] == "incomplete"
        else "response.completed",
    ]  # fmt: skip
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert events[-4]["text"] == text and events[-1]["response"]["output"][0]["content"][0]["text"] == text
    usage = events[-1]["response"]["usage"]
    [row] = rows(route="responses", streamed=True)
    assert (row.prompt_tokens, row.completion_tokens) == (usage["input_tokens"], usage["output_tokens"])


def test_sdk_stream_helper(hub):
    with hub().responses.stream(model=CHAT, input="Say hello.", instructions="Answer in one word.",
                                max_output_tokens=64, temperature=0) as stream:  # fmt: skip
        kinds = [event.type for event in stream]
        final = stream.get_final_response()  # the helper wants response.completed: the answer must end by itself
    assert kinds[0] == "response.created" and "response.output_text.delta" in kinds
    assert final.output_text and 0 < final.usage.output_tokens < 64


def test_conversation_over_previous_response_id(hub):
    client = hub()
    turns = ["My name is Ada.", "I live in Paris.", "What is my name?"]
    previous, answers = None, []
    for text in turns:
        answer = client.responses.create(model=CHAT, input=text, previous_response_id=previous,
                                         max_output_tokens=12, temperature=0)  # fmt: skip
        answers.append(answer)
        previous = answer.id
    # the third turn saw the whole conversation: as if every item had been sent
    items = []
    for text, answer in zip(turns[:2], answers[:2], strict=True):
        items += [{"role": "user", "content": text}, *[o.model_dump(exclude_none=True) for o in answer.output]]
    explicit = client.responses.create(model=CHAT, input=[*items, {"role": "user", "content": turns[2]}],
                                       max_output_tokens=12, temperature=0, store=False)  # fmt: skip
    assert answers[2].usage.input_tokens == explicit.usage.input_tokens
    assert answers[2].output_text == explicit.output_text
    assert answers[2].previous_response_id == answers[1].id
    # input items are the request's own, with ids
    listed = client.responses.input_items.list(answers[2].id)
    assert [i.content[0].text for i in listed.data] == [turns[2]] and listed.data[0].id.startswith("msg_")
    headers = {"Authorization": f"Bearer {hub.everything.secret}"}
    raw = httpx.get(f"{hub.url}/v1/responses/{answers[2].id}/input_items", headers=headers).json()
    assert_valid("ResponseItemList", raw)
    # deleting an earlier turn does not break the later ones: each keeps its context
    client.responses.delete(answers[0].id)
    again = client.responses.create(model=CHAT, input=turns[2], previous_response_id=answers[1].id,
                                    max_output_tokens=12, temperature=0)  # fmt: skip
    assert again.usage.input_tokens == answers[2].usage.input_tokens


def test_retrieve_delete_and_input_items(hub):
    client = hub()
    first = client.responses.create(model=CHAT, input=[{"role": "user", "content": "One."},
                                                       {"role": "user", "content": "Two."}],
                                    max_output_tokens=2)  # fmt: skip
    assert client.responses.retrieve(first.id).id == first.id
    page = client.responses.input_items.list(first.id, order="asc", limit=1)
    assert page.data[0].content[0].text == "One." and page.has_more
    rest = client.responses.input_items.list(first.id, order="asc", after=page.data[0].id)
    assert [i.content[0].text for i in rest.data] == ["Two."] and not rest.has_more
    with pytest.raises(openai.BadRequestError):
        client.responses.cancel(first.id)  # not a background response
    client.responses.delete(first.id)
    for call in (client.responses.retrieve, client.responses.delete, client.responses.input_items.list):
        with pytest.raises(openai.NotFoundError) as exc:
            call(first.id)
        assert exc.value.body["message"] == f"Response with id '{first.id}' not found."


def test_another_tenants_key_sees_nothing(hub):
    first = hub().responses.create(model=CHAT, input="Secret.", max_output_tokens=2)
    other = services.create_tenant("initech", "Initech")
    services.grant_models(other, [CHAT])
    key = services.issue_key(other, name="other")
    outsider = openai.OpenAI(base_url=f"{hub.url}/v1", api_key=key.secret, max_retries=0)
    missing = "resp_" + "0" * 48
    for response_id in (first.id, missing):
        with pytest.raises(openai.NotFoundError) as exc:
            outsider.responses.retrieve(response_id)
        assert exc.value.body["message"] == f"Response with id '{response_id}' not found."
        with pytest.raises(openai.NotFoundError):
            outsider.responses.input_items.list(response_id)
        with pytest.raises(openai.NotFoundError):
            outsider.responses.delete(response_id)
        with pytest.raises(openai.NotFoundError) as exc:
            outsider.responses.create(model=CHAT, input="Go on.", previous_response_id=response_id)
        assert exc.value.body["param"] == "previous_response_id"
    assert hub().responses.retrieve(first.id).id == first.id  # still there for its tenant


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"input": [{"type": "web_search_call", "id": "ws_1"}]}, 400, "input[0].type"),
        ({"input": [{"type": "function_call_output", "call_id": "call_nope", "output": "x"}]}, 400, "input"),
        ({"input": "Hi", "previous_response_id": "resp_unknown"}, 404, "previous_response_id"),
        ({"input": "Hi", "tools": [{"type": "web_search"}]}, 400, "tools[0].type"),
        ({"input": "Hi", "tools": [{"type": "code_interpreter", "container": {"type": "auto"}}]}, 400, "tools[0].type"),
        ({"input": "Hi", "background": True, "store": False}, 400, "background"),
        ({"input": 3}, 400, "input"),
        ({}, 400, "input"),
        ({"input": [{"role": "wizard", "content": "x"}]}, 400, "input[0].role"),
        ({"input": "Hi", "tool_choice": {"type": "function", "name": "nope"}}, 400, "tool_choice.name"),
        ({"input": "Hi", "tool_choice": {"name": "x"}}, 400, "tool_choice.type"),  # found by the fuzz
        ({"input": "Hi", "text": {"format": {"type": "json_schema", "name": "x"}}}, 400, "text.format.schema"),
        ({"input": "Hi", "max_output_tokens": 0}, 400, "max_output_tokens"),
        ({"input": "Hi", "max_output_tokens": 10**6}, 400, "max_output_tokens"),
    ],
)
def test_bad_input_gets_openais_error(hub, body, status, param):
    answer = post(hub, {"model": CHAT, **body})
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["param"] == param
    assert error["type"] == "invalid_request_error"
    assert_valid("ErrorResponse", answer.json())


def test_a_stream_the_client_aborts_is_metered(hub):
    headers = {"Authorization": f"Bearer {hub.everything.secret}"}
    # greedy: a sampled story can be "An evoke." (a dozen of 960 seeded samples ended within 12 tokens), which ends
    # before the client hangs up
    body = {"model": CHAT, "input": "Tell me a long story.", "max_output_tokens": 200, "stream": True, "temperature": 0}
    deltas = 0
    with httpx.stream("POST", f"{hub.url}/v1/responses", json=body, headers=headers, timeout=120) as response:
        request_id = response.headers["x-request-id"]
        for line in response.iter_lines():
            deltas += line == "event: response.output_text.delta"
            if deltas == 5:
                break
    [row] = rows(request_id=request_id)
    assert row.route == "responses" and row.aborted and row.status_code == 499
    assert 5 <= row.completion_tokens < 200 and row.prompt_tokens > 0
