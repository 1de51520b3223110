"""Where background responses are answered: on this process's background loop (``hub/batches/runs.py``), in the
hub's own process without a broker (the embedded default), else by a Celery worker each
(``hub.run_background_response``). A response already answered here is not started twice; a stopping process hands
its responses back (``runs.leave_all``: each stops, metered, and is queued again), and a cancel seen in this process
stops its run at once (``stop``)."""

from __future__ import annotations

import concurrent.futures

from django.conf import settings

from hub.background import tail
from hub.background.runner import BackgroundRun
from hub.batches.runs import Runs, the_loop

_runs = Runs("background response", BackgroundRun)


def submit(response_id: str) -> concurrent.futures.Future:
    """Answer the response on this process's background loop (unless it runs here already); its future."""
    return _runs.submit(response_id)


def stop(response_id: str) -> None:
    """The response was cancelled or deleted: its run in this process, if any, stops now (one elsewhere stops at
    its next heartbeat), and its streams end, in this process and the others."""
    run = _runs.get(response_id)
    if run is not None:
        the_loop().call_soon_threadsafe(run.stop.set)
    tail.wake_everywhere(response_id)


def start(response_id: str) -> None:
    """Have the response answered: in this process without a broker (the embedded default), else by a worker."""
    if settings.CELERY_TASK_ALWAYS_EAGER:
        submit(response_id)
        return
    from hub.tasks import run_background_response

    run_background_response.delay(response_id)
