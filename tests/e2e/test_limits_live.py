"""Limits on a live hub in front of the real models, through the OpenAI SDK: requests per minute with the
``x-ratelimit-*`` headers and a 429 the SDK understands, a tenant budget that concurrent requests cannot
overshoot, concurrent streams per key, and two hub processes sharing one limit through Redis."""

from __future__ import annotations

import asyncio

import httpx
import openai
import pytest
from django.conf import settings
from openai import AsyncOpenAI, OpenAI

from accounts import services
from accounts.limits import Limits
from accounts.models import ModelKind, UsageRecord
from tests.conftest import database_url_for_subprocess, start_hub, stop_hub
from tests.e2e.conftest import CHAT, EMBED, barrier, chat_upstream

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

HELLO = [{"role": "user", "content": "Hi"}]
BUDGET = 3 * (6 + 8 + 64 + 16) + 10


def test_requests_per_minute_with_openai_headers_and_429(hub):
    issued = services.issue_key(hub.tenant, name="slow")
    services.set_limits(issued.key, Limits(rpm=2, tpm=10_000))
    client = hub(issued)
    first = client.chat.completions.with_raw_response.create(model=CHAT, messages=HELLO, max_tokens=2)
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert first.headers["x-ratelimit-reset-requests"] == "30s"
    assert first.headers["x-ratelimit-limit-tokens"] == "10000"
    assert int(first.headers["x-ratelimit-remaining-tokens"]) < 10_000
    assert first.headers["x-ratelimit-reset-tokens"].endswith("s")
    client.chat.completions.create(model=CHAT, messages=HELLO, max_tokens=2)
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model=CHAT, messages=HELLO, max_tokens=2)
    response = caught.value.response
    assert response.status_code == 429 and int(response.headers["retry-after"]) >= 1
    error = response.json()["error"]
    assert error["code"] == "rate_limit_exceeded" and error["type"] == "requests" and "RPM" in error["message"]
    barrier(hub)
    assert UsageRecord.objects.filter(api_key=issued.key).count() == 2  # the refused request never reached a model


def test_a_tenant_budget_holds_under_concurrent_requests(hub):
    """A budget fits three worst cases (a prompt's bound: its 6 bytes, 8 for the message, 64 for the template;
    plus 16 to generate); eight requests at once: three run, the rest get insufficient_quota, and what was
    metered stays within the budget."""
    other = services.create_tenant("tight", "Tight")
    services.grant_models(other, [CHAT])
    issued = services.issue_key(other, name="k")
    services.set_limits(other, Limits(budget=BUDGET, budget_period="day"))

    async def burst():
        client = AsyncOpenAI(base_url=f"{hub.url}/v1", api_key=issued.secret, max_retries=0)
        return await asyncio.gather(
            *(client.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": "Say hi"}],
                                             max_tokens=16) for _ in range(8)),
            return_exceptions=True,
        )  # fmt: skip

    results = asyncio.run(burst())
    ok = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, openai.RateLimitError)]
    assert len(ok) + len(refused) == 8 and len(ok) == 3, results
    assert all(r.response.json()["error"]["code"] == "insufficient_quota" for r in refused)
    assert refused[0].response.headers["x-should-retry"] == "false"
    barrier(hub)
    metered = UsageRecord.objects.filter(tenant=other)
    assert metered.count() == len(ok)
    assert sum(r.total_tokens for r in metered) == sum(r.usage.total_tokens for r in ok) <= BUDGET


def _tool(i: int) -> dict:
    """A tool of a realistic size (~500 bytes of JSON schema)."""
    fields = {f"field_{j}": {"type": "string", "description": f"The {j}th detail of the order, e.g. item {j}"}
              for j in range(6)}  # fmt: skip
    return {"type": "function", "function": {
        "name": f"lookup_{i}", "description": f"Look up record {i} of the customer's orders and return its details.",
        "parameters": {"type": "object", "properties": fields, "required": list(fields)},
    }}  # fmt: skip


