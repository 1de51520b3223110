"""Monthly usage reports: one tenant's calendar month (UTC) as a CSV and a chart (PNG), stored as ``UsageReport``.

Usage is read through ``accounts.usage`` (the day roll-ups plus the raw rows after the watermark), never the raw
table's history, so a report costs the same whatever the month's traffic. ``accounts.tasks`` builds last month's
report for every tenant on the beat schedule; the console builds one on demand. The chart is drawn with Pillow
(no plotting library) and is shown to customers, so it carries its own title, axes, legend and totals.
"""

from __future__ import annotations

import io
import math
from datetime import date, datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from PIL import Image, ImageDraw, ImageFont

from accounts import services, usage
from accounts.models import Role, Tenant, UsageReport

# Last month is built this long into the new one: its last rows (written when a long stream ends, committed a
# moment later) are in by then.
BUILD_DELAY = timedelta(hours=1)

SIZE = (1000, 500)
LEFT, RIGHT, TOP, BOTTOM = 88, 28, 100, 66  # the plot area's margins
INK, MUTED, GRID, AXIS, WEEKEND = "#1d2330", "#5f6b7a", "#e6e9ee", "#9aa5b4", "#f4f6f9"
PROMPT, COMPLETION = "#2457c5", "#f08c2e"  # blue and orange: apart for every common colour-vision deficiency


def tenant_reports(actor: AbstractBaseUser, tenant: Tenant) -> QuerySet[UsageReport]:
    """A tenant's reports, newest first, without their files (every member may read them)."""
    services.require_role(actor, tenant, Role.VIEWER)
    return UsageReport.objects.filter(tenant=tenant).defer("csv", "chart_png").select_related("tenant", "built_by")


def parse_month(text: str) -> date:
    """``2026-10`` (an ``<input type=month>``) or ``2026-10-01`` -> the month's first day; ValueError if neither."""
    text = text.strip()
    return date.fromisoformat(f"{text}-01" if len(text) == 7 else text).replace(day=1)


def previous_month(now: datetime) -> date:
    """The month the scheduled build reports on at ``now``: the one before (``now`` - ``BUILD_DELAY``)'s."""
    this_month = (now - BUILD_DELAY).date().replace(day=1)
    return (this_month - timedelta(days=1)).replace(day=1)


def filename(report: UsageReport, fmt: str) -> str:
    return f"{report.tenant.slug}-usage-{report.month:%Y-%m}.{fmt}"


@transaction.atomic
def _store(tenant: Tenant, first: date, fields: dict) -> UsageReport:
    report, _ = UsageReport.objects.update_or_create(tenant=tenant, month=first, defaults=fields)
    return report


def build_report(tenant: Tenant, month: date, actor: AbstractBaseUser | None = None) -> UsageReport:
    """Build (or rebuild, replacing it) ``tenant``'s report for ``month``'s calendar month.

    ``actor`` None is the operator (the beat, management code); a person must be an admin of the tenant (or a
    superuser, who acts as owner). The current month may be built (month to date); a future one may not.
    """
    if actor is not None:
        services.require_role(actor, tenant, Role.ADMIN)
    first, last = usage.month_range(month)
    if first > timezone.now().date():
        raise ValidationError("a report cannot cover a month that has not started")
    # Read and draw outside the transaction: only the write needs it, and drawing takes a while.
    summary = usage.summary(first, last, tenant.pk)
    fields = {
        "csv": render_csv(summary),
        "chart_png": render_chart(summary, f"{tenant.name} · {first:%B %Y}"),
        "requests": summary.total.requests,
        "total_tokens": summary.total.total_tokens,
        "audio_seconds": round(summary.total.audio_seconds, 3),
        "cached_tokens": summary.total.cached_tokens,
        "cost": summary.total.cost,
        "built_at": timezone.now(),
        "built_by": actor,
    }
    return _store(tenant, first, fields)


# --- the CSV ---------------------------------------------------------------------------------------------


def render_csv(summary: usage.Summary) -> bytes:
    """One row per day × model × key with usage, in day order, then a total line."""
    out = io.StringIO()
    usage.write_csv(out, summary, total=True)
    return out.getvalue().encode()


# --- the chart -------------------------------------------------------------------------------------------


def nice_ticks(top: int, count: int = 5) -> list[int]:
    """Round tick values (steps of 1, 2 or 5 × 10ⁿ) from 0 to at least ``top``, about ``count`` steps."""
    if top <= 0:
        return [0, 1]
    raw = top / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = max(1, round(next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)))
    return [i * step for i in range(math.ceil(top / step) + 1)]


