"""A bound on the image bytes the service holds at once, across requests (``FetchPolicy.held_bytes``).

A vision request's images are fetched concurrently, then wait their turn on the shared preprocessing pool
(``vision.py``): up to 8 images of ``max_bytes`` (20 MB) each, held for as long as the pool is busy with other
requests' images. Without a bound, the bytes held grew with the number of requests waiting.

A request takes its whole share before it fetches anything, and waits for nothing more once it holds it, so
requests cannot hold parts of the budget while waiting on one another: first come, first served. The share of
an http(s) image is ``max_bytes`` until it has been fetched, then its size; a ``data:`` image's is its decoded
size, known from the URL. A request whose share alone is more than the budget waits until nothing else is held
and then goes alone, so the bytes held are at most the budget or one request's images, the larger.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from dataclasses import dataclass


@dataclass(eq=False)
class _Waiter:
    amount: int
    future: asyncio.Future
    granted: bool = False


def _wake(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


class HeldBytes:
    """Bytes granted to requests, at most ``capacity`` (or one request's share alone), in arrival order."""

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError(f"capacity must be > 0, got {capacity}")
        self.capacity = capacity
        self.held = 0
        self.peak = 0  # the most held at once, for tests and benchmarks
        self.waited = 0  # requests that had to wait for their share (/metrics: inference_image_waits_total)
        self._lock = threading.Lock()  # requests may come from more than one event loop (tests run several)
        self._queue: deque[_Waiter] = deque()

    async def take(self, amount: int) -> None:
        """Wait until ``amount`` can be held, then hold it. Cancelled while waiting, it holds nothing."""
        with self._lock:
            if not self._queue and self._fits(amount):
                self._grant(amount)
                return
            waiter = _Waiter(amount, asyncio.get_running_loop().create_future())
            self._queue.append(waiter)
            self.waited += 1
        try:
            await waiter.future
        except asyncio.CancelledError:
            with self._lock:
                if waiter.granted:  # granted as it was cancelled: give it back
                    self._release(amount)
                else:
                    self._queue.remove(waiter)
                    self._serve()  # it may have been the head that blocked the others
            raise

    def resize(self, before: int, after: int) -> None:
        """A request's share changes from ``before`` to ``after`` (an image fetched: its size, not the bound)."""
        with self._lock:
            self.held += after - before
            self.peak = max(self.peak, self.held)
            self._serve()

    def give_back(self, amount: int) -> None:
        with self._lock:
            self._release(amount)

    def _fits(self, amount: int) -> bool:
        return self.held + amount <= self.capacity or self.held == 0  # one oversized share goes alone

    def _grant(self, amount: int) -> None:
        self.held += amount
        self.peak = max(self.peak, self.held)

    def _release(self, amount: int) -> None:
        self.held -= amount
        self._serve()

    def _serve(self) -> None:
        while self._queue and self._fits(self._queue[0].amount):
            waiter = self._queue.popleft()
            self._grant(waiter.amount)
            waiter.granted = True
            waiter.future.get_loop().call_soon_threadsafe(_wake, waiter.future)
