"""Background responses answered by the hub's own process (no broker, as ``make run``): at most
``HUB_BACKGROUND_CONCURRENCY`` at once on its background loop, the others waiting their turn, each once; a run's
work stands in for the real one (claimed, sent through the gateway: ``tests/e2e/test_responses_background.py``)."""

from __future__ import annotations

import asyncio

from hub.background import dispatch, runner


def test_the_hubs_own_process_answers_at_most_its_concurrency_at_once(settings, monkeypatch):
    settings.CELERY_TASK_ALWAYS_EAGER, settings.HUB_BACKGROUND_CONCURRENCY = True, 2
    monkeypatch.setattr(runner, "_gates", {})
    running, most, done = set(), [0], []

    async def work(self) -> None:
        running.add(self.response_id)
        most[0] = max(most[0], len(running))
        await asyncio.sleep(0.05)
        running.discard(self.response_id)
        done.append(self.response_id)

    monkeypatch.setattr(runner.BackgroundRun, "_run", work)
    futures = [dispatch.submit(f"resp_{i}") for i in range(6)]
    assert dispatch.submit("resp_0") is futures[0]  # waiting or running here: not started twice
    for future in futures:
        future.result(timeout=10)
    assert most[0] == 2 and sorted(done) == [f"resp_{i}" for i in range(6)]
