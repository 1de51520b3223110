"""Monthly usage reports: the CSV sums the month's usage (roll-ups plus the rows after the watermark), the chart
is a PNG of the expected size, the scheduled task builds last month's once, and a real worker builds on demand."""

from __future__ import annotations

import csv
import io
import os
import time
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone
from PIL import Image

from accounts import metering, pricing, reports, services, usage
from accounts.models import Role, UsageRecord, UsageReport
from accounts.tasks import build_monthly_reports, build_usage_report
from hub.beat import InProcessBeat
from hub.celery import app
from tests.support.hub import run_on_worker

MONTH = date(2026, 10, 1)
NOVEMBER = date(2026, 11, 1)
WATERMARK_AT = datetime(2026, 10, 15, tzinfo=UTC)


def record(tenant, key, model: str, at: datetime, prompt: int, completion: int, status: int = 200, aborted=False,
           audio: float = 0.0, cached: int = 0):  # fmt: skip
    metering.record_usage(metering.Usage(
        request_id=f"req_{prompt}_{completion}_{at.timestamp()}", tenant_id=tenant.id,
        api_key_id=key.id if key else None, model=model, route="audio/transcriptions" if audio else "chat/completions",
        prompt_tokens=prompt, completion_tokens=completion, status_code=status, streamed=True, aborted=aborted,
        time_to_first_token_ms=5, duration_ms=10, audio_seconds=audio, created_at=at, cached_tokens=cached,
    ))  # fmt: skip


def at(day: int, hour: int = 12, month: date = MONTH) -> datetime:
    return datetime(month.year, month.month, day, hour, tzinfo=UTC)


@pytest.fixture
def october(acme, globex):
    """October usage of acme through two keys and the playground (no key), with neighbours that must not count:
    the days either side of the month and another tenant. Rolled up to the 15th; the later rows stay raw."""
    a = services.issue_key(acme.tenant, name="batch").key
    b = services.issue_key(acme.tenant, name="=HYPERLINK(1)").key
    g = services.issue_key(globex.tenant, name="g").key
    pricing.set_price("chat-small", input_per_million=Decimal(3), cached_input_per_million=Decimal("0.3"),
                      output_per_million=Decimal(15), effective_from=datetime(2026, 1, 1, tzinfo=UTC))  # fmt: skip
    record(acme.tenant, a, "chat-small", at(3, 10), 10, 5, cached=8)
    record(acme.tenant, a, "chat-small", at(3, 14), 7, 3, status=499, aborted=True)
    record(acme.tenant, a, "chat-small", at(3, 15), 1, 1, status=502)
    record(acme.tenant, b, "embed-small", at(4), 40, 0)
    record(acme.tenant, a, "whisper", at(5), 150, 20, audio=2.5)  # speech: its audio seconds sum beside the tokens
    record(acme.tenant, a, "whisper", at(22), 101, 7, audio=2.013)  # after the watermark
    record(acme.tenant, a, "chat-small", at(1, 0), 2, 2)
    record(acme.tenant, None, "chat-small", at(20), 2, 3, cached=1)  # after the watermark
    record(acme.tenant, a, "chat-small", datetime(2026, 10, 31, 23, 59, 59, tzinfo=UTC), 1, 8)
    record(acme.tenant, b, "embed-small", at(25), 6, 0)
    record(acme.tenant, a, "chat-small", datetime(2026, 9, 30, 23, 59, 59, tzinfo=UTC), 100, 100)
    record(acme.tenant, a, "chat-small", datetime(2026, 11, 1, tzinfo=UTC), 100, 100)
    record(globex.tenant, g, "completion-small", at(3), 1000, 500)
    metering.refresh_rollups(now=WATERMARK_AT)
    return acme, {a.pk: a, b.pk: b}


