"""Steps every model's engine on one thread and hands each request's deltas to its asyncio queue.

The forward passes block, so they cannot run on the event loop. In the service the engines run on
the process's **main thread** and the HTTP server on another: on the CPU, torch's OpenMP parallel
regions started from any other thread cost ~60 us more each (measured: an index or an attention
call of a decode step takes 8-11 us on the main thread and 65-80 us on a second one, which made
batch-1 decode ~1.7x slower). One loop for all models also keeps them from fighting over the cores:
each pass steps every engine that has work once, in turn.

Requests and aborts cross over through a locked inbox per engine; deltas come back with
``loop.call_soon_threadsafe``. An abort is applied before the engine's next step, so a client that
disconnects frees its sequence within one step. A request the engine failed (``RequestFailed``, see
``engine/quarantine.py``) gets its error on its queue; the rest of the batch goes on. A step that raises anyway
(the scheduler itself) fails every request in flight, and the loop keeps serving new ones.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from inference.engine.output import RequestFailed
from inference.engine.quarantine import EngineBroken

log = logging.getLogger("inference.worker")

StepHook = Callable[[object, float, int], None]  # (engine, step seconds, requests failed in the step): metrics


@dataclass
class _Add:
    request_id: str
    payload: tuple


@dataclass
class _Call:
    """``fn(engine)`` to run between two steps (a LoRA adapter attached or detached), its result to ``future``."""

    fn: Callable[[object], object]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future


def _settle(future: asyncio.Future, result, error: Exception | None) -> None:
    if not future.done():  # the caller may have gone (a cancelled request)
        future.set_exception(error) if error is not None else future.set_result(result)


class EngineLoop:
    """Runs the engines of several models; ``run()`` blocks the calling thread until ``stop()``."""

    IDLE_WAKE_SECONDS = 1.0  # idle waits time out so that signal handlers on the main thread get to run

    def __init__(self) -> None:
        self.cv = threading.Condition()
        self.workers: list[EngineWorker] = []
        self._stopped = False
        self._thread: threading.Thread | None = None
        self.broken: EngineBroken | None = None  # why the engines stopped by themselves (the service must restart)

    def add(self, engine, name: str, on_step: StepHook | None = None) -> EngineWorker:
        worker = EngineWorker(self, engine, name, on_step)
        self.workers.append(worker)
        return worker

    def stop(self) -> None:
        with self.cv:
            self._stopped = True
            self.cv.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)

    @property
    def stopped(self) -> bool:
        return self._stopped

    def start_thread(self) -> EngineLoop:
        """Run on a background thread instead (tools and tests; the service runs it on the main thread)."""
        self._thread = threading.Thread(target=self.run, name="engines", daemon=True)
        self._thread.start()
        return self

    def run(self) -> None:
        while True:
            with self.cv:
                while not self._stopped and not any(w.pending for w in self.workers):
                    self.cv.wait(self.IDLE_WAKE_SECONDS)
                if self._stopped:
                    return
            for worker in self.workers:
                worker.run_once()


class EngineWorker:
    """One model's engine inside an ``EngineLoop``: submit / abort from the event loop."""

    def __init__(self, loop: EngineLoop, engine, name: str, on_step: StepHook | None = None):
        self.loop = loop
        self.engine = engine
        self.name = name
        self.on_step = on_step
        self._inbox: list[_Add | _Call | str] = []
        self._queues: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = {}

    @property
    def pending(self) -> bool:
        """Called under the loop's lock: anything to add, abort or step."""
        return bool(self._inbox) or self.engine.has_work

    def submit(self, request_id: str, *payload, queue: asyncio.Queue | None = None) -> asyncio.Queue:
        """Queue a request (``engine.add_request(request_id, *payload)``); deltas arrive on the queue (a new one, or
        ``queue``: one shared by the prompts of a streamed completion). An Exception item means the request failed."""
        if self.loop.broken is not None:  # nothing steps the engines any more: the service is stopping
            raise EngineBroken(f"the engines stopped: {self.loop.broken}")
        loop = asyncio.get_running_loop()
        queue = asyncio.Queue() if queue is None else queue
        with self.loop.cv:
            self._queues[request_id] = (loop, queue)
            self._inbox.append(_Add(request_id, payload))
            self.loop.cv.notify()
        return queue

    def call(self, fn: Callable[[object], object]) -> asyncio.Future:
        """Run ``fn(engine)`` on the loop's thread before the engine's next step, after everything submitted before
        it; await the returned future for its result (or its exception)."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self.loop.cv:
            self._inbox.append(_Call(fn, loop, future))
            self.loop.cv.notify()
        return future

    def abort(self, request_id: str) -> None:
        with self.loop.cv:
            if request_id in self._queues:
                self._inbox.append(request_id)
                self.loop.cv.notify()

    def stop(self) -> None:
        self.loop.stop()

    def _deliver(self, request_id: str, item) -> None:
        target = self._queues.get(request_id)
        if target is not None:
            loop, queue = target
            loop.call_soon_threadsafe(queue.put_nowait, item)

    def _forget(self, request_ids) -> None:
        with self.loop.cv:
            for request_id in request_ids:
                self._queues.pop(request_id, None)

    def run_once(self) -> None:
        """Apply the inbox, then one engine step if there is work (on the loop's thread)."""
        with self.loop.cv:
            inbox, self._inbox = self._inbox, []
        for item in inbox:
            if isinstance(item, str):
                self.engine.abort(item)  # the client is gone: nothing to deliver
                self._forget([item])
                continue
            if isinstance(item, _Call):
                try:
                    result, error = item.fn(self.engine), None
                except Exception as exc:  # noqa: BLE001 - handed to the caller
                    result, error = None, exc
                item.loop.call_soon_threadsafe(_settle, item.future, result, error)
                continue
            try:
                self.engine.add_request(item.request_id, *item.payload)
            except Exception as exc:  # noqa: BLE001 - reported to the request, the loop goes on
                self._deliver(item.request_id, exc)
                self._forget([item.request_id])
        if not self.engine.has_work:
            return
        start = time.perf_counter()
        try:
            outputs = self.engine.step()
        except Exception as exc:  # noqa: BLE001 - outside what the engine can retry: fail every request in flight
            log.exception("engine %s step failed", self.name)
            outputs = [RequestFailed(request_id, exc) for request_id in list(self.engine.requests)]
            for out in outputs:
                self.engine.abort(out.request_id)
            if isinstance(exc, EngineBroken):
                log.critical("engine %s can not go on: the engines stop, and the service with them", self.name)
                self.loop.broken = exc
                self.loop.stop()
        if self.on_step is not None:  # before the deliveries: a client told of its failure finds it counted
            failed = sum(isinstance(out, RequestFailed) for out in outputs)
            self.on_step(self.engine, time.perf_counter() - start, failed)
        for out in outputs:
            self._deliver(out.request_id, out.error if isinstance(out, RequestFailed) else out)
        # only after the whole step: several choices of one request can finish in the same step
        done = {out.request_id for out in outputs if out.finish_reason} - set(self.engine.requests)
        if done:
            self._forget(done)
