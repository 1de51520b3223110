"""OpenAI's vector stores, per tenant: the stores, their files (each a file of the Files API, indexed in the
background by ``hub/vector_stores/``), file batches, and the objects OpenAI's API shows of them. Writes in
transactions; every read names the tenant, so another tenant's id is not found, exactly like one that never existed.

A file's indexing is claimed (``claim``: ``claimed_at``, renewed while it runs) so that one indexer works on it at a
time; a file left ``in_progress`` by an indexer that went quiet (a killed worker) is handed out again (``stale``)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Count, Min, Q, QuerySet, Sum
from django.utils import timezone

from accounts import stored
from accounts.models import (
    VectorStore,
    VectorStoreChunk,
    VectorStoreFile,
    VectorStoreFileBatch,
)
from accounts.models import VectorStoreFileStatus as Status

# OpenAI's: a static strategy's bounds, and what "auto" means
MIN_CHUNK_TOKENS, MAX_CHUNK_TOKENS = 100, 4096
AUTO_CHUNK_TOKENS, AUTO_OVERLAP_TOKENS = 800, 400


@dataclass(frozen=True)
class Chunking:
    max_chunk_size_tokens: int = AUTO_CHUNK_TOKENS
    chunk_overlap_tokens: int = AUTO_OVERLAP_TOKENS


def new_id(prefix: str) -> str:
    return f"{prefix}_" + secrets.token_hex(12)


def _live(tenant_id: int) -> QuerySet[VectorStore]:
    return VectorStore.objects.filter(tenant_id=tenant_id)


def _expiry(days: int | None, now: datetime) -> datetime | None:
    return now + timedelta(days=days) if days is not None else None


# --- stores ----------------------------------------------------------------------------------------


def create_store(*, tenant_id: int, name: str, embedding_model: str, expires_after_days: int | None,
                 metadata: dict) -> VectorStore:  # fmt: skip
    now = timezone.now()
    with transaction.atomic():
        return VectorStore.objects.create(
            id=new_id("vs"), tenant_id=tenant_id, name=name, embedding_model=embedding_model, created_at=now,
            last_active_at=now, expires_after_days=expires_after_days, expires_at=_expiry(expires_after_days, now),
            metadata=metadata,
        )  # fmt: skip


def find_store(tenant_id: int, store_id: object) -> VectorStore | None:
    return stored.find(VectorStore, tenant_id, store_id)


def update_store(store: VectorStore, fields: dict) -> VectorStore:
    """``fields``: name, metadata, expires_after_days (None: never), each only when given."""
    with transaction.atomic():
        for name, value in fields.items():
            setattr(store, name, value)
        if "expires_after_days" in fields:
            store.expires_at = _expiry(store.expires_after_days, store.last_active_at)
        store.save()
    return store


def touch(store: VectorStore) -> None:
    """The store was used (searched): its expiry counts from now."""
    now = timezone.now()
    with transaction.atomic():
        VectorStore.objects.filter(pk=store.pk).update(last_active_at=now,
                                                       expires_at=_expiry(store.expires_after_days, now))  # fmt: skip


def delete_store(tenant_id: int, store_id: object) -> bool:
    return stored.delete(VectorStore, tenant_id, store_id)


def store_page(tenant_id: int, *, after: VectorStore | None, limit: int, descending: bool,
               before: VectorStore | None = None) -> stored.Page:  # fmt: skip
    return stored.page(_live(tenant_id), after, limit, descending, before)


def _counts(files: QuerySet[VectorStoreFile]) -> dict:
    by_status = dict(files.values_list("status").annotate(n=Count("id")).values_list("status", "n"))
    counts = {s.value: by_status.get(s.value, 0) for s in Status}
    return {**counts, "total": sum(counts.values())}


def expired(store: VectorStore) -> bool:
    return store.expires_at is not None and store.expires_at <= timezone.now()


def store_status(store: VectorStore, counts: dict) -> str:
    if expired(store):
        return "expired"
    return "in_progress" if counts[Status.IN_PROGRESS] else "completed"


def store_resource(store: VectorStore) -> dict:
    """OpenAI's VectorStoreObject."""
    files = store.files.all()
    counts = _counts(files)
    resource = {
        "id": store.pk, "object": "vector_store", "created_at": int(store.created_at.timestamp()),
        "name": store.name, "usage_bytes": files.aggregate(n=Sum("usage_bytes"))["n"] or 0, "file_counts": counts,
        "status": store_status(store, counts), "last_active_at": int(store.last_active_at.timestamp()),
        "expires_at": int(store.expires_at.timestamp()) if store.expires_at else None, "metadata": store.metadata,
    }  # fmt: skip
    if store.expires_after_days is not None:
        resource["expires_after"] = {"anchor": "last_active_at", "days": store.expires_after_days}
    return resource


