"""The Responses API's gateway behaviour against fake deployments (no model): a thinking model's reasoning as
reasoning items and events, the Responses request relayed natively to an external deployment (the stored
conversation written out, the hub's id and name on the answer, stored and metered), a service failing mid-answer
(an ``error`` event, then ``response.failed``, metered), and the key's limits."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from accounts import services
from accounts.limits import Limits
from accounts.models import ModelKind, StoredResponse
from tests.openai_spec import assert_valid
from tests.support.documents import NOTES, document_server
from tests.support.live import FAKE_CHAT, FAKE_EMBED, chat_upstream, rows

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def hub(fake_hub):
    return fake_hub


def _events(raw: str) -> list[dict]:
    return [json.loads(block.split("data: ", 1)[1]) for block in raw.strip().split("\n\n")]


def _stream(hub, body: dict) -> tuple[str, list[dict]]:
    headers = {"authorization": f"Bearer {hub.everything.secret}"}
    with httpx.stream("POST", f"{hub.url}/v1/responses", headers=headers, json={**body, "stream": True},
                      timeout=30) as response:  # fmt: skip
        assert response.status_code == 200
        return response.headers["x-request-id"], _events("".join(response.iter_text()))


def _chunk(delta: dict, finish: str | None = None, usage: dict | None = None) -> str:
    chunk = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "up",
             "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], "usage": usage}  # fmt: skip
    return f"data: {json.dumps(chunk)}\n\n"


@pytest.fixture
def thinker():
    """Our service as a thinking model (Qwen3) answers: a think block, then the text; the requests it got."""
    from starlette.responses import StreamingResponse

    received: list[dict] = []

    async def chat(request):
        received.append(await request.json())

        async def events():
            for i, word in enumerate(["Paris ", "is ", "a ", "city."]):
                yield _chunk({"reasoning_content": word}, usage={"prompt_tokens": 9, "completion_tokens": i + 1})
            yield _chunk({"content": "Yes."}, usage={"prompt_tokens": 9, "completion_tokens": 5})
            usage = {"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14,
                     "prompt_tokens_details": {"cached_tokens": 4},
                     "completion_tokens_details": {"reasoning_tokens": 4}}  # fmt: skip
            yield _chunk({}, "stop", usage)
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    with chat_upstream(chat) as url:
        services.register_model("thinker", ModelKind.CHAT, max_sequence_length=512, max_output_length=64,
                                deployment_url=url)  # fmt: skip
        yield received


def test_reasoning_comes_back_as_a_reasoning_item(hub, thinker):
    services.grant_models(hub.tenant, ["thinker"])
    answer = hub().responses.create(model="thinker", input="Is Paris a city?", reasoning={"effort": "high"})
    reasoning, message = answer.output
    assert reasoning.type == "reasoning" and reasoning.content[0].text == "Paris is a city."
    assert message.type == "message" and answer.output_text == "Yes."
    usage = answer.usage
    assert (usage.input_tokens, usage.output_tokens, usage.output_tokens_details.reasoning_tokens) == (9, 5, 4)
    assert usage.input_tokens_details.cached_tokens == 4
    [row] = rows(route="responses")
    assert (row.prompt_tokens, row.completion_tokens, row.cached_tokens) == (9, 5, 4)
    assert "chat_template_kwargs" not in thinker[0] and thinker[0]["stream"] is True

    _, events = _stream(hub, {"model": "thinker", "input": "Is Paris a city?", "reasoning": {"effort": "none"}})
    for event in events:
        assert_valid("ResponseStreamEvent", event)
    kinds = [e["type"] for e in events]
    assert kinds[2:4] == ["response.output_item.added", "response.reasoning_text.delta"]
    assert kinds.count("response.reasoning_text.delta") == 4 and "response.reasoning_text.done" in kinds
    assert kinds[-1] == "response.completed" and [o["type"] for o in events[-1]["response"]["output"]] == [
        "reasoning", "message",
    ]  # fmt: skip
    assert thinker[1]["chat_template_kwargs"] == {"enable_thinking": False}  # effort "none": thinking off


def _native_answer(body: dict) -> dict:
    text = f"{len(body['input'])} items"
    return {"id": "resp_upstream", "object": "response", "created_at": 1, "status": "completed", "model": "up-model",
            "output": [{"id": "msg_up", "type": "message", "role": "assistant", "status": "completed",
                        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]}],
            "usage": {"input_tokens": 11, "output_tokens": 3, "total_tokens": 14,
                      "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 11},
                      "output_tokens_details": {"reasoning_tokens": 0}},
            "error": None, "incomplete_details": None, "instructions": None, "metadata": {}, "tools": [],
            "tool_choice": "auto", "parallel_tool_calls": True, "temperature": 1.0, "top_p": 1.0}  # fmt: skip


@pytest.fixture
def native():
    from starlette.responses import JSONResponse, StreamingResponse

    received: list[dict] = []

    async def responses(request):
        body = await request.json()
        received.append(body)
        answer = _native_answer(body)
        if not body.get("stream"):
            return JSONResponse(answer)

        async def events():
            text = answer["output"][0]["content"][0]["text"]
            for event in (
                {"type": "response.created", "response": {**answer, "status": "in_progress", "output": []}},
                {"type": "response.output_text.delta", "item_id": "msg_up", "output_index": 0, "content_index": 0,
                 "delta": text, "logprobs": []},
                {"type": "response.completed", "response": answer},
            ):  # fmt: skip
                yield f"event: {event['type']}\ndata: {json.dumps(event)}\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    with chat_upstream(responses, "responses") as url:
        services.register_model("native", ModelKind.CHAT, max_sequence_length=4096, max_output_length=64,
                                deployment_url=url, upstream_api_key="sk-up", external=True)  # fmt: skip
        yield received


def test_an_external_deployment_gets_the_responses_request_itself(hub, native):
    services.grant_models(hub.tenant, ["native"])
    client = hub()
    first = client.responses.create(model="native", input="Hello.")
    assert first.id.startswith("resp_") and first.id != "resp_upstream" and first.model == "native"
    assert native[0]["store"] is False and native[0]["model"] == "native" and "previous_response_id" not in native[0]
    assert native[0]["input"][0]["content"][0]["text"] == "Hello."
    second = client.responses.create(model="native", input="Again.", previous_response_id=first.id)
    # the upstream saw the whole conversation as input, and nothing of the hub's own storage
    assert [i["type"] for i in native[1]["input"]] == ["message", "message", "message"]
    assert "previous_response_id" not in native[1] and native[1]["store"] is False
    assert second.output_text == "3 items" and second.previous_response_id == first.id
    assert client.responses.retrieve(second.id).output_text == "3 items"
    request_id, events = _stream(hub, {"model": "native", "input": "Streamed.", "previous_response_id": second.id})
    assert [e["type"] for e in events] == ["response.created", "response.output_text.delta", "response.completed"]
    final = events[-1]["response"]
    assert final["id"] != "resp_upstream" and final["model"] == "native" and final["output"][0]["content"][0][
        "text"
    ] == "5 items"  # fmt: skip
    assert StoredResponse.objects.filter(pk=final["id"]).exists()
    metered = rows(3, route="responses")
    assert [(r.prompt_tokens, r.completion_tokens, r.streamed) for r in metered] == [
        (11, 3, False), (11, 3, False), (11, 3, True),
    ]  # fmt: skip
    assert metered[-1].request_id == request_id


@pytest.fixture
def failing():
    """Our service failing after two chunks of text (an error event, as it sends one)."""
    from starlette.responses import StreamingResponse

    async def chat(request):
        async def events():
            for i in range(2):
                yield _chunk({"content": f"w{i} "}, usage={"prompt_tokens": 6, "completion_tokens": i + 1})
            yield f"data: {json.dumps({'error': {'message': 'boom', 'type': 'server_error'}})}\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    with chat_upstream(chat) as url:
        services.register_model("failing", ModelKind.CHAT, max_sequence_length=512, max_output_length=64,
                                deployment_url=url)  # fmt: skip
        yield


def test_a_failure_mid_answer_ends_with_error_and_response_failed_and_is_metered(hub, failing):
    services.grant_models(hub.tenant, ["failing"])
    request_id, events = _stream(hub, {"model": "failing", "input": "Hi"})
    for event in events:
        assert_valid("ResponseStreamEvent", event)
    assert [e["type"] for e in events[-2:]] == ["error", "response.failed"]
    assert events[-1]["response"]["status"] == "failed" and events[-1]["response"]["output"][0]["content"][0][
        "text"
    ] == "w0 w1 "  # fmt: skip
    [row] = rows(request_id=request_id)
    assert (row.status_code, row.prompt_tokens, row.completion_tokens) == (502, 6, 2)
    with pytest.raises(openai.APIStatusError) as exc:
        hub().responses.create(model="failing", input="Hi")
    assert exc.value.status_code == 502 and exc.value.body["code"] == "upstream_error"
    assert len(rows(2, route="responses")) == 2 and not StoredResponse.objects.exists()


def test_limits_hold_for_responses_as_for_chat(hub, fake):
    issued = services.issue_key(hub.tenant, name="limited")
    services.set_limits(issued.key, Limits(rpm=2, tpm=10_000))
    client = openai.OpenAI(base_url=f"{hub.url}/v1", api_key=issued.secret, max_retries=0)
    for _ in range(2):
        answer = client.responses.with_raw_response.create(model=FAKE_CHAT, input="Hi", max_output_tokens=4)
        assert answer.headers["x-ratelimit-limit-requests"] == "2"
        assert answer.parse().output_text == "w0 w1 w2 w3 "
    with pytest.raises(openai.RateLimitError) as exc:
        client.responses.create(model=FAKE_CHAT, input="Hi", max_output_tokens=4)
    assert exc.value.body["code"] == "rate_limit_exceeded"
    metered = rows(2, route="responses", api_key=issued.key)
    assert len(metered) == 2 and all(r.completion_tokens == 4 for r in metered)
    sent = fake.requests[-1]
    assert sent["max_completion_tokens"] == 4 and sent["stream_options"]["continuous_usage_stats"] is True


def test_a_key_over_its_limits_is_refused_before_the_hub_fetches_its_file(hub, fake):
    """The limits are asked, charging nothing, before a file is read: the refused request's ``file_url`` is never
    fetched; the admitted one's is, and the model reads its text."""
    issued = services.issue_key(hub.tenant, name="one-a-minute")
    services.set_limits(issued.key, Limits(rpm=1))
    client = openai.OpenAI(base_url=f"{hub.url}/v1", api_key=issued.secret, max_retries=0)
    with document_server() as server:
        content = [
            {"type": "input_text", "text": "Read:"},
            {"type": "input_file", "file_url": f"{server.url}/notes.txt"},
        ]
        client.responses.create(model=FAKE_CHAT, input=[{"role": "user", "content": content}], max_output_tokens=2)
        assert server.requests == ["/notes.txt"] and NOTES in json.dumps(fake.requests[-1]["messages"])
        with pytest.raises(openai.RateLimitError) as exc:
            client.responses.create(model=FAKE_CHAT, input=[{"role": "user", "content": content}], max_output_tokens=2)
        assert exc.value.body["code"] == "rate_limit_exceeded" and server.requests == ["/notes.txt"]
    assert len(rows(1, route="responses", api_key=issued.key)) == 1


