"""The hub's background work for Celery (autodiscovered with ``accounts.tasks``): the Batch API's runs, background
responses, the indexing of vector stores' files, webhooks, and the metering of requests whose hub process died."""

from __future__ import annotations

from celery import shared_task
from celery.signals import worker_shutting_down
from django.conf import settings

from accounts import background, batches, vector_stores
from hub import reaper
from hub.background import dispatch as background_dispatch
from hub.batches import dispatch, runs
from hub.batches.runs import run_soon
from hub.vector_stores import dispatch as vector_store_dispatch
from hub.webhooks import dispatch as webhooks_dispatch


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


@shared_task(name="hub.run_background_response", acks_late=True)
def run_background_response(response_id: str) -> None:
    """Answer a response created with ``background: true`` on this worker (``hub/background/runner.py``)."""
    background_dispatch.submit(response_id).result()


@shared_task(name="hub.resume_background_responses")
def resume_background_responses() -> int:
    """Start again the background responses whose runner went quiet or handed them back; returns how many."""
    found = background.stale(settings.HUB_BATCH_STALE_SECONDS)
    for response_id in found:
        background_dispatch.start(response_id)
    return len(found)


@shared_task(name="hub.index_vector_store_file", acks_late=True)
def index_vector_store_file(row_id: int) -> None:
    """Index one file of a vector store on this worker (``hub/vector_stores/indexer.py``)."""
    vector_store_dispatch.run(row_id).result()


@shared_task(name="hub.resume_vector_store_files")
def resume_vector_store_files() -> int:
    """Start again the files in progress that no indexer shows life on (a worker or hub restarted); returns how many."""
    found = vector_stores.stale(settings.HUB_BATCH_STALE_SECONDS)
    vector_store_dispatch.start(found)
    return len(found)


@shared_task(name="hub.send_webhooks")
def send_webhooks() -> int:
    """Send the webhook deliveries that are due (new events, retries); returns how many attempts were made."""
    return run_soon(webhooks_dispatch.pump()).result()


@shared_task(name="hub.reap_open_requests")
def reap_open_requests() -> int:
    """Meter the requests whose hub process died on their way (``hub/reaper.py``); returns how many."""
    return reaper.reap()


@worker_shutting_down.connect
def _hand_batches_back(**_) -> None:
    """A worker asked to stop (a deploy, a scale-down) does not wait hours for its batches: each finishes the
    requests under way and is handed back to the next worker, its background responses too (``runs.leave_all``)."""
    runs.leave_all(timeout=settings.HUB_SHUTDOWN_GRACE_SECONDS)
