"""OpenAI's Uploads API, per tenant: a file sent in parts of up to ``HUB_MAX_UPLOAD_PART_BYTES`` (``Upload``,
``UploadPart``), completed into a ``StoredFile`` (``accounts.files``) with the parts in the order the client names
them. As OpenAI's: parts may be added for an hour after the upload is created; completing checks that the parts add
up to the ``bytes`` announced (and the ``md5`` when given); a cancelled, completed or expired upload takes no more
parts. The parts are deleted once the upload is completed, cancelled or expired (``accounts.expire_files``).
Every read names the tenant: another tenant's upload is not found, exactly like one that never existed."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from accounts import files, stored
from accounts.models import Upload, UploadPart, UploadStatus

UPLOAD_HOURS = 1  # OpenAI: "an Upload can accept at most 8 GB in total and expires after an hour after you create it"


class UploadError(Exception):
    """A request the upload's state or content refuses; ``param`` and ``code`` as OpenAI names them."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.param, self.code = param, code


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def create(
    *, tenant_id: int, api_key_id: int | None, filename: str, purpose: str, mime_type: str, size: int,
    expires_seconds: int | None = None,
) -> Upload:  # fmt: skip
    now = timezone.now()
    with transaction.atomic():
        return Upload.objects.create(
            id=_new_id("upload"), tenant_id=tenant_id, api_key_id=api_key_id, filename=filename, purpose=purpose,
            mime_type=mime_type, bytes=size, created_at=now, expires_at=now + timedelta(hours=UPLOAD_HOURS),
            file_expires_seconds=expires_seconds,
        )  # fmt: skip


def _status(upload: Upload, now: datetime) -> str:
    if upload.status == UploadStatus.PENDING and upload.expires_at <= now:
        return UploadStatus.EXPIRED
    return upload.status


def find(tenant_id: int, upload_id: object) -> Upload | None:
    if not stored.valid_id(upload_id):
        return None
    found = Upload.objects.filter(tenant_id=tenant_id, pk=upload_id).select_related("file").first()
    if found is not None:
        found.status = _status(found, timezone.now())
    return found


def _pending(tenant_id: int, upload_id: object, doing: str) -> Upload | None:
    """The upload, locked, if it still takes parts; None if the tenant has none such; UploadError otherwise."""
    if not stored.valid_id(upload_id):
        return None
    upload = Upload.objects.select_for_update().filter(tenant_id=tenant_id, pk=upload_id).first()
    if upload is None:
        return None
    status = _status(upload, timezone.now())
    if status != UploadStatus.PENDING:
        raise UploadError(f"Cannot {doing} an Upload with status {status}.", param="upload_id", code="invalid_state")
    return upload


def add_part(tenant_id: int, upload_id: object, data: bytes) -> UploadPart | None:
    with transaction.atomic():
        upload = _pending(tenant_id, upload_id, "add a Part to")
        if upload is None:
            return None
        sent = sum(upload.parts.values_list("bytes", flat=True))
        if sent + len(data) > upload.bytes:
            raise UploadError(
                f"The Parts would hold {sent + len(data):,} bytes, more than the Upload's {upload.bytes:,}.",
                param="data", code="upload_too_large",
            )  # fmt: skip
        return UploadPart.objects.create(id=_new_id("part"), upload=upload, created_at=timezone.now(),
                                         bytes=len(data), content=data)  # fmt: skip


def complete(tenant_id: int, upload_id: object, part_ids: list[str], md5: str | None) -> Upload | None:
    """The upload completed into a file: its parts in ``part_ids``' order (each once, all of them this upload's)."""
    with transaction.atomic():
        upload = _pending(tenant_id, upload_id, "complete")
        if upload is None:
            return None
        if len(set(part_ids)) != len(part_ids):
            raise UploadError("'part_ids' names a Part twice.", param="part_ids")
        # an id that could be none (a NUL, too long) is not looked up: PostgreSQL refuses a NUL in a text value
        known = [p for p in part_ids if stored.valid_id(p)]
        parts = {p.pk: p for p in UploadPart.objects.filter(upload=upload, pk__in=known)}
        unknown = [p for p in part_ids if p not in parts]
        if unknown:
            raise UploadError(f"No Part '{unknown[0]}' in this Upload.", param="part_ids")
        size = sum(parts[p].bytes for p in part_ids)
        if size != upload.bytes:
            raise UploadError(f"The Parts hold {size:,} bytes; the Upload was created for {upload.bytes:,}.",
                              param="part_ids", code="upload_size_mismatch")  # fmt: skip
        content = b"".join(bytes(parts[p].content) for p in part_ids)
        if md5 is not None and hashlib.md5(content).hexdigest() != md5.lower():  # noqa: S324 - OpenAI's checksum
            raise UploadError("The md5 checksum does not match the Parts' content.", param="md5",
                              code="md5_mismatch")  # fmt: skip
        upload.file = files.create(tenant_id=tenant_id, api_key_id=upload.api_key_id, purpose=upload.purpose,
                                   filename=upload.filename, content=content,
                                   expires_seconds=upload.file_expires_seconds)  # fmt: skip
        upload.status = UploadStatus.COMPLETED
        upload.save(update_fields=["file", "status"])
        upload.parts.all().delete()
    return upload


def cancel(tenant_id: int, upload_id: object) -> Upload | None:
    with transaction.atomic():
        upload = _pending(tenant_id, upload_id, "cancel")
        if upload is None:
            return None
        upload.status = UploadStatus.CANCELLED
        upload.save(update_fields=["status"])
        upload.parts.all().delete()
    return upload


def expire(now: datetime | None = None) -> int:
    """Mark the pending uploads past their hour expired and delete their parts; returns how many."""
    with transaction.atomic():
        stale = Upload.objects.filter(status=UploadStatus.PENDING, expires_at__lte=now or timezone.now())
        UploadPart.objects.filter(upload__in=stale).delete()
        return stale.update(status=UploadStatus.EXPIRED)


def resource(upload: Upload) -> dict:
    """OpenAI's Upload object (its ``file`` once completed)."""
    return {
        "id": upload.pk, "object": "upload", "bytes": upload.bytes, "created_at": int(upload.created_at.timestamp()),
        "filename": upload.filename, "purpose": upload.purpose, "status": upload.status,
        "expires_at": int(upload.expires_at.timestamp()),
        "file": upload.file.resource() if upload.file is not None else None,
    }  # fmt: skip


def part_resource(part: UploadPart) -> dict:
    return {"id": part.pk, "object": "upload.part", "created_at": int(part.created_at.timestamp()),
            "upload_id": part.upload_id}  # fmt: skip