def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def render_chart(summary: usage.Summary, title: str) -> bytes:
    """Tokens per day as stacked bars (prompt below, completion above), ``SIZE`` pixels, as PNG bytes."""
    image = Image.new("RGB", SIZE, "white")
    draw = ImageDraw.Draw(image)
    width, height = SIZE
    x0, x1, y0, y1 = LEFT, width - RIGHT, TOP, height - BOTTOM
    total = summary.total

    draw.text((28, 20), title, font=_font(24), fill=INK)
    subtitle = (
        f"Tokens per day (UTC): {total.total_tokens:,} tokens ({total.prompt_tokens:,} prompt + "
        f"{total.completion_tokens:,} completion) in {total.requests:,} request{'' if total.requests == 1 else 's'}"
    )
    if total.audio_seconds:  # speech routes: their audio counts as prompt tokens too (docs/speech.md)
        subtitle += f", {total.audio_seconds:,.1f} s of audio"
    if total.cached_tokens:
        subtitle += f"; {total.cached_tokens:,} prompt tokens cached"
    if total.cost:
        subtitle += f"; cost {total.cost:,.2f} {settings.HUB_CURRENCY.upper()}"
    draw.text((28, 56), subtitle, font=_font(14), fill=MUTED)
    _legend(draw, width - RIGHT, 28)

    days = list(summary.by_day.items())
    ticks = nice_ticks(max((t.prompt_tokens + t.completion_tokens for _, t in days), default=0), count=6)
    scale = (y1 - y0) / ticks[-1]
    slot = (x1 - x0) / max(len(days), 1)

    for i, (day, _) in enumerate(days):  # weekends shaded, so a week's rhythm shows
        if day.weekday() >= 5:
            draw.rectangle((x0 + i * slot, y0, x0 + (i + 1) * slot, y1), fill=WEEKEND)
    for tick in ticks if total.total_tokens else ticks[:1]:  # an empty month: no made-up scale
        y = round(y1 - tick * scale)
        draw.line((x0, y, x1, y), fill=GRID if tick else AXIS, width=1)
        draw.text((x0 - 10, y), usage.compact(tick, 2), font=_font(13), fill=MUTED, anchor="rm")

    bar = max(2.0, slot * 0.66)
    every = 1 if slot >= 22 else 2 if slot >= 11 else 7  # day numbers must not collide
    for i, (day, t) in enumerate(days):
        left = x0 + i * slot + (slot - bar) / 2
        # Whole pixels, and at least one for a non-zero part: a small day still shows.
        prompt_top = min(round(y1 - t.prompt_tokens * scale), y1 - 1) if t.prompt_tokens else y1
        if t.prompt_tokens:
            draw.rectangle((left, prompt_top, left + bar, y1 - 1), fill=PROMPT)
        if t.completion_tokens:
            top = min(round(prompt_top - t.completion_tokens * scale), prompt_top - 1)
            draw.rectangle((left, top, left + bar, prompt_top - 1), fill=COMPLETION)
        if i % every == 0:
            draw.text((x0 + (i + 0.5) * slot, y1 + 8), str(day.day), font=_font(12), fill=MUTED, anchor="mt")

    if not total.total_tokens:
        draw.text(((x0 + x1) / 2, (y0 + y1) / 2), "No usage this month", font=_font(18), fill=MUTED, anchor="mm")
    month = summary.start
    draw.text(((x0 + x1) / 2, height - 18), f"Day of {month:%B %Y}", font=_font(14), fill=INK, anchor="ms")
    _vertical_text(image, "Tokens", (22, (y0 + y1) // 2))

    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def _legend(draw: ImageDraw.ImageDraw, right: float, y: float) -> None:
    """Right-aligned swatches with their names, on one line."""
    font = _font(14)
    x = right
    for label, colour in reversed((("Prompt tokens", PROMPT), ("Completion tokens", COMPLETION))):
        x -= draw.textlength(label, font=font)
        draw.text((x, y), label, font=font, fill=INK, anchor="lm")
        x -= 20
        draw.rectangle((x, y - 7, x + 14, y + 7), fill=colour)
        x -= 24


def _vertical_text(image: Image.Image, text: str, centre: tuple[int, int]) -> None:
    """Text turned a quarter left (the y-axis label), centred on ``centre``."""
    font = _font(14)
    left, top, right, bottom = font.getbbox(text)
    label = Image.new("L", (right + 4, bottom + 4), 0)
    ImageDraw.Draw(label).text((2, 2), text, font=font, fill=255)
    label = label.rotate(90, expand=True)
    position = (centre[0] - label.width // 2, centre[1] - label.height // 2)
    image.paste(Image.new("RGB", label.size, INK), position, label)
