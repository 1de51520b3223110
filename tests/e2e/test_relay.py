"""The gateway's own behaviour, against a fake of our inference service (``tests/support/fake_service.py``) or an
upstream that misbehaves on purpose: relaying and renaming, usage chunks kept or stripped as the client asked,
exact metering of whole, aborted and broken streams, error events, unreachable deployments, and the limits
(requests per minute with OpenAI's headers, re-reservation of a prompt longer than its bound, concurrent streams,
two hub processes sharing one limit). No model runs: the same behaviour on the real models is test_gateway.py's
and test_limits_live.py's."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx
import openai
import pytest
from django.conf import settings
from openai import OpenAI

from accounts import services
from accounts.limits import Limits
from accounts.models import ModelKind, UsageRecord
from tests.support.buckets import most_admitted, timed
from tests.support.fake_service import UPSTREAM_NAME
from tests.support.hub import database_url_for_subprocess, start_hub, stop_hub
from tests.support.live import FAKE_CHAT, FAKE_EMBED, barrier, chat_upstream, read_then_hang_up, rows, sample, scrape
from tests.support.processes import free_port

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

HELLO = [{"role": "user", "content": "Hi"}]


@pytest.fixture
def hub(fake_hub):
    """Here the hub's models are the fake's: ``fake-chat`` and ``fake-embed``."""
    return fake_hub


def test_chat_completion_is_relayed_renamed_and_metered_exactly(hub, fake):
    response = hub().chat.completions.with_raw_response.create(
        model=FAKE_CHAT, messages=[{"role": "user", "content": "Say hello."}], max_tokens=12, temperature=0
    )
    completion = response.parse()
    request_id = response.headers["x-request-id"]
    # the body reached the deployment as sent; its answer, under the deployment's own name, is renamed
    [sent] = fake.requests
    assert sent["messages"] == [{"role": "user", "content": "Say hello."}] and sent["max_tokens"] == 12
    assert completion.model == FAKE_CHAT != UPSTREAM_NAME
    assert completion.choices[0].message.content == "".join(f"w{i} " for i in range(12))
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (5, 12)
    [row] = rows(request_id=request_id)
    assert (row.prompt_tokens, row.completion_tokens, row.total_tokens) == (
        completion.usage.prompt_tokens, completion.usage.completion_tokens, completion.usage.total_tokens,
    )  # fmt: skip
    assert row.tenant_id == hub.tenant.id and row.api_key_id == hub.everything.key.id
    assert (row.model, row.route, row.status_code) == (FAKE_CHAT, "chat/completions", 200)
    assert not row.streamed and not row.aborted


@pytest.mark.parametrize("include_usage", [True, False])
def test_streamed_chat_is_metered_whether_or_not_the_client_asks_for_usage(hub, fake, include_usage):
    """The hub always asks our service for running usage (to meter an abort exactly), and strips from the chunks
    what the client did not ask for: no usage at all, or only the last chunk's."""
    options = {"include_usage": True} if include_usage else None
    with hub().chat.completions.with_streaming_response.create(
        model=FAKE_CHAT, messages=[{"role": "user", "content": "Count to five."}], max_tokens=16, temperature=0,
        stream=True, stream_options=options,
    ) as response:  # fmt: skip
        request_id = response.headers["x-request-id"]
        chunks = list(response.parse())
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.model == FAKE_CHAT for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "".join(f"w{i} " for i in range(16))
    assert fake.requests[-1]["stream_options"] == {"include_usage": True, "continuous_usage_stats": True}
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
        assert usage_chunks == []
    assert (row.prompt_tokens, row.completion_tokens) == (6, 16)
    assert row.time_to_first_token_ms is not None and row.time_to_first_token_ms <= row.duration_ms


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
    request_id, seen = read_then_hang_up(hub, "paused", "chat/completions", body, chunks=5)
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


def test_method_not_allowed_and_unreachable_deployment(hub):
    response = httpx.get(f"{hub.url}/v1/embeddings", headers={"authorization": f"Bearer {hub.everything.secret}"})
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


