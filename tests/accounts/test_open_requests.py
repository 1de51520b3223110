"""Requests on their way to a model (``accounts/open_requests.py``): an open row goes with its usage row in one
transaction; rows whose process stopped renewing them are metered by the reaper from what the deployments counted
(or with no tokens, when none remembers them); a deployment still serving one is waited for; a late usage row from
the process itself replaces the reaper's; each request is metered once. The live kill is in
tests/e2e/test_hub_killed.py."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts import metering, open_requests, spool
from accounts.models import OpenRequest, UsageRecord
from accounts.open_requests import RUNNING_PATIENCE, UNREACHABLE, Counted

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _forget_open_ids():
    """The rows these tests open are rolled back with them: this process's renewer must not look for them later
    (outside a test, where the database is not allowed)."""
    yield
    open_requests._open_ids.clear()


def _open(acme, request_id: str = "req_open", **fields) -> OpenRequest:
    row = OpenRequest(usage_id=uuid.uuid4().hex, request_id=request_id, tenant=acme.tenant, model="chat-small",
                      route="chat/completions", streamed=True, **fields)  # fmt: skip
    open_requests.write([row])
    return row


def _usage(acme, row: OpenRequest, completion: int = 7, **fields) -> metering.Usage:
    return metering.Usage(
        request_id=row.request_id, tenant_id=acme.tenant.id, api_key_id=None, model=row.model, route=row.route,
        prompt_tokens=11, completion_tokens=completion, status_code=200, streamed=True, aborted=False,
        time_to_first_token_ms=5, duration_ms=50, created_at=timezone.now(), usage_id=row.usage_id, **fields,
    )  # fmt: skip


def _later(row: OpenRequest, seconds: float = 1) -> object:
    return row.lease_until + timedelta(seconds=seconds)


def test_a_usage_row_deletes_its_open_row_and_the_reaper_finds_nothing(acme):
    row = _open(acme)
    assert OpenRequest.objects.get().lease_until > timezone.now()
    metering.record_usage(_usage(acme, row))
    assert not OpenRequest.objects.exists()
    assert open_requests.reap(lambda r: pytest.fail("nothing is open"), now=_later(row)) == []
    assert UsageRecord.objects.get().completion_tokens == 7


def test_an_orphan_is_metered_once_from_what_the_deployments_counted(acme):
    row = _open(acme, grant={"member": "req_open", "reserved": 500, "reserved_cost": 0, "checks": []})
    counted = Counted(prompt_tokens=31, completion_tokens=9, cached_tokens=16)
    assert open_requests.reap(lambda r: counted, now=timezone.now()) == []  # its lease has not run out
    [reaped] = open_requests.reap(lambda r: counted, now=_later(row))
    record = UsageRecord.objects.get()
    assert reaped.record == record and reaped.row.grant["reserved"] == 500
    assert (record.request_id, record.prompt_tokens, record.completion_tokens, record.cached_tokens) == (
        "req_open", 31, 9, 16)  # fmt: skip
    assert record.recovered and record.aborted and record.streamed and record.status_code == 503
    assert record.cost >= 0 and record.total_tokens == 40
    assert OpenRequest.objects.get().record == record  # kept a while, for a late row of its own process
    assert open_requests.reap(lambda r: pytest.fail("already reaped"), now=_later(row, 60)) == []


def test_an_orphan_no_deployment_remembers_is_metered_with_no_tokens(acme):
    row = _open(acme)
    open_requests.reap(lambda r: None, now=_later(row))
    record = UsageRecord.objects.get()
    assert record.recovered and (record.prompt_tokens, record.completion_tokens) == (0, 0)


@pytest.mark.parametrize("answer", [UNREACHABLE, Counted(prompt_tokens=5, completion_tokens=2, running=True)],
                         ids=["unreachable", "running"])  # fmt: skip
def test_an_orphan_still_running_or_not_asked_is_waited_for(acme, answer):
    row = _open(acme)
    assert open_requests.reap(lambda r: answer, now=_later(row, 60)) == []
    assert not UsageRecord.objects.exists()
    [reaped] = open_requests.reap(lambda r: answer, now=_later(row) + RUNNING_PATIENCE)  # not for ever
    assert reaped.record.completion_tokens == (2 if isinstance(answer, Counted) else 0)


def test_a_late_usage_row_of_its_own_process_replaces_the_reapers(acme):
    row = _open(acme)
    open_requests.reap(lambda r: Counted(prompt_tokens=11, completion_tokens=3), now=_later(row))
    metering.record_usage(_usage(acme, row, completion=7))  # the process was only paused, and meters it itself
    record = UsageRecord.objects.get()
    assert (record.completion_tokens, record.recovered, record.status_code) == (7, False, 200)
    assert not OpenRequest.objects.exists()


def test_a_spooled_row_replayed_after_the_reaper_replaces_its_row(acme, settings, tmp_path):
    settings.HUB_SPOOL_DIR = tmp_path / "spool"
    row = _open(acme)
    spool.append(_usage(acme, row, completion=8))  # written while the database was down; then the process died
    open_requests.reap(lambda r: Counted(prompt_tokens=11, completion_tokens=8), now=_later(row))
    assert spool.replay() == 1
    record = UsageRecord.objects.get()
    assert (record.completion_tokens, record.recovered) == (8, False) and not OpenRequest.objects.exists()


def test_a_discarded_row_is_gone_and_a_reaped_one_stays(acme):
    missed, reaped = _open(acme, "req_missed"), _open(acme, "req_reaped")
    open_requests.reap(lambda r: None if r.pk == reaped.pk else UNREACHABLE, now=_later(reaped))
    open_requests.discard(missed.usage_id)
    open_requests.discard(reaped.usage_id)  # what it reached was metered: it stays with its row
    assert list(OpenRequest.objects.values_list("request_id", flat=True)) == ["req_reaped"]


def test_the_process_renews_only_its_own_open_rows(acme):
    mine, theirs = _open(acme, "req_mine"), _open(acme, "req_theirs")
    OpenRequest.objects.filter(pk=theirs.pk).update(owner="another-process")
    OpenRequest.objects.update(lease_until=timezone.now() - timedelta(seconds=5))
    assert open_requests.renew(open_requests.owner()) == 1
    assert OpenRequest.objects.get(pk=mine.pk).lease_until > timezone.now()
    assert [r.request_id for r in open_requests.orphans()] == ["req_theirs"]


def test_reaped_rows_are_forgotten_after_a_day(acme):
    row = _open(acme)
    open_requests.reap(lambda r: None, now=_later(row))
    open_requests.reap(lambda r: None, now=timezone.now() + open_requests.KEEP_REAPED + timedelta(seconds=1))
    assert not OpenRequest.objects.exists() and UsageRecord.objects.count() == 1
