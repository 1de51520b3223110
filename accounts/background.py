"""Responses created with ``background: true``: stored at once (``queued``) with the work to do
(``BackgroundResponse``), answered later by a runner (``hub/background/``) that claims the work, shows life while it
runs and writes the answer into the stored response, unless the response was cancelled meanwhile. Every write runs
in a transaction that locks the work's row, so that a cancel and an answer never both win.

One created with ``stream: true`` also keeps its stream's events (``BackgroundEvents``): ``response.created`` and
``response.queued`` when it is queued, then those of its run, numbered on; they are read by the clients streaming it
(``events_after``)."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts import sealed, webhooks
from accounts.models import BackgroundEvents, BackgroundResponse, BackgroundState, StoredResponse

# the events a streamed background response ends with (its stream is then over)
FINAL_EVENTS = ("response.completed", "response.incomplete", "response.failed")


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
        work = BackgroundResponse.objects.create(response=row, api_key_id=api_key_id,
                                                 request=with_secrets(request, sealed.seal))  # fmt: skip
        if request.get("stream") is True:
            events = [{"type": kind, "response": row.response, "sequence_number": n}
                      for n, kind in enumerate(("response.created", "response.queued"))]  # fmt: skip
            BackgroundEvents.objects.create(response=work, first=0, last=1, events=events)
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
    work.request = with_secrets(work.request, sealed.unseal)  # for the run; kept sealed
    return work


def heartbeat(response_id: str, runner: str) -> bool:
    """Show life; whether the work is still this runner's (not cancelled, deleted or taken over). Done counts: the
    answer is written before the run has sent its last events and ended its request, which it must not cut."""
    with transaction.atomic():
        return bool(
            BackgroundResponse.objects.filter(pk=response_id, runner=runner,
                                              state__in=(BackgroundState.IN_PROGRESS, BackgroundState.DONE))
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


SECRETS = ("authorization", "headers")  # of an mcp tool: what its run needs and nobody may read


def with_secrets(request: dict, change) -> dict:
    """The request with ``change`` (``sealed.seal``, ``unseal``; None: dropped) made to its ``mcp`` tools'
    ``authorization`` and the values of their ``headers``."""
    tools = request.get("tools")
    if not isinstance(tools, list):
        return request
    kept = []
    for tool in tools:
        if isinstance(tool, dict) and tool.get("type") == "mcp":
            if change is None:
                tool = {k: v for k, v in tool.items() if k not in SECRETS}
            else:
                tool = {**tool, **_changed(tool, change)}
        kept.append(tool)
    return {**request, "tools": kept}


def _changed(tool: dict, change) -> dict:
    changed = {}
    if isinstance(tool.get("authorization"), str):
        changed["authorization"] = change(tool["authorization"])
    if isinstance(tool.get("headers"), dict):
        changed["headers"] = {k: change(v) if isinstance(v, str) else v for k, v in tool["headers"].items()}
    return changed


def _ended(work: BackgroundResponse, state: str) -> None:
    """The work ended (``state``), its request's secrets dropped (in the caller's transaction)."""
    work.state, work.request = state, with_secrets(work.request, None)
    work.save(update_fields=["state", "request"])


def _finished(response_id: str) -> BackgroundResponse | None:
    """The work, locked and marked done (in the caller's transaction); None if it was cancelled, deleted or ended."""
    work = _locked(response_id)
    if work is None or work.state not in BackgroundResponse.UNFINISHED:
        return None
    _ended(work, BackgroundState.DONE)
    return work


def answer(response_id: str, response: dict, history: list[dict], input_items: list[dict],
           search_results: dict[str, list] | None = None) -> bool:  # fmt: skip
    """The run's answer (completed, incomplete or failed) written into the stored response, with the context it
    answered (``history``, ``input_items``: read again when it ran); False, and nothing written, when the response
    was cancelled or deleted meanwhile."""
    with transaction.atomic():
        work = _finished(response_id)
        if work is None:
            return False
        row = work.response
        row.response, row.search_results = response, search_results or {}
        row.history, row.input_items = history, input_items
        row.save(update_fields=["response", "search_results", "history", "input_items"])
        _tell(row, response.get("status"))
    return True


def _tell(row: StoredResponse, status: object) -> None:
    """The end of a background response, told to the tenant's webhooks (``response.completed`` ...)."""
    if f"response.{status}" in webhooks.EVENT_TYPES:
        webhooks.emit(row.tenant_id, f"response.{status}", row.pk)


def fail(response_id: str, code: str, message: str, failed: dict | None = None) -> bool:
    """The run could not answer (the request was refused when it ran: its key revoked, its context too long...):
    the stored response ``failed`` with OpenAI's error object, and a streamed one's stream ended with
    ``response.failed``. ``failed``: the response of the stream's own ``response.failed`` (the deployment failed
    mid-answer), kept as it is, the stream having ended with it already. False when it was answered already."""
    with transaction.atomic():
        work = _finished(response_id)
        if work is None:
            return False
        work.response.response = failed or {**work.response.response, "status": "failed",
                                            "error": {"code": code, "message": message}}  # fmt: skip
        work.response.save(update_fields=["response"])
        _tell(work.response, "failed")
        if work.request.get("stream") is True and failed is None:
            n = next_sequence(response_id)
            event = {"type": "response.failed", "response": work.response.response, "sequence_number": n}
            BackgroundEvents.objects.create(response=work, first=n, last=n, events=[event])
    return True


def next_sequence(response_id: str) -> int:
    """The sequence number the next event of the response's stream takes."""
    last = BackgroundEvents.objects.filter(response_id=response_id).order_by("-last").values_list("last", flat=True)
    found = last.first()
    return 0 if found is None else found + 1


def add_events(response_id: str, runner: str, events: list[dict]) -> bool:
    """Events of the run's stream, numbered on from the last kept; False, and nothing kept, once the work is no
    longer this runner's (cancelled, deleted, taken over)."""
    with transaction.atomic():
        # the work's row alone, locked (not its stored response: this runs for every write of a stream)
        work = BackgroundResponse.objects.select_for_update().only("runner", "state").filter(pk=response_id).first()
        if work is None or work.runner != runner or work.state not in (BackgroundState.IN_PROGRESS,
                                                                       BackgroundState.DONE):  # fmt: skip
            return False
        if events:
            n = next_sequence(response_id)
            numbered = [{**event, "sequence_number": n + i} for i, event in enumerate(events)]
            BackgroundEvents.objects.create(response=work, first=n, last=n + len(events) - 1, events=numbered)
    return True


def streamed(tenant_id: int, response_id: str) -> bool:
    """Whether the tenant has such a background response, created with ``stream: true`` (its events are kept)."""
    work = BackgroundResponse.objects.filter(pk=response_id, response__tenant_id=tenant_id).only("request").first()
    return work is not None and work.request.get("stream") is True


def events_after(response_id: str, after: int) -> tuple[list[dict], str] | None:
    """A streamed response's events after sequence number ``after`` and its work's state, read first (the events
    come before the state that follows them); None once it is deleted. Read at every poll of a stream: the work's
    state and the new events' rows only."""
    state = BackgroundResponse.objects.filter(pk=response_id).values_list("state", flat=True).first()
    if state is None:
        return None
    rows = BackgroundEvents.objects.filter(response_id=response_id, last__gt=after).order_by("first")
    events = [event for chunk in rows.values_list("events", flat=True) for event in chunk
              if event["sequence_number"] > after]  # fmt: skip
    return events, state


def final_event(response_id: str, sequence_number: int) -> dict | None:
    """The final event a stream would have ended with, made from the stored answer (its run died between the answer
    and its last events); None once the response is deleted."""
    row = StoredResponse.objects.filter(pk=response_id).only("response").first()
    if row is None:
        return None
    status = row.response.get("status")
    kind = f"response.{status}" if f"response.{status}" in FINAL_EVENTS else "response.failed"
    return {"type": kind, "response": row.response, "sequence_number": sequence_number}


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
            _ended(work, BackgroundState.CANCELLED)
            _set_status(work, BackgroundState.CANCELLED)
            _tell(work.response, "cancelled")
        return work.response.response


def reseal() -> int:
    """The secrets of the requests not run yet sealed with the current ``HUB_SECRET_KEY``; how many requests."""
    with transaction.atomic():
        works = list(BackgroundResponse.objects.select_for_update().filter(state__in=BackgroundResponse.UNFINISHED))
        for work in works:
            work.request = with_secrets(work.request, sealed.reseal)
        BackgroundResponse.objects.bulk_update(works, ["request"])
    return len(works)
