"""Every form of the console, as an operator sees it (every form a tenant's owner has, and the operator's own):
each field in turn set to a value no browser form would send (NUL, numbers past what a column holds, dates at
the ends of the calendar, very long text), the rest as the page filled them in. Each answer is a page, a form
error or a redirect, never a 500: the first run found two (a key valid through 9999-12-31, whose expiry is the
next midnight; a rate limit past PostgreSQL's integer). The forms are read from the rendered pages, so a new
form is covered when its page is listed here."""

from __future__ import annotations

import pytest

from tests.support.console import acme_pages
from tests.support.forms import ODD, forms_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def pages(acme, globex, django_user_model, client):
    """acme's pages (with one key's), then the operator's and the tenant's limits and reports."""
    client.force_login(django_user_model.objects.create_superuser("operator", "", "pw"))
    client.raise_request_exception = False  # a failure is a 500 to count, not an exception in the test
    extra = ["/console/", "/console/t/acme/limits/", "/console/t/acme/reports/", "/console/usage/",
             "/console/reports/", "/console/prices/"]  # fmt: skip
    return acme_pages(acme) + extra


def test_no_odd_value_in_any_console_form_is_a_500(client, pages):
    failures, sent, fields = [], 0, set()
    for page in pages:
        response = client.get(page, follow=True)  # a tenant's home page leads to its keys
        assert response.status_code == 200, page
        for form in forms_of(response.content.decode()):
            target = form.action or page
            if not form.names():  # sign out, rotate, revoke: nothing to fill in
                continue
            for name in form.names():
                fields.add((target, name))
                for value in ODD:
                    data = form.data(**{name: value})
                    answer = client.post(target, data) if form.method == "post" else client.get(target, data)
                    sent += 1
                    if answer.status_code >= 500:
                        failures.append((form.method, target, name, value[:20], answer.status_code))
    # the pages' forms were all found: keys, key limits, tenant limits, members, reports, prices, usage filters
    assert {("/console/t/acme/keys/", "expires_on"), ("/console/t/acme/limits/", "rpm"),
            (f"{next(p for p in pages if p[-2].isdigit())}limits/", "max_streams"), ("/console/t/acme/usage/", "start"),
            ("/console/prices/", "input_per_million"), ("/console/t/acme/members/", "username"),
            ("/console/reports/", "month")} <= fields, sorted(fields)  # fmt: skip
    assert not failures, f"{len(failures)} of {sent} answers were 5xx: {failures[:20]}"
