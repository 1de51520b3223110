"""The Batch API's tests: a Celery worker that runs batches (as production's do), input files written as JSON Lines,
and the waits for a batch to get somewhere."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager

from accounts.models import BatchResult
from tests.support.hub import celery_worker
from tests.support.processes import Process

OPEN_LEASE_SECONDS = 1
STALE_SECONDS = 4  # the tests' HUB_BATCH_STALE_SECONDS: a heartbeat every second, a dead runner replaced in 4


@contextmanager
def batch_worker() -> Iterator[Process]:
    """A Celery worker as production runs it, 4 threads (batches side by side), a heartbeat every second; its open
    requests' leases run out a second after it dies (``OPEN_LEASE_SECONDS``: the reaper may meter them then); it
    sends webhooks to receivers on loopback, and calls MCP servers there."""
    worker = celery_worker("--concurrency", "4", HUB_BATCH_STALE_SECONDS=str(STALE_SECONDS),
                           HUB_OPEN_REQUEST_LEASE_SECONDS=str(OPEN_LEASE_SECONDS),
                           HUB_WEBHOOK_ALLOW_PRIVATE_URLS="true", HUB_MCP_ALLOW_PRIVATE_URLS="true")  # fmt: skip
    try:
        yield worker
    finally:
        output = worker.stop()
        assert "Traceback" not in output, f"the batch worker logged a traceback:\n{output}"


def answered(batch_id: str, count: int, timeout: float = 30) -> None:
    """Wait until ``count`` of the batch's lines are answered."""
    deadline = time.monotonic() + timeout
    while BatchResult.objects.filter(batch_id=batch_id).count() < count:
        assert time.monotonic() < deadline, f"batch {batch_id}: fewer than {count} answers after {timeout} s"
        time.sleep(0.05)


def jsonl(lines: list[dict | str]) -> bytes:
    return "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines).encode()


def chat_line(custom_id: str, model: str, text: str, **body) -> dict:
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": model, "messages": [{"role": "user", "content": text}], **body}}  # fmt: skip


def wait_for(client, batch_id: str, statuses: tuple[str, ...], timeout: float = 60):
    """The batch once its status is one of ``statuses`` (polled as a client would)."""
    deadline = time.monotonic() + timeout
    while True:
        batch = client.batches.retrieve(batch_id)
        if batch.status in statuses:
            return batch
        assert time.monotonic() < deadline, f"batch {batch_id} still {batch.status} after {timeout} s"
        time.sleep(0.2)


def lines_of(client, file_id: str | None) -> list[dict]:
    if file_id is None:
        return []
    return [json.loads(line) for line in client.files.content(file_id).text.splitlines()]
