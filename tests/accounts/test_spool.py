"""The usage spool (``accounts.spool``): rows kept on disk while the database is down are written once each, with
their own time, whatever crashes, torn lines and concurrent processes come in between. The live outage (a hub
whose PostgreSQL goes away and comes back) is in tests/e2e/test_faults.py."""

from __future__ import annotations

import fcntl
import json
import multiprocessing
import os
from dataclasses import asdict
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts import metering, services, spool, usage
from accounts.models import UsageRecord

pytestmark = pytest.mark.django_db


@pytest.fixture
def spool_dir(settings, tmp_path):
    settings.HUB_SPOOL_DIR = tmp_path / "spool"
    return settings.HUB_SPOOL_DIR


def _usage(tenant_id: int, n: int, age: timedelta = timedelta(minutes=1), **extra) -> metering.Usage:
    fields = {
        "request_id": f"req_spool_{n}", "tenant_id": tenant_id, "api_key_id": None, "model": "chat-small",
        "route": "chat/completions", "prompt_tokens": 10 + n, "completion_tokens": n, "status_code": 200,
        "streamed": True, "aborted": False, "time_to_first_token_ms": 5, "duration_ms": 50,
        "created_at": timezone.now() - age,
    }  # fmt: skip
    return metering.Usage(**{**fields, **extra})


def _line(u: metering.Usage) -> str:
    return json.dumps({**asdict(u), "created_at": u.created_at.isoformat()}) + "\n"


def test_spooled_rows_are_written_once_with_their_own_time(acme, spool_dir):
    key = services.issue_key(acme.tenant).key
    rows = [_usage(acme.tenant.id, n, api_key_id=key.id) for n in range(3)]
    for row in rows:
        spool.append(row)
    assert spool.pending() and os.listdir(spool_dir) == [spool.ACTIVE]

    assert spool.replay() == 3
    assert not spool.pending() and os.listdir(spool_dir) == []
    stored = {r.request_id: r for r in UsageRecord.objects.all()}
    for row in rows:
        record = stored[row.request_id]
        assert (record.created_at, record.api_key_id, record.prompt_tokens, record.completion_tokens) == (
            row.created_at, key.id, row.prompt_tokens, row.completion_tokens
        )  # fmt: skip
        assert record.total_tokens == row.prompt_tokens + row.completion_tokens
    assert spool.replay() == 0


def test_a_file_left_by_a_dead_replayer_is_replayed_without_doubles(acme, spool_dir):
    """A replayer that died between its commit and deleting its claimed file: the rows already written are
    recognised (same request id and time) and only the others are inserted."""
    written, missing = _usage(acme.tenant.id, 1), _usage(acme.tenant.id, 2)
    metering.record_usage(written)
    spool_dir.mkdir()
    (spool_dir / f"usage.dead{spool.CLAIMED}").write_text(_line(written) + _line(missing))
    reused_id = _usage(acme.tenant.id, 1, age=timedelta(seconds=1))  # a client may send the same x-request-id again
    spool.append(reused_id)

    assert spool.replay() == 2
    assert UsageRecord.objects.filter(request_id=written.request_id).count() == 2
    assert UsageRecord.objects.filter(request_id=missing.request_id).count() == 1
    assert os.listdir(spool_dir) == []


def test_a_long_outage_is_replayed_chunk_by_chunk(acme, spool_dir, monkeypatch):
    """Rows are deduplicated and inserted CHUNK at a time (one query may bind at most 65,535 values), doubles
    across chunks included."""
    monkeypatch.setattr(spool, "CHUNK", 3)
    rows = [_usage(acme.tenant.id, n) for n in range(8)]
    metering.record_usage(rows[4])  # already written: in the second chunk
    for row in rows:
        spool.append(row)
    assert spool.replay() == 7
    assert sorted(UsageRecord.objects.values_list("request_id", flat=True)) == sorted(r.request_id for r in rows)


