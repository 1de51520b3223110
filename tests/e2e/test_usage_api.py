"""GET /v1/usage on a live hub: only the key's tenant, daily buckets, grouped by day, model or key."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from accounts import metering, pricing, services

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

DAY = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def _usage(tenant, key, model, at, prompt, completion, cached=0, tier="default", route="completions"):
    metering.record_usage(metering.Usage(
        request_id="req_x", tenant_id=tenant.id, api_key_id=key.id, model=model, route=route,
        prompt_tokens=prompt, completion_tokens=completion, status_code=200, streamed=False, aborted=False,
        time_to_first_token_ms=1, duration_ms=2, created_at=at, cached_tokens=cached, service_tier=tier,
    ))  # fmt: skip


def _get(live_hub, secret, route="usage", **params):
    return httpx.get(f"{live_hub.url}/v1/{route}", params=params, headers={"authorization": f"Bearer {secret}"})


def test_usage_api_buckets_and_groups_only_the_tenants_own_rows(live_hub, acme, globex):
    a1 = services.issue_key(acme.tenant, name="one")
    a2 = services.issue_key(acme.tenant, name="two")
    g = services.issue_key(globex.tenant, name="g")
    _usage(acme.tenant, a1.key, "chat-small", DAY, 10, 5, cached=8)
    _usage(acme.tenant, a2.key, "chat-small", DAY + timedelta(hours=3), 1, 2)
    _usage(acme.tenant, a1.key, "embed-small", DAY + timedelta(days=1), 7, 0)
    _usage(globex.tenant, g.key, "completion-small", DAY, 1000, 1000)

    page = _get(live_hub, a1.secret, start="2026-11-20", end="2026-11-22").json()
    assert page["object"] == "page" and page["has_more"] is False
    assert [b["start_time"] for b in page["data"]] == [int((DAY.replace(hour=0) + timedelta(days=i)).timestamp())
                                                       for i in range(3)]  # fmt: skip
    first, second, third = (b["results"] for b in page["data"])
    assert [(r["input_tokens"], r["input_cached_tokens"], r["output_tokens"], r["num_model_requests"])
            for r in first] == [(11, 8, 7, 2)]  # fmt: skip
    assert [(r["input_tokens"], r["num_model_requests"]) for r in second] == [(7, 1)] and third == []

    by_model = _get(live_hub, a1.secret, start="2026-11-20", end="2026-11-20", group_by="model").json()
    assert [(r["model"], r["total_tokens"]) for r in by_model["data"][0]["results"]] == [("chat-small", 18)]
    by_key = _get(live_hub, a2.secret, start="2026-11-20", end="2026-11-20", group_by="key").json()
    assert sorted((r["api_key_id"], r["total_tokens"]) for r in by_key["data"][0]["results"]) == sorted(
        [(a1.key.prefix, 15), (a2.key.prefix, 3)]
    )
    # OpenAI's name for the grouping, which is also the results' field
    assert _get(live_hub, a2.secret, start="2026-11-20", end="2026-11-20", group_by="api_key_id").json() == by_key
    # OpenAI's group_by is an array: several at once split by each (a grouping named twice counts once)
    for groups in (["model", "api_key_id"], ["api_key_id", "model", "key", "day"]):
        both = _get(live_hub, a1.secret, start="2026-11-20", end="2026-11-20", group_by=groups).json()
        assert sorted((r["model"], r["api_key_id"], r["total_tokens"]) for r in both["data"][0]["results"]) == sorted(
            [("chat-small", a1.key.prefix, 15), ("chat-small", a2.key.prefix, 3)]
        ), groups
    # OpenAI's filters, each an array: only these models', only these keys' (the id the results name them by)
    only = _get(live_hub, a1.secret, start="2026-11-20", end="2026-11-21", models=["embed-small", "nope"]).json()
    assert [[r["input_tokens"] for r in b["results"]] for b in only["data"]] == [[], [7]]
    only = _get(live_hub, a1.secret, start="2026-11-20", end="2026-11-21", api_key_ids=a2.key.prefix).json()
    assert [[r["input_tokens"] for r in b["results"]] for b in only["data"]] == [[1], []]
    both = _get(live_hub, a1.secret, start="2026-11-20", end="2026-11-21", api_key_ids=a1.key.prefix,
                models="chat-small", group_by="api_key_id").json()  # fmt: skip
    per_day = [[(r["api_key_id"], r["input_tokens"]) for r in b["results"]] for b in both["data"]]
    assert per_day == [[(a1.key.prefix, 10)], []]
    theirs = _get(live_hub, g.secret, start="2026-11-20", end="2026-11-20", api_key_ids=a1.key.prefix).json()
    assert theirs["data"][0]["results"] == []  # another tenant's key: nothing of it shows
    theirs = _get(live_hub, g.secret, start="2026-11-20", end="2026-11-21").json()
    assert [r["total_tokens"] for b in theirs["data"] for r in b["results"]] == [2000]


def test_usage_api_groups_by_service_tier_and_batch(live_hub, acme):
    key = services.issue_key(acme.tenant, name="one")
    for tier, tokens in [("default", 1), ("default", 2), ("flex", 10), ("batch", 100), ("batch", 200)]:
        _usage(acme.tenant, key.key, "chat-small", DAY, tokens, 0, tier=tier)
    by_tier = _get(live_hub, key.secret, start="2026-11-20", end="2026-11-20", group_by="service_tier").json()
    results = by_tier["data"][0]["results"]
    assert sorted((r["service_tier"], r["input_tokens"], r["num_model_requests"]) for r in results) == [
        ("batch", 300, 2), ("default", 3, 2), ("flex", 10, 1)
    ]  # fmt: skip
    assert all(r["batch"] is None and r["model"] is None for r in results)
    by_batch = _get(live_hub, key.secret, start="2026-11-20", end="2026-11-20", group_by="batch").json()
    assert sorted((r["batch"], r["input_tokens"]) for r in by_batch["data"][0]["results"]) == [(False, 13), (True, 300)]
    plain = _get(live_hub, key.secret, start="2026-11-20", end="2026-11-20").json()["data"][0]["results"]
    assert [(r["input_tokens"], r["service_tier"], r["batch"]) for r in plain] == [(313, None, None)]


def test_usage_api_splits_each_day_by_kind_as_openai(live_hub, acme):
    key = services.issue_key(acme.tenant, name="one")
    for route, tokens in [("chat/completions", 1), ("responses", 2), ("embeddings", 10), ("vector_stores/files", 20),
                          ("vector_stores/search", 40), ("rerank", 80), ("moderations", 100)]:  # fmt: skip
        _usage(acme.tenant, key.key, "m", DAY, tokens, 0, route=route)
    [bucket] = _get(live_hub, key.secret, start="2026-11-20", end="2026-11-20").json()["data"]
    assert {r["object"]: r["input_tokens"] for r in bucket["results"]} == {
        "organization.usage.completions.result": 3, "organization.usage.embeddings.result": 150,
        "organization.usage.moderations.result": 100,
    }  # fmt: skip


@pytest.mark.parametrize(
    "params, param",
    [({"start": "20-11-2026"}, "start"), ({"group_by": "hour"}, "group_by"),
     ({"start": "2026-11-22", "end": "2026-11-20"}, "start"), ({"start": "2024-01-01", "end": "2026-01-01"}, "end"),
     ({"end": "9999-12-31"}, "end"), ({"end": "0001-01-01"}, "end"),
     ({"start": "0001-01-01", "end": "0001-01-02"}, "end"),
     # found under make run: OpenAI's names and any other parameter were ignored (the default week came back)
     ({"limit": "0"}, "limit"), ({"limit": "3.5"}, "limit"), ({"limit": "²"}, "limit"),
     ({"limit": "9" * 5000}, "limit"), ({"page": "2020-01-01"}, "page"), ({"page": "x"}, "page"),
     ({"project_ids": "p"}, "project_ids"), ({"bucket_width": "1m"}, "bucket_width"),
     ({"models": "a\x00b"}, "models"), ({"api_key_ids": ""}, "api_key_ids"), ({"models": ["m"] * 101}, "models"),
     ({"bucket_width": "1h", "start": "2026-10-01", "end": "2026-11-20"}, "end"),
     ({"bucket_width": "1h", "limit": "745"}, "limit"),
     ({"page": "2026-11-20T05:30:00Z", "bucket_width": "1h", "start": "2026-11-20", "end": "2026-11-20"}, "page"),
     ({"page": "0001-01-01T00:00:00+14:00"}, "page"),
     ({"start_time": "abc"}, "start_time"), ({"start_time": "1", "end": "2026-11-20"}, "start"),
     ({"start_time": "1763683200", "end_time": "1763596800"}, "start_time"), ({"end_time": "-5"}, "end_time"),
     ({"start_time": "1700000000", "end_time": "1800000000"}, "end_time"),
     ({"group_by": ["model", "hour"]}, "group_by")],
)  # fmt: skip
def test_usage_api_rejects_bad_parameters(live_hub, acme, params, param):
    key = services.issue_key(acme.tenant, name="one")
    response = _get(live_hub, key.secret, **params)
    assert response.status_code == 400 and response.json()["error"]["param"] == param


def test_usage_and_costs_come_in_pages_of_limit_buckets_as_openais(live_hub, acme):
    """OpenAI's ``limit`` (buckets a page) and ``next_page`` cursor, sent back as ``page`` with the same query: the
    pages, one after another, are the whole range's buckets."""
    key = services.issue_key(acme.tenant, name="one")
    for day in range(3):
        _usage(acme.tenant, key.key, "chat-small", DAY + timedelta(days=day), 10 + day, 1)
    for route in ("usage", "costs"):
        query = {"start": "2026-11-20", "end": "2026-11-22"}
        whole = _get(live_hub, key.secret, route, **query).json()
        assert whole["has_more"] is False and whole["next_page"] is None and len(whole["data"]) == 3
        first = _get(live_hub, key.secret, route, **query, limit=2).json()
        assert first["has_more"] is True and first["next_page"] == "2026-11-22", route
        second = _get(live_hub, key.secret, route, **query, limit=2, page=first["next_page"]).json()
        assert second["has_more"] is False and second["next_page"] is None
        assert first["data"] + second["data"] == whole["data"], route
        assert _get(live_hub, key.secret, route, **query, limit=3).json() == whole  # the range fits: one page


