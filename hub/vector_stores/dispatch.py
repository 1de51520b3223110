"""Where vector stores' files are indexed: on this process's background loop (``hub/batches/runs.py``), in the
hub's own process without a broker (the embedded default), else by Celery workers (``hub.index_vector_store_file``).
``HUB_BATCH_CONCURRENCY`` files at a time per process; a file already waiting here is not queued twice."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading

from django.conf import settings

from hub.batches.runs import run_soon
from hub.vector_stores.indexer import index

_lock = threading.Lock()
_queued: set[int] = set()
_gate: asyncio.Semaphore | None = None  # made on the background loop, which it belongs to


async def _index(row_id: int) -> None:
    global _gate
    if _gate is None:
        _gate = asyncio.Semaphore(settings.HUB_BATCH_CONCURRENCY)
    try:
        async with _gate:
            await index(row_id)
    finally:
        with _lock:
            _queued.discard(row_id)


def run(row_id: int) -> concurrent.futures.Future:
    """Index the file on this process's background loop; its future (done at once if it is already queued here)."""
    with _lock:
        if row_id in _queued:
            done: concurrent.futures.Future = concurrent.futures.Future()
            done.set_result(None)
            return done
        _queued.add(row_id)
    return run_soon(_index(row_id))


def start(row_ids: list[int]) -> None:
    """Have the files indexed: in this process without a broker, else by a Celery worker each."""
    if settings.CELERY_TASK_ALWAYS_EAGER:
        for row_id in row_ids:
            run(row_id)
        return
    from hub.tasks import index_vector_store_file

    for row_id in row_ids:
        index_vector_store_file.delay(row_id)
