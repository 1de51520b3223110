"""One background response answered: its work claimed (``accounts.background.claim``: one runner at a time), its
request sent through the gateway in this process (``hub.batches.call``) with the key that created it, as the
request of a client that waits: the same checks, limits, deployment choice and metering, and the relay writes the
answer into the stored response (``accounts.background.answer``). A rate limit or a moment without a deployment
(429, 503) keeps it running and it is sent again after the wait the hub asked for (up to ``RETRY_PATIENCE``); any
other refusal fails it.

A response created with ``stream: true`` is run streamed, its events kept as they come for the clients that stream
it (``recorder.py``, ``tail.py``); one whose earlier run streamed part of an answer and died is failed rather than
answered again, its clients having the part.

In the hub's own process (no broker) ``HUB_BACKGROUND_CONCURRENCY`` run at once and the others wait, queued (the
beat's resume finds the run already waiting here); a Celery worker runs as many as its concurrency (a task each).

A heartbeat shows life every second or so: a response cancelled (or deleted, or taken over after this runner went
quiet) stops the request, which is metered for what it produced. A stopping process (``leave``) stops its request
too and hands the work back, queued, for the next runner to answer from the start."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import secrets
import time
from contextlib import suppress

from django.conf import settings

from accounts import authn, background
from hub import shutdown
from hub.background import tail
from hub.background.recorder import Recorder
from hub.batches.call import call, retry_after
from hub.pool import db

log = logging.getLogger(__name__)


# how long a run keeps trying a request refused for the moment (429, 503) before the response fails with that refusal
RETRY_PATIENCE = 3600.0


def heartbeat_period() -> float:
    """Seconds between heartbeats: a quarter of the time after which a quiet runner's work is taken over, and at
    most a second, which is how long a cancelled response may run on."""
    return min(settings.HUB_BATCH_STALE_SECONDS / 4, 1.0)


def _error_of(content: bytes) -> tuple[str, str]:
    """OpenAI's error ``code`` and ``message`` from a refusal's body."""
    try:
        error = json.loads(content)["error"]
        return str(error.get("code") or error.get("type") or "server_error"), str(error["message"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return "server_error", "The response could not be answered."


_gates: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}


def _gate() -> asyncio.Semaphore:
    """This loop's gate (the process's background loop: one)."""
    loop = asyncio.get_running_loop()
    if loop not in _gates:
        _gates[loop] = asyncio.Semaphore(settings.HUB_BACKGROUND_CONCURRENCY)
    return _gates[loop]


class BackgroundRun:
    def __init__(self, response_id: str, runner: str):
        self.response_id, self.runner = response_id, runner
        self.stop = asyncio.Event()  # set once the request must stop: cancelled, lost, or this process leaving
        self.leaving = False

    def leave(self) -> None:
        self.leaving = True
        self.stop.set()

    async def run(self) -> None:
        if not settings.CELERY_TASK_ALWAYS_EAGER:  # a Celery worker: its concurrency bounds its runs (a task each)
            return await self._run()
        async with _gate():  # the hub's own process: HUB_BACKGROUND_CONCURRENCY at once, the others wait, queued
            await self._run()

    async def _run(self) -> None:
        if self.leaving:
            return
        work = await db(background.claim, self.response_id, self.runner, settings.HUB_BATCH_STALE_SECONDS)
        if work is None:
            return
        try:
            key = await db(authn.context_of, work.api_key_id)
        except authn.AuthFailed as failed:
            return await self._fail("invalid_api_key", f"The response's API key can no longer be used "
                                    f"({failed.reason.value}).")  # fmt: skip
        if work.request.get("stream") is True and await db(background.next_sequence, self.response_id) > 2:
            # an earlier run streamed part of an answer, which its clients have: it cannot be taken back
            return await self._fail("server_error", "The worker answering this response stopped mid-answer; a "
                                    "streamed answer is not started again.")  # fmt: skip
        heart = asyncio.create_task(self._heartbeat())
        try:
            await self._answer(key, work.request, work.response.response["created_at"])
        finally:
            heart.cancel()
            with suppress(asyncio.CancelledError):
                await heart
        if self.leaving:
            await db(background.release, self.response_id, self.runner)

    async def _answer(self, key: authn.KeyContext, request: dict, created_at: int) -> None:
        run = {"id": self.response_id, "created_at": created_at}
        give_up = time.monotonic() + RETRY_PATIENCE
        for attempt in itertools.count():
            recorder = Recorder(self.response_id, self.runner, self.stop) if request.get("stream") is True else None
            answer = await call(key, "responses", request, f"req_{secrets.token_hex(16)}", batch=False,
                                extra={"background": run}, abort=self.stop,
                                sink=None if recorder is None else recorder.feed)  # fmt: skip
            if recorder is not None:
                await recorder.close()
            if self.stop.is_set():
                return
            if answer.status == 200:  # the relay wrote the answer, unless its stream failed (the event says why)
                if recorder is not None and recorder.failed is not None:
                    error = recorder.failed.get("error") or {}
                    await self._fail(str(error.get("code") or "server_error"), str(error.get("message") or ""),
                                     recorder.failed)  # fmt: skip
                return
            if shutdown.over():  # refused because this process is stopping: handed back, not failed
                self.leave()
                return
            wait = retry_after(answer, attempt)
            if wait is None or time.monotonic() + wait > give_up:
                return await self._fail(*_error_of(answer.body))
            with suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), wait)
            if self.stop.is_set():
                return

    async def _fail(self, code: str, message: str, failed: dict | None = None) -> None:
        """The response failed (``accounts.background.fail``); its streams, in every process, read the end now."""
        await db(background.fail, self.response_id, code, message, failed)
        await asyncio.to_thread(tail.wake_everywhere, self.response_id)

    async def _heartbeat(self) -> None:
        while not self.stop.is_set():
            await asyncio.sleep(heartbeat_period())
            if not await db(background.heartbeat, self.response_id, self.runner):
                self.stop.set()  # cancelled, deleted, or another runner's now