def test_a_file_another_replayer_holds_is_left_to_it(acme, spool_dir):
    spool.append(_usage(acme.tenant.id, 1))
    claimed = spool_dir / f"usage.busy{spool.CLAIMED}"
    claimed.write_text(_line(_usage(acme.tenant.id, 2)))
    fd = os.open(claimed, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # as the other process's replayer holds it
    try:
        assert spool.replay() == 1
        assert claimed.exists() and spool.pending()
    finally:
        os.close(fd)
    assert spool.replay() == 1 and not spool.pending()


def test_a_torn_last_line_is_dropped_and_logged(acme, spool_dir, caplog):
    """A crash while appending leaves half a line; it was never acknowledged (no fsync returned), the rest is kept,
    rows appended after it included."""
    spool.append(_usage(acme.tenant.id, 1))
    with open(spool_dir / spool.ACTIVE, "a") as file:
        file.write(_line(_usage(acme.tenant.id, 2))[:40])
    spool.append(_usage(acme.tenant.id, 3))  # the process restarted and spooled on: a line of its own
    assert spool.replay() == 2
    assert "line 2 is unreadable" in caplog.text
    assert sorted(UsageRecord.objects.values_list("request_id", flat=True)) == ["req_spool_1", "req_spool_3"]


def test_rows_older_than_the_rollups_watermark_rebuild_them(acme, spool_dir):
    """The roll-ups already summed the hours a late row belongs to (an outage longer than the beat's look-back):
    the replay rebuilds them, so dashboards count the row."""
    metering.record_usage(_usage(acme.tenant.id, 1, age=timedelta(hours=7)))
    metering.refresh_rollups(since=None)
    late = _usage(acme.tenant.id, 2, age=timedelta(hours=6))
    assert usage.watermark() > late.created_at
    spool.append(late)
    assert spool.replay() == 1
    day = late.created_at.date()
    totals = usage.summary(day - timedelta(days=1), day + timedelta(days=1), acme.tenant.id).total
    assert (totals.requests, totals.completion_tokens) == (2, 1 + 2)


def _append_many(directory: str, tenant_id: int, worker: int, count: int) -> None:
    from django.conf import settings

    settings.HUB_SPOOL_DIR = directory
    for n in range(count):
        spool.append(_usage(tenant_id, worker * 10_000 + n))


def test_processes_appending_while_another_replays_lose_nothing(acme, spool_dir):
    """Four processes append 150 rows each while this one replays over and over: every row lands exactly once."""
    spool_dir.mkdir()
    context = multiprocessing.get_context("fork")
    workers = [
        context.Process(target=_append_many, args=(str(spool_dir), acme.tenant.id, worker, 150)) for worker in range(4)
    ]
    for worker in workers:
        worker.start()
    while any(worker.is_alive() for worker in workers):
        spool.replay()
    for worker in workers:
        worker.join()
        assert worker.exitcode == 0
    spool.replay()
    ids = list(UsageRecord.objects.values_list("request_id", flat=True))
    assert len(ids) == len(set(ids)) == 600
    assert os.listdir(spool_dir) == []


def test_the_operator_command_counts_and_writes_the_waiting_rows(acme, spool_dir):
    from io import StringIO

    from django.core.management import call_command

    for n in range(3):
        spool.append(_usage(acme.tenant.id, n))
    out = StringIO()
    call_command("replay_usage_spool", "--check", stdout=out)
    assert f"3 usage rows waiting in {spool_dir}" in out.getvalue() and not UsageRecord.objects.exists()
    call_command("replay_usage_spool", stdout=out)
    assert "wrote 3 rows; 0 left" in out.getvalue()
    assert UsageRecord.objects.count() == 3 and spool.waiting() == 0


@pytest.mark.django_db(transaction=True)  # foreign keys are checked at commit
def test_rows_the_database_refuses_for_good_are_set_aside(acme, spool_dir, caplog):
    """A file whose rows the database refuses (its tenant deleted meanwhile) is renamed *.failed for the operator
    and logged; the other files are written and the spool is empty again."""
    spool.append(_usage(acme.tenant.id + 1000, 1))  # no such tenant
    claimed = spool_dir / f"usage.left{spool.CLAIMED}"
    os.rename(spool_dir / spool.ACTIVE, claimed)
    spool.append(_usage(acme.tenant.id, 2))
    assert spool.replay() == 1
    assert list(UsageRecord.objects.values_list("request_id", flat=True)) == ["req_spool_2"]
    assert os.listdir(spool_dir) == [f"usage.left{spool.FAILED}"] and not spool.pending()
    assert "refused by the database" in caplog.text
