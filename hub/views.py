"""The hub's probes: ``/health`` (liveness: the process answers) and ``/ready`` (readiness: it can serve).

A load balancer or Kubernetes takes a hub out of rotation while ``/ready`` fails, and restarts it only when
``/health`` does: a database outage makes every hub unready at once, and restarting them would not help.
"""

from __future__ import annotations

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.http import JsonResponse

REDIS_TIMEOUT = 2.0  # seconds: a probe must answer well within the balancer's interval


def health(request):
    """Liveness: this process serves requests. Depends on nothing else."""
    return JsonResponse({"status": "ok"})


def _database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    executor = MigrationExecutor(connection)
    pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    return f"error: {len(pending)} migrations not applied" if pending else "ok"


def _redis() -> str:
    if not settings.REDIS_URL:
        return "ok"  # the embedded default: limits and cache in this process
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=REDIS_TIMEOUT,
                                  socket_connect_timeout=REDIS_TIMEOUT)  # fmt: skip
    try:
        return "ok" if client.ping() else "error: no PONG"
    finally:
        client.close()


def _cache() -> str:
    cache.set("health:ping", 1, timeout=5)
    return "ok" if cache.get("health:ping") == 1 else "error: no round trip"


def _catalog() -> tuple[str, dict]:
    from accounts.models import Deployment, ServedModel

    models = ServedModel.objects.filter(enabled=True).count()
    deployments = Deployment.objects.filter(enabled=True, model__enabled=True).count()
    return "ok", {"models": models, "deployments": deployments}


def ready(request):
    """Readiness: the database answers (and is migrated), Redis answers (limits, auth cache, broker), the cache
    round-trips and the catalog can be read (its enabled models and deployments are reported)."""
    checks: dict = {}
    for name, check in (("database", _database), ("redis", _redis), ("cache", _cache)):
        try:
            checks[name] = check()
        except Exception as exc:  # noqa: BLE001 - reported, not raised: this is the probe
            checks[name] = f"error: {exc.__class__.__name__}"
    try:
        checks["catalog"], counts = _catalog() if checks["database"] == "ok" else ("error: no database", {})
        checks.update(counts)
    except Exception as exc:  # noqa: BLE001
        checks["catalog"] = f"error: {exc.__class__.__name__}"
    ok = all(v == "ok" for k, v in checks.items() if k in ("database", "redis", "cache", "catalog"))
    return JsonResponse({"status": "ok" if ok else "unavailable", **checks}, status=200 if ok else 503)
