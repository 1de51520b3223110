"""Generation through the hub: a live hub in front of a live inference service (the three packaged
models and two tiny LLaVAs), the OpenAI SDK as the client, and the usage rows the hub wrote checked against
what the client received."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx
import openai
import pytest

from accounts import services
from accounts.models import ModelKind, UsageRecord
from tests.conftest import free_port
from tests.e2e.conftest import CHAT, COMPLETION, EMBED, VISION_15, VISION_NEXT, barrier, chat_upstream, rows
from tests.inference.test_server_vision import data_url
from tests.inference.test_tool_grammar import WEATHER

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


def test_chat_completion_is_relayed_and_metered_exactly(hub):
    response = hub().chat.completions.with_raw_response.create(
        model=CHAT, messages=[{"role": "user", "content": "Say hello."}], max_tokens=12, temperature=0
    )
    completion = response.parse()
    request_id = response.headers["x-request-id"]
    assert completion.model == CHAT and completion.choices[0].message.content
    [row] = rows(request_id=request_id)
    assert (row.prompt_tokens, row.completion_tokens, row.total_tokens) == (
        completion.usage.prompt_tokens, completion.usage.completion_tokens, completion.usage.total_tokens,
    )  # fmt: skip
    assert row.tenant_id == hub.tenant.id and row.api_key_id == hub.everything.key.id
    assert (row.model, row.route, row.status_code) == (CHAT, "chat/completions", 200)
    assert not row.streamed and not row.aborted


@pytest.mark.parametrize("include_usage", [True, False])
def test_streamed_chat_is_metered_whether_or_not_the_client_asks_for_usage(hub, include_usage):
    options = {"include_usage": True} if include_usage else None
    with hub().chat.completions.with_streaming_response.create(
        model=CHAT, messages=[{"role": "user", "content": "Count to five."}], max_tokens=16, temperature=0,
        stream=True, stream_options=options,
    ) as response:  # fmt: skip
        request_id = response.headers["x-request-id"]
        chunks = list(response.parse())
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.model == CHAT for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    usage_chunks = [c for c in chunks if c.usage is not None]
    [row] = rows(request_id=request_id)
    assert row.streamed and not row.aborted and row.status_code == 200
    assert row.completion_tokens == 16 or chunks[-2 if include_usage else -1].choices[0].finish_reason == "stop"
    if include_usage:  # exactly one usage chunk, last, with no choices, equal to the row
        assert len(usage_chunks) == 1 and chunks[-1].usage is not None and chunks[-1].choices == []
        assert (row.prompt_tokens, row.completion_tokens) == (
            chunks[-1].usage.prompt_tokens,
            chunks[-1].usage.completion_tokens,
        )
    else:
        assert usage_chunks == [] and row.completion_tokens > 0 and row.prompt_tokens > 0
    assert row.time_to_first_token_ms is not None and row.time_to_first_token_ms <= row.duration_ms


def _read_then_hang_up(hub, model: str, route: str, body: dict, chunks: int) -> tuple[str, dict]:
    """Stream with running usage in every chunk, read ``chunks`` data chunks, hang up: (request id, the usage in
    the last chunk read, i.e. the tokens the client received)."""
    body = {**body, "model": model, "stream": True,
            "stream_options": {"include_usage": True, "continuous_usage_stats": True}}  # fmt: skip
    with httpx.stream(
        "POST", f"{hub.url}/v1/{route}", headers={"authorization": f"Bearer {hub.everything.secret}"}, json=body,
        timeout=60,
    ) as response:  # fmt: skip
        request_id = response.headers["x-request-id"]
        seen, usage = 0, {}
        for line in response.iter_lines():
            if line.startswith("data: {"):
                seen += 1
                usage = json.loads(line[6:])["usage"] or usage
            if seen == chunks:
                break
    return request_id, usage


def test_an_aborted_stream_is_metered_with_the_tokens_it_produced(hub):
    """The client reads a few chunks of a real model's stream and hangs up: the hub aborts upstream and meters
    what was generated up to the last chunk it relayed: the prompt exactly, and at least the tokens the client
    read (chunks relayed after its last read, in flight or unread in its socket when it closed, count too; the
    exact equality is checked against an upstream that stops where the client does, below)."""
    body = {"prompt": "Once upon a time", "max_tokens": 400, "temperature": 0, "logit_bias": {"1": -100}}
    request_id, seen = _read_then_hang_up(hub, COMPLETION, "completions", body, chunks=5)
    [row] = rows(request_id=request_id)
    assert row.aborted and row.streamed and row.status_code == 499
    assert row.prompt_tokens == seen["prompt_tokens"] and 5 <= seen["completion_tokens"] <= row.completion_tokens
    assert row.completion_tokens < 400  # stopped: the service aborted the generation
    # the service freed the sequence: nothing left running
    deadline = time.monotonic() + 10
    health = {}
    while time.monotonic() < deadline:
        health = httpx.get(hub.inference_health(), timeout=5).json()["models"][COMPLETION]
        if health["running"] == 0:
            break
        time.sleep(0.1)
    assert health["running"] == 0


def _chunk(i: int) -> dict:
    """Our service's chunk ``i``: a word, and the running usage (3 tokens a chunk)."""
    usage = {"prompt_tokens": 11, "completion_tokens": 3 * (i + 1), "total_tokens": 11 + 3 * (i + 1)}
    choice = {"index": 0, "delta": {"content": f"w{i} "}, "finish_reason": None}
    return {
        "id": "x",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "up",
        "choices": [choice],
        "usage": usage,
    }


