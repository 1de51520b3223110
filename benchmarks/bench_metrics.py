"""The hub's metrics (``hub/metrics.py``): what counting costs a request, and what a scrape costs the hub.

- Per request: an ASGI app answering at once, called bare and behind ``MetricsMiddleware`` (rounds alternating), and
  ``metered`` (a usage row's per-model counts; and per tenant too, with ``HUB_METRICS_TENANTS``), in µs.
- Per scrape: ``GET /metrics`` rendered with ``--models`` catalog models having traffic on 3 routes and 2 statuses, in
  one process (memory) and summed over ``--workers`` processes' files (prometheus_client's multiprocess mode, as
  ``serve --workers N`` runs), in ms.

- The backlog (``hub_backlog``): its counts over ``--batches`` batches, 1 % under way, in this run's database
  (make run's SQLite in a directory of its own; ``HUB_DATABASE_URL`` for PostgreSQL, whose ``bench-*`` tenant the
  run leaves behind: a second run counts the first's rows too), in ms.

    .venv/bin/python benchmarks/bench_metrics.py [--rounds 7] [--requests 20000] [--models 50] [--workers 4]
                                                 [--batches 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")
if not os.environ.get("HUB_DATABASE_URL"):  # make run's SQLite, in a directory of this run's own
    os.environ["HUB_DATA_DIR"] = tempfile.mkdtemp(prefix="bench-metrics-")

TRAFFIC = """
import sys
from hub import metrics
for m in range(int(sys.argv[1])):
    for route in ("chat/completions", "responses", "embeddings"):
        for status in (200, 429):
            metrics.metered(f"model-{m}", route, status, 100, 20, 0, 0.05)
            metrics.HTTP_REQUESTS.labels(route, "POST", str(status)).inc()
            metrics.DURATION.labels(route).observe(0.1)
"""
SCRAPE = """
import statistics, time
import django
django.setup()
from django.test import RequestFactory
times = []
for _ in range(20):
    start = time.perf_counter()
    body = metrics.view(RequestFactory().get("/metrics")).content
    times.append(time.perf_counter() - start)
print(statistics.median(times) * 1000, len(body))
"""


def _scrape(env: dict, models: int, traffic: bool) -> tuple[float, int]:
    """A scrape's median ms and its size, in a process of its own (with this process's traffic, or none)."""
    script = (TRAFFIC if traffic else "from hub import metrics\n") + SCRAPE
    out = subprocess.run([sys.executable, "-c", script, str(models)], env=env, cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout.split()  # fmt: skip
    return float(out[0]), int(out[1])


async def _requests(app, count: int) -> float:
    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        pass

    scope = {"type": "http", "path": "/v1/chat/completions", "method": "POST"}
    start = time.perf_counter()
    for _ in range(count):
        await app(scope, receive, send)
    return (time.perf_counter() - start) / count


def _backlog(batches: int, rounds: int) -> float:
    """Median ms of counting the backlog, over ``batches`` batches (99 % ended) in this run's database."""
    from datetime import timedelta

    from django.core.management import call_command
    from django.utils import timezone

    from accounts import services
    from accounts.models import Batch
    from hub import metrics

    call_command("migrate", verbosity=0)
    tenant = services.create_tenant(f"bench-{time.time_ns()}", "Bench")
    now = timezone.now()
    Batch.objects.bulk_create(
        [Batch(id=f"batch_bench_{tenant.pk}_{i}", tenant=tenant, endpoint="/v1/chat/completions", input_file_id="f",
               status="in_progress" if i % 100 == 0 else "completed", created_at=now, expires_at=now + timedelta(1))
         for i in range(batches)], batch_size=5000,
    )  # fmt: skip
    times = []
    for _ in range(rounds * 3):
        start = time.perf_counter()
        list(metrics.Backlog().collect())
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--models", type=int, default=50)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--batches", type=int, default=100_000)
    args = parser.parse_args()
    import django

    django.setup()
    from django.conf import settings
    from django.db import connection

    from hub import metrics

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    wrapped = metrics.MetricsMiddleware(app)
    bare, counted, metered, by_tenant = [], [], [], []
    for _ in range(args.rounds):
        bare.append(asyncio.run(_requests(app, args.requests)))
        counted.append(asyncio.run(_requests(wrapped, args.requests)))
        for per_tenant, times in ((False, metered), (True, by_tenant)):  # HUB_METRICS_TENANTS off, then on
            settings.HUB_METRICS_TENANTS = per_tenant
            start = time.perf_counter()
            for i in range(args.requests):
                metrics.metered("m", "chat/completions", 200, 100, 20, 0, 0.05, f"tenant-{i % 50}")
            times.append((time.perf_counter() - start) / args.requests)
    settings.HUB_METRICS_TENANTS = False
    print(f"per request, median of {args.rounds} rounds x {args.requests}:")
    plain, behind, counts, tenants = (statistics.median(v) * 1e6 for v in (bare, counted, metered, by_tenant))
    print(f"  bare app {plain:.2f} µs, behind MetricsMiddleware {behind:.2f} µs: +{behind - plain:.2f} µs; "
          f"metered() {counts:.2f} µs, {tenants:.2f} µs with HUB_METRICS_TENANTS (50 tenants)")  # fmt: skip
    backlog = _backlog(args.batches, args.rounds)
    print(f"the backlog's counts (hub_backlog), {args.batches:,} ended batches and 1% under way, on "
          f"{connection.vendor}: {backlog:.2f} ms a scrape")  # fmt: skip
    env = {**os.environ}
    one = _scrape(env, args.models, traffic=True)
    with tempfile.TemporaryDirectory() as directory:
        env["PROMETHEUS_MULTIPROC_DIR"] = directory
        for _ in range(args.workers):
            subprocess.run([sys.executable, "-c", TRAFFIC, str(args.models)], env=env, cwd=ROOT, check=True)
        many = _scrape(env, args.models, traffic=False)
    print(
        f"a scrape, {args.models} models with traffic (median of 20): one process {one[0]:.1f} ms "
        f"({one[1] // 1024} KB); {args.workers} workers' files summed {many[0]:.1f} ms ({many[1] // 1024} KB)"
    )
    print(f"\nreproduce: .venv/bin/python benchmarks/bench_metrics.py --rounds {args.rounds} --requests "
          f"{args.requests} --models {args.models} --workers {args.workers} --batches {args.batches}")  # fmt: skip


if __name__ == "__main__":
    main()
