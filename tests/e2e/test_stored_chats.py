"""OpenAI's stored chat completions (``store: true``) through a live hub, with the OpenAI SDK: ``create`` then
``retrieve``, ``list`` (pages, order, model and metadata filters), ``update``, ``messages.list`` and ``delete``;
streamed answers stored as the client read them; nothing stored without ``store``, nor for an aborted stream;
tenancy and bad input. The gateway's behaviour runs against the fake service; the last test stores a real model's
streamed tool calls and log probabilities, and finds them equal to its whole answer."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from accounts import services
from accounts.models import ModelKind
from tests.openai_spec import assert_valid, errors
from tests.support.live import CHAT, FAKE_CHAT, barrier, chat_upstream, read_then_hang_up, rows
from tests.support.samples import WEATHER

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

HELLO = [{"role": "user", "content": "Say hello."}]


def _words(count: int) -> str:
    return "".join(f"w{i} " for i in range(count))


def test_a_stored_answer_is_retrieved_listed_updated_and_deleted(fake_hub, fake):
    client = fake_hub()
    created = client.chat.completions.create(model=FAKE_CHAT, messages=HELLO, max_tokens=3, store=True,
                                             metadata={"team": "search", "run": "1"})  # fmt: skip
    assert created.id.startswith("chatcmpl-") and len(created.id) == 41  # the hub's id, not the deployment's
    assert "store" not in fake.requests[-1] and "metadata" not in fake.requests[-1]  # the hub keeps them
    found = client.chat.completions.retrieve(created.id)
    assert found.model_dump(exclude={"metadata"}) == created.model_dump(exclude={"metadata"})
    assert found.metadata == {"team": "search", "run": "1"} and found.choices[0].message.content == _words(3)
    raw = httpx.get(f"{fake_hub.url}/v1/chat/completions/{created.id}",
                    headers={"authorization": f"Bearer {fake_hub.everything.secret}"}).json()  # fmt: skip
    assert_valid("CreateChatCompletionResponse", raw)

    other = client.chat.completions.create(model=FAKE_CHAT, messages=HELLO, max_tokens=2, store=True)
    listed = httpx.get(f"{fake_hub.url}/v1/chat/completions",
                       headers={"authorization": f"Bearer {fake_hub.everything.secret}"}).json()  # fmt: skip
    assert_valid("ChatCompletionList", listed)
    assert [c["id"] for c in listed["data"]] == [created.id, other.id] and listed["has_more"] is False
    assert [c.id for c in client.chat.completions.list(metadata={"team": "search"})] == [created.id]
    assert [c.id for c in client.chat.completions.list(model=FAKE_CHAT, order="desc")] == [other.id, created.id]
    assert list(client.chat.completions.list(model="another-model")) == []

    updated = client.chat.completions.update(created.id, metadata={"team": "ads"})
    assert updated.metadata == {"team": "ads"} and updated.id == created.id
    assert [c.id for c in client.chat.completions.list(metadata={"team": "search"})] == []
    assert [c.id for c in client.chat.completions.list(metadata={"team": "ads"})] == [created.id]

    [message] = client.chat.completions.messages.list(created.id)
    assert (message.id, message.role, message.content) == (f"{created.id}-0", "user", "Say hello.")

    deleted = client.chat.completions.with_raw_response.delete(created.id).http_response.json()
    assert_valid("ChatCompletionDeleted", deleted)
    assert deleted == {"object": "chat.completion.deleted", "id": created.id, "deleted": True}
    for call in (client.chat.completions.retrieve, client.chat.completions.delete,
                 client.chat.completions.messages.list):  # fmt: skip
        with pytest.raises(openai.NotFoundError) as exc:
            call(created.id)
        assert exc.value.body["message"] == f"Chat completion with id '{created.id}' not found."
    assert [c.id for c in client.chat.completions.list()] == [other.id]


def test_a_stream_is_stored_as_the_client_read_it(fake_hub, fake):
    with fake_hub().chat.completions.with_streaming_response.create(
        model=FAKE_CHAT, messages=HELLO, max_tokens=5, stream=True, store=True, stream_options={"include_usage": True}
    ) as response:
        chunks = list(response.parse())
    ids = {c.id for c in chunks}
    assert len(ids) == 1 and ids != {"chatcmpl-fake"}  # every chunk under the stored id
    [completion_id] = ids
    found = fake_hub().chat.completions.retrieve(completion_id)
    assert found.object == "chat.completion" and found.model == FAKE_CHAT
    assert found.choices[0].message.content == "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert found.choices[0].finish_reason == "length" and found.usage == chunks[-1].usage
    assert found.usage.completion_tokens == 5 and found.created == chunks[0].created


def test_nothing_is_stored_without_store_nor_for_an_aborted_stream(fake_hub, fake):
    plain = fake_hub().chat.completions.create(model=FAKE_CHAT, messages=HELLO, max_tokens=2)
    assert plain.id == "chatcmpl-fake"  # the deployment's own id: nothing to retrieve it by
    unstored = fake_hub().chat.completions.create(model=FAKE_CHAT, messages=HELLO, max_tokens=2, store=False)
    fake.chunk_delay = 0.05
    request_id, _ = read_then_hang_up(fake_hub, FAKE_CHAT, "chat/completions",
                                      {"messages": HELLO, "max_tokens": 60, "store": True}, chunks=3)  # fmt: skip
    [row] = rows(request_id=request_id)
    assert row.aborted
    barrier(fake_hub)
    assert list(fake_hub().chat.completions.list()) == []
    with pytest.raises(openai.NotFoundError):
        fake_hub().chat.completions.retrieve(unstored.id)


def test_an_answer_cut_by_an_error_event_is_not_stored(fake_hub):
    """An external deployment that streams two chunks, an error event, then ``[DONE]``: relayed as it came,
    metered as a failure (502), and nothing stored; it never saw ``store`` or ``metadata``."""
    from starlette.responses import StreamingResponse

    received: list[dict] = []

    async def chat(request):
        received.append(await request.json())

        async def events():
            for i in range(2):
                chunk = {"id": "up", "object": "chat.completion.chunk", "created": 0, "model": "up",
                         "choices": [{"index": 0, "delta": {"content": f"w{i} "}, "finish_reason": None}]}  # fmt: skip
                yield f"data: {json.dumps(chunk)}\n\n"
            yield f"data: {json.dumps({'error': {'message': 'boom', 'type': 'server_error'}})}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    with chat_upstream(chat) as url:
        services.register_model("erring", ModelKind.CHAT, max_sequence_length=512, max_output_length=64,
                                deployment_url=url, upstream_api_key="sk-up", external=True)  # fmt: skip
        services.grant_models(fake_hub.tenant, ["erring"])
        with httpx.stream("POST", f"{fake_hub.url}/v1/chat/completions",
                          headers={"authorization": f"Bearer {fake_hub.everything.secret}"},
                          json={"model": "erring", "messages": HELLO, "stream": True, "store": True,
                                "metadata": {"a": "b"}}, timeout=30) as response:  # fmt: skip
            request_id = response.headers["x-request-id"]
            lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert json.loads(lines[-2][6:])["error"]["message"] == "boom" and lines[-1] == "data: [DONE]"
    assert "store" not in received[0] and "metadata" not in received[0]
    [row] = rows(request_id=request_id)
    assert row.status_code == 502
    assert list(fake_hub().chat.completions.list()) == []


def test_pages_through_the_sdk(fake_hub):
    client = fake_hub()
    made = [client.chat.completions.create(model=FAKE_CHAT, messages=HELLO, max_tokens=1, store=True).id
            for _ in range(5)]  # fmt: skip
    first = client.chat.completions.list(limit=2)
    assert [c.id for c in first.data] == made[:2] and first.has_next_page()
    assert [c.id for c in client.chat.completions.list(limit=2)] == made  # the SDK follows the pages
    assert [c.id for c in client.chat.completions.list(limit=2, order="desc")] == made[::-1]
    assert [c.id for c in client.chat.completions.list(after=made[2])] == made[3:]
    for params, param in (({"limit": 0}, "limit"), ({"limit": 101}, "limit"), ({"order": "up"}, "order"),
                          ({"after": "chatcmpl-nope"}, "after")):  # fmt: skip
        with pytest.raises(openai.BadRequestError) as exc:
            client.chat.completions.list(**params)
        assert exc.value.body["param"] == param


def test_messages_with_content_parts_in_pages(fake_hub):
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Hello "}, {"type": "text", "text": "there."}]},
        {"role": "assistant", "content": "Hi.", "name": "bot"},
        {"role": "user", "content": "Again."},
    ]
    created = fake_hub().chat.completions.create(model=FAKE_CHAT, messages=messages, max_tokens=1, store=True)
    listed = fake_hub().chat.completions.messages.list(created.id, limit=3)
    assert [m.id for m in listed.data] == [f"{created.id}-{i}" for i in range(3)] and listed.has_next_page()
    second = listed.data[1]
    assert second.content == "Hello there." and second.content_parts[1].text == "there."
    assert listed.data[0].content_parts is None and listed.data[2].name == "bot"
    assert [m.content for m in fake_hub().chat.completions.messages.list(created.id, limit=2)] == [
        "Be brief.", "Hello there.", "Hi.", "Again.",
    ]  # fmt: skip
    desc = fake_hub().chat.completions.messages.list(created.id, order="desc", after=f"{created.id}-2")
    assert [m.content for m in desc.data] == ["Hello there.", "Be brief."]
    raw = httpx.get(f"{fake_hub.url}/v1/chat/completions/{created.id}/messages",
                    headers={"authorization": f"Bearer {fake_hub.everything.secret}"}).json()  # fmt: skip
    # OpenAI's schema allows only the assistant's role in this list, yet its own example lists a user's message
    found = errors("ChatCompletionMessageList", raw)
    assert found == [f"data/{i}/role: '{m['role']}' is not one of ['assistant']" for i, m in enumerate(messages)
                     if m["role"] != "assistant"]  # fmt: skip


def test_another_tenants_key_sees_nothing(fake_hub):
    created = fake_hub().chat.completions.create(model=FAKE_CHAT, messages=HELLO, max_tokens=1, store=True)
    other = services.create_tenant("initech", "Initech")
    services.grant_models(other, [FAKE_CHAT])
    outsider = openai.OpenAI(base_url=f"{fake_hub.url}/v1", max_retries=0,
                             api_key=services.issue_key(other, name="other").secret)  # fmt: skip
    assert list(outsider.chat.completions.list()) == []
    for call in (outsider.chat.completions.retrieve, outsider.chat.completions.delete,
                 outsider.chat.completions.messages.list):  # fmt: skip
        with pytest.raises(openai.NotFoundError):
            call(created.id)
    with pytest.raises(openai.NotFoundError):
        outsider.chat.completions.update(created.id, metadata={"x": "y"})
    with pytest.raises(openai.BadRequestError):  # another tenant's id is no cursor either
        list(outsider.chat.completions.list(after=created.id))
    assert fake_hub().chat.completions.retrieve(created.id).metadata == {}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"store": "yes"}, "store"),
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
        ({"metadata": {"k": 1}}, "metadata.k"),
        ({"metadata": {"k": "a\x00b"}}, "metadata"),
        ({"metadata": {"k" * 65: "v"}}, "metadata"),
        ({"metadata": "team"}, "metadata"),
    ],
)
def test_bad_store_fields_get_openais_error(fake_hub, fake, body, param):
    response = httpx.post(f"{fake_hub.url}/v1/chat/completions", json={"model": FAKE_CHAT, "messages": HELLO, **body},
                          headers={"authorization": f"Bearer {fake_hub.everything.secret}"})  # fmt: skip
    assert response.status_code == 400 and response.json()["error"]["param"] == param
    assert fake.requests == []


def test_bad_update_and_methods(fake_hub):
    created = fake_hub().chat.completions.create(model=FAKE_CHAT, messages=HELLO, max_tokens=1, store=True)
    headers = {"authorization": f"Bearer {fake_hub.everything.secret}"}
    url = f"{fake_hub.url}/v1/chat/completions"
    for body, param in (({}, "metadata"), ({"metadata": [1]}, "metadata"), ({"metadata": {"a": None}}, "metadata.a")):
        response = httpx.post(f"{url}/{created.id}", json=body, headers=headers)
        assert response.status_code == 400 and response.json()["error"]["param"] == param
    cleared = httpx.post(f"{url}/{created.id}", json={"metadata": None}, headers=headers)
    assert cleared.status_code == 200 and cleared.json()["metadata"] == {}
    for method in ("PUT", "PATCH", "DELETE"):
        response = httpx.request(method, url, headers=headers)
        assert response.status_code == 405 and response.json()["error"]["code"] == "method_not_allowed"
    assert httpx.get(url, params={"metadata": "x"}, headers=headers).json()["error"]["param"] == "metadata"


def test_a_real_models_streamed_tool_calls_are_stored_as_its_whole_answer(hub):
    """Two seeded choices of tool calls with log probabilities, streamed: the stored completion, put together from
    the chunks, is the whole answer to the same request (the service answers the same tokens either way)."""
    kwargs = dict(model=CHAT, messages=[{"role": "user", "content": "Weather in Hamburg?"}], tools=[WEATHER],
                  tool_choice="required", max_tokens=60, temperature=0.7, seed=5, n=2, logprobs=True,
                  top_logprobs=2, store=True)  # fmt: skip
    whole = hub().chat.completions.create(**kwargs)
    with hub().chat.completions.stream(**kwargs) as stream:
        for _ in stream:
            pass
        streamed_id = stream.get_final_completion().id
    stored = hub().chat.completions.retrieve(streamed_id)
    stored_whole = hub().chat.completions.retrieve(whole.id)
    assert stored_whole.choices == whole.choices
    assert len(stored.choices) == 2  # the usage too, but for the prompt's tokens the prefix cache now held
    assert (stored.usage.prompt_tokens, stored.usage.completion_tokens) == (
        whole.usage.prompt_tokens, whole.usage.completion_tokens)  # fmt: skip
    for mine, theirs in zip(stored.choices, whole.choices, strict=True):
        assert mine.finish_reason == theirs.finish_reason == "tool_calls"
        assert [(c.type, c.function.name, c.function.arguments) for c in mine.message.tool_calls] == [
            (c.type, c.function.name, c.function.arguments) for c in theirs.message.tool_calls
        ]
        assert all(c.id for c in mine.message.tool_calls)
        assert mine.logprobs.content == theirs.logprobs.content and mine.message.content == theirs.message.content
    assert [c.id for c in hub().chat.completions.list(model=CHAT)] == [whole.id, streamed_id]