@pytest.fixture
def paused_upstream():
    """A deployment (as our inference service answers: running usage in each chunk) that streams five chunks and
    then holds until ``release`` is set, before five more: a client that hangs up after the fifth has received
    every chunk relayed. ``closed`` is set when the hub closes the upstream stream."""
    from starlette.responses import StreamingResponse

    release, closed = threading.Event(), threading.Event()

    async def chat(request):
        body = await request.json()
        assert body["stream_options"] == {"include_usage": True, "continuous_usage_stats": True}

        async def events():
            try:
                for i in range(10):
                    while i == 5 and not release.is_set():
                        await asyncio.sleep(0.02)
                    yield f"data: {json.dumps(_chunk(i))}\n\n"
                yield "data: [DONE]\n\n"
            finally:
                closed.set()

        return StreamingResponse(events(), media_type="text/event-stream")

    with chat_upstream(chat) as url:
        yield url, release, closed
        release.set()


def test_an_aborted_stream_is_metered_exactly_as_the_client_received_it(hub, paused_upstream):
    """The usage row of a stream the client closed holds exactly the tokens in the last chunk it received, however
    many chunks it read (5 here, the upstream holding the sixth); the hub closes the upstream stream."""
    url, release, closed = paused_upstream
    services.register_model("paused", ModelKind.CHAT, max_sequence_length=512, max_output_length=64,
                            deployment_url=url)  # fmt: skip
    services.grant_models(hub.tenant, ["paused"])
    body = {"messages": [{"role": "user", "content": "hi"}]}
    request_id, seen = _read_then_hang_up(hub, "paused", "chat/completions", body, chunks=5)
    [row] = rows(request_id=request_id)
    assert seen == {"prompt_tokens": 11, "completion_tokens": 15, "total_tokens": 26}
    assert (row.prompt_tokens, row.completion_tokens) == (11, 15)
    assert row.aborted and row.status_code == 499
    assert closed.wait(10), "the hub did not close the upstream stream"
    release.set()


@pytest.fixture
def lingering_upstream():
    """A deployment that ends its stream with ``[DONE]`` but keeps the connection open a while after it."""
    from starlette.responses import StreamingResponse

    async def chat(request):
        async def events():
            for i in range(3):
                yield f"data: {json.dumps(_chunk(i))}\n\n"
            yield "data: [DONE]\n\n"
            await asyncio.sleep(5)

        return StreamingResponse(events(), media_type="text/event-stream")

    with chat_upstream(chat) as url:
        yield url


def test_a_stream_the_client_closes_after_done_is_metered_as_complete(hub, lingering_upstream):
    """The SDK stops reading at ``[DONE]`` and closes: the answer was whole, so its row is a success (200), not an
    abort, even when the deployment has not closed its side yet."""
    services.register_model("lingering", ModelKind.CHAT, max_sequence_length=512, max_output_length=64,
                            deployment_url=lingering_upstream)  # fmt: skip
    services.grant_models(hub.tenant, ["lingering"])
    with hub().chat.completions.with_streaming_response.create(
        model="lingering", messages=[{"role": "user", "content": "hi"}], stream=True
    ) as response:
        request_id = response.headers["x-request-id"]
        assert "".join(c.choices[0].delta.content for c in response.parse()) == "w0 w1 w2 "
    [row] = rows(request_id=request_id)
    assert (row.status_code, row.aborted, row.completion_tokens) == (200, False, 9)


