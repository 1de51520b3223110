"""Webhook endpoints and deliveries (``accounts/webhooks.py``): an event written with the change it tells, to the
endpoints that asked for it and to no one when that change is rolled back; claimed by one sender at a time under a
lease; retried with doubling waits until delivered or too old; secrets rotated with or without the old one kept."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from accounts import webhooks
from accounts.models import DeliveryState, WebhookDelivery, WebhookEndpoint

LEASE = 40.0


def _endpoint(tenant, *types: str, name: str = "e") -> WebhookEndpoint:
    return webhooks.create(tenant.id, name=name, url="https://x.example.com/", event_types=list(types))[0]


@pytest.mark.django_db(transaction=True)
def test_an_event_goes_to_the_endpoints_that_asked_and_only_once_its_change_commits(acme, globex):
    asked = _endpoint(acme.tenant, "batch.completed", "batch.failed")
    _endpoint(acme.tenant, "response.completed", name="other type")
    _endpoint(globex.tenant, "batch.completed", name="other tenant")
    also = _endpoint(acme.tenant, "batch.completed", name="also")
    sent = []
    webhooks.events_added.connect(lambda **_: sent.append(1), dispatch_uid="test-sent", weak=False)
    try:
        with transaction.atomic():
            assert webhooks.emit(acme.tenant.id, "batch.completed", "batch_1") == 2
            assert sent == []  # not before the change it tells is committed
        assert sent == [1]
        with pytest.raises(RuntimeError), transaction.atomic():
            webhooks.emit(acme.tenant.id, "batch.failed", "batch_2")
            raise RuntimeError("the change is rolled back")
        assert sent == [1]
    finally:
        webhooks.events_added.disconnect(dispatch_uid="test-sent")
    rows = list(WebhookDelivery.objects.all())
    assert sorted(r.endpoint_id for r in rows) == sorted([asked.id, also.id])  # nothing of batch_2
    assert len({r.payload["id"] for r in rows}) == 1 and len({r.id for r in rows}) == 2  # one event, two deliveries
    assert rows[0].payload["data"] == {"id": "batch_1"} and rows[0].payload["type"] == "batch.completed"


def test_a_claimed_delivery_is_no_one_elses_until_its_lease_ends(acme):
    _endpoint(acme.tenant, "batch.completed")
    webhooks.emit(acme.tenant.id, "batch.completed", "batch_1")
    [due] = webhooks.claim(5, LEASE)
    assert due.attempt == 1 and due.payload["data"]["id"] == "batch_1" and len(due.secrets) == 1
    assert webhooks.claim(5, LEASE) == []
    # its sender died: the lease ends and another takes it, the attempt counted again
    WebhookDelivery.objects.update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    [again] = webhooks.claim(5, LEASE)
    assert (again.id, again.attempt) == (due.id, 2)


def test_failed_attempts_wait_longer_each_time_and_end_failed_after_the_retry_hours(acme, settings):
    settings.HUB_WEBHOOK_RETRY_SECONDS, settings.HUB_WEBHOOK_RETRY_HOURS = 10.0, 72.0
    _endpoint(acme.tenant, "batch.completed")
    webhooks.emit(acme.tenant.id, "batch.completed", "batch_1")
    waits = []
    for attempt in range(1, 12):
        [due] = webhooks.claim(1, LEASE)
        before = timezone.now()
        assert webhooks.record(due.id, 500 if attempt % 2 else None, "" if attempt % 2 else "ConnectError") == "pending"
        row = WebhookDelivery.objects.get(pk=due.id)
        waits.append(round((row.next_attempt_at - before).total_seconds()))
        WebhookDelivery.objects.update(next_attempt_at=timezone.now())
    assert waits == [10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600]
    assert (row.attempts, row.last_status, row.last_error) == (11, 500, "")
    WebhookDelivery.objects.update(created_at=timezone.now() - timedelta(hours=72))
    [due] = webhooks.claim(1, LEASE)
    assert webhooks.record(due.id, 502, "HTTP 502") == DeliveryState.FAILED
    assert webhooks.claim(1, LEASE) == []


def test_a_2xx_delivers_and_a_deleted_endpoint_takes_its_deliveries_with_it(acme):
    endpoint = _endpoint(acme.tenant, "response.completed")
    webhooks.emit(acme.tenant.id, "response.completed", "resp_1")
    webhooks.emit(acme.tenant.id, "response.completed", "resp_2")
    first, second = webhooks.claim(2, LEASE)
    assert webhooks.record(first.id, 204) == DeliveryState.DELIVERED
    assert webhooks.record(first.id, 500, "late") == DeliveryState.DELIVERED  # a delivered one stays so
    assert webhooks.delete(acme.tenant.id, endpoint.id)
    assert webhooks.record(second.id, 200) is None and not WebhookDelivery.objects.exists()


def test_rotation_keeps_the_old_secret_for_a_day_only_when_asked(acme):
    endpoint = _endpoint(acme.tenant, "batch.failed")
    [old] = webhooks.signing_secrets(endpoint)
    kept, new = webhooks.rotate(acme.tenant.id, endpoint.id, keep_old=True)
    assert webhooks.signing_secrets(kept) == [new, old] and new.startswith("whsec_") and new != old
    assert webhooks.signing_secrets(kept, timezone.now() + timedelta(hours=24, seconds=1)) == [new]
    dropped, newer = webhooks.rotate(acme.tenant.id, endpoint.id, keep_old=False)
    assert webhooks.signing_secrets(dropped) == [newer]
    assert webhooks.rotate(acme.tenant.id + 1000, endpoint.id, keep_old=True) is None


def test_an_update_moves_updated_at_only_when_something_changed_and_another_tenant_cannot(acme, globex):
    endpoint = _endpoint(acme.tenant, "batch.failed")
    same = webhooks.update(acme.tenant.id, endpoint.id, {"name": "e", "event_types": ["batch.failed"]})
    assert same.updated_at == endpoint.updated_at
    changed = webhooks.update(acme.tenant.id, endpoint.id, {"url": "https://y.example.com/"})
    assert changed.updated_at > endpoint.updated_at and changed.url == "https://y.example.com/"
    assert webhooks.update(globex.tenant.id, endpoint.id, {"name": "mine"}) is None
    assert webhooks.find(globex.tenant.id, endpoint.id) is None and webhooks.find(acme.tenant.id, "a\x00") is None
    assert not webhooks.delete(globex.tenant.id, endpoint.id)


def test_ended_deliveries_expire_and_pending_ones_stay(acme):
    _endpoint(acme.tenant, "batch.failed")
    for n in range(3):
        webhooks.emit(acme.tenant.id, "batch.failed", f"batch_{n}")
    delivered, failed, _ = webhooks.claim(3, LEASE)
    webhooks.record(delivered.id, 200)
    WebhookDelivery.objects.filter(pk=failed.id).update(state=DeliveryState.FAILED)
    WebhookDelivery.objects.update(created_at=timezone.now() - timedelta(days=8))
    assert webhooks.expire(7) == 2
    assert list(WebhookDelivery.objects.values_list("state", flat=True)) == ["pending"]


def test_a_tenant_has_at_most_max_endpoints(acme, globex, monkeypatch):
    monkeypatch.setattr(webhooks, "MAX_ENDPOINTS", 2)
    _endpoint(acme.tenant, "batch.failed", name="one")
    _endpoint(acme.tenant, "batch.failed", name="two")
    with pytest.raises(webhooks.TooManyEndpoints):
        _endpoint(acme.tenant, "batch.failed", name="three")
    _endpoint(globex.tenant, "batch.failed", name="another tenant's own")
    assert WebhookEndpoint.objects.filter(tenant=acme.tenant).count() == 2
