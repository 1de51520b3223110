"""Metering: one row per request that reached a model (``record_usage``; ``record_or_spool``, what the gateway
calls, spools the row to disk while the database is down), and the hour / day roll-ups that dashboards, reports
and ``/v1/usage`` read (``refresh_rollups``, run by the Celery beat)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import Error as DBError
from django.db import transaction
from django.db.models import Max, Min, Sum
from django.db.models.functions import TruncDay, TruncHour
from django.utils import timezone

from accounts import open_requests, spool, usage
from accounts.database import database_unreachable
from accounts.models import RollupPeriod, RollupWatermark, UsageRecord, UsageRollup
from accounts.pricing import PriceBook


@dataclass(frozen=True)
class Usage:
    """What one request that reached a model cost, as the model's service counted it."""

    request_id: str
    tenant_id: int
    api_key_id: int | None
    model: str
    route: str
    prompt_tokens: int
    completion_tokens: int
    status_code: int
    streamed: bool
    aborted: bool
    time_to_first_token_ms: int | None
    duration_ms: int
    created_at: datetime | None = None  # None: now (set when the row is spooled, so it keeps its time)
    audio_seconds: float = 0.0  # speech routes: the audio's duration, to the millisecond
    cached_tokens: int = 0  # of prompt_tokens, found in the deployment's prefix cache
    service_tier: str = "default"  # default, flex or batch (hub/api/tiers.py)
    usage_id: str = ""  # its OpenRequest row (accounts/open_requests.py), closed with this row; "" none
    recovered: bool = False  # metered by the reaper, its hub process having died before it could


def usage_record(usage: Usage, prices: PriceBook | None = None) -> UsageRecord:
    """The unsaved row of one ``Usage``, its cost at the model's price at its time (``prices``: a batch's)."""
    created_at = usage.created_at or timezone.now()
    cached = min(usage.cached_tokens, usage.prompt_tokens)
    return UsageRecord(
        request_id=usage.request_id,
        tenant_id=usage.tenant_id,
        api_key_id=usage.api_key_id,
        model=usage.model,
        route=usage.route,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.prompt_tokens + usage.completion_tokens,
        status_code=usage.status_code,
        streamed=usage.streamed,
        aborted=usage.aborted,
        time_to_first_token_ms=usage.time_to_first_token_ms,
        duration_ms=usage.duration_ms,
        audio_seconds=round(usage.audio_seconds, 3),
        cached_tokens=cached,
        service_tier=usage.service_tier,
        cost=(prices or PriceBook()).cost(usage.model, created_at, usage.prompt_tokens, cached,
                                          usage.completion_tokens, usage.audio_seconds, usage.service_tier),
        created_at=created_at,
        recovered=usage.recovered,
    )  # fmt: skip


@transaction.atomic
def record_usage(usage: Usage) -> UsageRecord:
    """One metering row per request that reached a model (successes, errors after the model started,
    client-aborted streams): the source of truth that roll-ups and reports are built from. Its open request's row
    goes in the same transaction; a row the reaper wrote meanwhile (this process looked dead) is replaced."""
    record = usage_record(usage)
    if usage.usage_id:
        open_requests.close(usage.usage_id)
    record.save(force_insert=True)
    return record


def record_or_spool(usage: Usage) -> None:
    """Write the row; with the database down, spool it to disk (``accounts.spool``) to be replayed. While rows wait
    there the database is (or just was) down: new rows queue behind them instead of each waiting for a connection.
    Any other database error is raised. Set ``created_at``: a spooled row keeps that time.

    The caller closes its thread's connections afterwards (the gateway runs this in a pool thread)."""
    if not spool.pending():
        try:
            record_usage(usage)
            return
        except DBError as exc:  # Django's Error: DatabaseError and InterfaceError (a closed connection) alike
            if not database_unreachable(exc):
                raise
    spool.append(usage)
    spool.replay_soon()


# --- usage roll-ups --------------------------------------------------------------------------------

