"""A streamed background response's events kept as its run sends them (``accounts.background.add_events``), for
the clients that stream it: the gateway's answer (``event: …`` / ``data: …`` blocks) is read as it comes, and what
came is written at once when no write is under way, else with the next write (one row for all that came meanwhile),
numbered on from the events kept when it was queued; the clients streaming it are woken, in this process and
the others (``tail.wake_everywhere``). The run's own ``response.created`` is left out: the queued response's came
first. A write refused (the response cancelled, deleted, or taken over) stops the run."""

from __future__ import annotations

import asyncio
import json

from accounts import background
from hub.background import tail
from hub.pool import db


class Recorder:
    def __init__(self, response_id: str, runner: str, stop: asyncio.Event):
        self.response_id, self.runner, self.stop = response_id, runner, stop
        self.text = ""  # an event block not yet whole
        self.pending: list[dict] = []
        self.writer: asyncio.Task | None = None  # the writes under way, while events keep coming
        self.failed: dict | None = None  # the response of the stream's response.failed, if it failed

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
        if self.pending and self.writer is None:
            self.writer = asyncio.create_task(self._write())

    async def _write(self) -> None:
        try:
            while self.pending:  # what came during a write goes in the next one
                events, self.pending = self.pending, []
                if not await db(background.add_events, self.response_id, self.runner, events):
                    self.stop.set()
                    return
                await asyncio.to_thread(tail.wake_everywhere, self.response_id)
        finally:
            self.writer = None

    async def close(self) -> None:
        """The answer ended: what is left written."""
        while self.writer is not None or self.pending:
            if self.writer is None:
                self.writer = asyncio.create_task(self._write())
            await self.writer
