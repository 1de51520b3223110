"""Metering's failure policy (``metering.record_or_spool``, which the gateway calls for every usage row): the row
is written; with the database unreachable (``accounts.database.database_unreachable``) it is spooled to disk and
a replayer started; any other database error is raised; and while rows wait in the spool, new rows queue behind
them. The spool itself is tested in test_spool.py, a live outage in tests/e2e/test_faults.py."""

from __future__ import annotations

import json
import sqlite3

import pytest
from django.db import DatabaseError, DataError, IntegrityError, InterfaceError, OperationalError, ProgrammingError
from django.utils import timezone

from accounts import metering, spool
from accounts.database import database_unreachable
from accounts.models import UsageRecord

pytestmark = pytest.mark.django_db


@pytest.fixture
def spool_dir(settings, tmp_path):
    settings.HUB_SPOOL_DIR = tmp_path / "spool"
    return settings.HUB_SPOOL_DIR


@pytest.fixture
def replayers(monkeypatch) -> list[None]:
    """Each start of the replayer thread, which is not started: the rows stay for the test to look at."""
    started: list[None] = []
    monkeypatch.setattr(spool, "replay_soon", lambda: started.append(None))
    return started


def _usage(tenant_id: int, n: int) -> metering.Usage:
    return metering.Usage(
        request_id=f"req_policy_{n}", tenant_id=tenant_id, api_key_id=None, model="chat-small",
        route="chat/completions", prompt_tokens=10, completion_tokens=n, status_code=200, streamed=False,
        aborted=False, time_to_first_token_ms=None, duration_ms=20, created_at=timezone.now(),
    )  # fmt: skip


def _spooled(spool_dir) -> list[str]:
    return [json.loads(line)["request_id"] for line in (spool_dir / spool.ACTIVE).read_text().splitlines()]


def _failing(exc: Exception):
    def record_usage(usage):
        raise exc

    return record_usage


def _from_sqlite(message: str) -> OperationalError:
    """Django's OperationalError as it wraps sqlite3's (``__cause__``)."""
    error = OperationalError(message)
    error.__cause__ = sqlite3.OperationalError(message)
    return error


@pytest.mark.parametrize(
    ("exc", "unreachable"),
    [
        (OperationalError("connection refused"), True),
        (OperationalError("couldn't get a connection after 1.00 sec"), True),  # the pool's timeout
        (InterfaceError("connection already closed"), True),
        (IntegrityError("violates foreign key constraint"), False),
        (ProgrammingError("relation does not exist"), False),
        (DataError("value too long"), False),
        (DatabaseError("something else"), False),
        (ValueError("not the database"), False),
        (_from_sqlite("database is locked"), True),  # the embedded default, busy: retry
        (_from_sqlite("unable to open database file"), True),
        (_from_sqlite("malformed JSON"), False),  # a query SQLite cannot run: a bug, not a 503 (it was one)
        (_from_sqlite("no such table: accounts_tenant"), False),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else str(v),
)
def test_what_counts_as_the_database_unreachable(exc, unreachable):
    from hub.api import errors

    assert database_unreachable(exc) is unreachable
    assert errors.database_unreachable is database_unreachable  # the hub's 503s decide with this one, not a copy


def test_a_row_is_written_when_the_database_is_up(acme, spool_dir, replayers):
    metering.record_or_spool(_usage(acme.tenant.id, 1))
    assert list(UsageRecord.objects.values_list("request_id", flat=True)) == ["req_policy_1"]
    assert not spool.pending() and not replayers


@pytest.mark.parametrize("exc", [OperationalError("connection refused"), InterfaceError("connection already closed")])
def test_the_database_unreachable_spools_the_row(acme, spool_dir, replayers, monkeypatch, exc):
    monkeypatch.setattr(metering, "record_usage", _failing(exc))
    row = _usage(acme.tenant.id, 1)
    metering.record_or_spool(row)
    assert _spooled(spool_dir) == [row.request_id] and len(replayers) == 1
    assert not UsageRecord.objects.exists()
    monkeypatch.undo()  # the database is back: the replayer writes the row with its own time
    assert spool.replay() == 1
    assert UsageRecord.objects.get().created_at == row.created_at


@pytest.mark.parametrize(
    "exc", [IntegrityError("violates foreign key constraint"), ProgrammingError("no such table"), DataError("x")]
)
def test_another_database_error_is_raised_not_spooled(acme, spool_dir, replayers, monkeypatch, exc):
    monkeypatch.setattr(metering, "record_usage", _failing(exc))
    with pytest.raises(type(exc)):
        metering.record_or_spool(_usage(acme.tenant.id, 1))
    assert not spool.pending() and not replayers


def test_rows_waiting_in_the_spool_make_new_rows_queue_behind_them(acme, spool_dir, replayers, monkeypatch):
    """The database is (or just was) down: a new row goes to the spool, after the waiting ones, without trying
    the database first; the replayer writes them all, in order, once it is back."""
    first, second = _usage(acme.tenant.id, 1), _usage(acme.tenant.id, 2)
    spool.append(first)  # spooled while the database was down

    def record_usage(usage):
        raise AssertionError("rows wait in the spool: the database is not tried")

    monkeypatch.setattr(metering, "record_usage", record_usage)
    metering.record_or_spool(second)
    assert _spooled(spool_dir) == [first.request_id, second.request_id] and len(replayers) == 1
    assert not UsageRecord.objects.exists()
    monkeypatch.undo()
    assert spool.replay() == 2 and not spool.pending()
    assert sorted(UsageRecord.objects.values_list("request_id", flat=True)) == [first.request_id, second.request_id]
