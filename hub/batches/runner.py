"""One batch worked from start to end: claimed (``accounts.batches.claim``: one runner at a time), its input file
checked (a bad line fails the batch, as OpenAI's validation does), then every line not answered yet sent through the
gateway (``call.py``), ``HUB_BATCH_CONCURRENCY`` at a time, each answer recorded as it comes, so that a runner that
dies loses at most the requests it had under way. A heartbeat shows life every quarter of
``HUB_BATCH_STALE_SECONDS`` and reads the batch back: asked to cancel, past its 24-hour window or its key no longer
valid, the runner sends no more requests, waits for those under way and finishes the batch (cancelled, expired or
failed) with what it has. Its process stopping (``leave``), it waits for them too, every one metered, and hands the
batch back for the next runner. A line refused for the moment (429 for a rate limit, 503) waits and is tried
again."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from contextlib import suppress

from django.conf import settings
from django.utils import timezone

from accounts import authn, batch_input, batches, files
from accounts.models import BatchStatus
from hub.api.relay_common import token_counts
from hub.batches.call import call, retry_after
from hub.pool import db

log = logging.getLogger(__name__)


def _tokens(body: object) -> dict[str, int]:
    """The batch's token counts from an answer's ``usage`` (the gateway meters it with the same reading)."""
    usage = body.get("usage") if isinstance(body, dict) else None
    if not isinstance(usage, dict):
        return {}
    counts = token_counts(usage)
    return {"input_tokens": counts.prompt, "output_tokens": counts.completion, "cached_tokens": counts.cached or 0,
            "reasoning_tokens": counts.reasoning or 0}  # fmt: skip


class BatchRun:
    def __init__(self, batch_id: str, runner: str):
        self.batch_id, self.runner = batch_id, runner
        self.stop_as: BatchStatus | None = None  # why no more requests go out
        self.errors: list[dict] | None = None
        self.lost = False  # another runner took the batch over: leave it alone
        self.leaving = False  # this process is stopping: finish the requests under way, then hand the batch back
        self.woken: asyncio.Event | None = None  # set when no more requests go out: cuts the lines' waits short

    def leave(self) -> None:
        self.leaving = True
        self._wake()

    @property
    def sending(self) -> bool:
        """Whether more requests may go out."""
        return self.stop_as is None and not self.leaving and not self.lost

    def _stop(self, status: BatchStatus) -> None:
        self.stop_as = self.stop_as or status
        self._wake()

    def _wake(self) -> None:
        if self.woken is not None:
            self.woken.set()

    async def run(self) -> None:
        self.woken = asyncio.Event()
        if self.leaving:  # asked to leave before it started
            return
        batch = await db(batches.claim, self.batch_id, self.runner, settings.HUB_BATCH_STALE_SECONDS)
        if batch is None:
            return
        self.expires_at = batch.expires_at
        self.route = batches.ENDPOINTS[batch.endpoint]
        try:
            self.key = await db(authn.context_of, batch.api_key_id)
        except authn.AuthFailed as failed:
            return await db(batches.fail, self.batch_id, [self._key_error(failed)])
        content = await db(files.content, batch.tenant_id, batch.input_file_id)
        if content is None:
            message = f"The input file '{batch.input_file_id}' was deleted or has expired."
            return await db(batches.fail, self.batch_id, [{"code": "invalid_file", "message": message,
                                                              "param": "input_file_id", "line": None}])  # fmt: skip
        parsed = batch_input.read(content, batch.endpoint)
        if parsed.errors:
            return await db(batches.fail, self.batch_id, [e.as_dict() for e in parsed.errors])
        await db(batches.start, self.batch_id, len(parsed.requests), parsed.model)
        done = await db(batches.done_lines, self.batch_id)
        pending = [r for r in parsed.requests if r.line not in done]
        self._check(batch)
        heart = asyncio.create_task(self._heartbeat())
        try:
            gate = asyncio.Semaphore(settings.HUB_BATCH_CONCURRENCY)
            async with asyncio.TaskGroup() as group:  # one failing (the database gone) stops them all
                for request in pending:
                    group.create_task(self._one(request, gate))
        finally:
            heart.cancel()
        if self.lost:
            return
        if self.leaving and self.stop_as is None:
            answered = await db(batches.done_lines, self.batch_id)
            if any(r.line not in answered for r in parsed.requests):  # else it is done: finish it
                return await db(batches.release, self.batch_id, self.runner)
        status = self.stop_as or BatchStatus.COMPLETED
        unanswered = []
        if status == BatchStatus.EXPIRED:
            answered = await db(batches.done_lines, self.batch_id)
            unanswered = [self._expired_line(r) for r in parsed.requests if r.line not in answered]
        await db(batches.finish, self.batch_id, status, unanswered, self.errors)

    # --- the lines ---------------------------------------------------------------------------------

    async def _one(self, request: batch_input.Request, gate: asyncio.Semaphore) -> None:
        async with gate:
            attempt = 0
            while True:
                if not self.sending:
                    return
                request_id = "req_" + secrets.token_hex(12)
                answer = await call(self.key, self.route, request.body, request_id)
                wait = retry_after(answer, attempt)
                if wait is None:
                    break
                attempt += 1
                with suppress(TimeoutError):  # a wait that stopping the batch cuts short
                    await asyncio.wait_for(self.woken.wait(), wait)
        try:
            body = json.loads(answer.body)
        except ValueError:
            body = {"error": {"message": answer.body.decode("utf-8", "replace"), "type": "server_error",
                              "param": None, "code": None}}  # fmt: skip
        response = {"status_code": answer.status, "request_id": request_id, "body": body}
        output = {"id": "batch_req_" + secrets.token_hex(12), "custom_id": request.custom_id, "response": response,
                  "error": None}  # fmt: skip
        await db(batches.record, self.batch_id, request.line, answer.status == 200, output, _tokens(body))

    @staticmethod
    def _expired_line(request: batch_input.Request) -> dict:
        message = "This request could not be executed before the completion window expired."
        return {"id": "batch_req_" + secrets.token_hex(12), "custom_id": request.custom_id, "response": None,
                "error": {"code": "batch_expired", "message": message}}  # fmt: skip

    # --- the heartbeat -----------------------------------------------------------------------------

    @staticmethod
    def _key_error(failed: authn.AuthFailed) -> dict:
        return {"code": "invalid_api_key", "param": None, "line": None,
                "message": f"The batch's API key can no longer be used ({failed.reason.value})."}  # fmt: skip

    def _check(self, batch) -> None:
        if batch.status == BatchStatus.CANCELLING:
            self._stop(BatchStatus.CANCELLED)
        elif timezone.now() >= self.expires_at:
            self._stop(BatchStatus.EXPIRED)

    async def _heartbeat(self) -> None:
        period = settings.HUB_BATCH_STALE_SECONDS / 4
        while True:
            await asyncio.sleep(period)
            batch = await db(batches.heartbeat, self.batch_id, self.runner)
            if batch is None:
                self.lost = True
                self._wake()
                return
            self._check(batch)
            try:
                self.key = await db(authn.context_of, batch.api_key_id)  # limits and models as they are now
            except authn.AuthFailed as failed:
                self.errors = [self._key_error(failed)]
                self._stop(BatchStatus.FAILED)