def test_completions_and_embeddings_through_every_base_url(hub):
    for base in ("v1", "v2"):
        completion = hub(base=base).completions.create(model=COMPLETION, prompt="The capital of France is",
                                                       max_tokens=5, temperature=0)  # fmt: skip
        assert completion.model == COMPLETION and completion.usage.completion_tokens == 5
        embedding = hub(base=base).embeddings.create(model=EMBED, input=["hello", "world"])  # base64 by default
        assert len(embedding.data) == 2 and len(embedding.data[0].embedding) == 384
        assert embedding.usage.prompt_tokens > 0
    floats = hub().embeddings.create(model=EMBED, input="hello", encoding_format="float")
    assert abs(sum(x * x for x in floats.data[0].embedding) - 1) < 1e-4
    # token ids ([CLS] hello world [SEP] in MiniLM's vocabulary), alone or as a batch, and the model's own dimensions
    text = hub().embeddings.create(model=EMBED, input="hello world", encoding_format="float", dimensions=384)
    ids = hub().embeddings.create(model=EMBED, input=[101, 7592, 2088, 102], encoding_format="float")
    batch = hub().embeddings.create(model=EMBED, input=[[101, 7592, 2088, 102], [101, 2088, 102]])
    assert max(abs(a - b) for a, b in zip(text.data[0].embedding, ids.data[0].embedding, strict=True)) < 1e-5
    assert len(batch.data) == 2 and (ids.usage.prompt_tokens, batch.usage.prompt_tokens) == (4, 7)
    metered = rows(6, model=EMBED)
    assert len(metered) == 6 and all(r.route == "embeddings" and r.completion_tokens == 0 for r in metered)
    assert [r.prompt_tokens for r in metered[-2:]] == [4, 7]


def test_entitlements_limits_and_kinds(hub):
    embed_only = hub(hub.embed_only)
    with pytest.raises(openai.NotFoundError) as exc:
        embed_only.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": "hi"}])
    assert exc.value.body["code"] == "model_not_found"
    with pytest.raises(openai.NotFoundError):  # /vision serves vision models only
        hub(base="vision").chat.completions.create(model=CHAT, messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError) as exc:
        hub().chat.completions.create(model=CHAT, messages=[{"role": "user", "content": "hi"}], max_tokens=10**6)
    assert exc.value.body["code"] == "context_length_exceeded" and "1000000" in exc.value.body["message"]
    with pytest.raises(openai.BadRequestError) as exc:  # prompt + max_tokens: checked by the deployment
        hub().completions.create(model=COMPLETION, prompt="word " * 40000, max_tokens=10)
    assert exc.value.body["code"] == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as exc:
        hub().embeddings.create(model=EMBED, input="hi", dimensions=64)
    assert exc.value.body["param"] == "dimensions"
    with pytest.raises(openai.BadRequestError):
        hub().embeddings.create(model=CHAT, input="hi")
    barrier(hub)
    assert not UsageRecord.objects.exclude(request_id__startswith="req_barrier_").exists()  # nothing reached a model


def test_method_not_allowed_and_unreachable_deployment(hub, inference_url):
    response = httpx.get(f"{hub.url}/v1/chat/completions", headers={"authorization": f"Bearer {hub.everything.secret}"})
    assert response.status_code == 405 and response.json()["error"]["code"] == "method_not_allowed"
    services.register_model("ghost", ModelKind.CHAT, max_sequence_length=512, max_output_length=64,
                            deployment_url=f"http://127.0.0.1:{free_port()}/v1")  # fmt: skip
    services.grant_models(hub.tenant, ["ghost"])
    with pytest.raises(openai.InternalServerError) as exc:
        hub().chat.completions.create(model="ghost", messages=[{"role": "user", "content": "hi"}])
    assert exc.value.status_code == 503 and exc.value.body["code"] == "service_unavailable"


@pytest.fixture
def broken_upstream():
    """An external OpenAI-compatible API that streams three chunks and then drops the connection."""
    from starlette.responses import StreamingResponse

    async def chat(request):
        async def events():
            for i in range(3):
                chunk = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "up",
                         "choices": [{"index": 0, "delta": {"content": f"w{i} "}, "finish_reason": None}]}  # fmt: skip
                yield f"data: {json.dumps(chunk)}\n\n"
            raise RuntimeError("the upstream dies mid-stream")

        return StreamingResponse(events(), media_type="text/event-stream")

    with chat_upstream(chat) as url:
        yield url


