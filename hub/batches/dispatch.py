"""Where batches run: on this process's background loop (``runs.py``), in the hub's own process without a broker
(the embedded default), else by a Celery worker (``hub.run_batch``); ``start`` picks the one or the other. A
stopping process hands its batches back (``runs.leave_all``)."""

from __future__ import annotations

import concurrent.futures

from django.conf import settings

from hub.batches.runner import BatchRun
from hub.batches.runs import Runs

_runs = Runs("batch", BatchRun)


def submit(batch_id: str) -> concurrent.futures.Future:
    """Run the batch on this process's background loop (unless it runs there already); its future."""
    return _runs.submit(batch_id)


def start(batch_id: str) -> None:
    """Have the batch run: in this process without a broker (the embedded default), else by a Celery worker."""
    if settings.CELERY_TASK_ALWAYS_EAGER:
        submit(batch_id)
        return
    from hub.tasks import run_batch

    run_batch.delay(batch_id)
