"""A streamed background response's events for a client, from those kept (``accounts.background.events_after``):
what is kept after the sequence number it asks from, then what comes, until the final event (``response.completed``,
``.incomplete``, ``.failed``), a cancel or the response's deletion. A run in this process wakes its clients as it
writes (``wake``); one in another process (a Celery worker) announces its writes on Redis (``wakeups.py``), heard
here, with a poll every ``LISTENING_POLL_SECONDS`` for an announcement lost (every ``POLL_SECONDS`` while none can
be heard). The POST
that created it streams this from the start; ``GET /v1/responses/{id}?stream=true&starting_after=N`` from N, again
and from any process. A run that wrote its answer but not its last events (its process died just then) has them
made from the stored response after ``GRACE_SECONDS``."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from contextlib import suppress

from accounts import background
from accounts.models import BackgroundState
from hub.background import wakeups
from hub.pool import db

POLL_SECONDS = 0.05
LISTENING_POLL_SECONDS = 1.0
GRACE_SECONDS = 5.0

# the clients streaming a response in this process, by its id: each its loop and the event that wakes it
_waiting: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}
_lock = threading.Lock()


def wake(response_id: str) -> None:
    """The response's stream has more (or ended): its clients in this process read it now. Any thread."""
    with _lock:
        waiting = list(_waiting.get(response_id, ()))
    for loop, event in waiting:
        loop.call_soon_threadsafe(event.set)


def wake_everywhere(response_id: str) -> None:
    """``wake``, and the same in every other process (announced on Redis). Blocking: from a loop, in a thread."""
    wake(response_id)
    wakeups.announce(response_id)


async def events(response_id: str, after: int = -1) -> AsyncIterator[dict]:
    """The stream of a streamed background response (the caller checked it is the client's:
    ``accounts.background.streamed``)."""
    loop, woken = asyncio.get_running_loop(), asyncio.Event()
    wakeups.listen(wake)
    with _lock:
        _waiting.setdefault(response_id, set()).add((loop, woken))
    try:
        ended: float | None = None
        while True:
            found = await db(background.events_after, response_id, after)
            if found is None:  # deleted meanwhile
                return
            kept, state = found
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
                if time.monotonic() - ended > GRACE_SECONDS:  # its last events were lost: made from the answer
                    final = await db(background.final_event, response_id, after + 1)
                    if final is not None:
                        yield final
                    return
            with suppress(TimeoutError):
                await asyncio.wait_for(woken.wait(), LISTENING_POLL_SECONDS if wakeups.listening() else POLL_SECONDS)
            woken.clear()  # before the next read: a wake from now on is seen by the wait after it
    finally:
        with _lock:
            _waiting.get(response_id, set()).discard((loop, woken))
            if not _waiting.get(response_id, True):
                del _waiting[response_id]