def test_an_upstream_failure_mid_stream_ends_with_an_error_event_and_is_metered(hub, broken_upstream):
    services.register_model("flaky", ModelKind.CHAT, max_sequence_length=512, max_output_length=64,
                            deployment_url=broken_upstream, upstream_api_key="sk-upstream", external=True)  # fmt: skip
    services.grant_models(hub.tenant, ["flaky"])
    with httpx.stream(
        "POST", f"{hub.url}/v1/chat/completions", headers={"authorization": f"Bearer {hub.everything.secret}"},
        json={"model": "flaky", "messages": [{"role": "user", "content": "hi"}], "stream": True}, timeout=30,
    ) as response:  # fmt: skip
        request_id = response.headers["x-request-id"]
        events = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: {")]
    assert [e["choices"][0]["delta"]["content"] for e in events[:3]] == ["w0 ", "w1 ", "w2 "]
    assert all(e["model"] == "flaky" for e in events[:3])
    assert events[-1]["error"]["code"] == "upstream_error" and len(events) == 4
    [row] = rows(request_id=request_id)
    assert row.status_code == 502 and row.streamed and not row.aborted


def test_tool_calls_and_structured_outputs_pass_through_unchanged_and_are_metered(hub, inference_url):
    """The hub relays tools, tool_choice and response_format as they are: its answers equal the service's own,
    streamed tool calls assemble to them, and every request is metered."""
    kwargs = dict(
        model=CHAT, messages=[{"role": "user", "content": "Weather in Hamburg?"}], tools=[WEATHER],
        tool_choice="required", max_tokens=80, temperature=0.7, seed=9,
    )  # fmt: skip
    through_hub = hub().chat.completions.create(**kwargs)
    direct = openai.OpenAI(base_url=inference_url, api_key="x", max_retries=0).chat.completions.create(**kwargs)
    [mine], [theirs] = through_hub.choices, direct.choices
    assert mine.finish_reason == theirs.finish_reason == "tool_calls"
    assert [(c.function.name, c.function.arguments) for c in mine.message.tool_calls] == [
        (c.function.name, c.function.arguments) for c in theirs.message.tool_calls
    ]
    assert json.loads(mine.message.tool_calls[0].function.arguments)["format"] in ("celsius", "fahrenheit")

    with hub().chat.completions.stream(**kwargs) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    assert [(c.function.name, c.function.arguments) for c in final.choices[0].message.tool_calls] == [
        (c.function.name, c.function.arguments) for c in mine.message.tool_calls
    ]
    assert final.choices[0].finish_reason == "tool_calls"

    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    answer = hub().chat.completions.create(
        model=CHAT, messages=[{"role": "user", "content": "Name a city."}], max_tokens=40, temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": schema, "strict": True}},
    )  # fmt: skip
    assert answer.choices[0].finish_reason == "stop" and "city" in json.loads(answer.choices[0].message.content)

    with pytest.raises(openai.BadRequestError) as raised:
        hub().chat.completions.create(model=CHAT, messages=kwargs["messages"], tools=[], max_tokens=5)
    assert raised.value.body["param"] == "tools"

    metered = rows(3, tenant_id=hub.tenant.id, model=CHAT)
    assert len(metered) == 3 and all(r.status_code == 200 and r.completion_tokens > 0 for r in metered)
    assert metered[0].completion_tokens == through_hub.usage.completion_tokens
    assert [r.streamed for r in metered] == [False, True, False]


def _look(url: str, text: str = "What's in this image?") -> list[dict]:
    return [
        {"role": "user", "content": [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": url}}]}
    ]


def test_vision_models_under_vision_are_served_and_metered(hub, images):
    vision = hub(base="vision")
    assert sorted(m.id for m in vision.models.list().data) == sorted([VISION_NEXT, VISION_15])
    response = vision.chat.completions.with_raw_response.create(
        model=VISION_NEXT, messages=_look(f"{images.url}/photo.jpg"), max_tokens=6, temperature=0.01
    )
    completion = response.parse()
    [row] = rows(request_id=response.headers["x-request-id"])
    # the image's 70 tokens are in the prompt count the hub meters
    assert completion.usage.prompt_tokens > 70 and row.prompt_tokens == completion.usage.prompt_tokens
    assert (row.model, row.status_code, row.completion_tokens) == (VISION_NEXT, 200, completion.usage.completion_tokens)
    stream = vision.chat.completions.create(model=VISION_15, messages=_look(data_url()), max_tokens=5, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    [row] = rows(model=VISION_15)
    assert row.streamed and row.prompt_tokens > 16 and row.completion_tokens == 5


def test_images_refused_through_the_hub_are_400s_and_not_metered(hub):
    with pytest.raises(openai.BadRequestError) as exc:
        hub().chat.completions.create(model=CHAT, messages=_look(data_url()), max_tokens=5)
    assert "does not accept images" in exc.value.body["message"] and "vision model" in exc.value.body["message"]
    with pytest.raises(openai.BadRequestError) as exc:
        hub(base="vision").chat.completions.create(model=VISION_NEXT, messages=_look("http://10.0.0.1/x.jpg"))
    assert exc.value.body["param"] == "messages[0].content[1].image_url"
    assert "private address" in exc.value.body["message"]
    barrier(hub)
    assert not UsageRecord.objects.exclude(request_id__startswith="req_barrier_").exists()  # refused before a model