def _call(index: int, name: str, arguments: str) -> dict:
    return {"tool_calls": [{"index": index, "id": f"call_{index}", "type": "function",
                            "function": {"name": name, "arguments": arguments}}]}  # fmt: skip


def test_a_round_calling_a_function_and_file_search_searches_and_ends_with_the_call(hub, fake):
    """The model calls the client's function and file_search at once: the hub runs the search (shown, and kept for
    the context) and the answer ends with the client's call, in one round, as OpenAI's hosted tools run inline."""
    client = hub()
    store = client.vector_stores.create(name="notes", extra_body={"embedding_model": FAKE_EMBED})
    fake.scripts.append([_call(0, "weather", '{"city": "Lyon"}'), _call(1, "file_search", '{"queries": ["bees"]}')])
    tools = [
        {
            "type": "function",
            "name": "weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
        {"type": "file_search", "vector_store_ids": [store.id]},
    ]
    response = client.responses.create(model=FAKE_CHAT, input="The weather, and my notes on bees?", tools=tools)
    assert [item.type for item in response.output] == ["function_call", "file_search_call"]
    weather, search = response.output
    assert (weather.name, weather.call_id, weather.arguments) == ("weather", "call_0", '{"city": "Lyon"}')
    assert (search.status, search.queries, search.results) == ("completed", ["bees"], None)
    assert len([r for r in fake.requests if "messages" in r]) == 1  # no second round
    [kept] = [i for i in StoredResponse.objects.get(pk=response.id).context() if i["type"] == "file_search_call"]
    assert kept["results"] == []  # the store is empty: searched, nothing found


def test_max_output_tokens_bounds_all_the_rounds_of_a_response(hub, fake):
    """As OpenAI's, ``max_output_tokens`` bounds the response's whole output: each round after a search gets what the
    rounds before it left, and a response whose searches spent it all ends ``incomplete`` without another round."""
    client = hub()
    store = client.vector_stores.create(name="notes", extra_body={"embedding_model": FAKE_EMBED})
    search = _call(0, "file_search", '{"queries": ["bees"]}')
    fake.scripts += [[search], [search]]  # one token each (the fake counts a script's deltas)
    tools = [{"type": "file_search", "vector_store_ids": [store.id]}]
    raw = client.responses.with_raw_response.create(model=FAKE_CHAT, input="My notes on bees?", max_output_tokens=2,
                                                    tools=tools)  # fmt: skip
    assert_valid("Response", raw.http_response.json())
    response = raw.parse()
    assert [r["max_completion_tokens"] for r in fake.requests if "messages" in r] == [2, 1]  # no third round
    assert [item.type for item in response.output] == ["file_search_call", "file_search_call"]
    assert response.status == "incomplete" and response.incomplete_details.reason == "max_output_tokens"
    assert response.usage.output_tokens == 2
    [row] = rows(1, route="responses")
    assert row.completion_tokens == 2


def test_max_tool_calls_bounds_the_searches_a_response_runs(hub, fake):
    """``max_tool_calls``: calls of the hub's tools past it are ignored (not run, not shown) and the round after the
    last allowed search may not search again (``tool_choice: none``)."""
    client = hub()
    store = client.vector_stores.create(name="notes", extra_body={"embedding_model": FAKE_EMBED})
    two = [_call(0, "file_search", '{"queries": ["bees"]}'), _call(1, "file_search", '{"queries": ["wasps"]}')]
    fake.scripts += [two]
    response = client.responses.create(model=FAKE_CHAT, input="My notes on bees?", max_tool_calls=1,
                                       tools=[{"type": "file_search", "vector_store_ids": [store.id]}])  # fmt: skip
    [search, message] = response.output
    assert (search.type, search.queries, message.type) == ("file_search_call", ["bees"], "message")
    first, second = [r for r in fake.requests if "messages" in r]
    assert first.get("tool_choice") in (None, "auto") and second["tool_choice"] == "none"
    [said] = [m for m in second["messages"] if m.get("tool_calls")]
    assert [c["function"]["arguments"] for c in said["tool_calls"]] == ['{"queries": ["bees"]}']
    assert response.max_tool_calls == 1 and response.status == "completed"


def test_an_item_reference_names_an_item_of_any_stored_response(hub, fake):
    """As OpenAI's Codex CLI sends a turn: the whole conversation again, without ``previous_response_id``, the items
    the hub made named by ``item_reference`` (the model's call, then the client's output for it). They resolve
    against the tenant's stored responses; one deleted, not stored or of another tenant is not found."""
    client = hub()
    weather = {"type": "function", "name": "weather",
               "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}  # fmt: skip
    fake.scripts.append([_call(0, "weather", '{"city": "Lyon"}')])
    first = client.responses.create(model=FAKE_CHAT, input="Weather in Lyon?", tools=[weather])
    [call] = first.output
    [asked] = client.responses.input_items.list(first.id).data
    fake.default_tokens = 2
    turn = [{"type": "item_reference", "id": asked.id}, {"type": "item_reference", "id": call.id},
            {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny."}]  # fmt: skip
    second = client.responses.create(model=FAKE_CHAT, input=turn, tools=[weather])
    sent = fake.requests[-1]["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool"]
    assert sent[0]["content"] == "Weather in Lyon?" and sent[2]["content"] == "Sunny."
    assert sent[1]["tool_calls"][0]["function"] == {"name": "weather", "arguments": '{"city": "Lyon"}'}
    assert second.status == "completed"
    # the referenced items are kept whole, as the stored conversation holds them
    kept = client.responses.input_items.list(second.id, order="asc").data
    assert [(i.type, i.id) for i in kept[:2]] == [("message", asked.id), ("function_call", call.id)]
    # a conversation's new items may name them too
    conversation = client.conversations.create(items=[{"type": "item_reference", "id": second.output[0].id}])
    [item] = client.conversations.items.list(conversation.id).data
    assert (item.id, item.type) == (second.output[0].id, "message")

    outsider_tenant = services.create_tenant("initech", "Initech")
    services.grant_models(outsider_tenant, [FAKE_CHAT])
    outsider = openai.OpenAI(base_url=f"{hub.url}/v1", max_retries=0,
                             api_key=services.issue_key(outsider_tenant, name="other").secret)  # fmt: skip
    unstored = client.responses.create(model=FAKE_CHAT, input="Hi.", store=False)
    deleted = client.responses.create(model=FAKE_CHAT, input="Hi.")
    client.responses.delete(deleted.id)
    client.responses.delete(first.id)  # its items are still the second's input: they stay found
    client.responses.create(model=FAKE_CHAT, input=[{"type": "item_reference", "id": call.id}])
    for who, item_id in ((outsider, second.output[0].id), (client, deleted.output[0].id),
                         (client, unstored.output[0].id)):  # fmt: skip
        with pytest.raises(openai.BadRequestError) as exc:
            who.responses.create(model=FAKE_CHAT, input=[{"type": "item_reference", "id": item_id}])
        assert exc.value.body["param"] == "input[0].id" and "not found" in exc.value.body["message"]
