"""The admin web console: sign-in, tenant scoping (404 for outsiders, 403 for viewers' writes), keys whose
secret is shown exactly once, members and roles, the models page and the operator's overview."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from accounts import services, webhooks
from accounts.authn import AuthFailed, authenticate_secret
from accounts.keys import hash_secret
from accounts.models import ApiKey, Invitation, Membership, ModelKind, Role, WebhookEndpoint
from tests.support.console import acme_pages

pytestmark = pytest.mark.django_db

SECRET_RE = re.compile(r"sk-hub-[A-Za-z0-9]{48}")


def signed_in(client, user):
    client.force_login(user)
    return client


def secret_in(response) -> str:
    match = SECRET_RE.search(response.content.decode())
    assert match, response.content.decode()[:3000]
    return match.group()


def acme_posts(acme) -> list[tuple[str, dict]]:
    key = services.issue_key(acme.tenant, name="existing").key
    hook = webhooks.create(acme.tenant.id, name="existing", url="https://x.example.com/", event_types=["batch.failed"])
    base = "/console/t/acme"
    return [
        (f"{base}/webhooks/", {"name": "x", "url": "https://y.example.com/", "event_types": ["batch.failed"]}),
        *[
            (f"{base}/webhooks/{hook[0].pk}/{action}/", {"event_type": "batch.failed"})
            for action in ("rotate", "test", "delete")
        ],
        (f"{base}/keys/", {"name": "x", "scope": "all"}),
        (f"{base}/keys/{key.pk}/", {"scope": "all"}),
        (f"{base}/keys/{key.pk}/revoke/", {}),
        (f"{base}/keys/{key.pk}/rotate/", {}),
        (f"{base}/members/", {"username": "outsider", "role": "member"}),
        (f"{base}/members/{acme.member.pk}/role/", {"role": "admin"}),
    ]


# --- sign-in ----------------------------------------------------------------------------------------


def test_sign_in_page_renders_and_signs_in(client, acme):
    page = client.get("/console/login/")
    assert page.status_code == 200
    assert b'name="username"' in page.content and b'name="password"' in page.content
    assert b"/static/console/console.css" in page.content
    response = client.post("/console/login/", {"username": "acme-owner", "password": "pw-acme-owner"})
    assert response.status_code == 302 and response.url == "/console/"
    index = client.get("/console/")
    assert index.status_code == 200
    assert b"Acme" in index.content and b"Globex" not in index.content


def test_wrong_password_stays_on_the_sign_in_page(client, acme):
    response = client.post("/console/login/", {"username": "acme-owner", "password": "nope"})
    assert response.status_code == 200 and b"errorlist" in response.content
    assert client.get("/console/").status_code == 302


def test_sign_out_is_a_post(client, acme):
    signed_in(client, acme.owner)
    assert client.post("/console/logout/").status_code == 302
    assert client.get("/console/").url.startswith("/console/login/")


def test_anonymous_users_are_sent_to_sign_in(client, acme):
    assert client.get("/").url == "/console/"
    for url in ["/console/", *acme_pages(acme), "/console/t/no-such-tenant/keys/"]:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response.url.startswith("/console/login/?next="), url
    for url, data in acme_posts(acme):
        response = client.post(url, data)
        assert response.status_code == 302 and response.url.startswith("/console/login/"), url
    assert ApiKey.objects.filter(revoked_at__isnull=False).count() == 0


def test_static_assets_are_served(client):
    for path in ["/static/console/console.css", "/static/console/console.js"]:
        response = client.get(path)
        assert response.status_code == 200, path
        body = b"".join(response.streaming_content) if response.streaming else response.content
        assert body.strip(), path


# --- scoping -----------------------------------------------------------------------------------------


def test_outsider_gets_404_on_every_acme_page(client, acme, outsider):
    signed_in(client, outsider)
    not_found = client.get("/console/t/no-such-tenant/keys/")
    assert not_found.status_code == 404
    for url in acme_pages(acme):
        response = client.get(url)
        assert response.status_code == 404, url
        assert response.content == not_found.content  # no hint that acme exists
    for url, data in acme_posts(acme):
        assert client.post(url, data).status_code == 404, url
    assert not ApiKey.objects.filter(revoked_at__isnull=False).exists()
    assert not Membership.objects.filter(user=outsider).exists()
    assert b"acme" not in client.get("/console/").content.lower()
    assert _webhooks_untouched()


def _webhooks_untouched() -> bool:
    """Only acme_posts' own endpoint, never rotated (a rotation moves updated_at), deleted or tested."""
    endpoints = list(WebhookEndpoint.objects.all())
    assert [e.name for e in endpoints] == ["existing"], endpoints
    return endpoints[0].updated_at == endpoints[0].created_at