def test_a_page_at_the_end_of_the_calendar_is_answered(live_hub, acme):
    """A limit larger than what is left of a range ending on the last day allowed (9999-12-30) is one page."""
    key = services.issue_key(acme.tenant, name="one")
    for width in ("1d", "1h"):
        page = _get(live_hub, key.secret, start="9999-12-30", end="9999-12-30", limit=366, bucket_width=width)
        assert page.status_code == 200 and page.json()["has_more"] is False, page.text


def test_hourly_buckets_with_bucket_width_1h(live_hub, acme):
    """OpenAI's ``bucket_width=1h``: a bucket an hour, each row in the hour it was metered; times read as the hours
    they fall in; pages of ``limit`` hours."""
    key = services.issue_key(acme.tenant, name="one")
    _usage(acme.tenant, key.key, "chat-small", DAY, 10, 5)  # 12:00
    _usage(acme.tenant, key.key, "chat-small", DAY + timedelta(minutes=59), 1, 2)  # 12:59, the same hour
    _usage(acme.tenant, key.key, "chat-small", DAY + timedelta(hours=2, minutes=1), 7, 0)  # 14:01
    noon = int(DAY.timestamp())
    page = _get(live_hub, key.secret, start_time=noon + 600, end_time=noon + 3 * 3600 + 1, bucket_width="1h").json()
    assert [b["start_time"] for b in page["data"]] == [noon + h * 3600 for h in range(4)]  # 12:00 to 15:00
    assert all(b["end_time"] - b["start_time"] == 3600 for b in page["data"])
    hours = [[(r["input_tokens"], r["num_model_requests"]) for r in b["results"]] for b in page["data"]]
    assert hours == [[(11, 2)], [], [(7, 1)], []]
    day = _get(live_hub, key.secret, "costs", start="2026-11-20", end="2026-11-20", bucket_width="1h").json()
    assert len(day["data"]) == 24 and day["data"][0]["start_time"] == noon - 12 * 3600
    first = _get(live_hub, key.secret, start="2026-11-20", end="2026-11-20", bucket_width="1h", limit=13).json()
    assert first["has_more"] is True and first["next_page"] == "2026-11-20T13:00:00Z"
    rest = _get(live_hub, key.secret, start="2026-11-20", end="2026-11-20", bucket_width="1h", limit=13,
                page=first["next_page"]).json()  # fmt: skip
    assert len(first["data"]) + len(rest["data"]) == 24 and rest["has_more"] is False
    assert [r["input_tokens"] for b in first["data"] + rest["data"] for r in b["results"]] == [11, 7]
    recent = _get(live_hub, key.secret, bucket_width="1h").json()["data"]  # no range: the last 24 hours
    assert len(recent) == 24 and recent[-1]["start_time"] <= datetime.now(UTC).timestamp() < recent[-1]["end_time"]


