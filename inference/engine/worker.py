"""Runs an engine's steps in a thread and hands each request's deltas to its asyncio queue.

The model's forward pass blocks (torch releases the GIL inside ops), so it cannot run on the
event loop. Requests and aborts cross over through a locked inbox; deltas come back with
``loop.call_soon_threadsafe``. An abort is applied before the next step starts, so a client
that disconnects frees its sequence within one step.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("inference.worker")


@dataclass
class _Add:
    request_id: str
    payload: tuple


class EngineWorker:
    def __init__(self, engine, name: str, on_step: Callable[[object, float], None] | None = None):
        self.engine = engine
        self.name = name
        self.on_step = on_step  # metrics hook: (engine, step seconds)
        self._inbox: list[_Add | str] = []
        self._cv = threading.Condition()
        self._queues: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = {}
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name=f"engine-{name}", daemon=True)
        self._thread.start()

    def submit(self, request_id: str, *payload) -> asyncio.Queue:
        """Queue a request (``engine.add_request(request_id, *payload)``); deltas arrive on the queue.
        A queue item that is an Exception means the request failed."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        with self._cv:
            self._queues[request_id] = (loop, queue)
            self._inbox.append(_Add(request_id, payload))
            self._cv.notify()
        return queue

    def abort(self, request_id: str) -> None:
        with self._cv:
            if request_id in self._queues:
                self._inbox.append(request_id)
                self._cv.notify()

    def stop(self) -> None:
        with self._cv:
            self._stopped = True
            self._cv.notify()
        self._thread.join(timeout=10)

    def _deliver(self, request_id: str, item) -> None:
        target = self._queues.get(request_id)
        if target is not None:
            loop, queue = target
            loop.call_soon_threadsafe(queue.put_nowait, item)

    def _loop(self) -> None:
        import time

        while True:
            with self._cv:
                while not self._stopped and not self._inbox and not self.engine.has_work:
                    self._cv.wait()
                if self._stopped:
                    return
                inbox, self._inbox = self._inbox, []
            for item in inbox:
                if isinstance(item, str):
                    self.engine.abort(item)  # the client is gone: nothing to deliver
                    with self._cv:
                        self._queues.pop(item, None)
                    continue
                try:
                    self.engine.add_request(item.request_id, *item.payload)
                except Exception as exc:  # noqa: BLE001 - reported to the request, the loop goes on
                    self._deliver(item.request_id, exc)
                    with self._cv:
                        self._queues.pop(item.request_id, None)
            if not self.engine.has_work:
                continue
            start = time.perf_counter()
            try:
                outputs = self.engine.step()
            except Exception as exc:  # noqa: BLE001 - fail every request in flight, keep serving
                log.exception("engine %s step failed", self.name)
                for request_id in list(self.engine.requests):
                    self.engine.abort(request_id)
                    self._deliver(request_id, exc)
                continue
            if self.on_step is not None:
                self.on_step(self.engine, time.perf_counter() - start)
            for out in outputs:
                self._deliver(out.request_id, out)
            # only after the whole step: several choices of one request can finish in the same step
            done = {out.request_id for out in outputs if out.finish_reason} - set(self.engine.requests)
            if done:
                with self._cv:
                    for request_id in done:
                        self._queues.pop(request_id, None)
