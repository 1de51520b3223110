"""Usage as dashboards and reports read it: the day roll-ups, plus the raw rows the roll-ups don't hold yet.

The roll-ups hold every raw row before the watermark (``RollupWatermark``); rows after it (the minutes since
the last ``rollup_usage`` run) are summed from the raw table through its ``(tenant, created_at)`` index. So
a dashboard is current to the request and its cost depends on the number of buckets, not of raw rows.
Days are UTC.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import TruncDay

from accounts.models import ApiKey, RollupPeriod, RollupWatermark, Tenant, UsageRecord, UsageRollup

# The days a usage query may name: a day's end (the next day's start) must stay within datetime's range.
FIRST_DAY, LAST_DAY = date(1970, 1, 1), date(9999, 12, 30)
FIELDS = ("requests", "errors", "aborted", "prompt_tokens", "completion_tokens", "total_tokens", "audio_seconds",
          "cached_tokens", "cost")  # fmt: skip
NO_KEY = "no key: playground or deleted keys"


@dataclass(kw_only=True)
class Totals:
    requests: int = 0
    errors: int = 0
    aborted: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    audio_seconds: float = 0.0  # speech routes' audio (their tokens are in the token counts too)
    cached_tokens: int = 0  # of prompt_tokens, found in a prefix cache
    cost: Decimal = Decimal(0)  # at each request's price when it was metered (accounts.pricing)

    def add(self, other: Totals) -> None:
        for name in FIELDS:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_dict(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in FIELDS}


@dataclass
class Bucket(Totals):
    """One day's usage of one model through one key (``api_key_id`` None: a deleted key or the playground)."""

    day: date
    tenant_id: int
    api_key_id: int | None
    model: str


@dataclass
class Summary:
    """A date range's usage, summed per day, per model, per key (and per tenant for operators)."""

    start: date
    end: date  # inclusive
    buckets: list[Bucket]
    total: Totals = field(default_factory=Totals)
    by_day: dict[date, Totals] = field(default_factory=dict)
    by_model: dict[str, Totals] = field(default_factory=dict)
    by_key: dict[int | None, Totals] = field(default_factory=dict)
    by_tenant: dict[int, Totals] = field(default_factory=dict)

    def __post_init__(self) -> None:
        days = (self.end - self.start).days + 1
        self.by_day = {self.start + timedelta(days=i): Totals() for i in range(max(days, 0))}
        groups: dict[str, defaultdict] = {name: defaultdict(Totals) for name in ("model", "key", "tenant")}
        for bucket in self.buckets:
            self.total.add(bucket)
            self.by_day.setdefault(bucket.day, Totals()).add(bucket)
            groups["model"][bucket.model].add(bucket)
            groups["key"][bucket.api_key_id].add(bucket)
            groups["tenant"][bucket.tenant_id].add(bucket)
        ranked = {name: dict(sorted(g.items(), key=lambda kv: -kv[1].total_tokens)) for name, g in groups.items()}
        self.by_model, self.by_key, self.by_tenant = ranked["model"], ranked["key"], ranked["tenant"]


def compact(value: float, digits: int = 1) -> str:
    """``1234`` -> ``1.2k``, ``3_400_000`` -> ``3.4M``: figures and axis ticks that read at a glance."""
    for limit, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.{digits}f}".rstrip("0").rstrip(".") + suffix
    return f"{value:.0f}"


def day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def watermark() -> datetime | None:
    return RollupWatermark.objects.filter(id=1).values_list("until", flat=True).first()


def buckets(start: date, end: date, tenant_id: int | None = None) -> list[Bucket]:
    """Day buckets from ``start`` to ``end`` (both inclusive), of one tenant or (None) of all."""
    lo, hi = day_start(start), day_start(end + timedelta(days=1))
    mark = watermark()
    out: dict[tuple, dict[str, int]] = defaultdict(lambda: dict.fromkeys(FIELDS, 0))

    if mark is not None and mark > lo:
        rolled = UsageRollup.objects.filter(period=RollupPeriod.DAY, bucket_start__gte=lo, bucket_start__lt=hi)
        if tenant_id is not None:
            rolled = rolled.filter(tenant_id=tenant_id)
        for row in rolled.values("bucket_start", "tenant_id", "api_key_id", "model", *FIELDS).iterator():
            sums = out[(row["bucket_start"].date(), row["tenant_id"], row["api_key_id"], row["model"])]
            for name in FIELDS:
                sums[name] += row[name]

    # Raw rows the roll-ups don't hold: after the watermark (all of them when no roll-up has run yet).
    raw = UsageRecord.objects.filter(created_at__gte=max(lo, mark) if mark else lo, created_at__lt=hi)
    if tenant_id is not None:
        raw = raw.filter(tenant_id=tenant_id)
    tail = raw_day_sums(raw)
    for row in tail:
        sums = out[(row["day"].date(), row["tenant_id"], row["api_key_id"], row["model"])]
        for name, short in zip(FIELDS, RAW_SUMS, strict=True):
            sums[name] += row[short] or 0
    return sorted(
        (Bucket(day, tenant, key, model, **sums) for (day, tenant, key, model), sums in out.items()),
        key=lambda b: (b.day, b.tenant_id, b.model, b.api_key_id or 0),
    )


