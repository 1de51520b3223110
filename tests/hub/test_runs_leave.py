"""A stopping process's runs (``hub/batches/runs.py``: batches, background responses) are all asked to leave at
once and share one grace: a run of one kind that can only finish once a run of another kind has been asked to leave
still leaves in time (asked one kind after the other, with a grace each, it would not)."""

from __future__ import annotations

import asyncio

from hub.batches import runs


class _Run:
    """Leaves once asked; ``waits_for``: another run that must have been asked first (or it holds on)."""

    def __init__(self, told: asyncio.Event, waits_for: asyncio.Event | None):
        self.told, self.waits_for = told, waits_for

    async def run(self) -> None:
        await self.told.wait()
        if self.waits_for is not None:
            await self.waits_for.wait()

    def leave(self) -> None:
        self.told.set()


def test_every_kind_of_run_is_asked_to_leave_at_once_within_one_grace(monkeypatch):
    monkeypatch.setattr(runs, "_kinds", [])
    loop = runs.the_loop()
    told_b = asyncio.run_coroutine_threadsafe(_event(), loop).result()
    told_a = asyncio.run_coroutine_threadsafe(_event(), loop).result()
    first = runs.Runs("a", lambda work_id, runner: _Run(told_a, told_b))  # registered first: asked first
    second = runs.Runs("b", lambda work_id, runner: _Run(told_b, None))
    futures = [first.submit("work-a"), second.submit("work-b")]
    assert runs.leave_all(timeout=5.0)
    assert all(future.done() and future.exception() is None for future in futures)


async def _event() -> asyncio.Event:
    return asyncio.Event()  # made on the background loop, which waits on it
