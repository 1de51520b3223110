"""A streamed background response's events kept as its run sends them (``accounts.background.add_events``), for
the clients that stream it: the gateway's answer (``event: …`` / ``data: …`` blocks) is read as it comes, and what
came is written every ``FLUSH_SECONDS`` in one row, numbered on from the events kept when it was queued. The run's
own ``response.created`` is left out: the queued response's came first. A write refused (the response cancelled,
deleted, or taken over) stops the run."""

from __future__ import annotations

import asyncio
import json

from accounts import background
from hub.pool import db

FLUSH_SECONDS = 0.05


class Recorder:
    def __init__(self, response_id: str, runner: str, stop: asyncio.Event):
        self.response_id, self.runner, self.stop = response_id, runner, stop
        self.text = ""  # an event block not yet whole
        self.pending: list[dict] = []
        self.task: asyncio.Task | None = None
        self.failed: dict | None = None  # the response of the stream's response.failed, if it failed
        self.writing = asyncio.Lock()  # one write at a time, in order: each numbers its events after the last

    async def feed(self, body: bytes) -> None:
        """Part of the gateway's answer."""
        self.text += body.decode()
        *blocks, self.text = self.text.split("\n\n")
        for block in blocks:
            data = next((line[5:].strip() for line in block.split("\n") if line.startswith("data:")), None)
            if data is None:
                continue
            event = json.loads(data)
            if event.get("type") == "response.failed":
                self.failed = event.get("response")
            if event.get("type") != "response.created":
                self.pending.append(event)
        if self.pending and self.task is None:
            self.task = asyncio.create_task(self._write_soon())

    async def _write_soon(self) -> None:
        await asyncio.sleep(FLUSH_SECONDS)  # what comes meanwhile goes in the same row
        self.task = None
        await self.flush()

    async def flush(self) -> None:
        async with self.writing:
            events, self.pending = self.pending, []
            if events and not await db(background.add_events, self.response_id, self.runner, events):
                self.stop.set()

    async def close(self) -> None:
        """The answer ended: what is left written."""
        if self.task is not None:
            await self.task
        await self.flush()
