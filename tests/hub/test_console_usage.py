"""The usage dashboard, its CSV export and the operator's global usage: figures from the roll-ups plus the raw
rows after the watermark, charts drawn on the server, tenant scoping; and the playground page."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, date, datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from accounts import metering, services, usage
from accounts.models import UsageRecord
from tests.support.clock import clear_of_midnight

pytestmark = pytest.mark.django_db

DAY = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)
RANGE = "?start=2026-11-09&end=2026-11-12"


def record(tenant, key, model: str, at: datetime, prompt: int, completion: int, status: int = 200) -> None:
    row = metering.record_usage(metering.Usage(
        request_id="req_t", tenant_id=tenant.id, api_key_id=key.id if key else None, model=model,
        route="chat/completions", prompt_tokens=prompt, completion_tokens=completion, status_code=status,
        streamed=False, aborted=status == 499, time_to_first_token_ms=1, duration_ms=2,
    ))  # fmt: skip
    UsageRecord.objects.filter(pk=row.pk).update(created_at=at)


@pytest.fixture
def traffic(acme, globex):
    """Acme: two keys, two models, three days; one row lands after the roll-up's watermark. Globex: one row."""
    one = services.issue_key(acme.tenant, name="backend").key
    two = services.issue_key(acme.tenant, name="notebook").key
    g = services.issue_key(globex.tenant, name="g").key
    record(acme.tenant, one, "chat-small", DAY, 100, 20)
    record(acme.tenant, one, "chat-small", DAY + timedelta(hours=1), 50, 10, status=502)
    record(acme.tenant, two, "embed-small", DAY + timedelta(days=1), 7, 0)
    record(globex.tenant, g, "completion-small", DAY, 9000, 9000)
    metering.refresh_rollups(now=DAY + timedelta(days=1, hours=1))  # watermark: day 2, 13:00 minus the lag
    record(acme.tenant, two, "chat-small", DAY + timedelta(days=1, hours=5), 3, 4)  # after it: raw tail
    record(acme.tenant, None, "chat-small", DAY + timedelta(days=2), 1, 1)  # the playground's rows have no key
    return acme, globex, one, two


def test_summary_adds_the_raw_tail_to_the_rollups(traffic):
    acme, globex, one, two = traffic
    summary = usage.summary(date(2026, 11, 9), date(2026, 11, 12), acme.tenant.pk)
    assert summary.total.requests == 5 and summary.total.errors == 1
    assert summary.total.prompt_tokens == 161 and summary.total.completion_tokens == 35
    assert [t.total_tokens for t in summary.by_day.values()] == [0, 180, 14, 2]
    assert summary.by_model["chat-small"].requests == 4
    assert summary.by_key[two.pk].total_tokens == 14 and summary.by_key[None].requests == 1
    # Every row counted once, whatever the watermark: the same figures straight from the raw rows.
    raw = UsageRecord.objects.filter(tenant=acme.tenant)
    assert summary.total.total_tokens == sum(r.total_tokens for r in raw)
    everyone = usage.summary(date(2026, 11, 9), date(2026, 11, 12))
    assert everyone.by_tenant[globex.tenant.pk].total_tokens == 18000


def test_summary_before_any_rollup_reads_the_raw_rows(acme):
    key = services.issue_key(acme.tenant).key
    record(acme.tenant, key, "chat-small", DAY, 5, 5)
    assert usage.watermark() is None
    assert usage.summary(DAY.date(), DAY.date(), acme.tenant.pk).total.total_tokens == 10


def test_dashboard_shows_cards_charts_and_tables(client, traffic):
    acme, _, one, two = traffic
    client.force_login(acme.viewer)  # viewers read usage
    page = client.get(f"/console/t/acme/usage/{RANGE}")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'data-figure="requests"' in html and ">5</span>" in html
    assert html.count('<svg class="chart"') == 2
    assert "Nov 10: 100 prompt + 20 completion" not in html  # tooltips name the weekday
    assert "Tue 10 Nov: 150 prompt + 30 completion" in html
    assert "backend" in html and one.prefix in html and "notebook" in html and "playground" in html
    assert "completion-small" not in html and "globex" not in html.lower()  # nothing of another tenant
    # Live: the page follows the stream only while its range includes today.
    assert 'data-live="' not in html
    live = client.get("/console/t/acme/usage/").content.decode()
    assert 'data-live="/console/t/acme/usage/live?start=' in live


