from __future__ import annotations

from django.core.cache import cache
from django.db import connection
from django.http import JsonResponse


def health(request):
    """Liveness and readiness: the database and the cache both answer."""
    checks = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - reported, not raised: this is the health check
        checks["database"] = f"error: {exc.__class__.__name__}"
    try:
        cache.set("health:ping", 1, timeout=5)
        checks["cache"] = "ok" if cache.get("health:ping") == 1 else "error: no round trip"
    except Exception as exc:  # noqa: BLE001
        checks["cache"] = f"error: {exc.__class__.__name__}"
    ok = all(v == "ok" for v in checks.values())
    return JsonResponse({"status": "ok" if ok else "degraded", **checks}, status=200 if ok else 503)
