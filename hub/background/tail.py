"""A streamed background response's events for a client, from those kept (``accounts.background.events_after``):
what is kept after the sequence number it asks from, then what comes, polled every ``POLL_SECONDS``, until the
final event (``response.completed``, ``.incomplete``, ``.failed``), a cancel or the response's deletion. The POST
that created it streams this from the start; ``GET /v1/responses/{id}?stream=true&starting_after=N`` from N, again
and from any process. A run that wrote its answer but not its last events (its process died just then) has them
made from the stored response after ``GRACE_SECONDS``."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

from accounts import background
from accounts.models import BackgroundState
from hub.pool import db

POLL_SECONDS = 0.05
GRACE_SECONDS = 5.0

_FINAL_OF = {"completed": "response.completed", "incomplete": "response.incomplete", "failed": "response.failed"}


async def events(tenant_id: int, response_id: str, after: int = -1) -> AsyncIterator[dict]:
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
        await asyncio.sleep(POLL_SECONDS)


def sse(event: dict) -> bytes:
    return f"event: {event['type']}\ndata: {json.dumps(event, separators=(',', ':'))}\n\n".encode()