TOOLS_BODY = {
    "model": CHAT, "messages": [{"role": "user", "content": "Find my last order."}], "max_tokens": 8,
    "tools": [_tool(i) for i in range(8)],
    "response_format": {"type": "json_schema", "json_schema": {"name": "order", "strict": True, "schema": {
        "type": "object", "properties": {"id": {"type": "string"}, "total": {"type": "number"}},
        "required": ["id", "total"], "additionalProperties": False}}},
}  # fmt: skip


def test_a_budget_holds_with_tools_and_a_schema_in_the_prompt(hub):
    """Fifty requests at once whose prompts are mostly tools (eight, each listed with an example call) and a JSON
    schema, against a budget of two and a half of their reservations: what is metered stays within the budget (a
    reservation that counted only the messages would let every request in and spend ~20 times the budget)."""
    from accounts.models import ServedModel
    from hub.api.ratelimit import estimate
    from hub.api.upstream import ModelInfo

    other = services.create_tenant("tools", "Tools")
    services.grant_models(other, [CHAT])
    issued = services.issue_key(other, name="k")
    row = ServedModel.objects.get(id=CHAT)
    info = ModelInfo(CHAT, row.kind, row.max_sequence_length, row.max_output_length, row.hidden_size, True)
    reservation = estimate("chat/completions", TOOLS_BODY, info).total
    budget = reservation * 5 // 2
    services.set_limits(other, Limits(budget=budget, budget_period="day"))

    async def burst():
        client = AsyncOpenAI(base_url=f"{hub.url}/v1", api_key=issued.secret, max_retries=0)
        body = {k: v for k, v in TOOLS_BODY.items() if k != "model"}
        return await asyncio.gather(
            *(client.chat.completions.create(model=CHAT, **body) for _ in range(50)), return_exceptions=True
        )

    results = asyncio.run(burst())
    ok = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, openai.RateLimitError)]
    assert len(ok) + len(refused) == 50 and ok, results
    assert all(r.response.json()["error"]["code"] == "insufficient_quota" for r in refused)
    assert min(r.usage.prompt_tokens for r in ok) > 8 * 100  # the tools are in the prompt
    barrier(hub)
    metered = UsageRecord.objects.filter(tenant=other)
    assert sorted(r.total_tokens for r in metered) == sorted(r.usage.total_tokens for r in ok)
    assert sum(r.total_tokens for r in metered) <= budget


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


def test_concurrent_streams_per_key(hub):
    issued = services.issue_key(hub.tenant, name="one-stream")
    services.set_limits(issued.key, Limits(max_streams=1))
    client = hub(issued)
    with client.chat.completions.create(model=CHAT, messages=HELLO, max_tokens=64, stream=True) as stream:
        next(iter(stream))  # the first stream is open
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(model=CHAT, messages=HELLO, max_tokens=2, stream=True)
        assert caught.value.response.json()["error"]["code"] == "concurrent_streams_exceeded"
        assert client.chat.completions.create(model=CHAT, messages=HELLO, max_tokens=2).choices  # not a stream
    # closed (aborted or finished): the slot is free again
    for _ in range(50):
        try:
            chunks = list(client.chat.completions.create(model=CHAT, messages=HELLO, max_tokens=2, stream=True))
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
        outcomes = []
        for i in range(8):
            try:
                clients[i % 2].embeddings.create(model=EMBED, input="x")
                outcomes.append("ok")
            except openai.RateLimitError:
                outcomes.append("429")
        assert outcomes.count("ok") == 4, outcomes
        assert httpx.get(f"{second_url}/health").status_code == 200
    finally:
        for process in (first, second):
            assert "Traceback" not in stop_hub(process)
    # both hubs stopped (drained): every row they were to write is written
    assert UsageRecord.objects.filter(api_key=issued.key).count() == 4
