"""Usage roll-ups: hour and day buckets rebuilt from the raw rows, idempotent, and run by the beat."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from accounts import metering, services
from accounts.models import RollupPeriod, UsageRecord, UsageRollup
from hub.beat import InProcessBeat

T0 = datetime(2026, 11, 20, 9, 15, tzinfo=UTC)


def _usage(tenant, key, model: str, at: datetime, prompt: int, completion: int, status: int = 200, aborted=False):
    row = metering.record_usage(metering.Usage(
        request_id=f"req_{prompt}_{completion}_{at.timestamp()}", tenant_id=tenant.id, api_key_id=key.id,
        model=model, route="chat/completions", prompt_tokens=prompt, completion_tokens=completion,
        status_code=status, streamed=True, aborted=aborted, time_to_first_token_ms=5, duration_ms=10,
    ))  # fmt: skip
    UsageRecord.objects.filter(pk=row.pk).update(created_at=at)


@pytest.fixture
def rows(acme, globex):
    a = services.issue_key(acme.tenant, name="a").key
    g = services.issue_key(globex.tenant, name="g").key
    _usage(acme.tenant, a, "chat-small", T0, 10, 5)
    _usage(acme.tenant, a, "chat-small", T0 + timedelta(minutes=30), 7, 3, aborted=True, status=499)
    _usage(acme.tenant, a, "chat-small", T0 + timedelta(hours=1), 1, 1, status=502)
    _usage(acme.tenant, a, "embed-small", T0 + timedelta(days=1), 4, 0)
    _usage(globex.tenant, g, "completion-small", T0, 100, 50)
    return acme, globex, a


def test_hour_and_day_buckets_sum_the_raw_rows(rows):
    acme, globex, key = rows
    assert metering.rebuild_rollups(RollupPeriod.HOUR) == 4
    assert metering.rebuild_rollups(RollupPeriod.DAY) == 3
    nine = UsageRollup.objects.get(period="hour", tenant=acme.tenant, bucket_start=T0.replace(minute=0))
    assert (nine.requests, nine.prompt_tokens, nine.completion_tokens, nine.total_tokens) == (2, 17, 8, 25)
    assert (nine.aborted, nine.errors) == (1, 0)  # a client abort (499) is not an error
    day = UsageRollup.objects.get(period="day", tenant=acme.tenant, model="chat-small")
    assert (day.requests, day.total_tokens, day.errors, day.aborted) == (3, 27, 1, 1)
    assert day.bucket_start == T0.replace(hour=0, minute=0)
    assert UsageRollup.objects.get(period="day", tenant=globex.tenant).total_tokens == 150
    # idempotent, and a partial rebuild from a moment replaces only the buckets from there on
    metering.rebuild_rollups(RollupPeriod.HOUR)
    assert UsageRollup.objects.filter(period="hour").count() == 4
    _usage(acme.tenant, key, "chat-small", T0 + timedelta(hours=1, minutes=5), 2, 2)
    assert metering.rebuild_rollups(RollupPeriod.HOUR, T0 + timedelta(hours=1, minutes=40)) == 2
    ten = UsageRollup.objects.get(period="hour", tenant=acme.tenant, bucket_start=T0.replace(hour=10, minute=0))
    assert (ten.requests, ten.total_tokens) == (2, 6)
    assert UsageRollup.objects.filter(period="hour").count() == 4


@pytest.mark.django_db(transaction=True)
def test_the_in_process_beat_runs_the_rollup_task(acme):
    key = services.issue_key(acme.tenant, name="a").key
    _usage(acme.tenant, key, "chat-small", datetime.now(UTC), 3, 4)
    beat = InProcessBeat({"rollup": {"task": "accounts.rollup_usage", "schedule": 0.2}})
    beat.start()
    try:
        deadline = time.monotonic() + 20
        while not UsageRollup.objects.filter(period="day").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        beat.stop()
        beat.join(timeout=10)
    assert UsageRollup.objects.get(period="hour").total_tokens == 7
    assert UsageRollup.objects.get(period="day").total_tokens == 7
