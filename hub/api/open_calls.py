"""The gateway's side of ``accounts/open_requests.py``: each request's open row, written before the request goes
upstream (one insert, ~1 ms: ``benchmarks/bench_gateway.py``) and deleted by its usage row in the same
transaction. Our inference services are told the row's usage id (``x-usage-id``) and tally
what they count under it, for the reaper to ask should this process die first."""

from __future__ import annotations

import asyncio
import logging
import uuid
import weakref
from contextlib import suppress

from django.db import DatabaseError

from accounts import open_requests, spool
from accounts.models import OpenRequest
from hub.api.ratelimit import Grant
from hub.pool import db

log = logging.getLogger(__name__)

USAGE_ID_HEADER = "x-usage-id"


def _open(rows: list[OpenRequest]) -> bool:
    if spool.pending():  # the database is (or just was) down: usage rows queue on disk, and so would this wait
        return False
    try:
        open_requests.write(rows)
        return True
    except DatabaseError as exc:
        log.warning("%d requests sent without their open rows (a death of this process would leave them "
                    "unmetered): %s", len(rows), exc)  # fmt: skip
        return False


class _Writer:
    """The open rows of one event loop, written together: those that come while an insert runs go in the next
    one (under load one thread hop and one commit serve many requests)."""

    MAX_ROWS = 500

    def __init__(self) -> None:
        self.waiting: list[tuple[OpenRequest, asyncio.Future]] = []
        self.draining = False

    async def write(self, row: OpenRequest) -> bool:
        done = asyncio.get_running_loop().create_future()
        self.waiting.append((row, done))
        if not self.draining:
            self.draining = True
            asyncio.ensure_future(self._drain())
        return await asyncio.shield(done)

    async def _drain(self) -> None:
        try:
            while self.waiting:
                batch, self.waiting = self.waiting[: self.MAX_ROWS], self.waiting[self.MAX_ROWS :]
                try:
                    written = await db(_open, [row for row, _ in batch])
                except Exception:  # noqa: BLE001 - not the database's (that is _open's): logged, sent without rows
                    log.exception("open rows not written")
                    written = False
                for _, done in batch:
                    if not done.done():
                        done.set_result(written)
        finally:
            self.draining = False


_writers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Writer] = weakref.WeakKeyDictionary()


def _writer() -> _Writer:
    """This event loop's writer (the ASGI server's, a batch runner's, an indexer's)."""
    loop = asyncio.get_running_loop()
    if loop not in _writers:
        _writers[loop] = _Writer()
    return _writers[loop]


class OpenCall:
    """One attempt of a request at the model (a prompt the deployment found longer than reserved is a second one).
    Its row is written before the request is sent: a process killed at any point after sending leaves it behind."""

    def __init__(self, request_id: str, tenant_id: int, api_key_id: int | None, model: str, route: str,
                 service_tier: str, streamed: bool, grant: Grant | None):  # fmt: skip
        self.usage_id = uuid.uuid4().hex
        self._row = OpenRequest(usage_id=self.usage_id, request_id=request_id, tenant_id=tenant_id,
                                api_key_id=api_key_id, model=model, route=route, service_tier=service_tier,
                                streamed=streamed, grant=None if grant is None else grant.state())  # fmt: skip
        self._writing: asyncio.Future | None = None
        self.metered = False

    async def write(self) -> None:
        """Write the row (shielded: a client that leaves meanwhile does not leave it half known)."""
        self._writing = asyncio.ensure_future(_writer().write(self._row))
        await asyncio.shield(self._writing)

    @property
    def written(self) -> bool:
        done = self._writing is not None and self._writing.done() and not self._writing.cancelled()
        return done and self._writing.exception() is None and self._writing.result()

    def usage_id_if_written(self) -> str:
        """The id its usage row names, to delete the open row with it ("" when none was written)."""
        self.metered = True
        return self.usage_id if self.written else ""

    async def end(self) -> None:
        """The attempt is over: a row that no usage row deleted reached no model, and goes."""
        if self._writing is None or self.metered:
            return
        with suppress(Exception):
            await asyncio.shield(self._writing)  # its client left while it was being written
        if not self.written:
            return
        try:
            await db(open_requests.discard, self.usage_id)
        except DatabaseError as exc:  # left to run out and be reaped (no deployment tallied it: zero tokens)
            log.warning("open row of request attempt %s not deleted: %s", self.usage_id, exc)
