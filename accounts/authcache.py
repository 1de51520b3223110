"""Cache of verified API keys that never serves a revoked key.

Entries are tagged with a global generation number read *before* the database; every change
that affects authentication (revocation, rotation, expiry, entitlements, catalog, tenant
state) bumps the generation when its transaction commits. A request that finds an entry of an
older generation reloads from the database, so a change takes effect on the very next
request in every process that shares the cache (Redis in production, a file cache embedded).
"""

from __future__ import annotations

from django.conf import settings
from django.core.cache import cache
from django.db import transaction

GEN_KEY = "auth:gen"


def entry_key(prefix: str) -> str:
    return f"auth:key:{prefix}"


def current_generation() -> int:
    gen = cache.get(GEN_KEY)
    if gen is None:
        cache.add(GEN_KEY, 1, timeout=None)
        gen = cache.get(GEN_KEY, 1)
    return int(gen)


def _bump() -> None:
    cache.add(GEN_KEY, 1, timeout=None)
    try:
        cache.incr(GEN_KEY)
    except ValueError:  # evicted between add and incr
        cache.set(GEN_KEY, 2, timeout=None)


def bump_generation() -> None:
    """Invalidate every cached key once the current transaction commits (now, outside one)."""
    transaction.on_commit(_bump)


def invalidate_key(key) -> None:  # noqa: ARG001 - kept for call-site clarity
    bump_generation()


def get(prefix: str) -> tuple[int, dict | None]:
    """(current generation, the entry if it is of that generation)."""
    found = cache.get_many([GEN_KEY, entry_key(prefix)])
    gen = found.get(GEN_KEY)
    if gen is None:
        gen = current_generation()
    entry = found.get(entry_key(prefix))
    if entry is not None and entry.get("gen") != gen:
        entry = None
    return int(gen), entry


def put(prefix: str, gen: int, entry: dict) -> None:
    if settings.HUB_AUTH_CACHE_SECONDS > 0:
        cache.set(entry_key(prefix), {**entry, "gen": gen}, timeout=settings.HUB_AUTH_CACHE_SECONDS)