def test_usage_api_takes_openais_unix_times_too(live_hub, acme):
    """OpenAI's organization usage names: ``start_time`` / ``end_time`` (Unix seconds, the end exclusive) ask for
    the UTC days they fall in, in daily buckets (``bucket_width=1d``), for usage and costs alike."""
    key = services.issue_key(acme.tenant, name="one")
    _usage(acme.tenant, key.key, "chat-small", DAY, 10, 5)
    _usage(acme.tenant, key.key, "chat-small", DAY + timedelta(days=1), 1, 2)
    midnight = int(DAY.replace(hour=0).timestamp())
    for route in ("usage", "costs"):
        dated = _get(live_hub, key.secret, route, start="2026-11-20", end="2026-11-21").json()
        timed = _get(live_hub, key.secret, route, start_time=midnight, end_time=midnight + 2 * 86400,
                     bucket_width="1d").json()  # fmt: skip
        assert timed == dated and len(dated["data"]) == 2, route
    one = _get(live_hub, key.secret, start_time=midnight + 3600, end_time=midnight + 86400).json()
    assert [b["start_time"] for b in one["data"]] == [midnight] and one["data"][0]["results"][0]["input_tokens"] == 10


def test_costs_api_sums_each_rows_cost_at_its_own_price(live_hub, acme, globex):
    """OpenAI's /organization/costs shape: daily buckets, a line item per model with group_by=line_item; a price
    change between two days applies to the second only; another tenant's costs are not shown."""
    pricing.set_price("chat-small", input_per_million=Decimal(1), cached_input_per_million=Decimal("0.1"),
                      output_per_million=Decimal(4), effective_from=DAY - timedelta(days=30))  # fmt: skip
    pricing.set_price("embed-small", input_per_million=Decimal("0.02"), output_per_million=Decimal(0),
                      effective_from=DAY - timedelta(days=30))  # fmt: skip
    pricing.set_price("chat-small", input_per_million=Decimal(2), cached_input_per_million=Decimal("0.2"),
                      output_per_million=Decimal(8), effective_from=DAY + timedelta(hours=12))  # fmt: skip
    key = services.issue_key(acme.tenant, name="one")
    g = services.issue_key(globex.tenant, name="g")
    _usage(acme.tenant, key.key, "chat-small", DAY, 1_000_000, 500_000, cached=600_000)  # 0.4 + 0.06 + 2
    _usage(acme.tenant, key.key, "embed-small", DAY + timedelta(hours=1), 500_000, 0)  # 0.01
    _usage(acme.tenant, key.key, "chat-small", DAY + timedelta(days=1), 1_000_000, 0)  # the new price: 2
    _usage(globex.tenant, g.key, "completion-small", DAY, 1000, 1000)
    page = _get(live_hub, key.secret, "costs", start="2026-11-20", end="2026-11-21").json()
    assert [[(r["object"], r["amount"]) for r in b["results"]] for b in page["data"]] == [
        [("organization.costs.result", {"value": 2.47, "currency": "usd"})],
        [("organization.costs.result", {"value": 2.0, "currency": "usd"})],
    ]
    items = _get(live_hub, key.secret, "costs", start="2026-11-20", end="2026-11-20", group_by="line_item").json()
    assert [(r["line_item"], r["amount"]["value"]) for r in items["data"][0]["results"]] == [
        ("chat-small", 2.46),
        ("embed-small", 0.01),
    ]
    assert _get(live_hub, key.secret, "costs", group_by="model").json()["error"]["param"] == "group_by"


def test_usage_api_needs_a_key(live_hub, db):
    response = httpx.get(f"{live_hub.url}/v1/usage")
    assert response.status_code == 401 and response.json()["error"]["code"] == "missing_api_key"


def test_a_nul_in_a_model_id_is_not_found(live_hub, acme):
    key = services.issue_key(acme.tenant, name="one")
    response = httpx.get(f"{live_hub.url}/v1/models/chat%00small", headers={"authorization": f"Bearer {key.secret}"})
    assert response.status_code == 404 and response.json()["error"]["code"] == "model_not_found"
