"""A streamed background response's events for a client, from those kept (``accounts.background.events_after``):
what is kept after the sequence number it asks from, then what comes, until the final event (``response.completed``,
``.incomplete``, ``.failed``), a cancel or the response's deletion. A run in this process wakes its clients as it
writes (``wake``); one in another process (a Celery worker) is polled every ``POLL_SECONDS``. The POST
that created it streams this from the start; ``GET /v1/responses/{id}?stream=true&starting_after=N`` from N, again
and from any process. A run that wrote its answer but not its last events (its process died just then) has them
made from the stored response after ``GRACE_SECONDS``."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator
from contextlib import suppress

from accounts import background
from accounts.models import BackgroundState
from hub.pool import db

POLL_SECONDS = 0.05
GRACE_SECONDS = 5.0

_FINAL_OF = {"completed": "response.completed", "incomplete": "response.incomplete", "failed": "response.failed"}


# the clients streaming a response in this process, by its id: each its loop and the event that wakes it
_waiting: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}
_lock = threading.Lock()


def wake(response_id: str) -> None:
    """The response's stream has more (or ended): its clients in this process read it now. Any thread."""
    with _lock:
        waiting = list(_waiting.get(response_id, ()))
    for loop, event in waiting:
        loop.call_soon_threadsafe(event.set)


async def _wait(response_id: str, waiter: tuple[asyncio.AbstractEventLoop, asyncio.Event]) -> None:
    with suppress(TimeoutError):
        await asyncio.wait_for(waiter[1].wait(), POLL_SECONDS)
    waiter[1].clear()


async def events(tenant_id: int, response_id: str, after: int = -1) -> AsyncIterator[dict]:
    waiter = (asyncio.get_running_loop(), asyncio.Event())
    with _lock:
        _waiting.setdefault(response_id, set()).add(waiter)
    try:
        async for event in _events(tenant_id, response_id, after, waiter):
            yield event
    finally:
        with _lock:
            _waiting.get(response_id, set()).discard(waiter)
            if not _waiting.get(response_id, True):
                del _waiting[response_id]


async def _events(tenant_id: int, response_id: str, after: int, waiter) -> AsyncIterator[dict]:
    ended: float | None = None
    while True:
        found = await db(background.events_after, tenant_id, response_id, after)
        if found is None:  # deleted meanwhile
            return
        kept, state, response = found
        for event in kept:
            yield event
            after = event["sequence_number"]
            if event["type"] in background.FINAL_EVENTS:
                return
        if kept:
            continue
        if state == BackgroundState.CANCELLED:
            return
        if state == BackgroundState.DONE:
            ended = ended or time.monotonic()
            if time.monotonic() - ended > GRACE_SECONDS:
                kind = _FINAL_OF.get(response.get("status"), "response.failed")
                yield {"type": kind, "response": response, "sequence_number": after + 1}
                return
        await _wait(response_id, waiter)


def sse(event: dict) -> bytes:
    return f"event: {event['type']}\ndata: {json.dumps(event, separators=(',', ':'))}\n\n".encode()
