"""The operator's Django admin: a new key's secret is shown once, then only its prefix."""

import re

import pytest

from accounts.authn import authenticate_secret
from accounts.models import ApiKey

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
