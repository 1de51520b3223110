"""Webhooks, as OpenAI's: a tenant's endpoints (``/v1/webhook_endpoints``) and the events sent to them
(``WebhookDelivery``). An event is written by ``emit`` in the transaction of the change it tells (a batch or a
background response that ended), one delivery per endpoint that asked for its type, so that none is lost and none
is told of a change that was rolled back; ``hub/webhooks/`` sends it once the transaction commits (``events_added``)
and again, with growing waits, until the endpoint answers 2xx or ``HUB_WEBHOOK_RETRY_HOURS`` have passed.

A sender claims due deliveries (``claim``: locked rows skipped, so that several senders never send one twice at
once) under a lease: a sender that dies mid-attempt leaves its deliveries due again when the lease ends. Signing
secrets are kept sealed (``sealed.py``)."""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.dispatch import Signal
from django.utils import timezone

from accounts import sealed, stored
from accounts.models import DeliveryState, Tenant, WebhookDelivery, WebhookEndpoint

# the events this hub sends (OpenAI's of its Batch API and background responses); OpenAI's others (evals, fine-tuning,
# realtime calls, videos, agents) tell of things the hub does not do
EVENT_TYPES = (
    "batch.completed", "batch.failed", "batch.expired", "batch.cancelled",
    "response.completed", "response.failed", "response.cancelled", "response.incomplete",
)  # fmt: skip
SECRET_PREFIX = "whsec_"
KEEP_OLD_SECRET = timedelta(hours=24)  # rotate_secret's keep_old_secret_active_for_24_hours
MAX_NAME, MAX_URL = 200, 2048  # the model's fields
MAX_ENDPOINTS = 50  # per tenant: every event is written once per endpoint that asked for it
MAX_WAIT_SECONDS = 3600.0  # retries at most an hour apart

# sent (on commit) when deliveries were written: hub/webhooks/dispatch.py sends them
events_added = Signal()


def new_secret() -> str:
    """A signing secret as OpenAI's: ``whsec_`` and the base64 of 32 random bytes (the bytes are the HMAC key)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def hint(secret: str) -> str:
    return f"{SECRET_PREFIX}...{secret[-4:]}"


def secret_hint(endpoint: WebhookEndpoint) -> str:
    """The endpoint's secret as lists show it: its prefix and last four characters."""
    return hint(sealed.unseal(endpoint.secret))


def resource(endpoint: WebhookEndpoint, secret: str | None = None) -> dict:
    """OpenAI's ``WebhookEndpoint`` (``WebhookEndpointWithSecret`` with ``secret``: at creation and rotation only)."""
    shown = {
        "id": endpoint.id, "object": "webhook_endpoint", "name": endpoint.name, "url": endpoint.url,
        "event_types": list(endpoint.event_types), "created_at": int(endpoint.created_at.timestamp()),
        "updated_at": int(endpoint.updated_at.timestamp()), "signing_secret_hint": secret_hint(endpoint),
    }  # fmt: skip
    return shown if secret is None else {**shown, "signing_secret": secret}


class TooManyEndpoints(Exception):
    """The tenant has ``MAX_ENDPOINTS`` already."""


def create(tenant_id: int, *, name: str, url: str, event_types: list[str]) -> tuple[WebhookEndpoint, str]:
    """A new endpoint and its signing secret (shown once); TooManyEndpoints past ``MAX_ENDPOINTS``."""
    secret, now = new_secret(), timezone.now()
    with transaction.atomic():
        Tenant.objects.select_for_update().filter(pk=tenant_id).first()  # one creation at a time per tenant
        if WebhookEndpoint.objects.filter(tenant_id=tenant_id).count() >= MAX_ENDPOINTS:
            raise TooManyEndpoints(MAX_ENDPOINTS)
        endpoint = WebhookEndpoint.objects.create(id="wh_" + secrets.token_hex(12), tenant_id=tenant_id, name=name,
                                                  url=url, event_types=list(event_types), secret=sealed.seal(secret),
                                                  created_at=now, updated_at=now)  # fmt: skip
    return endpoint, secret


def find(tenant_id: int, endpoint_id: object) -> WebhookEndpoint | None:
    return stored.find(WebhookEndpoint, tenant_id, endpoint_id)


