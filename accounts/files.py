"""OpenAI's Files API, per tenant (``StoredFile``): uploaded (``purpose`` ``batch`` for the Batch API, or any of
OpenAI's other purposes, kept as given), written by a finished batch (``batch_output``), listed in pages, read back,
deleted on request or when ``expires_at`` has passed (``accounts.expire_files``; an expired file is not found from
then on, even before the task removes it), and with it its place in the tenant's vector stores. Every read names the
tenant: another tenant's id is not found, exactly like an id that never existed."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from accounts import stored
from accounts.models import StoredFile, VectorStoreFile

# What a client may upload (OpenAI's CreateFileRequest); ``batch_output`` is the hub's own.
UPLOAD_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
BATCH_OUTPUT = "batch_output"
# OpenAI: "files with purpose=batch expire after 30 days and all other files are persisted until deleted"
BATCH_INPUT_DAYS = 30
MIN_EXPIRY_SECONDS, MAX_EXPIRY_SECONDS = 3600, 30 * 24 * 3600


def new_id() -> str:
    return "file-" + secrets.token_hex(12)


def _live(tenant_id: int) -> QuerySet[StoredFile]:
    now = timezone.now()
    return StoredFile.objects.filter(tenant_id=tenant_id).filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))


def create(
    *, tenant_id: int, api_key_id: int | None, purpose: str, filename: str, content: bytes,
    expires_seconds: int | None = None,
) -> StoredFile:  # fmt: skip
    """Store ``content``; it expires ``expires_seconds`` after now (None: a batch input's 30 days, else never)."""
    now = timezone.now()
    if expires_seconds is None and purpose == "batch":
        expires_seconds = BATCH_INPUT_DAYS * 24 * 3600
    expires_at = now + timedelta(seconds=expires_seconds) if expires_seconds is not None else None
    with transaction.atomic():
        return StoredFile.objects.create(
            id=new_id(), tenant_id=tenant_id, api_key_id=api_key_id, purpose=purpose, filename=filename,
            bytes=len(content), created_at=now, expires_at=expires_at, content=content,
        )  # fmt: skip


def find(tenant_id: int, file_id: object) -> StoredFile | None:
    """The file's row without its content (``content`` loads it)."""
    if not stored.valid_id(file_id):
        return None
    return _live(tenant_id).defer("content").filter(pk=file_id).first()


def content(tenant_id: int, file_id: object) -> bytes | None:
    if not stored.valid_id(file_id):
        return None
    found = _live(tenant_id).filter(pk=file_id).values_list("content", flat=True).first()
    return bytes(found) if found is not None else None


def page(
    tenant_id: int, *, purpose: str | None, after: StoredFile | None, limit: int, descending: bool
) -> stored.Page:  # fmt: skip
    """One page of the tenant's files, newest first (or oldest), after ``after`` in that order."""
    rows = _live(tenant_id).defer("content")
    if purpose is not None:
        rows = rows.filter(purpose=purpose)
    return stored.page(rows, after, limit, descending)


def delete(tenant_id: int, file_id: object) -> bool:
    """False for a file the tenant does not have, an expired one included. As OpenAI's, the file leaves every
    vector store of the tenant's with it (its chunks too: no search finds it any more; an indexer at work on it
    drops its work)."""
    if not stored.valid_id(file_id):
        return False
    with transaction.atomic():
        deleted, _ = _live(tenant_id).filter(pk=file_id).delete()
        if deleted:
            VectorStoreFile.objects.filter(vector_store__tenant_id=tenant_id, file_id=file_id).delete()
    return bool(deleted)


def expire(now: datetime | None = None) -> int:
    """Delete the files whose ``expires_at`` has passed, and their vector stores' copies; returns how many."""
    with transaction.atomic():
        gone = list(StoredFile.objects.filter(expires_at__lte=now or timezone.now()).values_list("pk", "tenant_id"))
        for start in range(0, len(gone), 1000):
            chunk = gone[start : start + 1000]
            StoredFile.objects.filter(pk__in=[pk for pk, _ in chunk]).delete()
            for tenant_id in {tenant for _, tenant in chunk}:
                ids = [pk for pk, tenant in chunk if tenant == tenant_id]
                VectorStoreFile.objects.filter(vector_store__tenant_id=tenant_id, file_id__in=ids).delete()
    return len(gone)
