"""Service tiers through the hub (``hub/api/tiers.py``), against the fake of our inference service: the priority the
hub sends for OpenAI's ``service_tier`` and vLLM's ``priority``, the tier the answer names, and the share of the
price the usage row pays. That the engine runs a lower priority behind a higher one is ``test_scheduler.py``'s (the
scheduler) and ``test_server_priority.py``'s (our service over HTTP). A batch's lines: a response's here, chat
completions' in ``test_batches.py``."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest

from accounts import pricing
from accounts.models import UsageRecord
from tests.support.batches import batch_worker, jsonl, lines_of, wait_for
from tests.support.live import FAKE_CHAT, FAKE_EMBED, barrier, rows

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

HELLO = [{"role": "user", "content": "Hi"}]


@pytest.fixture
def priced(fake_hub):
    """fake-chat at 100 per million prompt tokens and 1000 per million completion tokens, flex at the default half."""
    pricing.set_price(FAKE_CHAT, input_per_million=Decimal(100), output_per_million=Decimal(1000))
    return fake_hub


def _full_cost(row: UsageRecord) -> Decimal:
    return (Decimal(row.prompt_tokens) * 100 + Decimal(row.completion_tokens) * 1000) / 1_000_000


@pytest.mark.parametrize("asked", [None, "auto", "default", "priority", "fast", "scale"])
def test_default_traffic_runs_at_priority_0_and_pays_the_full_price(priced, fake, asked):
    extra = {} if asked is None else {"service_tier": asked}
    response = priced().chat.completions.with_raw_response.create(
        model=FAKE_CHAT, messages=HELLO, max_tokens=5, **extra
    )
    completion = response.parse()
    [sent] = fake.requests
    assert sent["priority"] == 0 and "service_tier" not in sent
    assert completion.service_tier == "default"  # the tier actually used: the hub sells no faster one
    [row] = rows(request_id=response.headers["x-request-id"])
    assert row.service_tier == "default" and row.cost == _full_cost(row) > 0


def test_flex_runs_behind_default_traffic_at_half_the_price(priced, fake):
    response = priced().chat.completions.with_raw_response.create(
        model=FAKE_CHAT, messages=HELLO, max_tokens=5, service_tier="flex"
    )
    assert response.parse().service_tier == "flex"
    assert fake.requests[-1]["priority"] == 1
    [row] = rows(request_id=response.headers["x-request-id"])
    assert row.service_tier == "flex" and row.cost == _full_cost(row) / 2 > 0

    with priced().chat.completions.with_streaming_response.create(
        model=FAKE_CHAT, messages=HELLO, max_tokens=5, service_tier="flex", stream=True,
        stream_options={"include_usage": True},
    ) as streamed:  # fmt: skip
        chunks = list(streamed.parse())
        request_id = streamed.headers["x-request-id"]
    assert len(chunks) > 3 and all(c.service_tier == "flex" for c in chunks)
    [row] = rows(request_id=request_id)
    assert row.service_tier == "flex" and row.streamed and row.cost == _full_cost(row) / 2 > 0


def test_an_operators_flex_share_is_what_flex_pays(priced, fake):
    pricing.set_price(FAKE_CHAT, input_per_million=Decimal(100), output_per_million=Decimal(1000),
                      flex_share=Decimal("0.25"))  # fmt: skip
    response = priced().chat.completions.with_raw_response.create(
        model=FAKE_CHAT, messages=HELLO, max_tokens=5, service_tier="flex"
    )
    [row] = rows(request_id=response.headers["x-request-id"])
    assert row.cost == _full_cost(row) / 4 > 0


def test_a_tenants_own_priority_may_defer_its_request_but_never_advance_it(fake_hub, fake):
    client = fake_hub()
    for extra, sent in [({"priority": 5}, 5), ({"priority": -3}, 0), ({"priority": -3, "service_tier": "flex"}, 1),
                        ({"priority": 7, "service_tier": "flex"}, 7)]:  # fmt: skip
        client.chat.completions.create(model=FAKE_CHAT, messages=HELLO, max_tokens=2,
                                       service_tier=extra.pop("service_tier", None), extra_body=extra)  # fmt: skip
        assert fake.requests[-1]["priority"] == sent, extra


def test_responses_take_the_tier_too(priced, fake):
    response = priced().responses.with_raw_response.create(
        model=FAKE_CHAT, input="Hi", max_output_tokens=5, service_tier="flex"
    )
    assert response.parse().service_tier == "flex"
    assert fake.requests[-1]["priority"] == 1
    [row] = rows(request_id=response.headers["x-request-id"])
    assert row.service_tier == "flex" and row.cost == _full_cost(row) / 2 > 0
    assert priced().responses.create(model=FAKE_CHAT, input="Hi", max_output_tokens=5).service_tier == "default"
    assert fake.requests[-1]["priority"] == 0
    priced().responses.create(model=FAKE_CHAT, input="Hi", max_output_tokens=5, extra_body={"priority": 4})
    assert fake.requests[-1]["priority"] == 4


def test_embeddings_take_a_tier_too(fake_hub, fake):
    pricing.set_price(FAKE_EMBED, input_per_million=Decimal(100), output_per_million=Decimal(0))
    headers = {"authorization": f"Bearer {fake_hub.everything.secret}"}
    for tier, priority in [(None, 0), ("flex", 1)]:
        body = {"model": FAKE_EMBED, "input": "one two three", "service_tier": tier}
        response = httpx.post(f"{fake_hub.url}/v1/embeddings", json=body, headers=headers, timeout=30)
        assert response.status_code == 200 and fake.requests[-1]["priority"] == priority
        assert "service_tier" not in fake.requests[-1] and "service_tier" not in response.json()
        [row] = rows(request_id=response.headers["x-request-id"])
        assert row.service_tier == (tier or "default")
        assert row.cost == Decimal(row.prompt_tokens) * 100 / 1_000_000 / (2 if tier else 1) > 0


@pytest.mark.parametrize(
    "extra, param",
    [({"service_tier": "turbo"}, "service_tier"), ({"service_tier": 1}, "service_tier"),
     ({"priority": "high"}, "priority"), ({"priority": 1.5}, "priority"), ({"priority": True}, "priority"),
     ({"priority": 10**7}, "priority")],
)  # fmt: skip
@pytest.mark.parametrize("route", ["chat/completions", "responses"])
def test_bad_tiers_and_priorities_are_openai_errors_and_not_metered(fake_hub, fake, route, extra, param):
    body = {"model": FAKE_CHAT, **extra}
    body.update({"messages": HELLO} if route == "chat/completions" else {"input": "Hi"})
    headers = {"authorization": f"Bearer {fake_hub.everything.secret}"}
    response = httpx.post(f"{fake_hub.url}/v1/{route}", json=body, headers=headers, timeout=30)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["param"], error["type"], error["code"]) == (param, "invalid_request_error", "invalid_value")
    assert not fake.requests
    barrier(fake_hub)  # every row of the requests before it is written
    assert not UsageRecord.objects.filter(request_id=response.headers["x-request-id"]).exists()


def test_a_batchs_lines_are_the_batch_tier_whatever_they_ask(priced, fake):
    """A line that asks for flex still runs in the batch tier: priority 2, and its answer says default (as OpenAI's
    batch answers do), a response's as a chat completion's."""
    client = priced()
    lines = [
        {"custom_id": "r", "method": "POST", "url": "/v1/responses",
         "body": {"model": FAKE_CHAT, "input": "Hi", "max_output_tokens": 3, "service_tier": "flex"}},
    ]  # fmt: skip
    batch_file = client.files.create(file=("in.jsonl", jsonl(lines)), purpose="batch")
    with batch_worker():
        created = client.batches.create(input_file_id=batch_file.id, endpoint="/v1/responses", completion_window="24h")
        batch = wait_for(client, created.id, ("completed", "failed", "expired", "cancelled"))
    [line] = lines_of(client, batch.output_file_id)
    assert line["response"]["body"]["service_tier"] == "default"
    assert fake.requests[-1]["priority"] == 2
    [row] = rows(request_id=line["response"]["request_id"])
    assert row.service_tier == "batch" and row.cost == _full_cost(row) / 2 > 0
