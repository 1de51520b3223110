"""``Upstreams.model``: the deployment list is read again every CACHE_SECONDS; with the database unreachable the
last list keeps routing (asked again only every OUTAGE_RETRY_SECONDS, as each try may hold a request for the pool's
timeout), while other database errors, and an outage before any list was read, surface."""

from __future__ import annotations

import asyncio

import pytest
from django.db import OperationalError, ProgrammingError

from accounts import services
from accounts.models import ModelKind
from hub.api import upstream
from hub.api.upstream import CACHE_SECONDS, OUTAGE_RETRY_SECONDS, Upstreams

pytestmark = pytest.mark.django_db(transaction=True)  # read from executor threads


@pytest.fixture
def clock(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(upstream.time, "monotonic", lambda: now[0])
    return now


def test_an_unreachable_database_keeps_the_last_list(monkeypatch, clock):
    services.register_model("m", ModelKind.CHAT, max_sequence_length=64, deployment_url="http://127.0.0.1:9/v1")
    ups = Upstreams()
    info, targets = asyncio.run(ups.model("m"))
    assert info.id == "m" and [t.base_url for t in targets] == ["http://127.0.0.1:9/v1"]

    calls = []

    def down(model_id):
        calls.append(model_id)
        raise OperationalError("connection refused")

    monkeypatch.setattr(upstream, "_load", down)
    clock[0] += CACHE_SECONDS + 1
    assert asyncio.run(ups.model("m")) == (info, targets) and calls == ["m"]
    clock[0] += OUTAGE_RETRY_SECONDS - 1  # not asked again meanwhile
    assert asyncio.run(ups.model("m")) == (info, targets) and calls == ["m"]
    clock[0] += 2
    assert asyncio.run(ups.model("m")) == (info, targets) and calls == ["m", "m"]

    with pytest.raises(OperationalError):  # nothing known yet: the request gets its 503
        asyncio.run(ups.model("other"))

    def broken(model_id):
        raise ProgrammingError("no such table")

    monkeypatch.setattr(upstream, "_load", broken)
    clock[0] += OUTAGE_RETRY_SECONDS + 1
    with pytest.raises(ProgrammingError):  # a bug, not an outage: not hidden behind the cache
        asyncio.run(ups.model("m"))
