"""A streamed background response run by another process (a Celery worker) reaches its clients as the run writes:
the write announced on Redis (``hub/background/wakeups.py``) wakes the stream in this process at once, where it would
otherwise poll the database. Here the polls are made a minute apart, so only the announcement can deliver in time."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from django.utils import timezone

from accounts import background
from hub.background import tail, wakeups

pytestmark = pytest.mark.django_db(transaction=True)


def _streamed(tenant) -> str:
    response = {"id": "resp_woken", "object": "response", "created_at": int(timezone.now().timestamp()),
                "model": "chat-small", "status": "queued", "background": True, "output": []}  # fmt: skip
    background.create(tenant_id=tenant.id, api_key_id=None, history=[], input_items=[], response=response,
                      request={"model": "chat-small", "input": "hi", "stream": True})  # fmt: skip
    background.claim("resp_woken", "worker-elsewhere", 60.0)
    return "resp_woken"


def test_a_write_announced_by_another_process_wakes_the_stream_here(acme, settings, redis_url, monkeypatch):
    settings.REDIS_URL = redis_url
    monkeypatch.setattr(tail, "LISTENING_POLL_SECONDS", 60.0)
    monkeypatch.setattr(tail, "POLL_SECONDS", 60.0)
    response_id = _streamed(acme.tenant)
    got: list[tuple[float, str]] = []

    async def read() -> None:
        async for event in tail.events(response_id, after=1):  # after the queued response's two events
            got.append((time.monotonic(), event["type"]))

    reader = threading.Thread(target=asyncio.run, args=(read(),), daemon=True)
    reader.start()
    deadline = time.monotonic() + 10
    while not wakeups.listening():
        assert time.monotonic() < deadline, "the listener never subscribed"
        time.sleep(0.01)
    time.sleep(0.2)  # the stream has read what was kept and waits
    for kind in ("response.output_text.delta", "response.completed"):
        # as a worker does: the write, then its announcement (nothing wakes this process's streams directly)
        assert background.add_events(response_id, "worker-elsewhere", [{"type": kind, "response": {}}])
        written = time.monotonic()
        wakeups.announce(response_id)
        while len(got) < (1 if kind.endswith("delta") else 2):
            assert time.monotonic() - written < 10, f"{kind} not read 10 s after it was announced"
            time.sleep(0.01)
        assert got[-1][1] == kind
    reader.join(5)
    assert not reader.is_alive()  # the final event ended the stream