# Sums of raw rows, in ``FIELDS`` order (annotations may not take the model's own field names). A failed request
# is a 4xx/5xx other than 499, which marks a stream the client closed.
RAW_SUMS = {
    "n": Count("id"),
    "e": Count("id", filter=Q(status_code__gte=400) & ~Q(status_code=499)),
    "a": Count("id", filter=Q(aborted=True)),
    "p": Sum("prompt_tokens"),
    "c": Sum("completion_tokens"),
    "t": Sum("total_tokens"),
    "s": Sum("audio_seconds"),
    "k": Sum("cached_tokens"),
    "m": Sum("cost"),
}


def raw_day_sums(raw: QuerySet[UsageRecord]) -> QuerySet:
    """Raw rows summed per UTC day, tenant, key and model (the roll-ups' grouping)."""
    grouped = raw.annotate(day=TruncDay("created_at", tzinfo=UTC)).values("day", "tenant_id", "api_key_id", "model")
    return grouped.annotate(**RAW_SUMS).order_by()


def period_totals(tenant_id: int, key_id: int | None, budget_period: str, now: datetime) -> Totals:
    """What a tenant (``key_id`` None) or one of its keys used in the budget period holding ``now``: what budgets
    start from."""
    from accounts.limits import period_bounds

    start, _ = period_bounds(budget_period, now)
    total = Totals()
    for bucket in buckets(start.date(), now.date(), tenant_id):
        if key_id is None or bucket.api_key_id == key_id:
            total.add(bucket)
    return total


def summary(start: date, end: date, tenant_id: int | None = None) -> Summary:
    return Summary(start=start, end=end, buckets=buckets(start, end, tenant_id))


def month_range(month: date) -> tuple[date, date]:
    """The first and last day of ``month``'s calendar month."""
    first = month.replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    return first, following - timedelta(days=1)


def key_labels(key_ids: Iterable[int | None]) -> dict[int | None, tuple[str, str]]:
    """Key id -> (prefix, name), for tables and CSVs (None: the playground's rows, and deleted keys')."""
    labels: dict[int | None, tuple[str, str]] = {None: ("", NO_KEY)}
    for pk, prefix, name in ApiKey.objects.filter(pk__in=[k for k in key_ids if k]).values_list("pk", "prefix", "name"):
        labels[pk] = (prefix, name or "unnamed")
    return labels


def _cell(text: str) -> str:
    """Key names are typed by users: keep a spreadsheet from reading one as a formula."""
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _figure(name: str, value) -> object:
    if name == "audio_seconds":
        return round(float(value), 3)
    if name == "cost":  # exact, in plain notation: 0.00024, not 2.4E-4 or 0E-10
        return format(Decimal(value).normalize(), "f")
    return value


def _figures(totals: Totals) -> list:
    return [_figure(f, getattr(totals, f)) for f in FIELDS]


def write_csv(out, summary: Summary, *, per_tenant: bool = False, total: bool = False) -> None:
    """One row per day x (tenant x) model x key, in day order; ``total``: then a total line."""
    keys = key_labels({b.api_key_id for b in summary.buckets})
    tenants = dict(Tenant.objects.filter(pk__in=summary.by_tenant).values_list("pk", "slug")) if per_tenant else {}
    writer = csv.writer(out)
    writer.writerow(["date", *(["tenant"] if per_tenant else []), "model", "key_prefix", "key_name", *FIELDS])
    for b in summary.buckets:
        prefix, name = keys.get(b.api_key_id, ("", "deleted"))
        tenant = [tenants.get(b.tenant_id, "")] if per_tenant else []
        writer.writerow([b.day.isoformat(), *tenant, b.model, prefix, _cell(name), *_figures(b)])
    if total:
        blanks = [""] * (4 if per_tenant else 3)
        writer.writerow(["total", *blanks, *_figures(summary.total)])