def expected_rows(tenant, keys) -> list[list[str]]:
    """The CSV the month's raw rows add up to, summed here in Python."""
    sums: dict[tuple, list] = defaultdict(lambda: [0] * 6 + [0.0, 0, Decimal(0)])
    rows = UsageRecord.objects.filter(tenant=tenant, created_at__gte=at(1, 0), created_at__lt=at(1, 0, NOVEMBER))
    for r in rows:
        s = sums[(r.created_at.date().isoformat(), r.model, r.api_key_id or 0)]
        counts = (1, int(r.status_code >= 400 and r.status_code != 499), int(r.aborted))
        for i, value in enumerate((*counts, r.prompt_tokens, r.completion_tokens, r.total_tokens, r.audio_seconds,
                                   r.cached_tokens, r.cost)):  # fmt: skip
            s[i] += value

    def cells(s: list) -> list[str]:
        return [*map(str, s[:-1]), format(s[-1].normalize(), "f")]

    out = []
    for (day, model, key_id), s in sorted(sums.items()):
        prefix, name = (keys[key_id].prefix, keys[key_id].name) if key_id else ("", usage.NO_KEY)
        out.append([day, model, prefix, "'" + name if name.startswith("=") else name, *cells(s)])
    total = [sum(s[i] for s in sums.values()) for i in range(9)]
    return [*out, ["total", "", "", "", *cells(total)]]


def read_csv(report: UsageReport) -> list[list[str]]:
    return list(csv.reader(io.StringIO(bytes(report.csv).decode())))


def test_the_csv_sums_the_months_usage_from_the_rollups_and_the_rows_after_the_watermark(october):
    acme, keys = october
    expected = expected_rows(acme.tenant, keys)
    # Prove the roll-ups are read: the rows they hold are gone from the raw table; the later rows are not.
    UsageRecord.objects.filter(created_at__lt=usage.watermark()).delete()
    assert UsageRecord.objects.filter(tenant=acme.tenant, created_at__month=10).count() == 4

    report = reports.build_report(acme.tenant, date(2026, 10, 17))
    rows = read_csv(report)
    assert rows[0] == ["date", "model", "key_prefix", "key_name", *usage.FIELDS]
    assert rows[1:] == expected
    assert [r[0] for r in rows[1:-1]] == sorted(r[0] for r in rows[1:-1])
    # cost: chat-small's 2+10+7+1+2+1 prompt tokens (9 of them cached) and 2+5+3+1+3+8 completion tokens
    cost = ((23 - 9) * Decimal(3) + 9 * Decimal("0.3") + 22 * Decimal(15)) / 1_000_000
    assert rows[-1] == ["total", "", "", "", "10", "1", "1", "320", "49", "369", "4.513", "9", format(cost, "f")]
    assert (report.month, report.requests, report.total_tokens, report.built_by) == (MONTH, 10, 369, None)
    assert report.audio_seconds == 4.513 and (report.cached_tokens, report.cost) == (9, cost)
    assert any(r[3] == "'=HYPERLINK(1)" for r in rows)  # a key name is never a spreadsheet formula


def test_the_chart_is_a_png_of_the_expected_size(october):
    acme, _ = october
    chart = Image.open(io.BytesIO(bytes(reports.build_report(acme.tenant, MONTH).chart_png)))
    assert (chart.format, chart.size) == ("PNG", reports.SIZE) == ("PNG", (1000, 500))
    colours = {colour for _, colour in chart.convert("RGB").getcolors(1 << 20)}
    assert {(0x24, 0x57, 0xC5), (0xF0, 0x8C, 0x2E)} <= colours  # prompt and completion bars (and the legend)
    empty = Image.open(io.BytesIO(bytes(reports.build_report(acme.tenant, date(2026, 2, 1)).chart_png)))
    assert empty.size == (1000, 500)


def test_a_rebuild_replaces_the_report(october, django_user_model):
    acme, _ = october
    first = reports.build_report(acme.tenant, MONTH)
    record(acme.tenant, None, "chat-small", at(21), 50, 50)
    second = reports.build_report(acme.tenant, MONTH, actor=acme.owner)
    assert UsageReport.objects.filter(tenant=acme.tenant).count() == 1
    assert second.pk == first.pk and second.built_at > first.built_at
    assert (second.total_tokens - first.total_tokens, second.built_by) == (100, acme.owner)
    total_row = read_csv(UsageReport.objects.get(pk=first.pk))[-1]
    assert total_row[4 + usage.FIELDS.index("total_tokens")] == str(second.total_tokens)


