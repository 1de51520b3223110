"""Secrets kept sealed in the database (``accounts/sealed.py``): a webhook endpoint's signing secret and the mcp
tools' credentials of a background response waiting to run; opened with the current key or a fallback after a
rotation of ``HUB_SECRET_KEY``, sealed again by ``manage.py reseal_secrets``, refused loudly by a key that cannot
open them; secrets written before sealing are read as they are, then sealed by the migration."""

from __future__ import annotations

import importlib
import time

import pytest
from django.apps import apps
from django.core.management import CommandError, call_command

from accounts import background, sealed, webhooks
from accounts.models import BackgroundResponse, WebhookEndpoint

pytestmark = pytest.mark.django_db

OLD, NEW = "o" * 40, "n" * 40


def test_a_sealed_value_opens_only_with_a_key_in_use(settings):
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = OLD, []
    closed = sealed.seal("whsec_abc")
    assert closed.startswith(sealed.PREFIX) and "whsec_abc" not in closed and closed != sealed.seal("whsec_abc")
    assert sealed.unseal(closed) == "whsec_abc" and sealed.unseal("whsec_plain") == "whsec_plain"  # written before
    assert sealed.seal("") == "" and sealed.unseal("") == ""
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = NEW, [OLD]
    assert sealed.unseal(closed) == "whsec_abc"  # the old key, a fallback, still opens it
    settings.SECRET_KEY_FALLBACKS = []
    with pytest.raises(sealed.Unreadable, match="HUB_SECRET_KEY_FALLBACKS"):
        sealed.unseal(closed)


def test_a_webhook_secret_is_kept_sealed_and_survives_a_key_rotation(acme, settings):
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = OLD, []
    endpoint, secret = webhooks.create(acme.tenant.id, name="e", url="https://x.example.com/h",
                                       event_types=["batch.completed"])  # fmt: skip
    row = WebhookEndpoint.objects.get(pk=endpoint.pk)
    assert sealed.is_sealed(row.secret) and secret not in row.secret
    assert webhooks.signing_secrets(row) == [secret] and webhooks.resource(row)["signing_secret_hint"].endswith(
        secret[-4:])  # fmt: skip
    rotated, new = webhooks.rotate(acme.tenant.id, endpoint.pk, keep_old=True)
    assert webhooks.signing_secrets(rotated) == [new, secret] and sealed.is_sealed(rotated.previous_secret)

    # HUB_SECRET_KEY rotated, the old one kept as a fallback: still signs; resealed, the fallback can go
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = NEW, [OLD]
    assert webhooks.signing_secrets(WebhookEndpoint.objects.get(pk=endpoint.pk)) == [new, secret]
    call_command("reseal_secrets")
    settings.SECRET_KEY_FALLBACKS = []
    assert webhooks.signing_secrets(WebhookEndpoint.objects.get(pk=endpoint.pk)) == [new, secret]

    # a key that opens nothing: loud, never a secret made up
    settings.SECRET_KEY = "x" * 40
    with pytest.raises(sealed.Unreadable):
        webhooks.signing_secrets(WebhookEndpoint.objects.get(pk=endpoint.pk))
    with pytest.raises(CommandError, match="HUB_SECRET_KEY_FALLBACKS"):
        call_command("reseal_secrets")


def test_the_migration_seals_the_secrets_written_before(acme):
    endpoint, secret = webhooks.create(acme.tenant.id, name="e", url="https://x.example.com/h",
                                       event_types=["batch.completed"])  # fmt: skip
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(secret=secret)  # as 0026 wrote it
    migration = importlib.import_module("accounts.migrations.0027_sealed_webhook_secrets")
    migration.seal(apps, None)
    row = WebhookEndpoint.objects.get(pk=endpoint.pk)
    assert sealed.is_sealed(row.secret) and webhooks.signing_secrets(row) == [secret] and row.previous_secret == ""
    migration.unseal(apps, None)
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).secret == secret


def test_a_background_requests_mcp_credentials_are_sealed_until_run_then_dropped(acme):
    tool = {"type": "mcp", "server_label": "s", "server_url": "https://mcp.example.com/mcp", "authorization": "tok",
            "headers": {"X-Key": "k1"}}  # fmt: skip
    request = {"model": "m", "input": "hi", "tools": [tool, {"type": "function", "name": "f"}], "background": True}
    response = {"id": "resp_sealed", "object": "response", "created_at": int(time.time()), "status": "queued",
                "output": [], "model": "m"}  # fmt: skip
    background.create(tenant_id=acme.tenant.id, api_key_id=None, history=[], input_items=[], response=response,
                      request=request)  # fmt: skip
    kept = BackgroundResponse.objects.get(pk="resp_sealed").request["tools"]
    assert sealed.is_sealed(kept[0]["authorization"]) and sealed.is_sealed(kept[0]["headers"]["X-Key"])
    assert kept[1] == {"type": "function", "name": "f"}
    work = background.claim("resp_sealed", "runner-1", 60)
    assert work.request == request  # opened for the run
    assert background.reseal() == 1
    assert background.fail("resp_sealed", "server_error", "no")
    ended = BackgroundResponse.objects.get(pk="resp_sealed").request["tools"][0]
    assert "authorization" not in ended and "headers" not in ended
