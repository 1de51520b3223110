"""Stored Responses API answers, per tenant (``StoredResponse``): saved when a response ends, read back for
``previous_response_id`` and the retrieve / input-items routes, deleted on request or when the retention period
(``HUB_RESPONSES_RETENTION_DAYS``; 0 keeps them) is over. Every read names the tenant: another tenant's id is
not found, exactly like an id that never existed."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts import stored
from accounts.models import StoredResponse


def find(tenant_id: int, response_id: str) -> StoredResponse | None:
    return stored.find(StoredResponse, tenant_id, response_id)


def save(
    *, tenant_id: int, api_key_id: int | None, history: list[dict], input_items: list[dict], response: dict,
    search_results: dict[str, list] | None = None,
) -> StoredResponse:  # fmt: skip
    """``search_results``: the results of its searches the client was not shown, by item id (kept for its context)."""
    created = datetime.fromtimestamp(response["created_at"], tz=timezone.get_current_timezone())
    with transaction.atomic():
        return StoredResponse.objects.create(
            id=response["id"], tenant_id=tenant_id, api_key_id=api_key_id, model=response["model"],
            created_at=created, history=history, input_items=input_items, response=response,
            search_results=search_results or {},
        )  # fmt: skip


def delete(tenant_id: int, response_id: str) -> bool:
    return stored.delete(StoredResponse, tenant_id, response_id)


def expire(now: datetime | None = None) -> int:
    """Delete the responses older than the retention period; returns how many."""
    return stored.expire(StoredResponse, settings.HUB_RESPONSES_RETENTION_DAYS, now)