def expire(now: datetime | None = None) -> int:
    """Delete the stores past their expiry (their files and chunks with them); returns how many."""
    with transaction.atomic():
        deleted, per_model = VectorStore.objects.filter(expires_at__lte=now or timezone.now()).delete()
    return per_model.get(VectorStore._meta.label, 0)


# --- files -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """A file to add, with its chunking and attributes."""

    file_id: str
    chunking: Chunking
    attributes: dict


def add_files(store: VectorStore, entries: list[Entry], *, api_key_id: int | None,
              batch: VectorStoreFileBatch | None = None) -> list[VectorStoreFile]:  # fmt: skip
    """Add the files (or, for one already in the store, start it over with these settings). Returns the rows, in
    ``entries``' order, each ``in_progress`` and without chunks."""
    now = timezone.now()
    rows = []
    with transaction.atomic():
        for entry in entries:
            row, _ = VectorStoreFile.objects.update_or_create(
                vector_store=store, file_id=entry.file_id,
                defaults={"api_key_id": api_key_id, "batch": batch, "created_at": now, "status": Status.IN_PROGRESS,
                          "last_error": None, "usage_bytes": 0, "attributes": entry.attributes,
                          "max_chunk_size_tokens": entry.chunking.max_chunk_size_tokens,
                          "chunk_overlap_tokens": entry.chunking.chunk_overlap_tokens, "claimed_at": None},
            )  # fmt: skip
            VectorStoreChunk.objects.filter(file=row).delete()
            rows.append(row)
    return rows


def find_file(store: VectorStore, file_id: object) -> VectorStoreFile | None:
    if not stored.valid_id(file_id):
        return None
    return store.files.filter(file_id=file_id).first()


def set_attributes(row: VectorStoreFile, attributes: dict) -> VectorStoreFile:
    with transaction.atomic():
        row.attributes = attributes
        row.save(update_fields=["attributes"])
    return row


def remove_file(store: VectorStore, file_id: object) -> bool:
    if not stored.valid_id(file_id):
        return False
    with transaction.atomic():
        deleted, _ = store.files.filter(file_id=file_id).delete()
    return bool(deleted)


def file_page(files: QuerySet[VectorStoreFile], *, status: str | None, after: VectorStoreFile | None, limit: int,
              descending: bool, before: VectorStoreFile | None = None) -> stored.Page:  # fmt: skip
    if status is not None:
        files = files.filter(status=status)
    return stored.page(files, after, limit, descending, before)


def file_resource(row: VectorStoreFile) -> dict:
    """OpenAI's VectorStoreFileObject."""
    return {
        "id": row.file_id, "object": "vector_store.file", "usage_bytes": row.usage_bytes,
        "created_at": int(row.created_at.timestamp()), "vector_store_id": row.vector_store_id, "status": row.status,
        "last_error": row.last_error, "attributes": row.attributes,
        "chunking_strategy": {"type": "static", "static": {"max_chunk_size_tokens": row.max_chunk_size_tokens,
                                                           "chunk_overlap_tokens": row.chunk_overlap_tokens}},
    }  # fmt: skip


# --- file batches ----------------------------------------------------------------------------------


def create_batch(store: VectorStore, entries: list[Entry], *,
                 api_key_id: int | None) -> tuple[VectorStoreFileBatch, list[VectorStoreFile]]:  # fmt: skip
    with transaction.atomic():
        batch = VectorStoreFileBatch.objects.create(id=new_id("vsfb"), vector_store=store, created_at=timezone.now())
        rows = add_files(store, entries, api_key_id=api_key_id, batch=batch)
    return batch, rows


def find_batch(store: VectorStore, batch_id: object) -> VectorStoreFileBatch | None:
    if not stored.valid_id(batch_id):
        return None
    return store.file_batches.filter(pk=batch_id).first()


def cancel_batch(batch: VectorStoreFileBatch) -> VectorStoreFileBatch:
    """Its files not indexed yet are cancelled (an indexer at work on one drops what it made); a batch with none
    left is as it was."""
    with transaction.atomic():
        if batch.files.filter(status=Status.IN_PROGRESS).update(status=Status.CANCELLED):
            batch.cancelled = True
            batch.save(update_fields=["cancelled"])
    return batch