def test_only_admins_and_operators_build(acme, globex, django_user_model):
    for actor in (acme.member, acme.viewer, globex.owner):
        with pytest.raises(PermissionDenied):
            reports.build_report(acme.tenant, MONTH, actor=actor)
    assert not UsageReport.objects.exists()
    services.set_role(acme.tenant, acme.member, Role.ADMIN)
    operator = django_user_model.objects.create_superuser("operator", "", "operator-pw")
    for actor in (acme.owner, acme.member, operator):
        assert reports.build_report(acme.tenant, MONTH, actor=actor).built_by == actor
    with pytest.raises(ValidationError):
        reports.build_report(acme.tenant, (timezone.now() + timedelta(days=32)).date())


def test_months_ticks_and_labels():
    assert reports.parse_month("2026-10") == reports.parse_month("2026-10-17") == MONTH
    with pytest.raises(ValueError):
        reports.parse_month("October")
    assert reports.previous_month(datetime(2026, 1, 15, tzinfo=UTC)) == date(2025, 12, 1)
    assert reports.previous_month(datetime(2026, 11, 1, 2, tzinfo=UTC)) == MONTH
    assert reports.previous_month(datetime(2026, 11, 1, 0, 30, tzinfo=UTC)) == date(2026, 9, 1)  # rows still due
    labels = [usage.compact(v, 2) for v in (0, 999, 1200, 1234, 3_400_000, 2e9)]
    assert labels == ["0", "999", "1.2k", "1.23k", "3.4M", "2B"]
    assert reports.nice_ticks(2_600_000, 6) == [i * 500_000 for i in range(7)]
    assert reports.nice_ticks(5, 6) == [0, 1, 2, 3, 4, 5]


def test_the_scheduled_task_builds_last_month_once_for_active_tenants(acme, globex, monkeypatch):
    month = reports.previous_month(timezone.now())
    monkeypatch.setattr(reports, "previous_month", lambda now: month)  # the same month if a month ends meanwhile
    key = services.issue_key(acme.tenant).key
    record(acme.tenant, key, "chat-small", datetime(month.year, month.month, 2, tzinfo=UTC), 30, 12)
    services.set_tenant_active(services.create_tenant("initech", "Initech"), False)
    reports.build_report(acme.tenant, month - timedelta(days=1))  # an older month's report doesn't count

    assert build_monthly_reports() == 2
    built = UsageReport.objects.filter(month=month)
    assert sorted(built.values_list("tenant__slug", flat=True)) == ["acme", "globex"]
    assert built.get(tenant=acme.tenant).total_tokens == 42
    stamps = dict(built.values_list("pk", "built_at"))
    assert build_monthly_reports() == 0
    assert dict(built.values_list("pk", "built_at")) == stamps  # not rebuilt


def test_the_beat_schedules_the_task():
    entry = settings.CELERY_BEAT_SCHEDULE["build-monthly-reports"]
    assert entry["task"] == "accounts.build_monthly_reports" and float(entry["schedule"]) > 0
    app.loader.import_default_modules()
    assert {"accounts.build_monthly_reports", "accounts.build_usage_report"} <= set(app.tasks)


@pytest.mark.django_db(transaction=True)
def test_the_in_process_beat_builds_the_reports(acme, monkeypatch):
    month = reports.previous_month(timezone.now())
    monkeypatch.setattr(reports, "previous_month", lambda now: month)  # the same month if a month ends meanwhile
    beat = InProcessBeat({"reports": {"task": "accounts.build_monthly_reports", "schedule": 0.2}})
    beat.start()
    try:
        deadline = time.monotonic() + 20
        while not UsageReport.objects.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        beat.stop()
        beat.join(timeout=10)
    assert UsageReport.objects.get().month == month


@pytest.mark.django_db(transaction=True)
def test_an_on_demand_build_runs_through_the_configured_broker(acme):
    key = services.issue_key(acme.tenant).key
    record(acme.tenant, key, "chat-small", at(9), 20, 22)
    args = (acme.tenant.pk, "2026-10", acme.owner.pk)
    if not os.environ.get("HUB_REDIS_URL"):
        # Embedded default: no broker, the task runs in the calling process.
        report_id = build_usage_report.delay(*args).get()
    else:
        output = run_on_worker(lambda: build_usage_report.delay(*args), UsageReport.objects.exists)
        assert UsageReport.objects.exists(), f"the worker did not build it:\n{output}"
        report_id = UsageReport.objects.get().pk
    report = UsageReport.objects.get(pk=report_id)
    assert (report.tenant, report.month, report.total_tokens, report.built_by) == (acme.tenant, MONTH, 42, acme.owner)
