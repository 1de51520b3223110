"""OpenAI's Batch API, per tenant (``Batch``, ``BatchResult``): created from a ``batch`` file, listed, read back,
cancelled; and the writes of the runner that works it (``hub/batches/``): claiming it, showing life, recording each
answered line, and finishing it into output and error files. Every read names the tenant: another tenant's id is not
found, exactly like an id that never existed."""

from __future__ import annotations

import json
import secrets
from datetime import timedelta

from django.db import transaction
from django.db.models import Count, Q, QuerySet, Sum
from django.utils import timezone

from accounts import files, stored, webhooks
from accounts.models import Batch, BatchResult, BatchStatus, StoredFile

# The endpoints a batch may name, and the gateway route each one is.
ENDPOINTS = {"/v1/chat/completions": "chat/completions", "/v1/completions": "completions",
             "/v1/embeddings": "embeddings", "/v1/responses": "responses",
             "/v1/moderations": "moderations"}  # fmt: skip
WINDOW = timedelta(hours=24)  # "24h", the one completion window OpenAI offers
_FINAL_AT = {BatchStatus.COMPLETED: "completed_at", BatchStatus.EXPIRED: "expired_at",
             BatchStatus.CANCELLED: "cancelled_at", BatchStatus.FAILED: "failed_at"}  # fmt: skip
_TOKENS = ("input_tokens", "cached_tokens", "output_tokens", "reasoning_tokens")


class NotCancellable(Exception):
    pass


def _counted(rows: QuerySet[Batch]) -> QuerySet[Batch]:
    """With the request counts and token sums ``resource`` reads."""
    return rows.annotate(
        n_completed=Count("results", filter=Q(results__ok=True)),
        n_failed=Count("results", filter=Q(results__ok=False)),
        **{f"sum_{name}": Sum(f"results__{name}") for name in _TOKENS},
    )  # fmt: skip


def resource(batch: Batch) -> dict:
    """OpenAI's batch object (``batch`` read through ``find`` or ``page``, which count its results); what it does
    not have yet (an output file, a time it has not reached) is left out, as OpenAI's schema has no nulls there."""

    def at(value):
        return int(value.timestamp()) if value else None

    tokens = {name: getattr(batch, f"sum_{name}") or 0 for name in _TOKENS}
    found = {
        "id": batch.pk, "object": "batch", "endpoint": batch.endpoint, "model": batch.model or None,
        "errors": {"object": "list", "data": batch.errors} if batch.errors else None,
        "input_file_id": batch.input_file_id, "completion_window": batch.completion_window, "status": batch.status,
        "output_file_id": batch.output_file_id or None, "error_file_id": batch.error_file_id or None,
        **{name: at(getattr(batch, name)) for name in (
            "created_at", "in_progress_at", "expires_at", "finalizing_at", "completed_at", "failed_at", "expired_at",
            "cancelling_at", "cancelled_at")},
        "request_counts": {"total": batch.total, "completed": batch.n_completed, "failed": batch.n_failed},
        "usage": {
            "input_tokens": tokens["input_tokens"], "input_tokens_details": {"cached_tokens": tokens["cached_tokens"]},
            "output_tokens": tokens["output_tokens"],
            "output_tokens_details": {"reasoning_tokens": tokens["reasoning_tokens"]},
            "total_tokens": tokens["input_tokens"] + tokens["output_tokens"],
        },
        "metadata": batch.metadata or None,
    }  # fmt: skip
    return {name: value for name, value in found.items() if value is not None}


def create(
    *, tenant_id: int, api_key_id: int | None, input_file: StoredFile, endpoint: str, metadata: dict,
    output_expires_seconds: int | None,
) -> Batch:  # fmt: skip
    now = timezone.now()
    with transaction.atomic():
        return Batch.objects.create(
            id="batch_" + secrets.token_hex(12), tenant_id=tenant_id, api_key_id=api_key_id, endpoint=endpoint,
            input_file_id=input_file.pk, metadata=metadata, output_expires_seconds=output_expires_seconds,
            created_at=now, expires_at=now + WINDOW,
        )  # fmt: skip


def find(tenant_id: int, batch_id: object) -> Batch | None:
    if not stored.valid_id(batch_id):
        return None
    return _counted(Batch.objects.filter(tenant_id=tenant_id, pk=batch_id)).first()


def page(tenant_id: int, *, after: Batch | None, limit: int) -> stored.Page:
    """One page of the tenant's batches, newest first, after ``after``."""
    return stored.page(_counted(Batch.objects.filter(tenant_id=tenant_id)), after, limit, descending=True)


def cancel(tenant_id: int, batch_id: str) -> Batch | None:
    """Ask for the batch to stop: ``cancelling`` until its runner has finished the requests under way, then
    ``cancelled``. A batch already stopping or stopped is returned as it is; a finished one raises
    ``NotCancellable``."""
    if not stored.valid_id(batch_id):
        return None
    with transaction.atomic():
        batch = Batch.objects.select_for_update().filter(tenant_id=tenant_id, pk=batch_id).first()
        if batch is None:
            return None
        if batch.status in (BatchStatus.VALIDATING, BatchStatus.IN_PROGRESS):
            batch.status, batch.cancelling_at = BatchStatus.CANCELLING, timezone.now()
            batch.save(update_fields=["status", "cancelling_at"])
        elif batch.status not in (BatchStatus.CANCELLING, BatchStatus.CANCELLED):
            raise NotCancellable(batch.status)
    return find(tenant_id, batch_id)