def test_other_tenants_owner_gets_404_on_acme_pages(client, acme, globex):
    signed_in(client, globex.owner)
    for url in acme_pages(acme):
        assert client.get(url).status_code == 404, url
    for url, data in acme_posts(acme):
        assert client.post(url, data).status_code == 404, url
    assert ApiKey.objects.filter(tenant=acme.tenant, revoked_at__isnull=False).count() == 0


def test_a_key_of_another_tenant_is_404_under_ones_own(client, acme, globex):
    """Key ids are looked up within the URL's tenant: acme's owner cannot reach globex's key via /t/acme/."""
    theirs = services.issue_key(globex.tenant, name="globex-key").key
    signed_in(client, acme.owner)
    assert client.get(f"/console/t/acme/keys/{theirs.pk}/").status_code == 404
    assert client.post(f"/console/t/acme/keys/{theirs.pk}/revoke/").status_code == 404
    assert client.post(f"/console/t/acme/keys/{theirs.pk}/rotate/").status_code == 404
    assert client.post(f"/console/t/acme/members/{globex.owner.pk}/role/", {"role": "viewer"}).status_code == 404
    theirs.refresh_from_db()
    assert theirs.status == "active"
    assert b"globex-key" not in client.get("/console/t/acme/keys/").content


def test_viewer_reads_keys_but_every_post_is_403(client, acme):
    issued = services.issue_key(acme.tenant, name="seen-by-viewer")
    signed_in(client, acme.viewer)
    page = client.get("/console/t/acme/keys/")
    assert page.status_code == 200
    assert issued.key.prefix.encode() in page.content and b"seen-by-viewer" in page.content
    assert b"Create a key" not in page.content and b"Revoke" not in page.content
    for path in ["/console/t/acme/members/", "/console/t/acme/models/", f"/console/t/acme/keys/{issued.key.pk}/"]:
        assert client.get(path).status_code == 200, path
    keys_before = ApiKey.objects.count()
    for url, data in acme_posts(acme):
        response = client.post(url, data)
        assert response.status_code == 403, url
        assert b"Not allowed" in response.content
    assert ApiKey.objects.count() == keys_before + 1  # only the one acme_posts issued itself
    assert not ApiKey.objects.filter(revoked_at__isnull=False).exists()
    assert Membership.objects.get(tenant=acme.tenant, user=acme.member).role == Role.MEMBER
    assert _webhooks_untouched()


# --- keys --------------------------------------------------------------------------------------------


def test_owner_creates_a_key_and_sees_the_secret_exactly_once(client, acme):
    signed_in(client, acme.owner)
    response = client.post("/console/t/acme/keys/", {"name": "ci", "scope": "all"})
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    secret = secret_in(response)
    assert response.content.decode().count(secret) == 1
    key = ApiKey.objects.get(name="ci")
    assert key.secret_hash == hash_secret(secret) and secret.startswith(key.prefix)
    assert key.created_by == acme.owner and key.all_models and key.expires_at is None
    assert authenticate_secret(secret).model_ids == {"chat-small", "completion-small", "embed-small", "vision-small"}
    # Never again: not in the list, the key's page, the session or a later page's messages.
    for url in ["/console/t/acme/keys/", f"/console/t/acme/keys/{key.pk}/", "/console/"]:
        page = client.get(url)
        assert page.status_code == 200
        assert secret not in page.content.decode() and not SECRET_RE.search(page.content.decode())
    assert key.prefix.encode() in client.get("/console/t/acme/keys/").content
    assert secret not in str(dict(client.session.items()))


