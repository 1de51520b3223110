"""Responses created with ``background: true``: stored at once (``queued``) with the work to do
(``BackgroundResponse``), answered later by a runner (``hub/background/``) that claims the work, shows life while it
runs and writes the answer into the stored response, unless the response was cancelled meanwhile. Every write runs
in a transaction that locks the work's row, so that a cancel and an answer never both win."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import BackgroundResponse, BackgroundState, StoredResponse


class NotBackground(Exception):
    """The response exists but was not created in the background: it cannot be cancelled."""


def create(*, tenant_id: int, api_key_id: int | None, history: list[dict], input_items: list[dict], response: dict,
           request: dict) -> StoredResponse:  # fmt: skip
    """The response stored as ``queued`` and its work, in one transaction."""
    created = datetime.fromtimestamp(response["created_at"], tz=timezone.get_current_timezone())
    with transaction.atomic():
        row = StoredResponse.objects.create(
            id=response["id"], tenant_id=tenant_id, api_key_id=api_key_id, model=response["model"], created_at=created,
            history=history, input_items=input_items, response={**response, "status": BackgroundState.QUEUED},
        )  # fmt: skip
        BackgroundResponse.objects.create(response=row, api_key_id=api_key_id, request=request)
    return row


def _locked(response_id: str) -> BackgroundResponse | None:
    return BackgroundResponse.objects.select_for_update().select_related("response").filter(pk=response_id).first()


def _set_status(work: BackgroundResponse, status: str) -> None:
    work.response.response = {**work.response.response, "status": status}
    work.response.save(update_fields=["response"])


def claim(response_id: str, runner: str, stale_seconds: float) -> BackgroundResponse | None:
    """Take the work for ``runner`` (``in_progress``) unless it is finished or another runner showed life in the
    last ``stale_seconds``; the work, or None."""
    now = timezone.now()
    with transaction.atomic():
        work = _locked(response_id)
        if work is None or work.state not in BackgroundResponse.UNFINISHED:
            return None
        quiet = work.heartbeat_at is None or work.heartbeat_at < now - timedelta(seconds=stale_seconds)
        if work.runner and work.runner != runner and not quiet:
            return None
        work.runner, work.heartbeat_at, work.state = runner, now, BackgroundState.IN_PROGRESS
        work.attempts += 1
        work.save(update_fields=["runner", "heartbeat_at", "state", "attempts"])
        _set_status(work, "in_progress")
    return work


def heartbeat(response_id: str, runner: str) -> bool:
    """Show life; whether the work is still this runner's to do (not cancelled, deleted or taken over)."""
    with transaction.atomic():
        return bool(
            BackgroundResponse.objects.filter(pk=response_id, runner=runner, state=BackgroundState.IN_PROGRESS)
            .update(heartbeat_at=timezone.now())
        )  # fmt: skip


def release(response_id: str, runner: str) -> None:
    """Hand the work back (its runner's process is stopping): queued again, for the next ``stale`` to find at once."""
    with transaction.atomic():
        work = _locked(response_id)
        if work is not None and work.runner == runner and work.state == BackgroundState.IN_PROGRESS:
            work.runner, work.heartbeat_at, work.state = "", None, BackgroundState.QUEUED
            work.save(update_fields=["runner", "heartbeat_at", "state"])
            _set_status(work, BackgroundState.QUEUED)


def stale(stale_seconds: float) -> list[str]:
    """Unfinished work no runner showed life on in ``stale_seconds`` (a runner that died, a start lost), and work
    handed back."""
    cutoff = timezone.now() - timedelta(seconds=stale_seconds)
    rows = BackgroundResponse.objects.filter(state__in=BackgroundResponse.UNFINISHED).filter(
        Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, created_at__lt=cutoff)
        | Q(heartbeat_at__isnull=True, runner="", attempts__gt=0)  # handed back
    )  # fmt: skip
    return list(rows.values_list("pk", flat=True))


def answer(response_id: str, response: dict, history: list[dict], input_items: list[dict],
           search_results: dict[str, list] | None = None) -> bool:  # fmt: skip
    """The run's answer (completed, incomplete or failed) written into the stored response, with the context it
    answered (``history``, ``input_items``: read again when it ran); False, and nothing written, when the response
    was cancelled or deleted meanwhile."""
    with transaction.atomic():
        work = _locked(response_id)
        if work is None or work.state not in BackgroundResponse.UNFINISHED:
            return False
        work.state = BackgroundState.DONE
        work.save(update_fields=["state"])
        row = work.response
        row.response, row.search_results = response, search_results or {}
        row.history, row.input_items = history, input_items
        row.save(update_fields=["response", "search_results", "history", "input_items"])
    return True


def fail(response_id: str, code: str, message: str) -> bool:
    """The run could not answer (the request was refused when it ran: its key revoked, its context too long...):
    the stored response ``failed`` with OpenAI's error object."""
    with transaction.atomic():
        work = _locked(response_id)
        if work is None or work.state not in BackgroundResponse.UNFINISHED:
            return False
        work.state = BackgroundState.DONE
        work.save(update_fields=["state"])
        work.response.response = {**work.response.response, "status": "failed",
                                  "error": {"code": code, "message": message}}  # fmt: skip
        work.response.save(update_fields=["response"])
    return True


def cancel(tenant_id: int, response_id: str) -> dict | None:
    """``POST /v1/responses/{id}/cancel``: a queued or running response becomes ``cancelled`` (its runner stops at
    its next heartbeat); one that ended is left as it is, as OpenAI's. The response as it is now, None if the
    tenant has no such response; NotBackground if it was not created in the background."""
    with transaction.atomic():
        row = StoredResponse.objects.filter(pk=response_id, tenant_id=tenant_id).first()
        if row is None:
            return None
        work = _locked(response_id)
        if work is None:
            raise NotBackground(response_id)
        if work.state in BackgroundResponse.UNFINISHED:
            work.state = BackgroundState.CANCELLED
            work.save(update_fields=["state"])
            _set_status(work, BackgroundState.CANCELLED)
        return work.response.response
