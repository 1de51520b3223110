"""The hub's background work for Celery (autodiscovered with ``accounts.tasks``): the Batch API's runs."""

from __future__ import annotations

from celery import shared_task
from celery.signals import worker_shutting_down
from django.conf import settings

from accounts import batches
from hub.batches import dispatch


@shared_task(name="hub.run_batch", acks_late=True)
def run_batch(batch_id: str) -> None:
    """Work the batch to its end on this worker (``hub/batches/runner.py``)."""
    dispatch.submit(batch_id).result()


@shared_task(name="hub.resume_batches")
def resume_batches() -> int:
    """Start again the unfinished batches whose runner went quiet (a worker or hub restarted, a start lost); returns
    how many. The runner that takes one skips the lines already answered."""
    found = batches.stale(settings.HUB_BATCH_STALE_SECONDS)
    for batch_id in found:
        dispatch.start(batch_id)
    return len(found)


@worker_shutting_down.connect
def _hand_batches_back(**_) -> None:
    """A worker asked to stop (a deploy, a scale-down) does not wait hours for its batches: each finishes the
    requests under way and is handed back to the next worker (``dispatch.leave_all``)."""
    dispatch.leave_all(timeout=settings.HUB_SHUTDOWN_GRACE_SECONDS)
