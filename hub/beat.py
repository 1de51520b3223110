"""The embedded default's Celery beat: the beat schedule's tasks, run on a thread of the hub process.

With a broker (``HUB_REDIS_URL``) a real ``celery -A hub beat`` and workers do this; without one the
tasks are eager and ``manage.py serve`` starts this thread instead, so roll-ups and clean-ups still
happen on the one-command install.
"""

from __future__ import annotations

import logging
import threading
import time

from django.conf import settings
from django.db import close_old_connections

log = logging.getLogger(__name__)


class InProcessBeat(threading.Thread):
    def __init__(self, schedule: dict | None = None):
        super().__init__(name="beat", daemon=True)
        self.schedule = schedule if schedule is not None else settings.CELERY_BEAT_SCHEDULE
        self.stopped = threading.Event()

    def run(self) -> None:
        from hub.celery import app

        app.loader.import_default_modules()  # autodiscovery is lazy: register the apps' tasks now
        due = {name: time.monotonic() + float(entry["schedule"]) for name, entry in self.schedule.items()}
        while not self.stopped.is_set():
            name = min(due, key=due.get)
            if self.stopped.wait(max(0.0, due[name] - time.monotonic())):
                return
            entry = self.schedule[name]
            try:
                app.tasks[entry["task"]].apply()
            except Exception:  # noqa: BLE001 - a failed run is logged; the next one comes on schedule
                log.exception("beat task %s failed", entry["task"])
            finally:
                close_old_connections()
            due[name] = time.monotonic() + float(entry["schedule"])

    def stop(self) -> None:
        self.stopped.set()
