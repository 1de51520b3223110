"""This process's background event loop, on a thread of its own, and the long runs on it: batches
(``hub.batches.dispatch``), background responses (``hub.background.dispatch``), vector store indexing. The hub's own
process (the embedded default, whose tasks are eager) answers at once while they run beside it, and a Celery worker
runs its tasks' work on a loop that outlives each task (the gateway keeps one HTTP client per loop)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

log = logging.getLogger(__name__)

# this process's name as a runner: work it claimed is not claimed by it again while it runs
RUNNER = f"{socket.gethostname()[:32]}:{os.getpid()}:{secrets.token_hex(4)}"

_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def the_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _loop_lock:
        if _loop is None:
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="batches", daemon=True).start()
    return _loop


def run_soon(coroutine: Coroutine[Any, Any, Any]) -> concurrent.futures.Future:
    """Run ``coroutine`` on this process's background loop."""
    return asyncio.run_coroutine_threadsafe(coroutine, the_loop())


class Run(Protocol):
    def run(self) -> Coroutine[Any, Any, None]: ...

    def leave(self) -> None: ...


_kinds: list[Runs] = []  # every kind of run of this process (``leave_all``)


class Runs:
    """The runs of one kind under way in this process, by the id of their work: each started once at a time, all
    asked to leave (finish what they must and hand their work back) when the process stops (``leave_all``)."""

    def __init__(self, kind: str, make: Callable[[str, str], Run]):
        self.kind, self.make = kind, make
        self.lock = threading.Lock()
        self.running: dict[str, tuple[Run, concurrent.futures.Future]] = {}
        _kinds.append(self)

    def submit(self, work_id: str) -> concurrent.futures.Future:
        """Run the work on the background loop (unless it runs here already); its future."""
        with self.lock:
            running = self.running.get(work_id)
            if running is not None and not running[1].done():
                return running[1]
            run = self.make(work_id, RUNNER)
            future = run_soon(run.run())
            self.running[work_id] = (run, future)
        future.add_done_callback(lambda done: self._finished(work_id, done))
        return future

    def get(self, work_id: str) -> Run | None:
        with self.lock:
            running = self.running.get(work_id)
        return None if running is None else running[0]

    def leave(self) -> list[concurrent.futures.Future]:
        """Ask every run of this kind to leave; their futures."""
        with self.lock:
            running = list(self.running.values())
        for run, _ in running:
            the_loop().call_soon_threadsafe(run.leave)
        return [future for _, future in running]

    def _finished(self, work_id: str, future: concurrent.futures.Future) -> None:
        with self.lock:
            if self.running.get(work_id, (None, None))[1] is future:
                del self.running[work_id]
        if not future.cancelled() and future.exception() is not None:  # taken up again once its heartbeat is stale
            log.error("%s %s stopped: %r", self.kind, work_id, future.exception())


def leave_all(timeout: float) -> bool:
    """This process is stopping: every run of every kind (batches, background responses) leaves at once, finishing
    what it must (each request under way metered) and handing its work back; waits up to ``timeout`` for them all,
    one grace for every kind. Whether they all left in time."""
    futures = [future for kind in _kinds for future in kind.leave()]
    _, late = concurrent.futures.wait(futures, timeout=timeout)
    return not late