def page(tenant_id: int, *, after: WebhookEndpoint | None, limit: int) -> stored.Page[WebhookEndpoint]:
    """One page of the tenant's endpoints, newest first, after ``after``."""
    return stored.page(WebhookEndpoint.objects.filter(tenant_id=tenant_id), after, limit, descending=True)


def _locked(tenant_id: int, endpoint_id: object) -> WebhookEndpoint | None:
    """The tenant's endpoint, locked in the caller's transaction; None if it has no such endpoint."""
    if not stored.valid_id(endpoint_id):
        return None
    return WebhookEndpoint.objects.select_for_update().filter(tenant_id=tenant_id, pk=endpoint_id).first()


def update(tenant_id: int, endpoint_id: str, changes: dict) -> WebhookEndpoint | None:
    """Set any of ``name``, ``url``, ``event_types``; ``updated_at`` moves only when one of them changed."""
    with transaction.atomic():
        endpoint = _locked(tenant_id, endpoint_id)
        if endpoint is None:
            return None
        changed = [field for field, value in changes.items() if getattr(endpoint, field) != value]
        if changed:
            for field in changed:
                setattr(endpoint, field, changes[field])
            endpoint.updated_at = timezone.now()
            endpoint.save(update_fields=[*changed, "updated_at"])
    return endpoint


def delete(tenant_id: int, endpoint_id: object) -> bool:
    """The endpoint and its deliveries (those still due are not sent)."""
    return stored.delete(WebhookEndpoint, tenant_id, endpoint_id)


def rotate(tenant_id: int, endpoint_id: str, *, keep_old: bool) -> tuple[WebhookEndpoint, str] | None:
    """A new signing secret (shown once); with ``keep_old`` the one it replaces signs too for 24 hours (each
    delivery carries both signatures), else it stops at once."""
    with transaction.atomic():
        endpoint = _locked(tenant_id, endpoint_id)
        if endpoint is None:
            return None
        now, secret = timezone.now(), new_secret()
        endpoint.previous_secret = endpoint.secret if keep_old else ""
        endpoint.previous_secret_until = now + KEEP_OLD_SECRET if keep_old else None
        endpoint.secret, endpoint.updated_at = sealed.seal(secret), now
        endpoint.save(update_fields=["secret", "previous_secret", "previous_secret_until", "updated_at"])
    return endpoint, secret


def signing_secrets(endpoint: WebhookEndpoint, now: datetime | None = None) -> list[str]:
    """The secrets a delivery is signed with now: the current one, and the one it replaced while it is kept."""
    until = endpoint.previous_secret_until
    keep = endpoint.previous_secret and until is not None and until > (now or timezone.now())
    kept = [endpoint.secret, endpoint.previous_secret] if keep else [endpoint.secret]
    return [sealed.unseal(secret) for secret in kept]


def event(event_type: str, object_id: str, at: datetime | None = None) -> dict:
    """OpenAI's webhook event object: the body of every delivery of it."""
    moment = int((at or timezone.now()).timestamp())
    return {"id": "evt_" + secrets.token_hex(12), "object": "event", "type": event_type, "created_at": moment,
            "data": {"id": object_id}}  # fmt: skip


def emit(tenant_id: int, event_type: str, object_id: str, at: datetime | None = None) -> int:
    """The event, to each of the tenant's endpoints that asked for its type, in the caller's transaction; sent once
    it commits. Returns how many deliveries were written."""
    # a tenant has a few endpoints: their types are read here rather than with a JSON lookup SQLite lacks
    endpoints = [e.pk for e in WebhookEndpoint.objects.filter(tenant_id=tenant_id).only("id", "event_types")
                 if event_type in e.event_types]  # fmt: skip
    if not endpoints:
        return 0
    body = event(event_type, object_id, at)
    WebhookDelivery.objects.bulk_create(
        [WebhookDelivery(id="msg_" + secrets.token_hex(12), endpoint_id=pk, event_type=event_type, payload=body)
         for pk in endpoints]
    )  # fmt: skip
    transaction.on_commit(lambda: events_added.send(sender=WebhookDelivery), robust=True)
    return len(endpoints)