def test_a_bad_range_falls_back_to_the_default_with_a_note(client, acme):
    client.force_login(acme.owner)
    html = client.get("/console/t/acme/usage/?start=2026-11-12&end=2026-11-01").content.decode()
    assert "the start is after the end" in html
    assert "days must be" in client.get("/console/t/acme/usage/?days=0").content.decode()
    clear_of_midnight(10)
    today = timezone.localdate()
    assert (
        f'value="{(today - timedelta(days=6)).isoformat()}"'
        in client.get("/console/t/acme/usage/?days=7").content.decode()
    )


@pytest.mark.parametrize("query", ["?start=9999-12-25&end=9999-12-31", "?start=0001-01-01&end=0001-01-02"])
def test_dates_at_the_calendars_ends_are_refused_on_every_page(client, acme, query):
    """Not a 500: the range is bounded like the usage API's, on the pages, the CSVs and the live stream's range."""
    client.force_login(acme.owner)
    for path in ("/console/t/acme/usage/", "/console/usage/"):
        if path == "/console/usage/":
            client.force_login(get_user_model().objects.create_superuser("op", "", "pw"))
        html = client.get(path + query)
        assert html.status_code == 200 and "dates must be between 1970-01-01 and 9999-12-30" in html.content.decode()
    assert client.get("/console/t/acme/usage.csv" + query).status_code == 200
    assert client.get("/console/usage.csv" + query).status_code == 200


