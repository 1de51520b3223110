"""Monthly usage reports in the console: a tenant's reports and their downloads, "Build now" for the tenant's
admins, and the operator's page across tenants with an on-demand build for any tenant.

Reports are built by ``accounts.reports`` in the ``accounts.build_usage_report`` Celery task (which checks the
person's role again); these pages only list stored reports and serve their files, so they never read usage.
"""

from __future__ import annotations

from datetime import date, timedelta

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.models import AbstractBaseUser
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.cache import patch_cache_control

from accounts import reports
from accounts.models import Role, Tenant, UsageReport
from accounts.tasks import build_usage_report
from hub.console.scoping import OperatorView, TenantScopedView

# URL format -> (the model field holding the file, its content type)
FORMATS = {"csv": ("csv", "text/csv; charset=utf-8"), "png": ("chart_png", "image/png")}
OPERATOR_PAGE_SIZE = 50


def this_month() -> date:
    return timezone.now().date().replace(day=1)  # UTC, as the reports' months are


def last_month() -> date:
    return (this_month() - timedelta(days=1)).replace(day=1)


class BuildForm(forms.Form):
    month = forms.CharField(label="Month", widget=forms.TextInput(attrs={"type": "month"}))

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("initial", {"month": f"{last_month():%Y-%m}"})
        super().__init__(*args, **kwargs)
        self.fields["month"].widget.attrs["max"] = f"{this_month():%Y-%m}"

    def clean_month(self) -> date:
        try:
            month = reports.parse_month(self.cleaned_data["month"])
        except ValueError:
            raise forms.ValidationError("Enter a month as YYYY-MM.")
        if month > this_month():
            raise forms.ValidationError("That month has not started yet.")
        return month


class OperatorBuildForm(BuildForm):
    tenant = forms.ModelChoiceField(queryset=Tenant.objects.order_by("name"), to_field_name="slug", empty_label=None)
    field_order = ["tenant", "month"]


def start_build(tenant: Tenant, month: date, user: AbstractBaseUser) -> UsageReport | None:
    """Run the build task: here and now when tasks are eager (the embedded default has no broker), else queued
    for a worker. Returns the report when it was built here (a refused or failed build raises in this request),
    None when it was queued."""
    args = (tenant.pk, month.isoformat(), user.pk)
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return UsageReport.objects.get(pk=build_usage_report.apply(args, throw=True).get())
    build_usage_report.delay(*args)
    return None


def announce(request: HttpRequest, tenant: Tenant, month: date, report: UsageReport | None) -> None:
    name = f"{tenant.name}, {month:%B %Y}"
    if report is not None:
        messages.success(request, f"Report for {name} built.")
    else:
        messages.success(request, f"Report for {name} is being built: reload this page in a minute.")


class ReportsView(TenantScopedView):
    """The tenant's reports, newest first, with the latest chart; admins can build one now."""

    section = "reports"
    write_role = Role.ADMIN

    def get(self, request: HttpRequest, tenant: str) -> HttpResponse:
        return self.render_page(BuildForm())

    def post(self, request: HttpRequest, tenant: str) -> HttpResponse:
        form = BuildForm(request.POST)
        if not form.is_valid():
            return self.render_page(form)
        month = form.cleaned_data["month"]
        announce(request, self.tenant, month, start_build(self.tenant, month, request.user))
        return redirect("console:reports", tenant=self.tenant.slug)

    def render_page(self, form: BuildForm) -> HttpResponse:
        rows = list(reports.tenant_reports(self.request.user, self.tenant))
        context = self.get_context_data(reports=rows, latest=rows[0] if rows else None, form=form)
        return render(self.request, "console/reports.html", context)


class ReportDownloadView(TenantScopedView):
    """A report's CSV or chart, looked up within the URL's tenant only (another tenant's id is a 404)."""

    section = "reports"

    def get(self, request: HttpRequest, tenant: str, report_id: int, fmt: str) -> HttpResponse:
        if fmt not in FORMATS:
            raise Http404("no such format")
        report = reports.tenant_reports(request.user, self.tenant).filter(pk=report_id).first()
        if report is None:
            raise Http404("no such report")
        field, content_type = FORMATS[fmt]
        response = HttpResponse(bytes(getattr(report, field)), content_type=content_type)
        # The page's preview asks for the chart inline; every other request downloads a file.
        disposition = "inline" if fmt == "png" and request.GET.get("inline") else "attachment"
        response["Content-Disposition"] = f'{disposition}; filename="{reports.filename(report, fmt)}"'
        # A rebuild replaces the file at the same URL: let no cache serve the old one.
        patch_cache_control(response, private=True, no_cache=True)
        return response


class OperatorReportsView(OperatorView):
    """Every tenant's reports, newest first, and a form to build any tenant's report for any past month."""

    section = "operator-reports"

    def get(self, request: HttpRequest) -> HttpResponse:
        return self.render_page(OperatorBuildForm())

    def post(self, request: HttpRequest) -> HttpResponse:
        form = OperatorBuildForm(request.POST)
        if not form.is_valid():
            return self.render_page(form)
        tenant, month = form.cleaned_data["tenant"], form.cleaned_data["month"]
        announce(request, tenant, month, start_build(tenant, month, request.user))
        return redirect("console:operator-reports")

    def render_page(self, form: OperatorBuildForm) -> HttpResponse:
        rows = UsageReport.objects.defer("csv", "chart_png").select_related("tenant", "built_by")
        page = Paginator(rows, OPERATOR_PAGE_SIZE).get_page(self.request.GET.get("page"))
        return render(self.request, "console/operator_reports.html", self.get_context_data(page=page, form=form))
