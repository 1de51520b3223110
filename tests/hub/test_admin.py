"""The operator's Django admin: a new key's secret is shown once, then only its prefix."""

import re

import pytest

from accounts.authn import authenticate_secret
from accounts.models import ApiKey
from tests.support.forms import forms_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(client, django_user_model):
    user = django_user_model.objects.create_superuser("operator", "", "operator-pw")
    client.force_login(user)
    return client


def test_add_key_shows_the_secret_once(operator, acme):
    form = {"tenant": acme.tenant.pk, "name": "from-admin", "allowed_models": ["chat-small"]}
    response = operator.post("/admin/accounts/apikey/add/", form)
    assert response.status_code == 200, response.content[:2000]
    secret = re.search(rb"sk-hub-[A-Za-z0-9]{48}", response.content).group().decode()
    ctx = authenticate_secret(secret)
    assert ctx.model_ids == {"chat-small"}
    key = ApiKey.objects.get(pk=ctx.key_id)
    assert key.created_by.username == "operator"
    listing = operator.get("/admin/accounts/apikey/").content.decode()
    detail = operator.get(f"/admin/accounts/apikey/{key.pk}/change/").content.decode()
    assert key.prefix in listing and secret not in listing and secret not in detail


def test_admin_refuses_models_outside_the_tenant(operator, globex):
    response = operator.post(
        "/admin/accounts/apikey/add/", {"tenant": globex.tenant.pk, "name": "x", "allowed_models": ["chat-small"]}
    )
    assert b"not entitled" in response.content
    assert not ApiKey.objects.exists()


def test_rotate_action_shows_the_new_secret(operator, acme):
    from accounts import services

    issued = services.issue_key(acme.tenant)
    response = operator.post("/admin/accounts/apikey/", {"action": "rotate_keys", "_selected_action": [issued.key.pk]})
    new_secret = re.search(rb"sk-hub-[A-Za-z0-9]{48}", response.content).group().decode()
    assert new_secret != issued.secret
    assert authenticate_secret(new_secret).key_id == issued.key.pk


def test_admin_pages_render(operator, acme):
    pages = ["/admin/", "/admin/accounts/tenant/", f"/admin/accounts/tenant/{acme.tenant.pk}/change/"]
    pages += ["/admin/accounts/servedmodel/", "/admin/accounts/usagerecord/", "/admin/accounts/apikey/add/"]
    for url in pages:
        assert operator.get(url).status_code == 200, url


def test_non_staff_cannot_open_the_admin(client, acme):
    client.force_login(acme.owner)
    assert client.get("/admin/accounts/apikey/").status_code == 302


def test_no_odd_value_on_the_tenant_page_is_a_500(operator, acme):
    """The tenant's change page, with its members and entitlements inlines: each field in turn set to a value no
    browser sends, the rest as the page filled them in. A member's user is an autocomplete, whose redraw of the
    invalid form once filtered users by the posted id as it came: "NaN", " " or "1e400" was a 500."""
    operator.raise_request_exception = False  # a failure is a 500 to count, not an exception in the test
    page = f"/admin/accounts/tenant/{acme.tenant.pk}/change/"
    form = next(f for f in forms_of(operator.get(page).content.decode()) if "slug" in f.fields)
    member, members = "memberships-0-user", list(acme.tenant.memberships.values_list("user_id", "role"))
    # The tenant's fields and the first row of each inline: the other rows are alike, and each post redraws a
    # 47 kB page. Not the management forms: Django answers a huge TOTAL_FORMS by drawing its cap of 1,000 forms
    # (12 s a post). A value of each kind that reached a query or a conversion in the probe that found this: NUL,
    # past int32 and int64, not numbers, a blank, a date past the calendar's end, long text.
    fields = [n for n in form.names() if not re.match(r"_|initial-|\w+-(__prefix__|[1-9]\d*|[A-Z_]+$)", n)]
    assert {"slug", "rpm_limit", "cost_budget", member, "memberships-0-id", "entitlements-0-model"} <= set(fields)
    values = ["\x00", "-1", "2147483648", "9223372036854775808", "1e400", "NaN", " ", "9999-12-31", "x" * 5000]
    failures = []
    for name in fields:
        for value in values:
            answer = operator.post(page, form.data(**{name: value}))
            if answer.status_code >= 500:
                failures.append((name, value[:20], answer.status_code))
    assert not failures, failures
    # the member's row is redrawn with the form's own error, and nothing was saved
    answer = operator.post(page, form.data(**{member: "NaN"}))
    assert answer.status_code == 200 and b"Select a valid choice" in answer.content
    assert list(acme.tenant.memberships.values_list("user_id", "role")) == members
