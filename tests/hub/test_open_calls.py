"""The gateway's open rows (``hub/api/open_calls.py``): written before a request is sent, those that come together
in one statement, discarded when no model was reached, and the reservation kept in a form the reaper can settle."""

from __future__ import annotations

import asyncio

import pytest

from accounts import open_requests
from accounts.models import OpenRequest
from hub.api.limit_store import BUDGET, STREAMS, Check
from hub.api.open_calls import OpenCall
from hub.api.ratelimit import Grant

pytestmark = pytest.mark.django_db(transaction=True)  # the rows are written on the pool's threads


@pytest.fixture(autouse=True)
def _forget_open_ids():
    yield
    open_requests._open_ids.clear()


def _call(acme, n: int, grant: Grant | None = None) -> OpenCall:
    return OpenCall(f"req_{n}", acme.tenant.id, None, "chat-small", "chat/completions", "default", False, grant)


def test_rows_coming_together_are_written_together(acme, monkeypatch):
    statements: list[int] = []
    write = open_requests.write
    monkeypatch.setattr(open_requests, "write", lambda rows: (statements.append(len(rows)), write(rows)))

    async def requests() -> list[OpenCall]:
        calls = [_call(acme, n) for n in range(20)]
        await asyncio.gather(*(call.write() for call in calls))
        return calls

    calls = asyncio.run(requests())
    assert all(call.written for call in calls)
    assert sorted(OpenRequest.objects.values_list("request_id", flat=True)) == sorted(f"req_{n}" for n in range(20))
    assert sum(statements) == 20 and len(statements) < 20  # the first alone, those that came meanwhile together
    assert set(OpenRequest.objects.values_list("owner", flat=True)) == {open_requests.owner()}


def test_a_call_that_reached_no_model_leaves_nothing_and_a_metered_one_leaves_its_row_to_the_usage_row(acme):
    async def calls() -> tuple[OpenCall, OpenCall]:
        missed, metered = _call(acme, 1), _call(acme, 2)
        await asyncio.gather(missed.write(), metered.write())
        assert metered.usage_id_if_written() == metered.usage_id
        await asyncio.gather(missed.end(), metered.end())
        return missed, metered

    missed, metered = asyncio.run(calls())
    assert list(OpenRequest.objects.values_list("usage_id", flat=True)) == [metered.usage_id]


def test_the_reservation_is_kept_as_the_reaper_settles_it(acme):
    checks = [Check(BUDGET, "key:1:day:20261205:budget", 1000, 300, 1.8e9), Check(STREAMS, "key:1:streams", 2, 1, 900)]
    grant = Grant("req_1", 300, checks, {"x-ratelimit-limit-tokens": "1000"}, reserved_cost=12)
    asyncio.run(_call(acme, 1, grant).write())
    kept = Grant.from_state(OpenRequest.objects.get().grant)
    assert (kept.member, kept.reserved, kept.reserved_cost, kept.checks) == ("req_1", 300, 12, checks)