# --- the runner's writes ---------------------------------------------------------------------------


def claim(batch_id: str, runner: str, stale_seconds: float) -> Batch | None:
    """Take the batch for ``runner`` unless another runner showed life in the last ``stale_seconds``; the batch, or
    None (finished, or someone else's)."""
    now = timezone.now()
    with transaction.atomic():
        batch = Batch.objects.select_for_update().filter(pk=batch_id, status__in=Batch.UNFINISHED).first()
        if batch is None:
            return None
        quiet = batch.heartbeat_at is None or batch.heartbeat_at < now - timedelta(seconds=stale_seconds)
        if batch.runner and batch.runner != runner and not quiet:
            return None
        batch.runner, batch.heartbeat_at = runner, now
        batch.save(update_fields=["runner", "heartbeat_at"])
    return batch


def heartbeat(batch_id: str, runner: str) -> Batch | None:
    """Show life; the batch as it is now (its status may have become ``cancelling``), or None if it is no longer
    this runner's."""
    with transaction.atomic():
        if not Batch.objects.filter(pk=batch_id, runner=runner).update(heartbeat_at=timezone.now()):
            return None
    return Batch.objects.get(pk=batch_id)


def release(batch_id: str, runner: str) -> None:
    """Hand the batch back (its runner's process is stopping): the next ``stale`` finds it at once."""
    with transaction.atomic():
        Batch.objects.filter(pk=batch_id, runner=runner).update(runner="", heartbeat_at=None)


def stale(stale_seconds: float) -> list[str]:
    """Unfinished batches no runner showed life for in ``stale_seconds``: a runner that died, or a start lost."""
    cutoff = timezone.now() - timedelta(seconds=stale_seconds)
    rows = Batch.objects.filter(status__in=Batch.UNFINISHED).filter(
        Q(heartbeat_at__lt=cutoff)
        | Q(heartbeat_at__isnull=True, created_at__lt=cutoff)
        | Q(heartbeat_at__isnull=True, runner="", in_progress_at__isnull=False)  # handed back
    )
    return list(rows.values_list("pk", flat=True))


def start(batch_id: str, total: int, model: str) -> None:
    """Validated: ``in_progress`` (unless cancelled meanwhile)."""
    with transaction.atomic():
        Batch.objects.filter(pk=batch_id).update(total=total, model=model)
        Batch.objects.filter(pk=batch_id, status=BatchStatus.VALIDATING).update(
            status=BatchStatus.IN_PROGRESS, in_progress_at=timezone.now()
        )


def fail(batch_id: str, errors: list[dict]) -> None:
    """The batch could not run (its file, its key): ``failed``, with OpenAI's BatchError objects; ``batch.failed``
    told to the tenant's webhooks."""
    with transaction.atomic():
        batch = Batch.objects.select_for_update().only("tenant_id", "status").filter(pk=batch_id).first()
        if batch is None or batch.status not in Batch.UNFINISHED:
            return
        now = timezone.now()
        Batch.objects.filter(pk=batch_id).update(status=BatchStatus.FAILED, failed_at=now, errors=errors)
        webhooks.emit(batch.tenant_id, "batch.failed", batch_id, now)


def done_lines(batch_id: str) -> set[int]:
    return set(BatchResult.objects.filter(batch_id=batch_id).values_list("line", flat=True))


def record(batch_id: str, line: int, ok: bool, output: dict, tokens: dict[str, int]) -> None:
    """One answered line (once: a line recorded already, by a runner before this one, is kept)."""
    row = BatchResult(batch_id=batch_id, line=line, ok=ok, output=output, **{k: tokens.get(k, 0) for k in _TOKENS})
    with transaction.atomic():
        BatchResult.objects.bulk_create([row], ignore_conflicts=True)


def _jsonl(outputs: list[dict]) -> bytes:
    return "".join(json.dumps(o, ensure_ascii=False) + "\n" for o in outputs).encode()


def finish(batch_id: str, status: BatchStatus, unanswered: list[dict], errors: list[dict] | None = None) -> None:
    """Write the output file (the answered lines, in input order) and the error file (the failed ones, and
    ``unanswered``: the lines an expired batch never ran), then set the final ``status`` (and ``errors``, OpenAI's
    BatchError objects, for a batch that failed while it ran)."""
    with transaction.atomic():
        batch = Batch.objects.select_for_update().get(pk=batch_id)
        if batch.status not in Batch.UNFINISHED:
            return
        results = list(BatchResult.objects.filter(batch_id=batch_id).order_by("line"))
        made = {}
        for name, outputs in (("output", [r.output for r in results if r.ok]),
                              ("error", [r.output for r in results if not r.ok] + unanswered)):  # fmt: skip
            if outputs:
                made[f"{name}_file_id"] = files.create(
                    tenant_id=batch.tenant_id, api_key_id=batch.api_key_id, purpose=files.BATCH_OUTPUT,
                    filename=f"{batch_id}_{name}.jsonl", content=_jsonl(outputs),
                    expires_seconds=batch.output_expires_seconds,
                ).pk  # fmt: skip
        if errors:
            made["errors"] = errors
        now = timezone.now()  # the files are written in this transaction: "finalizing" is never seen apart
        Batch.objects.filter(pk=batch_id).update(status=status, finalizing_at=now, **{_FINAL_AT[status]: now}, **made)
        webhooks.emit(batch.tenant_id, f"batch.{status}", batch_id, now)
