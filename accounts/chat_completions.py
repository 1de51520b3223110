"""Stored chat completions, per tenant (``StoredChatCompletion``): saved when a ``store: true`` chat completion
ends, listed (by model and metadata, in pages), read back, given new metadata, deleted on request or when the
retention period (``HUB_CHAT_COMPLETIONS_RETENTION_DAYS``; 0 keeps them) is over. Every read names the tenant:
another tenant's id is not found, exactly like an id that never existed."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.db.models.fields.json import KeyTransform
from django.utils import timezone

from accounts import stored
from accounts.models import StoredChatCompletion


def find(tenant_id: int, completion_id: str) -> StoredChatCompletion | None:
    return stored.find(StoredChatCompletion, tenant_id, completion_id)


def save(
    *, tenant_id: int, api_key_id: int | None, messages: list, metadata: dict, completion: dict
) -> StoredChatCompletion:
    with transaction.atomic():
        return StoredChatCompletion.objects.create(
            id=completion["id"], tenant_id=tenant_id, api_key_id=api_key_id, model=completion["model"],
            created_at=timezone.now(), metadata=metadata, messages=messages, completion=completion,
        )  # fmt: skip


def page(
    tenant_id: int, *, model: str | None, metadata: dict[str, str], after: StoredChatCompletion | None,
    limit: int, descending: bool,
) -> stored.Page:  # fmt: skip
    """One page of the tenant's stored completions, oldest first (or newest), after ``after`` in that order."""
    rows = StoredChatCompletion.objects.filter(tenant_id=tenant_id)
    if model is not None:
        rows = rows.filter(model=model)
    for i, (key, value) in enumerate(metadata.items()):
        # KeyTransform takes the key whole ("a__b" is one key, not a path), and its exact lookup compares JSON with
        # JSON on every backend. KeyTextTransform's compared the text with the value read as JSON on SQLite, which
        # failed with "malformed JSON" for any string (a 503 under make run).
        rows = rows.alias(**{f"meta_{i}": KeyTransform(key, "metadata")}).filter(**{f"meta_{i}": value})
    return stored.page(rows, after, limit, descending)


def set_metadata(tenant_id: int, completion_id: str, metadata: dict) -> StoredChatCompletion | None:
    return stored.set_metadata(StoredChatCompletion, tenant_id, completion_id, metadata)


def delete(tenant_id: int, completion_id: str) -> bool:
    return stored.delete(StoredChatCompletion, tenant_id, completion_id)


def expire(now: datetime | None = None) -> int:
    """Delete the completions older than the retention period; returns how many."""
    return stored.expire(StoredChatCompletion, settings.HUB_CHAT_COMPLETIONS_RETENTION_DAYS, now)