def test_key_with_selected_models_and_expiry(client, acme):
    signed_in(client, acme.owner)
    through = timezone.now().date() + timedelta(days=30)
    form = {"name": "narrow", "scope": "selected", "models": ["chat-small", "embed-small"], "expires_on": through}
    secret = secret_in(client.post("/console/t/acme/keys/", form))
    key = ApiKey.objects.get(name="narrow")
    assert not key.all_models
    assert set(key.allowed_models.values_list("id", flat=True)) == {"chat-small", "embed-small"}
    assert key.expires_at == datetime.combine(through + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    assert authenticate_secret(secret).model_ids == {"chat-small", "embed-small"}


def test_create_form_errors_are_shown(client, acme, globex):
    signed_in(client, globex.owner)
    cases = [
        {"name": "a", "scope": "selected", "models": ["chat-small"]},  # not entitled: not even a choice
        {"name": "b", "scope": "selected"},  # no models picked
        {"name": "c", "scope": "all", "expires_on": date.today() - timedelta(days=2)},
        {"name": "d", "scope": "all", "expires_on": "9999-12-31"},  # its expiry, the next midnight, is no date
    ]
    for form in cases:
        response = client.post("/console/t/globex/keys/", form)
        assert response.status_code == 200
        assert b"errorlist" in response.content, form
        assert not SECRET_RE.search(response.content.decode())
    assert not ApiKey.objects.filter(tenant=globex.tenant).exists()
    assert b"must be 9999-12-30 or earlier" in response.content
    last = client.post("/console/t/globex/keys/", {"name": "e", "scope": "all", "expires_on": "9999-12-30"})
    assert last.status_code == 200 and SECRET_RE.search(last.content.decode())
    assert ApiKey.objects.get(tenant=globex.tenant).expires_at == datetime(9999, 12, 31, tzinfo=UTC)
    page = client.get("/console/t/globex/keys/").content.decode()
    assert 'value="completion-small"' in page and 'value="chat-small"' not in page


def test_service_validation_errors_become_form_errors(client, acme, monkeypatch):
    def refuse(*args, **kwargs):
        raise ValidationError("the service said no")

    monkeypatch.setattr(services, "issue_key", refuse)
    signed_in(client, acme.owner)
    response = client.post("/console/t/acme/keys/", {"name": "x", "scope": "all"})
    assert response.status_code == 200 and b"the service said no" in response.content


def test_member_creates_a_key_but_cannot_touch_others(client, acme):
    owners_key = services.issue_key(acme.tenant, name="owners", actor=acme.owner).key
    signed_in(client, acme.member)
    secret = secret_in(client.post("/console/t/acme/keys/", {"name": "mine", "scope": "all"}))
    mine = ApiKey.objects.get(name="mine")
    assert mine.created_by == acme.member and mine.secret_hash == hash_secret(secret)
    page = client.get("/console/t/acme/keys/").content.decode()
    assert f"/keys/{mine.pk}/revoke/" in page and f"/keys/{owners_key.pk}/revoke/" not in page
    # The services refuse (members manage only their own keys): the console answers 403.
    assert client.post(f"/console/t/acme/keys/{owners_key.pk}/revoke/").status_code == 403
    assert client.post(f"/console/t/acme/keys/{owners_key.pk}/rotate/").status_code == 403
    owners_key.refresh_from_db()
    assert owners_key.status == "active"
    assert client.post(f"/console/t/acme/keys/{mine.pk}/revoke/").status_code == 302


def test_member_cannot_edit_others_key(client, acme):
    owners_key = services.issue_key(acme.tenant, name="owners", actor=acme.owner).key
    signed_in(client, acme.member)
    through = timezone.now().date() + timedelta(days=3)
    response = client.post(f"/console/t/acme/keys/{owners_key.pk}/", {"scope": "all", "expires_on": through})
    assert response.status_code == 403
    owners_key.refresh_from_db()
    assert owners_key.expires_at is None


def test_revoke(client, acme, django_capture_on_commit_callbacks):
    issued = services.issue_key(acme.tenant, name="doomed")
    authenticate_secret(issued.secret)  # cached as valid
    signed_in(client, acme.owner)
    with django_capture_on_commit_callbacks(execute=True):  # the auth cache is invalidated on commit
        response = client.post(f"/console/t/acme/keys/{issued.key.pk}/revoke/")
    assert response.status_code == 302 and response.url == "/console/t/acme/keys/"
    issued.key.refresh_from_db()
    assert issued.key.status == "revoked"
    with pytest.raises(AuthFailed):
        authenticate_secret(issued.secret)
    page = client.get("/console/t/acme/keys/").content.decode()
    assert "revoked" in page and f"/keys/{issued.key.pk}/revoke/" not in page
    assert client.get(f"/console/t/acme/keys/{issued.key.pk}/").status_code == 200


def test_rotate_shows_the_new_secret_once_and_the_old_one_works_for_the_grace(client, acme):
    issued = services.issue_key(acme.tenant, name="rolling")
    signed_in(client, acme.owner)
    response = client.post(f"/console/t/acme/keys/{issued.key.pk}/rotate/")
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    new_secret = secret_in(response)
    assert new_secret != issued.secret
    key = ApiKey.objects.get(pk=issued.key.pk)
    assert key.secret_hash == hash_secret(new_secret) and key.previous_valid_until > timezone.now()
    assert b"keeps working until" in response.content
    assert authenticate_secret(new_secret).key_id == key.pk
    assert authenticate_secret(issued.secret).key_id == key.pk  # still inside the grace period
    assert new_secret not in client.get("/console/t/acme/keys/").content.decode()


def test_rotate_without_grace_stops_the_old_secret(client, acme, settings):
    settings.HUB_KEY_ROTATION_GRACE_SECONDS = 0
    issued = services.issue_key(acme.tenant, name="rolling")
    signed_in(client, acme.owner)
    new_secret = secret_in(client.post(f"/console/t/acme/keys/{issued.key.pk}/rotate/"))
    assert authenticate_secret(new_secret).key_id == issued.key.pk
    with pytest.raises(AuthFailed):
        authenticate_secret(issued.secret)


def test_rotating_a_revoked_key_is_refused_with_a_message(client, acme):
    issued = services.issue_key(acme.tenant, name="gone")
    services.revoke_key(issued.key)
    signed_in(client, acme.owner)
    response = client.post(f"/console/t/acme/keys/{issued.key.pk}/rotate/", follow=True)
    assert response.status_code == 200
    assert b"cannot rotate a revoked key" in response.content and not SECRET_RE.search(response.content.decode())


def test_edit_expiry_and_models(client, acme):
    issued = services.issue_key(acme.tenant, name="editable", actor=acme.member)
    signed_in(client, acme.member)
    url = f"/console/t/acme/keys/{issued.key.pk}/"
    page = client.get(url)
    assert page.status_code == 200 and b"Change expiry and models" in page.content
    through = timezone.now().date() + timedelta(days=7)
    response = client.post(url, {"scope": "selected", "models": ["vision-small"], "expires_on": through})
    assert response.status_code == 302
    key = ApiKey.objects.get(pk=issued.key.pk)
    assert not key.all_models and list(key.allowed_models.values_list("id", flat=True)) == ["vision-small"]
    assert key.expires_at.date() == through + timedelta(days=1)
    assert authenticate_secret(issued.secret).model_ids == {"vision-small"}
    # Clearing the date removes the expiry; back to all models.
    assert client.post(url, {"scope": "all", "expires_on": ""}).status_code == 302
    key.refresh_from_db()
    assert key.expires_at is None and key.all_models


def test_unchanged_fields_are_left_alone(client, acme):
    odd = timezone.now() + timedelta(days=2, hours=5, minutes=13)
    issued = services.issue_key(acme.tenant, name="odd", expires_at=odd)
    signed_in(client, acme.owner)
    url = f"/console/t/acme/keys/{issued.key.pk}/"
    shown = (odd - timedelta(microseconds=1)).date()
    assert client.post(url, {"scope": "selected", "models": ["chat-small"], "expires_on": shown}).status_code == 302
    key = ApiKey.objects.get(pk=issued.key.pk)
    assert key.expires_at == odd  # the date field was not changed, so the exact time stays
    assert list(key.allowed_models.values_list("id", flat=True)) == ["chat-small"]


# --- members -------------------------------------------------------------------------------------------


def test_members_page_lists_roles(client, acme):
    signed_in(client, acme.viewer)
    page = client.get("/console/t/acme/members/").content.decode()
    for name in ["acme-owner", "acme-member", "acme-viewer"]:
        assert name in page
    assert "Add a member" not in page


def test_owner_invites_a_member_who_accepts_and_roles_change(client, acme, outsider):
    signed_in(client, acme.owner)
    response = client.post("/console/t/acme/members/", {"username": "outsider", "role": "viewer"}, follow=True)
    assert b"they join when they accept" in response.content
    assert not Membership.objects.filter(tenant=acme.tenant, user=outsider).exists()  # not without consent
    assert "outsider" in client.get("/console/t/acme/members/").content.decode()  # listed as invited
    invitation = Invitation.objects.get(tenant=acme.tenant, username="outsider")
    # only the addressee may answer
    assert client.post(f"/console/invitations/{invitation.pk}/accept/").status_code == 404
    signed_in(client, outsider)
    assert "Acme" in client.get("/console/").content.decode()  # the invitation, on their landing page
    assert client.post(f"/console/invitations/{invitation.pk}/accept/").status_code == 302
    assert Membership.objects.get(tenant=acme.tenant, user=outsider).role == Role.VIEWER
    assert client.post(f"/console/invitations/{invitation.pk}/accept/").status_code == 404  # answered once
    signed_in(client, acme.owner)
    assert client.post(f"/console/t/acme/members/{outsider.pk}/role/", {"role": "admin"}).status_code == 302
    assert Membership.objects.get(tenant=acme.tenant, user=outsider).role == Role.ADMIN
    response = client.post("/console/t/acme/members/", {"username": "acme-member", "role": "viewer"})
    assert response.status_code == 200 and b"Already a member" in response.content
    assert Membership.objects.get(tenant=acme.tenant, user=acme.member).role == Role.MEMBER


def test_inviting_tells_nothing_about_which_usernames_exist(client, acme, globex):
    signed_in(client, acme.owner)
    answers = [
        client.post("/console/t/acme/members/", {"username": name, "role": "member"}, follow=True).content.decode()
        for name in ("globex-owner", "no-such-user-anywhere")
    ]
    for answer, name in zip(answers, ("globex-owner", "no-such-user-anywhere"), strict=True):
        assert f"{name} is invited as member: they join when they accept it" in answer  # the same words for both
    assert all("No active user" not in a for a in answers)
    assert not Membership.objects.filter(tenant=acme.tenant, user=globex.owner).exists()
    # the invited user declines: still not a member, and the invitation is gone
    invitation = Invitation.objects.get(username="globex-owner")
    signed_in(client, globex.owner)
    assert client.post(f"/console/invitations/{invitation.pk}/decline/").status_code == 302
    assert not Membership.objects.filter(tenant=acme.tenant, user=globex.owner).exists()
    assert not Invitation.objects.pending().filter(username="globex-owner").exists()


def test_an_operator_adds_an_existing_user_at_once(client, acme, outsider, django_user_model):
    signed_in(client, django_user_model.objects.create_superuser("root", "", "pw"))
    assert client.post("/console/t/acme/members/", {"username": "outsider", "role": "viewer"}).status_code == 302
    assert Membership.objects.get(tenant=acme.tenant, user=outsider).role == Role.VIEWER
    response = client.post("/console/t/acme/members/", {"username": "nobody", "role": "member"})
    assert response.status_code == 200 and b"No active user" in response.content


def test_admin_cannot_make_or_unmake_owners(client, acme, outsider):
    services.set_role(acme.tenant, acme.member, Role.ADMIN, actor=acme.owner)
    signed_in(client, acme.member)
    page = client.get("/console/t/acme/members/").content.decode()
    assert '<option value="owner"' not in page
    response = client.post("/console/t/acme/members/", {"username": "outsider", "role": "owner"})
    assert response.status_code == 200 and b"errorlist" in response.content
    assert not Membership.objects.filter(user=outsider).exists() and not Invitation.objects.exists()
    assert client.post(f"/console/t/acme/members/{acme.owner.pk}/role/", {"role": "viewer"}).status_code == 403
    assert client.post(f"/console/t/acme/members/{acme.viewer.pk}/role/", {"role": "owner"}).status_code == 403
    assert Membership.objects.get(tenant=acme.tenant, user=acme.owner).role == Role.OWNER
    assert client.post(f"/console/t/acme/members/{acme.viewer.pk}/role/", {"role": "member"}).status_code == 302
    assert Membership.objects.get(tenant=acme.tenant, user=acme.viewer).role == Role.MEMBER


def test_member_cannot_manage_members(client, acme, outsider):
    signed_in(client, acme.member)
    assert client.post("/console/t/acme/members/", {"username": "outsider", "role": "viewer"}).status_code == 403
    assert client.post(f"/console/t/acme/members/{acme.viewer.pk}/role/", {"role": "admin"}).status_code == 403


def test_last_owner_cannot_step_down(client, acme):
    signed_in(client, acme.owner)
    response = client.post(f"/console/t/acme/members/{acme.owner.pk}/role/", {"role": "admin"}, follow=True)
    assert b"at least one owner" in response.content
    assert Membership.objects.get(tenant=acme.tenant, user=acme.owner).role == Role.OWNER


def test_set_role_service(acme, outsider):
    with pytest.raises(ValidationError):
        services.set_role(acme.tenant, outsider, Role.MEMBER, actor=acme.owner)
    with pytest.raises(PermissionDenied):
        services.set_role(acme.tenant, acme.viewer, Role.MEMBER, actor=acme.member)
    services.set_role(acme.tenant, acme.member, Role.OWNER, actor=acme.owner)
    services.set_role(acme.tenant, acme.owner, Role.VIEWER, actor=acme.member)  # two owners: one may step down
    assert Membership.objects.get(tenant=acme.tenant, user=acme.owner).role == Role.VIEWER
    with pytest.raises(ValidationError):
        services.set_role(acme.tenant, acme.member, Role.ADMIN)  # the last owner, even for the operator


# --- models and the operator ----------------------------------------------------------------------------


def test_models_page_shows_the_tenants_models_only(client, acme, globex):
    signed_in(client, globex.viewer)
    page = client.get("/console/t/globex/models/").content.decode()
    assert "completion-small" in page and "32768" in page and "8192" in page
    assert "chat-small" not in page and "embed-small" not in page
    signed_in(client, acme.member)
    page = client.get("/console/t/acme/models/").content.decode()
    assert all(m in page for m in ["chat-small", "completion-small", "embed-small", "vision-small", "384"])


def test_models_page_shows_a_models_fallbacks_the_tenant_may_use(client, acme, globex):
    services.register_model("chat-large", ModelKind.CHAT, max_sequence_length=32768, max_output_length=8192)
    services.register_model("chat-secret", ModelKind.CHAT, max_sequence_length=32768, max_output_length=8192)
    services.grant_models(acme.tenant, ["chat-large"])
    services.set_fallbacks("chat-small", ["chat-secret"], context_only=["chat-large"])
    signed_in(client, acme.viewer)
    page = client.get("/console/t/acme/models/").content.decode()
    row = re.search(r"<code>chat-small</code>.*?</tr>", page, re.S).group()
    assert "<code>chat-large</code>" in row and "chat-secret" not in page  # never tried for acme's keys
    assert re.search(r"<code>chat-large</code> <span [^>]*title=\"only when the request is over the model&#x27;s "
                     r"context or output length\">context only</span>", row)  # fmt: skip
    row = re.search(r"<code>chat-large</code></td>.*?</tr>", page, re.S).group()
    assert re.search(r"<td>—</td>\s*</tr>$", row)  # no fallbacks of its own


def test_operator_sees_every_tenant_and_the_catalog(client, acme, globex, django_user_model):
    services.register_model("chat-large", ModelKind.CHAT, deployment_url="http://10.0.0.5:8100/v1")
    services.set_fallbacks("chat-small", ["chat-large"])
    operator = django_user_model.objects.create_superuser("operator", "", "operator-pw")
    signed_in(client, operator)
    page = client.get("/console/").content.decode()
    assert 'id="operator"' in page
    row = re.search(r"<code>chat-small</code>.*?</tr>", page, re.S).group()
    assert re.search(r"<td><code>chat-large</code></td>\s*</tr>$", row)  # its fallbacks, last column
    expected = ["Acme", "Globex", "chat-small", "embed-small", "vision-small", "chat-large", "http://10.0.0.5:8100/v1"]
    for text in expected:
        assert text in page, text
    assert "max_sequence_length: 8192" in page
    # Operators open any tenant as its owner.
    assert client.get("/console/t/globex/keys/").status_code == 200
    assert client.post("/console/t/globex/keys/", {"name": "op", "scope": "all"}).status_code == 200
    assert ApiKey.objects.get(name="op").created_by == operator


def test_members_do_not_see_the_operator_section(client, acme):
    signed_in(client, acme.owner)
    page = client.get("/console/").content.decode()
    assert 'id="operator"' not in page and "Model catalog" not in page


def test_tenant_switcher_keeps_the_section(client, acme, globex):
    services.add_member(globex.tenant, acme.owner, Role.VIEWER)
    signed_in(client, acme.owner)
    page = client.get("/console/t/acme/members/").content.decode()
    assert 'href="/console/t/globex/members/"' in page
    assert client.get("/console/t/acme/").url == "/console/t/acme/keys/"


def test_a_view_cannot_let_viewers_write():
    from django.core.exceptions import ImproperlyConfigured

    from hub.console.scoping import TenantScopedView

    with pytest.raises(ImproperlyConfigured):
        type("Careless", (TenantScopedView,), {"write_role": Role.VIEWER})
