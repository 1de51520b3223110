"""Requests on their way to a model, so that none is left unmetered when the hub process sending it dies.

The gateway writes an ``OpenRequest`` row before it sends a request (``write``) and deletes it in the
transaction that writes the request's usage row (``metering.record_usage`` calls ``close``), or on its own when
no model was reached (``discard``). While a process lives, a thread renews the leases of its rows (``renew``,
every quarter lease). A process killed outright (SIGKILL, an out-of-memory kill, a lost node) leaves rows whose
lease runs out: ``reap`` (the beat's ``hub.reap_open_requests``) meters each from what the deployments counted
for its usage id (``inference/server/tally.py``), settles its rate-limit reservation, and keeps the row pointing at
the usage row it wrote. Should the process come back after all (a long pause, not a death) and meter the request
itself, its row replaces the reaper's: each request is metered once.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection, transaction
from django.utils import timezone

from accounts.models import OpenRequest, UsageRecord

log = logging.getLogger(__name__)

# a deployment that says the request still runs is asked again until its lease ended this long ago
RUNNING_PATIENCE = timedelta(hours=1)
KEEP_REAPED = timedelta(days=1)  # a reaped row stays this long, for a late usage row of its own process
REAP_AT_ONCE = 500
RECOVERED_STATUS = 503  # the hub could not finish the request: its client saw the connection drop


@dataclass(frozen=True)
class Counted:
    """What the deployments counted for one usage id."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    audio_seconds: float = 0.0
    running: bool = False  # a deployment is still serving it


UNREACHABLE = object()  # ``ask``'s answer when no deployment could be asked: try again on the next round


def lease() -> timedelta:
    return timedelta(seconds=settings.HUB_OPEN_REQUEST_LEASE_SECONDS)


_owner: tuple[int, str] | None = None
_renewer_lock = threading.Lock()
_open_ids: set[str] = set()  # this process's rows still open: only those are renewed (a row it failed to discard
# runs out and is reaped, metered with what the deployments counted: nothing, if no model ran it)


def owner() -> str:
    """This process's name on its rows (a forked child, a Celery worker's, gets its own)."""
    global _owner
    if _owner is None or _owner[0] != os.getpid():
        with _renewer_lock:
            if _owner is None or _owner[0] != os.getpid():
                _owner = (os.getpid(), uuid.uuid4().hex)
                _open_ids.clear()  # a forked child's parent's rows are the parent's to renew
                threading.Thread(target=_renew_forever, args=(_owner[1],), name="open-requests", daemon=True).start()
    return _owner[1]


# Every request writes and deletes one row: in plain SQL, not through Model.save and QuerySet.delete, which cost
# 0.2 and 0.4 ms of CPU each against 0.1 and 0.07 here (the gateway's event loop is what saturates first).
_FIELDS = OpenRequest._meta.concrete_fields


def _table() -> str:
    return connection.ops.quote_name(OpenRequest._meta.db_table)


def write(rows: list[OpenRequest]) -> None:
    """Write ``rows`` (their usage ids, who and what set) as this process's, leased: one statement."""
    name, until = owner(), timezone.now() + lease()
    values = []
    for row in rows:
        row.owner, row.lease_until = name, until
        values += [f.get_db_prep_save(getattr(row, f.attname), connection) for f in _FIELDS]
    with _renewer_lock:
        _open_ids.update(row.usage_id for row in rows)
    columns = ", ".join(connection.ops.quote_name(f.column) for f in _FIELDS)
    each = f"({', '.join(['%s'] * len(_FIELDS))})"
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {_table()} ({columns}) VALUES {', '.join([each] * len(rows))}", values)


def _delete_open(usage_id: str) -> int:
    """Delete the row if it is still open (not reaped); returns how many were."""
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {_table()} WHERE usage_id = %s AND record_id IS NULL", [usage_id])
        return cursor.rowcount


def discard(usage_id: str) -> None:
    """The request reached no model (refused upstream before running, no deployment reachable): nothing to meter."""
    _delete_open(usage_id)
    _forget(usage_id)


def _forget(usage_id: str) -> None:
    with _renewer_lock:
        _open_ids.discard(usage_id)