def test_requests_per_minute_with_openai_headers_and_429(hub):
    issued = services.issue_key(hub.tenant, name="slow")
    services.set_limits(issued.key, Limits(rpm=2, tpm=10_000))
    client = hub(issued)
    first = client.chat.completions.with_raw_response.create(model=FAKE_CHAT, messages=HELLO, max_tokens=2)
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert first.headers["x-ratelimit-reset-requests"] == "30s"
    assert first.headers["x-ratelimit-limit-tokens"] == "10000"
    assert int(first.headers["x-ratelimit-remaining-tokens"]) < 10_000
    assert first.headers["x-ratelimit-reset-tokens"].endswith("s")
    client.chat.completions.create(model=FAKE_CHAT, messages=HELLO, max_tokens=2)
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model=FAKE_CHAT, messages=HELLO, max_tokens=2)
    response = caught.value.response
    assert response.status_code == 429 and int(response.headers["retry-after"]) >= 1
    error = response.json()["error"]
    assert error["code"] == "rate_limit_exceeded" and error["type"] == "requests" and "RPM" in error["message"]
    # as OpenAI's 429s: the limits' headers, the requests' spent
    assert response.headers["x-ratelimit-limit-requests"] == "2"
    assert response.headers["x-ratelimit-remaining-requests"] == "0"
    assert response.headers["x-ratelimit-limit-tokens"] == "10000"
    assert 0 < int(response.headers["x-ratelimit-remaining-tokens"]) < 10_000
    barrier(hub)
    assert UsageRecord.objects.filter(api_key=issued.key).count() == 2  # the refused request never reached a model


def test_a_key_over_its_limits_is_refused_before_its_files_are_read(hub, fake):
    """The limits are asked before a file is read, charging nothing: an over-limit key gets its 429 even where its
    file would be a 400 (one it does not have), and the admitted request's file reaches the model as its text."""
    issued = services.issue_key(hub.tenant, name="one-a-minute")
    services.set_limits(issued.key, Limits(rpm=1))
    client = hub(issued)
    notes = client.files.create(file=("notes.txt", b"The rover is called Pebble."), purpose="user_data")

    def ask(file_id: str):
        parts = [{"type": "text", "text": "Read:"}, {"type": "file", "file": {"file_id": file_id}}]
        return client.chat.completions.create(model=FAKE_CHAT, messages=[{"role": "user", "content": parts}],
                                              max_tokens=2)  # fmt: skip

    ask(notes.id)
    assert "The rover is called Pebble." in fake.requests[-1]["messages"][0]["content"]
    with pytest.raises(openai.RateLimitError) as caught:
        ask("file-nobody-has")
    assert caught.value.body["code"] == "rate_limit_exceeded"
    barrier(hub)
    assert UsageRecord.objects.filter(api_key=issued.key).count() == 1


def test_metrics_count_each_request_its_tokens_and_the_refused(hub, fake):
    """``/metrics`` of the live hub, before and after: the answered request and the refused one by route and status,
    the answer's tokens and its request per model as its usage row says, and per tenant (the suite's hub runs with
    ``HUB_METRICS_TENANTS``)."""
    issued = services.issue_key(hub.tenant, name="one-a-minute")
    services.set_limits(issued.key, Limits(rpm=1))
    client = hub(issued)
    before = scrape(hub.url)
    answer = client.chat.completions.create(model=FAKE_CHAT, messages=HELLO, max_tokens=3)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model=FAKE_CHAT, messages=HELLO, max_tokens=3)
    [row] = rows(api_key=issued.key)
    http = {"route": "chat/completions", "method": "POST"}

    def delta(after, name, **labels):
        return sample(after, name, **labels) - sample(before, name, **labels)

    deadline = time.monotonic() + 10  # a request is counted once its usage row is written: just after its answer
    while delta(after := scrape(hub.url), "hub_http_requests_total", **http, status="429") < 1:
        assert time.monotonic() < deadline, "the refused request was not counted"
        time.sleep(0.05)
    assert delta(after, "hub_http_requests_total", **http, status="200") == 1
    assert delta(after, "hub_http_request_duration_seconds_count", route="chat/completions") == 2
    assert delta(after, "hub_model_requests_total", model=FAKE_CHAT, route="chat/completions", status="200") == 1
    tokens = [delta(after, "hub_tokens_total", model=FAKE_CHAT, kind=k) for k in ("prompt", "completion")]
    assert tokens == [row.prompt_tokens, row.completion_tokens] == [answer.usage.prompt_tokens, 3]
    tenant = {"tenant": hub.tenant.slug, "model": FAKE_CHAT}
    assert delta(after, "hub_tenant_model_requests_total", **tenant, route="chat/completions", status="200") == 1
    assert [delta(after, "hub_tenant_tokens_total", **tenant, kind=k) for k in ("prompt", "completion")] == tokens


