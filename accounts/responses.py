"""Stored Responses API answers, per tenant (``StoredResponse``): saved when a response ends, read back for
``previous_response_id``, the retrieve / input-items routes and an ``item_reference`` to one of their items (by
the items' ids, ``StoredResponseItem``), deleted on request or when the retention period
(``HUB_RESPONSES_RETENTION_DAYS``; 0 keeps them) is over. Every read names the tenant: another tenant's id is
not found, exactly like an id that never existed."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts import stored
from accounts.models import StoredResponse, StoredResponseItem


def find(tenant_id: int, response_id: str) -> StoredResponse | None:
    return stored.find(StoredResponse, tenant_id, response_id)


def save(
    *, tenant_id: int, api_key_id: int | None, history: list[dict], input_items: list[dict], response: dict,
    search_results: dict[str, list] | None = None,
) -> StoredResponse:  # fmt: skip
    """``search_results``: the results of its searches the client was not shown, by item id (kept for its context)."""
    created = datetime.fromtimestamp(response["created_at"], tz=timezone.get_current_timezone())
    with transaction.atomic():
        row = StoredResponse.objects.create(
            id=response["id"], tenant_id=tenant_id, api_key_id=api_key_id, model=response["model"],
            created_at=created, history=history, input_items=input_items, response=response,
            search_results=search_results or {},
        )  # fmt: skip
        StoredResponseItem.objects.bulk_create(
            StoredResponseItem(tenant_id=tenant_id, item_id=item_id, response=row) for item_id in _item_ids(row)
        )
        return row


def _item_ids(row: StoredResponse) -> set[str]:
    return {item["id"] for item in [*row.input_items, *row.response.get("output", [])]
            if isinstance(item.get("id"), str) and item["id"]}  # fmt: skip


def items_by_id(tenant_id: int, ids: set[str]) -> dict[str, dict]:
    """The items of the tenant's stored responses with these ids, as a response continuing theirs would read them
    (a search with its results); of an item in several responses (sent again by its id), the latest one's."""
    ids = {i for i in ids if stored.valid_id(i)}
    if not ids:
        return {}
    rows = (
        StoredResponseItem.objects.filter(tenant_id=tenant_id, item_id__in=ids)
        .select_related("response")
        .order_by("response__created_at", "response_id")
    )
    found: dict[str, dict] = {}
    for row in rows:
        answer = row.response
        for item in [*answer.input_items, *answer.output_with_results()]:
            if item.get("id") == row.item_id:
                found[row.item_id] = item
    return found


def delete(tenant_id: int, response_id: str) -> bool:
    return stored.delete(StoredResponse, tenant_id, response_id)


def expire(now: datetime | None = None) -> int:
    """Delete the responses older than the retention period; returns how many."""
    return stored.expire(StoredResponse, settings.HUB_RESPONSES_RETENTION_DAYS, now)