def close(usage_id: str) -> None:
    """In the transaction writing the request's own usage row: its open row goes, and so does a row the reaper
    wrote for it meanwhile (its counts were a dead process's guess; these are the request's)."""
    from accounts import metering  # which calls this: imported here, not at the module's top

    deleted = _delete_open(usage_id)
    transaction.on_commit(lambda: _forget(usage_id))
    if deleted:
        return
    reaped = UsageRecord.objects.filter(pk__in=OpenRequest.objects.filter(pk=usage_id).values("record")).first()
    if reaped is None:  # never opened (the database was down then) or already closed
        return
    log.warning("request %s was metered by the reaper; its own process metered it after all", reaped.request_id)
    reaped.delete()  # its OpenRequest row with it
    metering.refresh_rollups_back_to(reaped.created_at)


def renew(name: str) -> int:
    """Push the leases of this process's open rows on; returns how many."""
    with _renewer_lock:
        ids = list(_open_ids)
    rows = OpenRequest.objects.filter(owner=name, record__isnull=True)
    renewed = 0
    for start in range(0, len(ids), 5000):  # a query binds at most 65,535 values
        renewed += rows.filter(pk__in=ids[start : start + 5000]).update(lease_until=timezone.now() + lease())
    return renewed


def _renew_forever(name: str) -> None:
    while True:
        time.sleep(settings.HUB_OPEN_REQUEST_LEASE_SECONDS / 4)
        if _owner is None or _owner[1] != name:  # this process was forked from the one that started it
            return
        try:
            renew(name)
        except DatabaseError as exc:  # the leases may run out meanwhile: the reaper then waits for the tallies
            log.warning("open requests' leases not renewed: %s", exc)
        except Exception:  # noqa: BLE001 - logged; renewing goes on, or every lease of this process runs out
            log.exception("renewing the open requests' leases failed")
        finally:
            close_old_connections()


def orphans(now: datetime | None = None) -> list[OpenRequest]:
    """Open rows whose process stopped renewing them, oldest lease first."""
    now = now or timezone.now()
    rows = OpenRequest.objects.filter(record__isnull=True, lease_until__lt=now).order_by("lease_until")
    return list(rows[:REAP_AT_ONCE])


@dataclass(frozen=True)
class Reaped:
    row: OpenRequest
    record: UsageRecord


def reap(ask: Callable[[OpenRequest], Counted | None | object], now: datetime | None = None) -> list[Reaped]:
    """Meter every orphan from ``ask(row)``: the deployments' counts, ``None`` when none remembers it (it is
    metered with no tokens), or ``UNREACHABLE`` (left for the next round). One still running is left until it
    ends or ``RUNNING_PATIENCE`` passed."""
    from accounts import metering

    now = now or timezone.now()
    done: list[Reaped] = []
    for row in orphans(now):
        counted = ask(row)
        if counted is UNREACHABLE or (isinstance(counted, Counted) and counted.running):
            if row.lease_until > now - RUNNING_PATIENCE:
                continue
        known = isinstance(counted, Counted)
        counted = counted if known else Counted()
        usage = metering.Usage(
            request_id=row.request_id, tenant_id=row.tenant_id, api_key_id=row.api_key_id, model=row.model,
            route=row.route, prompt_tokens=counted.prompt_tokens, completion_tokens=counted.completion_tokens,
            status_code=RECOVERED_STATUS, streamed=row.streamed, aborted=True, time_to_first_token_ms=None,
            duration_ms=0, created_at=timezone.now(), audio_seconds=counted.audio_seconds,
            cached_tokens=counted.cached_tokens, service_tier=row.service_tier, recovered=True,
        )  # fmt: skip
        with transaction.atomic():
            current = OpenRequest.objects.select_for_update().filter(pk=row.pk, record__isnull=True).first()
            if current is None or current.lease_until >= now:  # metered or renewed since it was read
                continue
            record = metering.usage_record(usage)
            record.save(force_insert=True)
            current.record = record
            current.save(update_fields=["record"])
        log.warning("request %s (%s) of a hub process that died is metered: %d prompt, %d completion tokens%s",
                    row.request_id, row.model, counted.prompt_tokens, counted.completion_tokens,
                    "" if known else " (no deployment remembered it)")  # fmt: skip
        done.append(Reaped(current, record))
    OpenRequest.objects.filter(record__isnull=False, record__created_at__lt=now - KEEP_REAPED).delete()
    return done