def batch_resource(batch: VectorStoreFileBatch) -> dict:
    """OpenAI's VectorStoreFileBatchObject."""
    counts = _counts(batch.files.all())
    if counts[Status.IN_PROGRESS]:
        status = "in_progress"
    elif batch.cancelled:
        status = "cancelled"
    else:
        status = "failed" if counts["total"] and counts[Status.FAILED] == counts["total"] else "completed"
    return {"id": batch.pk, "object": "vector_store.files_batch", "created_at": int(batch.created_at.timestamp()),
            "vector_store_id": batch.vector_store_id, "status": status, "file_counts": counts}  # fmt: skip


# --- indexing --------------------------------------------------------------------------------------


def claim(row_id: int, stale_seconds: float) -> VectorStoreFile | None:
    """The file to index, now claimed; None if it is no longer in progress or another indexer shows life on it."""
    now = timezone.now()
    quiet = Q(claimed_at__isnull=True) | Q(claimed_at__lt=now - timedelta(seconds=stale_seconds))
    with transaction.atomic():
        claimed = VectorStoreFile.objects.filter(quiet, pk=row_id, status=Status.IN_PROGRESS).update(claimed_at=now)
    if not claimed:
        return None
    return VectorStoreFile.objects.select_related("vector_store").filter(pk=row_id).first()


def renew(row_id: int) -> bool:
    """Show life on a claimed file; False when it was cancelled or removed meanwhile (stop working on it)."""
    with transaction.atomic():
        return bool(VectorStoreFile.objects.filter(pk=row_id, status=Status.IN_PROGRESS)
                    .update(claimed_at=timezone.now()))  # fmt: skip


def finish(row_id: int, chunks: list[tuple[str, bytes]]) -> bool:
    """Store the file's chunks (text, embedding) and complete it, unless it was cancelled or removed meanwhile."""
    with transaction.atomic():
        row = VectorStoreFile.objects.select_for_update().filter(pk=row_id, status=Status.IN_PROGRESS).first()
        if row is None:
            return False
        VectorStoreChunk.objects.filter(file=row).delete()
        VectorStoreChunk.objects.bulk_create(
            VectorStoreChunk(file=row, vector_store_id=row.vector_store_id, position=i, text=text, embedding=vector)
            for i, (text, vector) in enumerate(chunks)
        )  # fmt: skip
        row.status = Status.COMPLETED
        row.usage_bytes = sum(len(text.encode()) + len(vector) for text, vector in chunks)
        row.save(update_fields=["status", "usage_bytes"])
    return True


def fail(row_id: int, code: str, message: str) -> None:
    """OpenAI's last_error codes: server_error, unsupported_file, invalid_file."""
    with transaction.atomic():
        VectorStoreFile.objects.filter(pk=row_id, status=Status.IN_PROGRESS).update(
            status=Status.FAILED, last_error={"code": code, "message": message[:1000]}
        )


def stale(stale_seconds: float) -> list[int]:
    """Files in progress that no indexer shows life on (never claimed, or its indexer went quiet)."""
    cutoff = timezone.now() - timedelta(seconds=stale_seconds)
    quiet = Q(claimed_at__lt=cutoff) | Q(claimed_at__isnull=True, created_at__lt=cutoff)
    return list(VectorStoreFile.objects.filter(quiet, status=Status.IN_PROGRESS).values_list("pk", flat=True))


def completed_files(store_ids: list[str]) -> QuerySet:
    """(row id, Files API id, attributes) of the stores' completed files, for a search."""
    return VectorStoreFile.objects.filter(vector_store_id__in=store_ids, status=Status.COMPLETED).values_list(
        "pk", "file_id", "attributes"
    )


def chunk_summary(file_rows: list[int]) -> dict[int, tuple[int, int]]:
    """Each file's (first chunk id, number of chunks): what tells a cached copy of its vectors still current (a file
    indexed again gets new chunks, with new ids)."""
    found = (VectorStoreChunk.objects.filter(file_id__in=file_rows).values("file_id")
             .annotate(first=Min("id"), n=Count("id")).values_list("file_id", "first", "n"))  # fmt: skip
    return {row: (first, n) for row, first, n in found}


def chunk_texts(file_rows: list[int]) -> list[tuple[int, int, str]]:
    """(chunk id, file row id, text) of those files' chunks, in chunk id order, for a keyword search."""
    return list(VectorStoreChunk.objects.filter(file_id__in=file_rows).order_by("pk")
                .values_list("pk", "file_id", "text"))  # fmt: skip


def chunk_vectors(file_rows: list[int]) -> list[tuple[int, int, bytes]]:
    """(chunk id, file row id, vector bytes) of those files' chunks, in chunk id order, for a search."""
    return list(VectorStoreChunk.objects.filter(file_id__in=file_rows).order_by("pk")
                .values_list("pk", "file_id", "embedding"))  # fmt: skip