_BUCKET = {RollupPeriod.HOUR: (TruncHour, timedelta(hours=1)), RollupPeriod.DAY: (TruncDay, timedelta(days=1))}
# How much source a rebuild sums per query: a day of raw rows into hours, a month of hours into days.
ROLLUP_WINDOW = {RollupPeriod.HOUR: timedelta(days=1), RollupPeriod.DAY: timedelta(days=32)}


def bucket_floor(moment: datetime, period: str) -> datetime:
    moment = moment.astimezone(UTC)
    if period == RollupPeriod.DAY:
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return moment.replace(minute=0, second=0, microsecond=0)


@transaction.atomic
def rebuild_rollups(period: str, start: datetime | None = None, until: datetime | None = None) -> int:
    """Recompute the ``period`` buckets from ``start`` (floored to a bucket; None: all) from the raw rows
    created before ``until`` (None: all of them).

    Hour buckets sum ``UsageRecord`` rows; day buckets sum the hour buckets (so rebuild hours first).
    Idempotent: the buckets in range are replaced. Returns how many buckets were written.
    """
    trunc, _ = _BUCKET[RollupPeriod(period)]
    if period == RollupPeriod.HOUR:
        source, time_field, sums = UsageRecord.objects.all(), "created_at", usage.RAW_SUMS
    else:
        source, time_field = UsageRollup.objects.filter(period=RollupPeriod.HOUR), "bucket_start"
        sums = dict(zip(usage.RAW_SUMS, (Sum(name) for name in usage.FIELDS), strict=True))
    stale = UsageRollup.objects.filter(period=period)
    if start is not None:
        start = bucket_floor(start, period)
        source = source.filter(**{f"{time_field}__gte": start})
        stale = stale.filter(bucket_start__gte=start)
    if until is not None and period == RollupPeriod.HOUR:
        source = source.filter(created_at__lt=until)
    stale.delete()
    bounds = source.aggregate(first=Min(time_field), last=Max(time_field))
    if bounds["first"] is None:
        return 0
    # A window of source rows at a time (aligned to buckets): a full rebuild of millions of rows never holds
    # more than one window's buckets in memory.
    written, lo = 0, bucket_floor(bounds["first"], RollupPeriod.DAY)
    while lo <= bounds["last"]:
        hi = lo + ROLLUP_WINDOW[period]
        groups = (
            source.filter(**{f"{time_field}__gte": lo, f"{time_field}__lt": hi})
            .annotate(bucket=trunc(time_field, tzinfo=UTC))
            .values("bucket", "tenant_id", "api_key_id", "model")
            .annotate(**sums)
            .order_by()
        )
        buckets = [
            UsageRollup(
                period=period,
                bucket_start=g["bucket"],
                tenant_id=g["tenant_id"],
                api_key_id=g["api_key_id"],
                model=g["model"],
                **{name: g[short] or 0 for name, short in zip(usage.FIELDS, sums, strict=True)},
            )  # fmt: skip
            for g in groups
        ]
        UsageRollup.objects.bulk_create(buckets, batch_size=5000)
        written, lo = written + len(buckets), hi
    return written


# Rows are stamped when written, committed a moment later: the watermark stays this far behind "now" so
# that no row stamped before it commits after the roll-up has read past it.
WATERMARK_LAG = timedelta(seconds=5)


def refresh_rollups_back_to(moment: datetime | None) -> None:
    """Rows written (or taken out) behind the roll-ups' watermark, ``moment`` the oldest: rebuild from there on."""
    mark = usage.watermark()
    if moment is not None and mark is not None and moment < mark:
        refresh_rollups(since=moment)


@transaction.atomic
def refresh_rollups(since: datetime | None = None, now: datetime | None = None) -> dict[str, int]:
    """Rebuild the hour then day buckets from ``since`` (None: all) up to the new watermark, and record it.

    Readers (``accounts.usage``) take roll-ups for rows before the watermark and raw rows after it, so each
    row is counted once, in one transaction with the buckets it moved into.
    """
    until = (now or timezone.now()) - WATERMARK_LAG
    hours = rebuild_rollups(RollupPeriod.HOUR, since, until)
    days = rebuild_rollups(RollupPeriod.DAY, since)
    RollupWatermark.objects.update_or_create(id=1, defaults={"until": until})
    return {"hour": hours, "day": days}
