"""The console's usage reports: members list and download their tenant's reports, outsiders and other tenants get
404s, only admins build one now, and the operator's page (superusers only) builds any tenant's report."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime

import pytest
from PIL import Image

from accounts import metering, reports, services
from accounts.models import Role, UsageRecord, UsageReport

pytestmark = pytest.mark.django_db

MONTH = date(2026, 10, 1)


def signed_in(client, user):
    client.force_login(user)
    return client


def with_usage(setup, model: str, prompt: int, completion: int) -> UsageReport:
    key = services.issue_key(setup.tenant, name="k").key
    row = metering.record_usage(metering.Usage(
        request_id=f"req_{setup.tenant.slug}", tenant_id=setup.tenant.id, api_key_id=key.id, model=model,
        route="chat/completions", prompt_tokens=prompt, completion_tokens=completion, status_code=200,
        streamed=False, aborted=False, time_to_first_token_ms=None, duration_ms=10,
    ))  # fmt: skip
    UsageRecord.objects.filter(pk=row.pk).update(created_at=datetime(2026, 10, 5, 9, tzinfo=UTC))
    return reports.build_report(setup.tenant, MONTH)


@pytest.fixture
def acme_report(acme):
    return with_usage(acme, "chat-small", 300, 120)


@pytest.fixture
def globex_report(globex):
    return with_usage(globex, "completion-small", 7, 7)


@pytest.fixture
def eager(settings):
    """Builds run in the test process (the helper reads the Django setting, so no worker is needed)."""
    settings.CELERY_TASK_ALWAYS_EAGER = True


@pytest.fixture
def operator(django_user_model):
    return django_user_model.objects.create_superuser("operator", "", "operator-pw")


def urls(report: UsageReport, slug: str = "acme") -> list[str]:
    base = f"/console/t/{slug}/reports/"
    return [base, f"{base}{report.pk}.csv", f"{base}{report.pk}.png", f"{base}{report.pk}.png?inline=1"]


@pytest.mark.parametrize("who", ["owner", "member", "viewer"])
def test_members_list_and_download_their_reports(client, acme, acme_report, who):
    signed_in(client, getattr(acme, who))
    page = client.get("/console/t/acme/reports/").content.decode()
    assert "October 2026" in page and "420" in page
    assert f'src="/console/t/acme/reports/{acme_report.pk}.png?inline=1"' in page  # the latest chart's preview
    assert ('id="build-report"' in page) is (who == "owner")

    csv_file = client.get(f"/console/t/acme/reports/{acme_report.pk}.csv")
    assert csv_file.status_code == 200 and csv_file["Content-Type"].startswith("text/csv")
    assert csv_file["Content-Disposition"] == 'attachment; filename="acme-usage-2026-10.csv"'
    assert csv_file.content == bytes(acme_report.csv) and csv_file.content.startswith(b"date,model,key_prefix")
    png = client.get(f"/console/t/acme/reports/{acme_report.pk}.png")
    assert png["Content-Type"] == "image/png"
    assert png["Content-Disposition"] == 'attachment; filename="acme-usage-2026-10.png"'
    assert Image.open(io.BytesIO(png.content)).size == (1000, 500)
    inline = client.get(f"/console/t/acme/reports/{acme_report.pk}.png?inline=1")
    assert inline["Content-Disposition"].startswith("inline;")
    assert client.get(f"/console/t/acme/reports/{acme_report.pk}.pdf").status_code == 404


def test_reports_are_listed_newest_first(client, acme, acme_report):
    reports.build_report(acme.tenant, date(2026, 8, 1))
    reports.build_report(acme.tenant, date(2026, 9, 1))
    page = signed_in(client, acme.viewer).get("/console/t/acme/reports/").content.decode()
    assert page.index("October 2026") < page.index("September 2026") < page.index("August 2026")


def test_outsider_gets_404_on_the_report_pages(client, acme, acme_report, outsider):
    signed_in(client, outsider)
    not_found = client.get("/console/t/no-such-tenant/reports/")
    assert not_found.status_code == 404
    for url in urls(acme_report):
        response = client.get(url)
        assert response.status_code == 404, url
        assert response.content == not_found.content, url  # no hint that acme or the report exists
    assert client.post("/console/t/acme/reports/", {"month": "2026-09"}).status_code == 404
    assert UsageReport.objects.count() == 1


def test_another_tenant_cannot_reach_the_report(client, acme, globex, acme_report, globex_report):
    signed_in(client, globex.owner)
    for url in [*urls(acme_report), *urls(acme_report, "globex")[1:]]:
        assert client.get(url).status_code == 404, url
    assert client.get(f"/console/t/globex/reports/{globex_report.pk}.csv").status_code == 200
    # and acme's owner cannot fetch globex's report through acme's URL
    signed_in(client, acme.owner)
    assert client.get(f"/console/t/acme/reports/{globex_report.pk}.png").status_code == 404


@pytest.mark.parametrize("who", ["member", "viewer"])
def test_below_admin_cannot_build(client, acme, eager, who):
    signed_in(client, getattr(acme, who))
    response = client.post("/console/t/acme/reports/", {"month": "2026-10"})
    assert response.status_code == 403 and b"Not allowed" in response.content
    assert not UsageReport.objects.exists()


def test_admins_build_now_and_a_rebuild_replaces(client, acme, acme_report, eager):
    services.set_role(acme.tenant, acme.member, Role.ADMIN)
    signed_in(client, acme.member)
    response = client.post("/console/t/acme/reports/", {"month": "2026-09"})
    assert response.status_code == 302 and response.url == "/console/t/acme/reports/"
    page = client.get(response.url).content.decode()
    assert "Report for Acme, September 2026 built." in page
    assert UsageReport.objects.get(tenant=acme.tenant, month=date(2026, 9, 1)).built_by == acme.member

    client.post("/console/t/acme/reports/", {"month": "2026-10"})
    rebuilt = UsageReport.objects.get(tenant=acme.tenant, month=MONTH)
    assert rebuilt.pk == acme_report.pk and rebuilt.built_by == acme.member and rebuilt.total_tokens == 420


def test_a_bad_month_is_a_form_error(client, acme, eager):
    signed_in(client, acme.owner)
    for month, error in [("2999-01", "has not started"), ("soon", "YYYY-MM"), ("", "required")]:
        response = client.post("/console/t/acme/reports/", {"month": month})
        assert response.status_code == 200 and error in response.content.decode(), month
    assert not UsageReport.objects.exists()


def test_the_operator_page_refuses_everyone_else(client, acme, acme_report, outsider, eager):
    for user in (acme.owner, outsider):
        signed_in(client, user)
        page = client.get("/console/reports/")
        assert page.status_code == 403 and b"October 2026" not in page.content
        assert client.post("/console/reports/", {"tenant": "acme", "month": "2026-09"}).status_code == 403
        assert b'href="/console/reports/"' not in client.get("/console/").content
    assert UsageReport.objects.count() == 1
    client.logout()
    for url in ["/console/reports/", *urls(acme_report)]:
        assert client.get(url).url.startswith("/console/login/?next="), url


def test_the_operator_lists_every_tenant_and_builds_on_demand(client, acme_report, globex_report, operator, eager):
    signed_in(client, operator)
    assert b'href="/console/reports/"' in client.get("/console/").content  # the nav link
    page = client.get("/console/reports/").content.decode()
    assert 'aria-current="page">Reports' in page
    for report in (acme_report, globex_report):
        assert f"/console/t/{report.tenant.slug}/reports/{report.pk}.csv" in page
    assert client.get(f"/console/t/globex/reports/{globex_report.pk}.csv").status_code == 200

    response = client.post("/console/reports/", {"tenant": "globex", "month": "2026-09"})
    assert response.status_code == 302 and response.url == "/console/reports/"
    assert "Report for Globex, September 2026 built." in client.get(response.url).content.decode()
    built = UsageReport.objects.get(tenant=globex_report.tenant, month=date(2026, 9, 1))
    assert (built.built_by, built.requests) == (operator, 0)
    response = client.post("/console/reports/", {"tenant": "no-such-tenant", "month": "2026-09"})
    assert response.status_code == 200 and "errorlist" in response.content.decode()


def test_the_tenant_nav_links_to_reports(client, acme):
    page = signed_in(client, acme.viewer).get("/console/t/acme/reports/").content.decode()
    assert 'href="/console/t/acme/reports/" aria-current="page">Reports' in page
    assert "No reports yet" in page and 'id="latest-report"' not in page
