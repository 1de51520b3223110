"""The hub as the tests start it: ``manage.py serve`` (or ``make run``) on a free loopback port on the test
database, management commands and a Celery worker in their own processes, and this run's cache emptied. Needs
Django's settings (the test run's)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache

from tests.support import ROOT
from tests.support.markers import require
from tests.support.processes import Process, free_port


def database_url_for_subprocess() -> str:
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def clear_run_cache() -> None:
    """Empty this run's cache. On Redis only this run's keys (``HUB_CACHE_PREFIX``: the cache, the limit counters,
    the channel layer), never the whole database, which a live hub or another run may be using."""
    if not settings.REDIS_URL:
        cache.clear()  # the file cache under this run's HUB_DATA_DIR
        return
    client = cache._cache.get_client(write=True)
    keys = list(client.scan_iter(match=f"{settings.HUB_CACHE_PREFIX}:*", count=1000))
    for start in range(0, len(keys), 1000):
        client.delete(*keys[start : start + 1000])


def manage(*args: str) -> subprocess.CompletedProcess:
    """Run a management command in its own process, on the test database."""
    env = {**os.environ, "HUB_DATABASE_URL": database_url_for_subprocess()}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def celery_worker(*pool: str, **env: str) -> Process:
    """A Celery worker on the configured broker (this run's queue) and the test database; ``pool``: its pool
    options (the settings' threads pool, one thread, without them)."""
    environment = {**os.environ, "HUB_DATABASE_URL": database_url_for_subprocess(), **env}
    return Process(
        "celery-worker",
        [sys.executable, "-m", "celery", "-A", "hub", "worker", *(pool or ("--concurrency", "1")),
         "--loglevel", "WARNING", "--without-heartbeat", "--without-gossip", "--without-mingle"],
        environment,
    )  # fmt: skip


def run_on_worker(send: Callable[[], object], done: Callable[[], bool], timeout: float = 60) -> str:
    """Start a Celery worker, ``send`` a task and wait (up to ``timeout``) until ``done()``; returns the worker's
    output, for the failure message."""
    worker = celery_worker()
    try:
        send()
        deadline = time.monotonic() + timeout
        while not done() and time.monotonic() < deadline:
            time.sleep(0.25)
    finally:
        output = worker.stop()
    return output


@dataclass
class LiveHub:
    url: str
    process: Process

    def api(self, base: str = "v1") -> str:
        return f"{self.url}/{base}"


def start_hub(
    env_overrides: dict[str, str],
    *args: str,
    timeout: float = 60,
    command: list[str] | None = None,
    port: int | None = None,
) -> tuple[Process, str]:
    """Start ``manage.py serve`` (or ``command``, e.g. ``make run``, in its own process group as a terminal
    would start it) and wait until it answers ``/health``."""
    require("live", "starts a hub")
    if command is not None:
        require("real_model", f"runs {' '.join(command)}, which serves the packaged models")
    port = port or free_port()
    env = {**os.environ, "HUB_PORT": str(port), "HUB_HOST": "127.0.0.1", **env_overrides}
    process = Process(
        f"hub-{port}", command or [sys.executable, "manage.py", "serve", *args], env, new_session=command is not None
    )
    url = f"http://127.0.0.1:{port}"
    process.wait_healthy(f"{url}/health", timeout)
    return process, url


def stop_hub(process: Process) -> str:
    return process.stop(timeout=15)
