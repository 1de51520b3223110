"""Webhook endpoints in the console: every member sees them with their last deliveries; an admin adds one (its
secret shown once, its URL checked as the API checks it), sends it a test event, rotates its secret and deletes it;
a member below admin may not (the outsider and viewer cases: ``tests/hub/test_console.py``)."""

from __future__ import annotations

import re

import pytest

from accounts import webhooks
from accounts.models import WebhookEndpoint
from tests.support.webhooks import receiver

SECRET_RE = re.compile(r"whsec_[A-Za-z0-9+/=]{44}")
BASE = "/console/t/acme/webhooks/"


def _add(client, url: str = "https://hooks.example.com/in", **extra):
    return client.post(BASE, {"name": "ops", "url": url, "event_types": ["batch.completed", "response.failed"],
                              **extra})  # fmt: skip


def test_an_admin_adds_an_endpoint_and_sees_its_secret_once(client, acme):
    client.force_login(acme.owner)
    shown = _add(client)
    [secret] = SECRET_RE.findall(shown.content.decode())
    endpoint = WebhookEndpoint.objects.get()
    assert (webhooks.signing_secrets(endpoint), endpoint.event_types) == ([secret], ["batch.completed",
                                                                                     "response.failed"])  # fmt: skip
    page = client.get(BASE).content.decode()
    assert secret not in page and webhooks.hint(secret) in page and "hooks.example.com/in" in page
    assert "No events sent yet." in page


@pytest.mark.parametrize("url", ["ftp://hooks.example.com/", "http://127.0.0.1:8000/in"])
def test_a_url_the_api_refuses_is_a_form_error(client, acme, settings, url):
    settings.HUB_WEBHOOK_ALLOW_PRIVATE_URLS = False
    client.force_login(acme.owner)
    refused = _add(client, url=url)
    assert refused.status_code == 200 and not WebhookEndpoint.objects.exists()
    assert b"http:// or https://" in refused.content or b"HUB_WEBHOOK_ALLOW_PRIVATE_URLS" in refused.content


def test_every_member_sees_the_deliveries_and_only_admins_act(client, acme):
    endpoint, _ = webhooks.create(acme.tenant.id, name="ops", url="https://hooks.example.com/in",
                                  event_types=["batch.completed"])  # fmt: skip
    webhooks.emit(acme.tenant.id, "batch.completed", "batch_seen")
    [due] = webhooks.claim(1, 40.0)
    webhooks.record(due.id, 503, "HTTP 503")
    client.force_login(acme.member)
    page = client.get(BASE).content.decode()
    assert "batch_seen" in page and "HTTP 503" in page and "pending" in page and "Rotate the secret" not in page
    assert client.post(f"{BASE}{endpoint.pk}/delete/").status_code == 403
    assert WebhookEndpoint.objects.filter(pk=endpoint.pk).exists()


@pytest.mark.django_db(transaction=True)
def test_an_admin_tests_rotates_and_deletes_an_endpoint(client, acme, settings):
    settings.HUB_WEBHOOK_ALLOW_PRIVATE_URLS = True
    client.force_login(acme.owner)
    with receiver() as hooks:
        _add(client, url=hooks.url)
        endpoint = WebhookEndpoint.objects.get()
        hooks.statuses = [202]
        tested = client.post(f"{BASE}{endpoint.pk}/test/", {"event_type": "batch.expired"}, follow=True)
        assert b"it answered HTTP 202" in tested.content and hooks.received[0].event["type"] == "batch.expired"
    unreachable = client.post(f"{BASE}{endpoint.pk}/test/", {"event_type": "batch.expired"}, follow=True)
    assert b"could not reach ops" in unreachable.content
    rotated = client.post(f"{BASE}{endpoint.pk}/rotate/", {"keep_old": "1"})
    [secret] = SECRET_RE.findall(rotated.content.decode())
    kept = WebhookEndpoint.objects.get()
    assert webhooks.signing_secrets(kept) == [secret, *webhooks.signing_secrets(endpoint)]
    assert b"signs deliveries too" in rotated.content
    assert client.post(f"{BASE}nope/delete/").status_code == 404
    client.post(f"{BASE}{endpoint.pk}/delete/")
    assert not WebhookEndpoint.objects.exists()