@pytest.fixture
def long_prompt_upstream():
    """A deployment that speaks our service's reservation protocol and whose template makes every prompt 5000
    tokens (far beyond the hub's bound for a short message): a request that reserved less is refused before it
    runs (413 with the count). ``seen``: the reservation header of each request it got."""
    from starlette.responses import JSONResponse

    seen: list[str | None] = []

    async def chat(request):
        reserved = request.headers.get("x-reserved-prompt-tokens")
        seen.append(reserved)
        if reserved is not None and int(reserved) < 5000:
            error = {"message": "over", "type": "invalid_request_error", "param": None,
                     "code": "prompt_exceeds_reservation"}  # fmt: skip
            return JSONResponse({"error": error}, status_code=413, headers={"x-prompt-tokens": "5000"})
        return JSONResponse({
            "id": "x", "object": "chat.completion", "created": 0, "model": "up",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5000, "completion_tokens": 1, "total_tokens": 5001},
        })  # fmt: skip

    with chat_upstream(chat) as url:
        services.register_model("long-prompt", ModelKind.CHAT, max_sequence_length=8192, max_output_length=64,
                                deployment_url=url)  # fmt: skip
        yield seen


def test_a_prompt_longer_than_reserved_is_reserved_again_exactly(hub, long_prompt_upstream):
    """The hub's bound is short of what the deployment's template makes of the prompt: the deployment refuses it
    unrun with the exact count, and the hub reserves that and sends it again, or answers insufficient_quota when
    the budget cannot hold it; a key without token limits sends no reservation at all."""
    seen = long_prompt_upstream
    hi = {"model": "long-prompt", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
    tenants = {}
    for slug, budget in (("roomy", 10_000), ("short", 1_000), ("free", None)):
        tenants[slug] = services.create_tenant(slug, slug.title())
        services.grant_models(tenants[slug], ["long-prompt"])
        if budget:
            services.set_limits(tenants[slug], Limits(budget=budget, budget_period="day"))
    keys = {slug: services.issue_key(t, name="k") for slug, t in tenants.items()}
    hub_client = {slug: OpenAI(base_url=f"{hub.url}/v1", api_key=k.secret, max_retries=0) for slug, k in keys.items()}

    answer = hub_client["roomy"].chat.completions.create(**hi)
    assert answer.usage.prompt_tokens == 5000
    assert seen == ["74", "5000"]  # the bound (2 bytes + 8 for the message + 64 for the template), then exact
    seen.clear()
    with pytest.raises(openai.RateLimitError) as caught:
        hub_client["short"].chat.completions.create(**hi)
    assert caught.value.response.json()["error"]["code"] == "insufficient_quota" and seen == ["74"]
    seen.clear()
    assert hub_client["free"].chat.completions.create(**hi).usage.prompt_tokens == 5000 and seen == [None]
    barrier(hub)
    metered = {r.tenant.slug: r.total_tokens for r in UsageRecord.objects.filter(model="long-prompt")}
    assert metered == {"roomy": 5001, "free": 5001}  # the refused ones reached no model


def test_concurrent_streams_per_key(hub, fake):
    issued = services.issue_key(hub.tenant, name="one-stream")
    services.set_limits(issued.key, Limits(max_streams=1))
    client = hub(issued)
    fake.chunk_delay = 0.05  # the first stream's 64 chunks take 3 s
    with client.chat.completions.create(model=FAKE_CHAT, messages=HELLO, max_tokens=64, stream=True) as stream:
        next(iter(stream))  # the first stream is open
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(model=FAKE_CHAT, messages=HELLO, max_tokens=2, stream=True)
        assert caught.value.response.json()["error"]["code"] == "concurrent_streams_exceeded"
        assert client.chat.completions.create(model=FAKE_CHAT, messages=HELLO, max_tokens=2).choices  # not a stream
    # closed (aborted or finished): the slot is free again
    for _ in range(50):
        try:
            chunks = list(client.chat.completions.create(model=FAKE_CHAT, messages=HELLO, max_tokens=2, stream=True))
            break
        except openai.RateLimitError:  # the relay frees the slot a moment after the client closes
            asyncio.run(asyncio.sleep(0.1))
    assert chunks


def test_two_hub_processes_share_one_limit_through_redis(hub, live_hub, redis_url):
    """Two more hubs on the same database and their own Redis namespace (inside this run's): a key's 4 requests a
    minute are 4 in all."""
    env = {"HUB_DATABASE_URL": database_url_for_subprocess(), "HUB_REDIS_URL": redis_url,
           "HUB_CACHE_PREFIX": f"{settings.HUB_CACHE_PREFIX}:two"}  # fmt: skip
    first, first_url = start_hub(env, "--no-bootstrap")
    second, second_url = start_hub(env, "--no-bootstrap")
    try:
        issued = services.issue_key(hub.tenant, name="shared")
        services.set_limits(issued.key, Limits(rpm=4))
        clients = [
            OpenAI(base_url=f"{url}/v1", api_key=issued.secret, max_retries=0) for url in (first_url, second_url)
        ]

        def burst() -> list[str]:
            outcomes = []
            for i in range(8):
                try:
                    clients[i % 2].embeddings.create(model=FAKE_EMBED, input="x")
                    outcomes.append("ok")
                except openai.RateLimitError:
                    outcomes.append("429")
            return outcomes

        outcomes, elapsed = timed(burst)
        through = outcomes.count("ok")  # 4, and one more for each 15 s the burst took (the bucket's refill)
        assert "429" in outcomes and 4 <= through <= most_admitted(4, elapsed), (elapsed, outcomes)
        assert httpx.get(f"{second_url}/health").status_code == 200
    finally:
        for process in (first, second):
            assert "Traceback" not in stop_hub(process)
    # both hubs stopped (drained): every row they were to write is written
    assert UsageRecord.objects.filter(api_key=issued.key).count() == through


def test_a_money_budget_under_50_concurrent_requests_never_overshoots(hub, fake):
    """A tenant with 0.05 USD a day on an expensive model: 50 requests at once, each reserving its worst case in
    money (prompt bound at the input price + max_tokens at the output price) and settled to its cost; the rows'
    costs never add up to more than the budget, the refused ones get insufficient_quota, and all of it is
    metered."""
    from decimal import Decimal
    from types import SimpleNamespace

    from accounts import pricing
    from hub.api.ratelimit import estimate
    from hub.api.upstream import CACHE_SECONDS

    pricing.set_price(FAKE_CHAT, input_per_million=Decimal(100), output_per_million=Decimal(1000))
    # the hub reads a model's price with its deployments, at most CACHE_SECONDS old: an earlier test's requests
    # may have left it a list read before this price existed
    time.sleep(CACHE_SECONDS + 0.5)
    tenant = services.create_tenant("spender", "Spender")
    services.grant_models(tenant, [FAKE_CHAT])
    services.set_limits(tenant, Limits(cost_budget="0.05", budget_period="day"))
    key = services.issue_key(tenant, name="k")
    fake.chunk_delay = 0.01  # requests overlap
    outcomes: list[str] = []

    def body_of(i: int) -> dict:
        return {"model": FAKE_CHAT, "messages": [{"role": "user", "content": f"question {i}"}], "max_tokens": 4,
                "stream": i % 2 == 0}  # fmt: skip

    # the most one request reserves: while k are admitted, held + spent <= k * worst, and a refusal means that
    # plus one more reservation is over the budget, so at least floor(budget / worst) are admitted, however the
    # 50 interleave (more when some settle below their reservation first)
    needs = [estimate("chat/completions", body_of(i), SimpleNamespace(max_sequence_length=4096)) for i in range(50)]
    worst = max((Decimal(n.prompt) * 100 + Decimal(n.output) * 1000) / 1_000_000 for n in needs)
    least = int(Decimal("0.05") / worst)
    assert least >= 2

    def one(i: int) -> None:
        body = body_of(i)
        response = httpx.post(f"{hub.url}/v1/chat/completions", json=body, timeout=60,
                              headers={"Authorization": f"Bearer {key.secret}"})  # fmt: skip
        outcomes.append(str(response.status_code) if response.status_code != 429 else response.json()["error"]["code"])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    barrier(hub)
    spent = sum(UsageRecord.objects.filter(tenant=tenant).values_list("cost", flat=True), Decimal(0))
    assert set(outcomes) <= {"200", "insufficient_quota"} and outcomes.count("200") >= least
    assert "insufficient_quota" in outcomes  # the budget ran out
    assert 0 < spent <= Decimal("0.05") and UsageRecord.objects.filter(tenant=tenant).count() == outcomes.count("200")
    with pytest.raises(openai.RateLimitError) as caught:  # 64 output tokens alone may cost 0.064: more than is left
        OpenAI(base_url=f"{hub.url}/v1", api_key=key.secret, max_retries=0).chat.completions.create(
            model=FAKE_CHAT, messages=HELLO, max_tokens=64
        )
    message = caught.value.response.json()["error"]["message"]
    assert "has a budget of 0.05000000 USD per day" in message and "may cost up to 0.07140000 USD" in message
