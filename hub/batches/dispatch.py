"""Where batches run: on one event loop per process, on a thread of its own (``submit``), so that the hub's own
process (the embedded default, whose tasks are eager) answers ``POST /batches`` at once while the batch runs beside
it, and a Celery worker (``hub.run_batch``) runs its batches on a loop that outlives each task (the gateway keeps
one HTTP client per loop). ``start`` picks the one or the other. A stopping process hands its batches back
(``leave_all``)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import secrets
import socket
import threading

from django.conf import settings

from hub.batches.runner import BatchRun

log = logging.getLogger(__name__)

# this process's name as a batch's runner: a batch claimed by it is not claimed by it again while it runs
RUNNER = f"{socket.gethostname()[:32]}:{os.getpid()}:{secrets.token_hex(4)}"

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_running: dict[str, tuple[BatchRun, concurrent.futures.Future]] = {}


def the_loop() -> asyncio.AbstractEventLoop:
    global _loop
    if _loop is None:
        _loop = asyncio.new_event_loop()
        threading.Thread(target=_loop.run_forever, name="batches", daemon=True).start()
    return _loop


def run_soon(coroutine) -> concurrent.futures.Future:
    """Run ``coroutine`` on this process's background loop (a vector store's indexing runs there too)."""
    return asyncio.run_coroutine_threadsafe(coroutine, the_loop())


def submit(batch_id: str) -> concurrent.futures.Future:
    """Run the batch on this process's batch loop (unless it runs there already); its future."""
    with _lock:
        running = _running.get(batch_id)
        if running is not None and not running[1].done():
            return running[1]
        run = BatchRun(batch_id, RUNNER)
        future = asyncio.run_coroutine_threadsafe(run.run(), the_loop())
        _running[batch_id] = (run, future)
    future.add_done_callback(lambda done: _finished(batch_id, done))
    return future


def leave_all(timeout: float) -> None:
    """This process is stopping: every batch it runs finishes the requests under way (each metered) and is handed
    back, for another runner to take up at once; waits up to ``timeout`` for that."""
    with _lock:
        running = list(_running.values())
    for run, _ in running:
        the_loop().call_soon_threadsafe(run.leave)
    concurrent.futures.wait([future for _, future in running], timeout=timeout)


def _finished(batch_id: str, future: concurrent.futures.Future) -> None:
    with _lock:
        if _running.get(batch_id, (None, None))[1] is future:
            del _running[batch_id]
    if not future.cancelled() and future.exception() is not None:  # taken up again once its heartbeat is stale
        log.error("batch %s stopped: %r", batch_id, future.exception())


def start(batch_id: str) -> None:
    """Have the batch run: in this process without a broker (the embedded default), else by a Celery worker."""
    if settings.CELERY_TASK_ALWAYS_EAGER:
        submit(batch_id)
        return
    from hub.tasks import run_batch

    run_batch.delay(batch_id)