def test_csv_export_has_one_row_per_day_model_and_key(client, traffic):
    acme, _, one, two = traffic
    client.force_login(acme.member)
    response = client.get(f"/console/t/acme/usage.csv{RANGE}")
    assert response.status_code == 200 and response["content-type"].startswith("text/csv")
    assert 'filename="acme-usage-2026-11-09-2026-11-12.csv"' in response["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert len(rows) == 4
    first = rows[0]
    assert first["date"] == "2026-11-10" and first["model"] == "chat-small" and first["key_prefix"] == one.prefix
    assert (first["requests"], first["errors"], first["total_tokens"]) == ("2", "1", "180")
    assert sum(int(r["total_tokens"]) for r in rows) == 196
    assert "tenant" not in first


def test_operator_sees_global_usage_others_do_not(client, traffic, django_user_model):
    acme, globex, *_ = traffic
    client.force_login(acme.owner)
    assert client.get("/console/usage/").status_code == 403
    assert client.get("/console/usage.csv").status_code == 403
    operator = django_user_model.objects.create_superuser("operator", "", "operator-pw")
    client.force_login(operator)
    html = client.get(f"/console/usage/{RANGE}").content.decode()
    assert 'id="by-tenant"' in html and "globex" in html and "acme" in html
    rows = list(csv.DictReader(io.StringIO(client.get(f"/console/usage.csv{RANGE}").content.decode())))
    assert {r["tenant"] for r in rows} == {"acme", "globex"}


def test_outsiders_and_other_tenants_cannot_read_usage(client, traffic, outsider):
    acme, globex, *_ = traffic
    for user in (outsider, globex.owner):
        client.force_login(user)
        for url in ["/console/t/acme/usage/", "/console/t/acme/usage.csv", "/console/t/acme/playground/"]:
            assert client.get(url).status_code == 404, (user, url)


def test_playground_lists_the_tenants_chat_models_for_members_only(client, acme):
    client.force_login(acme.member)
    html = client.get("/console/t/acme/playground/").content.decode()
    options = re.findall(r'<option value="([^"]+)">', html)
    assert options == ["chat-small", "vision-small"]  # not the completion or embedding models
    assert 'data-endpoint="/console/t/acme/playground/chat/completions"' in html
    assert "/static/console/playground.js" in html
    client.force_login(acme.viewer)
    assert client.get("/console/t/acme/playground/").status_code == 403


def test_audio_seconds_sum_through_rollups_into_the_dashboard_and_csv(client, acme):
    """Speech rows: their audio seconds add up like tokens, rolled up or raw, on the page and in the export."""
    key = services.issue_key(acme.tenant, name="voice").key
    for seconds, at in ((75.5, DAY), (3.25, DAY + timedelta(days=1, hours=5))):
        row = metering.record_usage(metering.Usage(
            request_id="req_a", tenant_id=acme.tenant.id, api_key_id=key.id, model="whisper",
            route="audio/transcriptions", prompt_tokens=round(seconds * 50), completion_tokens=9, status_code=200,
            streamed=False, aborted=False, time_to_first_token_ms=1, duration_ms=2, audio_seconds=seconds,
        ))  # fmt: skip
        UsageRecord.objects.filter(pk=row.pk).update(created_at=at)
        if seconds == 75.5:
            metering.refresh_rollups(now=DAY + timedelta(days=1))  # the first row rolled up, the second raw
    summary = usage.summary(date(2026, 11, 9), date(2026, 11, 12), acme.tenant.pk)
    assert summary.total.audio_seconds == summary.by_model["whisper"].audio_seconds == 78.75
    assert summary.total.prompt_tokens == 3775 + 162
    client.force_login(acme.viewer)
    html = client.get(f"/console/t/acme/usage/{RANGE}").content.decode()
    assert 'title="78.750 s" data-figure="audio-transcribed">1 min 19 s<' in html
    assert '<th class="num">Audio s</th>' in html and ">78.8</td>" in html
    rows = list(csv.DictReader(io.StringIO(client.get(f"/console/t/acme/usage.csv{RANGE}").content.decode())))
    assert [r["audio_seconds"] for r in rows] == ["75.5", "3.25"]


def test_cached_tokens_and_costs_on_the_dashboard_from_rollups_and_raw_rows(client, acme):
    """Each row charged at its time's price; the summary adds the rolled-up days and the raw tail exactly (Decimal);
    the cards and the by-model table show cached tokens and money."""
    from decimal import Decimal

    from accounts import pricing

    pricing.set_price("chat-small", input_per_million=Decimal("0.5"), cached_input_per_million=Decimal("0.05"),
                      output_per_million=Decimal(2), effective_from=DAY - timedelta(days=1))  # fmt: skip
    key = services.issue_key(acme.tenant, name="k").key
    rows = ((DAY, 2_000_000, 1_000_000, 100_000), (DAY + timedelta(days=1), 1_000_000, 0, 0))
    for at, prompt, cached, completion in rows:
        metering.record_usage(metering.Usage(
            request_id="req_c", tenant_id=acme.tenant.id, api_key_id=key.id, model="chat-small",
            route="chat/completions", prompt_tokens=prompt, completion_tokens=completion, status_code=200,
            streamed=False, aborted=False, time_to_first_token_ms=1, duration_ms=2, created_at=at,
            cached_tokens=cached,
        ))  # fmt: skip
    metering.refresh_rollups(now=DAY + timedelta(hours=12))  # the first day rolled up, the second raw
    summary = usage.summary(date(2026, 11, 9), date(2026, 11, 12), acme.tenant.pk)
    # 1M x 0.5 + 1M x 0.05 + 0.1M x 2 = 0.75; then 1M x 0.5
    assert (summary.total.cached_tokens, summary.total.cost) == (1_000_000, Decimal("1.25"))
    assert isinstance(summary.total.cost, Decimal)
    client.force_login(acme.viewer)
    html = client.get(f"/console/t/acme/usage/{RANGE}").content.decode()
    assert 'data-figure="cost">1.25 USD</span>' in html and 'data-figure="cached-prompt-tokens">1M</span>' in html
    assert '<td class="num">1,000,000</td>' in html  # the by-model table's cached column
