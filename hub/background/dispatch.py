"""Where background responses are answered: on this process's background loop (``hub.batches.dispatch``'s), in the
hub's own process without a broker (the embedded default), else by a Celery worker each
(``hub.run_background_response``). A response already answered here is not started twice; a stopping process hands
its responses back (``leave_all``), and a cancel seen in this process stops its run at once (``stop``)."""

from __future__ import annotations

import concurrent.futures
import logging
import threading

from django.conf import settings

from hub.background.runner import BackgroundRun
from hub.batches import dispatch as loop

log = logging.getLogger(__name__)

_lock = threading.Lock()
_running: dict[str, tuple[BackgroundRun, concurrent.futures.Future]] = {}


def submit(response_id: str) -> concurrent.futures.Future:
    """Answer the response on this process's background loop (unless it runs here already); its future."""
    with _lock:
        running = _running.get(response_id)
        if running is not None and not running[1].done():
            return running[1]
        run = BackgroundRun(response_id, loop.RUNNER)
        future = loop.run_soon(run.run())
        _running[response_id] = (run, future)
    future.add_done_callback(lambda done: _finished(response_id, done))
    return future


def _finished(response_id: str, future: concurrent.futures.Future) -> None:
    with _lock:
        if _running.get(response_id, (None, None))[1] is future:
            del _running[response_id]
    if not future.cancelled() and future.exception() is not None:  # taken up again once its heartbeat is stale
        log.error("background response %s stopped: %r", response_id, future.exception())


def stop(response_id: str) -> None:
    """The response was cancelled or deleted: its run in this process, if any, stops now (one elsewhere stops at
    its next heartbeat)."""
    with _lock:
        running = _running.get(response_id)
    if running is not None:
        loop.the_loop().call_soon_threadsafe(running[0].stop.set)


def leave_all(timeout: float) -> None:
    """This process is stopping: every response it answers stops (metered) and is handed back, queued."""
    with _lock:
        running = list(_running.values())
    for run, _ in running:
        loop.the_loop().call_soon_threadsafe(run.leave)
    concurrent.futures.wait([future for _, future in running], timeout=timeout)


def start(response_id: str) -> None:
    """Have the response answered: in this process without a broker (the embedded default), else by a worker."""
    if settings.CELERY_TASK_ALWAYS_EAGER:
        submit(response_id)
        return
    from hub.tasks import run_background_response

    run_background_response.delay(response_id)