@dataclass(frozen=True)
class Due:
    """A delivery claimed for one attempt: what the sender needs, read in the claim."""

    id: str
    endpoint_id: str
    url: str
    payload: dict
    secrets: list[str]
    attempt: int


def claim(limit: int, lease_seconds: float) -> list[Due]:
    """Up to ``limit`` due deliveries, oldest due first, each leased to the caller for ``lease_seconds`` (its attempt
    counted): another sender skips them until then."""
    now = timezone.now()
    with transaction.atomic():
        rows = list(
            WebhookDelivery.objects.select_for_update(skip_locked=True, of=("self",)).select_related("endpoint")
            .filter(state=DeliveryState.PENDING, next_attempt_at__lte=now).order_by("next_attempt_at")[:limit]
        )  # fmt: skip
        # each taken only while still due: SQLite does not lock what was read (PostgreSQL's lock makes this moot)
        rows = [r for r in rows if WebhookDelivery.objects.filter(
            pk=r.pk, state=DeliveryState.PENDING, next_attempt_at__lte=now
        ).update(next_attempt_at=now + timedelta(seconds=lease_seconds), attempts=F("attempts") + 1)]  # fmt: skip
    return [Due(r.id, r.endpoint_id, r.endpoint.url, r.payload, signing_secrets(r.endpoint, now), r.attempts + 1)
            for r in rows]  # fmt: skip


def wait_after(attempts: int) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones: the first wait, doubling, at most an hour."""
    return min(settings.HUB_WEBHOOK_RETRY_SECONDS * 2 ** max(0, attempts - 1), MAX_WAIT_SECONDS)


def record(delivery_id: str, status: int | None, error: str = "") -> str | None:
    """An attempt's outcome: ``status`` the endpoint's HTTP status (None: no answer, ``error`` says why). A 2xx
    delivers it; otherwise it is due again after ``wait_after`` unless ``HUB_WEBHOOK_RETRY_HOURS`` have passed since
    the event (then it failed). Returns its state, None when it is gone (its endpoint deleted)."""
    now = timezone.now()
    with transaction.atomic():
        row = WebhookDelivery.objects.select_for_update().filter(pk=delivery_id).first()
        if row is None or row.state != DeliveryState.PENDING:
            return None if row is None else row.state
        row.last_status, row.last_error = status, error[:500]
        if status is not None and 200 <= status < 300:
            row.state, row.delivered_at = DeliveryState.DELIVERED, now
        elif now - row.created_at >= timedelta(hours=settings.HUB_WEBHOOK_RETRY_HOURS):
            row.state = DeliveryState.FAILED
        else:
            row.next_attempt_at = now + timedelta(seconds=wait_after(row.attempts))
        row.save(update_fields=["last_status", "last_error", "state", "delivered_at", "next_attempt_at"])
    return row.state


def recent(endpoint_ids: list[str], per_endpoint: int = 10) -> dict[str, list[WebhookDelivery]]:
    """The last deliveries of each endpoint, newest first (for the console)."""
    found: dict[str, list[WebhookDelivery]] = {pk: [] for pk in endpoint_ids}
    for pk in endpoint_ids:
        found[pk] = list(WebhookDelivery.objects.filter(endpoint_id=pk).order_by("-created_at")[:per_endpoint])
    return found


def expire(days: int | None = None) -> int:
    """Delete the deliveries that ended (delivered or failed) more than ``days`` ago; returns how many."""
    cutoff = timezone.now() - timedelta(days=days if days is not None else settings.HUB_WEBHOOK_DELIVERIES_DAYS)
    with transaction.atomic():
        deleted, _ = WebhookDelivery.objects.filter(created_at__lt=cutoff).exclude(state=DeliveryState.PENDING).delete()
    return deleted


def reseal() -> int:
    """Every endpoint's secrets sealed with the current ``HUB_SECRET_KEY`` (after a rotation); how many endpoints."""
    with transaction.atomic():
        endpoints = list(WebhookEndpoint.objects.select_for_update())
        for endpoint in endpoints:
            endpoint.secret, endpoint.previous_secret = (
                sealed.reseal(endpoint.secret),
                sealed.reseal(endpoint.previous_secret),
            )
        WebhookEndpoint.objects.bulk_update(endpoints, ["secret", "previous_secret"])
    return len(endpoints)
