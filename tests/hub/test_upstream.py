"""``Upstreams.model``: the deployment list is read again every CACHE_SECONDS; with the database unreachable the
last list keeps routing (asked again only every OUTAGE_RETRY_SECONDS, as each try may hold a request for the pool's
timeout), while other database errors, and an outage before any list was read, surface.

``Upstreams.order``: the deployment with the fewest requests outstanding comes first, and one that was benched
(it refused a connection) goes last for BENCH_SECONDS, then is back in the count order (README: "forwards to the
model's deployment with the fewest requests outstanding (counted by each hub process); a deployment that refuses
connections is put last for 10 s, tried only when the others fail"). The clock is the module's
``time.monotonic``, driven by hand."""

from __future__ import annotations

import asyncio

import pytest
from django.db import OperationalError, ProgrammingError

from accounts import services
from accounts.models import ModelKind
from hub.api import upstream
from hub.api.upstream import BENCH_SECONDS, CACHE_SECONDS, OUTAGE_RETRY_SECONDS, Target, Upstreams

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


def _targets() -> tuple[Target, Target]:
    return (
        Target(1, "http://127.0.0.1:9/v1", "m", "", external=False),
        Target(2, "http://127.0.0.1:10/v1", "m", "", external=False),
    )


def test_the_deployment_with_fewest_outstanding_requests_comes_first_as_the_counts_change(clock):
    a, b = _targets()
    ups = Upstreams()
    assert ups.order([a, b]) == [a, b] and ups.order([b, a]) == [b, a]  # a tie keeps the given (id) order

    ups.acquire(a)  # a request outstanding on a, none on b
    assert ups.order([a, b]) == [b, a] and ups.order([b, a]) == [b, a]
    ups.acquire(b)
    ups.acquire(b)  # a: 1, b: 2
    assert ups.order([a, b]) == [a, b] and ups.order([b, a]) == [a, b]
    ups.release(b)  # a: 1, b: 1, equal again: the given order
    assert (ups.outstanding(a), ups.outstanding(b)) == (1, 1)
    assert ups.order([a, b]) == [a, b] and ups.order([b, a]) == [b, a]
    ups.release(a)  # a: 0, b: 1
    assert ups.order([b, a]) == [a, b]
    ups.release(b)
    assert (ups.outstanding(a), ups.outstanding(b)) == (0, 0)
    assert ups.order([a, b]) == [a, b] and ups.order([b, a]) == [b, a]


def test_a_benched_deployment_goes_last_for_ten_seconds_then_is_used_again(clock):
    assert BENCH_SECONDS == 10.0  # the README's "put last for 10 s"
    a, b = _targets()
    ups = Upstreams()
    for _ in range(3):  # b is busier: by the counts alone, a would come first
        ups.acquire(b)
    assert ups.order([a, b]) == [a, b]

    benched_at = clock[0]
    ups.bench(a)  # a refused a connection
    assert ups.order([a, b]) == [b, a]  # last, though it has the fewest outstanding
    clock[0] = benched_at + 9.9
    assert ups.order([a, b]) == [b, a] and ups.order([b, a]) == [b, a]
    clock[0] = benched_at + 10.1
    assert ups.order([a, b]) == [a, b] and ups.order([b, a]) == [a, b]  # back, first by its count

    ups.bench(b)  # benching one does not bench the other, and a bench starts from its own time
    clock[0] += 9.9
    assert ups.order([b, a]) == [a, b]
    ups.bench(a)  # both benched: still both tried, in count order among themselves
    assert ups.order([b, a]) == [a, b]
    clock[0] += 0.2  # b's bench is over, a's is not
    assert ups.order([a, b]) == [b, a]
