"""Limits on a live hub in front of the real models, through the OpenAI SDK: requests per minute with the
``x-ratelimit-*`` headers and a 429 the SDK understands, a tenant budget that concurrent requests cannot
overshoot, concurrent streams per key, and two hub processes sharing one limit through Redis."""

from __future__ import annotations

import asyncio

import httpx
import openai
import pytest
from openai import AsyncOpenAI, OpenAI

from accounts import services
from accounts.limits import Limits
from accounts.models import UsageRecord
from tests.conftest import database_url_for_subprocess, start_hub, stop_hub
from tests.e2e.conftest import CHAT, EMBED, rows

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
    assert len(rows(2, api_key_id=issued.key.pk)) == 2  # the refused request never reached a model


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
    metered = sum(r.total_tokens for r in rows(len(ok), tenant_id=other.pk))
    assert metered == sum(r.usage.total_tokens for r in ok) <= BUDGET


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


def test_two_hub_processes_share_one_limit_through_redis(hub, live_hub):
    """A second hub on the same database and the same Redis: a key's 4 requests a minute are 4 in all."""
    redis_url = "redis://127.0.0.1:6379/3"
    env = {"HUB_DATABASE_URL": database_url_for_subprocess(), "HUB_REDIS_URL": redis_url, "HUB_CACHE_PREFIX": "two"}
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
    assert UsageRecord.objects.filter(api_key=issued.key).count() == 4
