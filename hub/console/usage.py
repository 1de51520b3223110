"""The usage dashboard (a tenant's, and the operator's across tenants), its CSV export, and the playground page.

Everything reads ``accounts.usage`` (day roll-ups plus the raw rows after the watermark), never the raw table's
history. The dashboard's body is one template fragment (``console/_usage_body.html``) that the page renders
and the live stream (``hub/console/live.py``) re-renders and pushes while requests flow.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import render
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.http import urlencode

from accounts import selectors, usage
from accounts.models import ModelKind, Role, Tenant
from accounts.usage import compact
from hub.console.charts import Series, legend, stacked_bars
from hub.console.scoping import OperatorView, TenantScopedView

DEFAULT_DAYS = 30
MAX_DAYS = 366
TOKENS = (Series("prompt tokens", "s-prompt"), Series("completion tokens", "s-completion"))
REQUESTS = (Series("succeeded", "s-ok"), Series("failed", "s-failed"))


def today() -> date:
    return timezone.now().date()  # UTC: the roll-ups' days are UTC days


def parse_range(params: QueryDict) -> tuple[date, date, str]:
    """``?start=&end=`` (ISO dates, inclusive) or ``?days=N``; default the last 30 days. Bad input is not an
    error page: the default range is shown with a note saying what was wrong."""
    end = today()
    start = end - timedelta(days=DEFAULT_DAYS - 1)
    note = ""
    try:
        if params.get("days"):
            days = int(params["days"])
            if not 1 <= days <= MAX_DAYS:
                raise ValueError(f"days must be 1 to {MAX_DAYS}")
            start = end - timedelta(days=days - 1)
        elif params.get("start") or params.get("end"):
            start_in = date.fromisoformat(params.get("start") or start.isoformat())
            end_in = date.fromisoformat(params.get("end") or end.isoformat())
            if start_in > end_in:
                raise ValueError("the start is after the end")
            if not (usage.FIRST_DAY <= start_in and end_in <= usage.LAST_DAY):
                raise ValueError(f"dates must be between {usage.FIRST_DAY} and {usage.LAST_DAY}")
            if (end_in - start_in).days >= MAX_DAYS:
                raise ValueError(f"at most {MAX_DAYS} days at a time")
            start, end = start_in, end_in
    except ValueError as exc:
        note = f"Showing the last {DEFAULT_DAYS} days: {exc}."
    return start, end, note


def audio_duration(seconds: float) -> str:
    """``4000.2`` -> ``1 h 6 min``, ``75.5`` -> ``1 min 16 s``, ``3.2`` -> ``3.2 s``: audio time at a glance."""
    if seconds < 60:
        return f"{seconds:.1f} s".replace(".0 s", " s")
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min {secs} s"


def fragment_context(summary: usage.Summary, *, operator: bool) -> dict[str, Any]:
    labels = [d.strftime("%b %-d") for d in summary.by_day]
    days = list(summary.by_day.items())
    tokens = [(t.prompt_tokens, t.completion_tokens) for _, t in days]
    requests = [(t.requests - t.errors, t.errors) for _, t in days]
    keys = usage.key_labels(summary.by_key)
    tenants = dict(Tenant.objects.filter(pk__in=summary.by_tenant).values_list("pk", "slug")) if operator else {}
    total = summary.total
    return {
        "summary": summary,
        "operator": operator,
        "cards": [
            ("Requests", compact(total.requests), f"{total.requests:,}"),
            ("Tokens", compact(total.total_tokens), f"{total.total_tokens:,}"),
            (
                "Prompt / completion",
                f"{compact(total.prompt_tokens)} / {compact(total.completion_tokens)}",
                "",
            ),
            ("Failed / aborted", f"{total.errors:,} / {total.aborted:,}", ""),
            ("Audio transcribed", audio_duration(total.audio_seconds), f"{total.audio_seconds:,.3f} s"),
            ("Cached prompt tokens", compact(total.cached_tokens), f"{total.cached_tokens:,}"),
            # at each request's price when it was metered; the exact decimal in the title
            ("Cost", f"{total.cost:,.2f} {settings.HUB_CURRENCY.upper()}", f"{total.cost}"),
        ],
        "tokens_chart": stacked_bars(
            labels,
            tokens,
            TOKENS,
            title="Tokens per day",
            tips=[f"{d:%a %d %b}: {t.prompt_tokens:,} prompt + {t.completion_tokens:,} completion" for d, t in days],
        ),
        "requests_chart": stacked_bars(
            labels,
            requests,
            REQUESTS,
            title="Requests per day",
            tips=[f"{d:%a %d %b}: {t.requests:,} requests, {t.errors:,} failed" for d, t in days],
        ),  # fmt: skip
        "tokens_legend": legend(TOKENS),
        "requests_legend": legend(REQUESTS),
        "by_model": list(summary.by_model.items()),
        "by_key": [(keys.get(k, ("", "deleted")), t) for k, t in summary.by_key.items()],
        "by_tenant": [(tenants.get(t, "?"), t_totals) for t, t_totals in summary.by_tenant.items()],
        "as_of": timezone.now(),
    }


def render_fragment(summary: usage.Summary, *, operator: bool) -> str:
    return render_to_string("console/_usage_body.html", fragment_context(summary, operator=operator))


def range_query(start: date, end: date) -> str:
    return urlencode({"start": start.isoformat(), "end": end.isoformat()})


def csv_response(summary: usage.Summary, filename: str, *, operator: bool) -> HttpResponse:
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    usage.write_csv(response, summary, per_tenant=operator)
    return response


class UsagePage:
    """What the tenant and operator dashboards share: the range, the summary, the page and the CSV. A tenant's
    page (``self.tenant``, set by ``TenantScopedView``) shows that tenant; the operator's, every tenant."""

    template = "console/usage.html"

    def _scope(self) -> tuple[int | None, str]:
        """(the tenant shown, None for all of them; the URL its live stream and CSV hang under)."""
        tenant = getattr(self, "tenant", None)
        if tenant is None:
            return None, "/console"
        selectors.tenant_usage(self.request.user, tenant)  # the services' own role check, again
        return tenant.pk, f"/console/t/{tenant.slug}"

    def get(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        start, end, note = parse_range(request.GET)
        tenant_id, base = self._scope()
        summary = usage.summary(start, end, tenant_id)
        query = range_query(start, end)
        context = self.get_context_data(
            start=start, end=end, note=note, query=query,
            body=render_fragment(summary, operator=tenant_id is None),
            live_url=f"{base}/usage/live?{query}" if end >= today() else "",
            csv_url=f"{base}/usage.csv?{query}",
            presets=[(n, f"?days={n}") for n in (7, 30, 90)],
            this_month=f"?{range_query(today().replace(day=1), today())}",
        )  # fmt: skip
        return render(request, self.template, context)


class TenantUsageView(UsagePage, TenantScopedView):
    section = "usage"


class TenantUsageCsvView(TenantScopedView):
    section = "usage"

    def get(self, request: HttpRequest, tenant: str) -> HttpResponse:
        selectors.tenant_usage(request.user, self.tenant)
        start, end, _ = parse_range(request.GET)
        summary = usage.summary(start, end, self.tenant.pk)
        return csv_response(summary, f"{self.tenant.slug}-usage-{start}-{end}.csv", operator=False)


class OperatorUsageView(UsagePage, OperatorView):
    section = "operator-usage"


class OperatorUsageCsvView(OperatorView):
    def get(self, request: HttpRequest) -> HttpResponse:
        start, end, _ = parse_range(request.GET)
        return csv_response(usage.summary(start, end), f"usage-{start}-{end}.csv", operator=True)


class PlaygroundView(TenantScopedView):
    """Chat with one of the tenant's models; the browser streams from ``hub/console/live.py``'s relay.
    Members and up: a chat spends the tenant's tokens, and viewers only read."""

    section = "playground"
    minimum_role = Role.MEMBER

    def get(self, request: HttpRequest, tenant: str) -> HttpResponse:
        models = selectors.tenant_models(request.user, self.tenant).filter(
            Q(kind=ModelKind.CHAT) | Q(kind=ModelKind.VISION)
        )
        context = self.get_context_data(
            models=models.order_by("id"), endpoint=f"/console/t/{self.tenant.slug}/playground/chat/completions"
        )
        return render(request, "console/playground.html", context)
