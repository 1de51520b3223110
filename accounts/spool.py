"""Usage rows that could not be written while the database was down, kept on disk and replayed when it is back.

A request that reached a model must be metered even when PostgreSQL is unreachable: the gateway hands the row
here instead (``append``), one JSON line in ``<HUB_SPOOL_DIR>/usage.jsonl``, fsynced before the call returns.
A replayer thread (``replay_soon``, started by the gateway after it spools and by the ASGI app at start, for rows a
crashed process left) then tries every ``HUB_SPOOL_RETRY_SECONDS`` until the spool is empty.

Several hub processes on one machine share the directory. ``flock`` keeps them apart: an appender locks the file
and checks it is still the one at the path (a replayer may have renamed it meanwhile); a replayer locks it,
renames it to ``usage.<uuid>.replaying`` (new rows go to a new file) and keeps the lock while it inserts the
rows in one transaction, then deletes it. A ``.replaying`` file whose lock is free was left by a replayer that
failed or died: it is replayed again (one the database refuses for good, say a deleted key's rows, is renamed
``*.failed`` and logged). Rows keep their original time, and a row already in the database (same
request id and time: the replayer died between its commit and the delete) is not inserted twice. Rows older than
the roll-up watermark make the roll-ups from their time on be rebuilt.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
import uuid
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError, IntegrityError, close_old_connections, transaction

log = logging.getLogger(__name__)

ACTIVE = "usage.jsonl"
CLAIMED = ".replaying"
FAILED = ".failed"
CHUNK = 1000  # rows per query when replaying


def directory() -> Path:
    return Path(settings.HUB_SPOOL_DIR)


def append(usage) -> None:
    """Keep one ``metering.Usage`` (with its ``created_at`` set) on disk until it can be written."""
    line = (json.dumps({**asdict(usage), "created_at": usage.created_at.isoformat()}) + "\n").encode()
    folder = directory()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ACTIVE
    while True:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                current = os.stat(path).st_ino
            except FileNotFoundError:
                current = None
            if current != os.fstat(fd).st_ino:  # a replayer took this file while we waited: write to a new one
                continue
            size = os.fstat(fd).st_size
            # after a line a crash cut short, start a new one: the torn line alone is lost, not this one too
            torn = size > 0 and os.pread(fd, 1, size - 1) != b"\n"
            os.write(fd, b"\n" + line if torn else line)
            os.fsync(fd)
            break
        finally:
            os.close(fd)
    log.warning("database unreachable: usage of request %s spooled to %s", usage.request_id, path)


def pending() -> bool:
    folder = directory()
    return folder.is_dir() and any(name == ACTIVE or name.endswith(CLAIMED) for name in os.listdir(folder))


def waiting() -> int:
    """How many rows the spool holds (torn lines included)."""
    folder = directory()
    if not folder.is_dir():
        return 0
    names = [n for n in os.listdir(folder) if n == ACTIVE or n.endswith(CLAIMED)]
    total = 0
    for name in names:
        try:
            total += (folder / name).read_bytes().count(b"\n")
        except FileNotFoundError:  # replayed meanwhile
            pass
    return total


def _claim(path: Path) -> tuple[int, Path] | None:
    """Lock ``path`` without waiting; rename an active file to a claimed one. None: someone else holds it."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    try:
        if os.stat(path).st_ino != os.fstat(fd).st_ino:
            raise FileNotFoundError(path)
        if path.name == ACTIVE:
            claimed = path.with_name(f"usage.{uuid.uuid4().hex}{CLAIMED}")
            os.rename(path, claimed)
            path = claimed
    except FileNotFoundError:  # renamed or replayed by another process since we listed it
        os.close(fd)
        return None
    return fd, path


def _read(fd: int, path: Path) -> list[dict]:
    with os.fdopen(os.dup(fd), "rb") as file:
        lines = file.read().splitlines()
    rows = []
    for number, raw in enumerate(lines, 1):
        try:
            rows.append(json.loads(raw))
        except ValueError:  # a line cut short by a crash while appending: nothing after it was acknowledged
            log.error("spooled usage %s line %d is unreadable and dropped: %r", path, number, raw[:200])
    return rows


def _insert(rows: list[dict]) -> int:
    from accounts import metering, open_requests
    from accounts.models import UsageRecord
    from accounts.pricing import PriceBook

    prices = PriceBook()  # each model's prices read once for the whole replay

    usages = [metering.Usage(**{**row, "created_at": datetime.fromisoformat(row["created_at"])}) for row in rows]
    fresh: list[metering.Usage] = []
    with transaction.atomic():  # a long outage spools many rows: CHUNK at a time (a query binds at most 65,535)
        for start in range(0, len(usages), CHUNK):
            chunk = usages[start : start + CHUNK]
            ids = {u.request_id for u in chunk}
            present = set(UsageRecord.objects.filter(request_id__in=ids).values_list("request_id", "created_at"))
            new = [u for u in chunk if (u.request_id, u.created_at) not in present]
            for u in new:  # their open requests' rows (open_requests.close): one query each, the rare path
                if u.usage_id:
                    open_requests.close(u.usage_id)
            UsageRecord.objects.bulk_create([metering.usage_record(u, prices) for u in new])
            fresh += new
    metering.refresh_rollups_back_to(min((u.created_at for u in fresh), default=None))
    return len(fresh)


def replay() -> int:
    """Write every spooled row that no other process is replaying; returns how many rows were inserted.
    Raises ``DatabaseError`` while the database is still down (the files stay for the next try)."""
    folder = directory()
    if not folder.is_dir():
        return 0
    inserted = 0
    for name in sorted(os.listdir(folder)):
        if not (name == ACTIVE or (name.startswith("usage.") and name.endswith(CLAIMED))):
            continue
        claim = _claim(folder / name)
        if claim is None:
            continue
        fd, path = claim
        try:
            rows = _read(fd, path)
            try:
                inserted += _insert(rows) if rows else 0
            except IntegrityError:  # refused for good (a key or tenant deleted meanwhile): out of the way
                failed = path.with_name(path.name.removesuffix(CLAIMED) + FAILED)
                log.exception("spooled usage %s refused by the database; kept aside as %s", path, failed)
                os.rename(path, failed)
                continue
            path.unlink()
        finally:
            os.close(fd)
    if inserted:
        log.warning("replayed %d spooled usage rows", inserted)
    return inserted


_replayer: threading.Thread | None = None
_replayer_lock = threading.Lock()


def _replay_until_empty() -> None:
    global _replayer
    while True:
        try:
            replay()
        except DatabaseError as exc:
            log.warning("spooled usage not replayed yet, the database is still unreachable: %s", exc)
        except Exception:  # noqa: BLE001 - logged; the files stay and the next try reads them again
            log.exception("replaying spooled usage failed")
        finally:
            close_old_connections()
        with _replayer_lock:
            if not pending():
                _replayer = None
                return
        time.sleep(settings.HUB_SPOOL_RETRY_SECONDS)


def replay_soon() -> None:
    """Start the replayer thread if the spool holds rows and none is running in this process."""
    global _replayer
    with _replayer_lock:
        if _replayer is not None or not pending():
            return
        _replayer = threading.Thread(target=_replay_until_empty, name="usage-spool-replayer", daemon=True)
        _replayer.start()
