"""Cache of verified API keys that never serves a revoked key.

Entries are tagged with the cache's current generation, read *before* the database; every change that affects
authentication (revocation, rotation, expiry, entitlements, catalog, tenant state) replaces the generation when
its transaction commits. A request that finds an entry of another generation reloads from the database, so a
change takes effect on the very next request in every process that shares the cache (Redis in production, a file
cache embedded).

A generation is a random 63-bit number, never a counter: a cache may drop the generation's entry (the file cache
culls at ``MAX_ENTRIES``, Redis evicts under ``maxmemory``) while entries tagged with it survive, and a counter
would then restart at a value an old entry carries, serving it again after the revocation that outdated it. A
number drawn afresh after an eviction matches no entry written before it. (A number, not a string: hub processes
of the previous release, which count, keep working beside these during a rolling upgrade.)

With the cache unreachable, keys are verified against the database on every request (the auth path does not
fail with Redis), and a change made meanwhile cannot replace the generation: entries cached before it expire
after ``HUB_AUTH_CACHE_SECONDS`` (Redis without persistence, as run here, comes back empty anyway).
"""

from __future__ import annotations

import logging
import secrets

from django.conf import settings
from django.core.cache import cache
from django.db import transaction

log = logging.getLogger(__name__)

GEN_KEY = "auth:gen"


def entry_key(prefix: str) -> str:
    return f"auth:key:{prefix}"


def _fresh() -> int:
    return secrets.randbits(63)


def current_generation() -> int:
    """The generation now; a new one when the cache has none (first use, or the entry was evicted)."""
    gen = cache.get(GEN_KEY)
    if gen is None:
        cache.add(GEN_KEY, _fresh(), timeout=None)  # one process's number wins a race; all then read it
        gen = cache.get(GEN_KEY)
    if gen is None:  # evicted again at once: a number of our own, which no cached entry carries
        gen = _fresh()
    return int(gen)


def _bump() -> None:
    try:
        cache.set(GEN_KEY, _fresh(), timeout=None)
    except Exception as exc:  # noqa: BLE001 - the change is committed; cached entries expire on their own
        log.error(
            "auth cache unreachable: cached keys may serve their old state for up to HUB_AUTH_CACHE_SECONDS: %s", exc
        )


def bump_generation() -> None:
    """Invalidate every cached key once the current transaction commits (now, outside one)."""
    transaction.on_commit(_bump)


def invalidate_key(key) -> None:  # noqa: ARG001 - kept for call-site clarity
    bump_generation()


def get(prefix: str) -> tuple[int | None, dict | None]:
    """(current generation, the entry if it is of that generation). With the cache unreachable (Redis down):
    (None, None), so the key is read from the database and nothing is cached."""
    try:
        found = cache.get_many([GEN_KEY, entry_key(prefix)])
        gen = found.get(GEN_KEY)
        if gen is None:
            gen = current_generation()
    except Exception as exc:  # noqa: BLE001 - any cache backend's failure: the database is the truth
        log.warning("auth cache unreachable, reading keys from the database: %s", exc)
        return None, None
    entry = found.get(entry_key(prefix))
    if entry is not None and entry.get("gen") != gen:
        entry = None
    return int(gen), entry


def put(prefix: str, gen: int | None, entry: dict) -> None:
    if gen is None or settings.HUB_AUTH_CACHE_SECONDS <= 0:
        return
    try:
        cache.set(entry_key(prefix), {**entry, "gen": gen}, timeout=settings.HUB_AUTH_CACHE_SECONDS)
    except Exception as exc:  # noqa: BLE001 - not cached this time
        log.warning("auth cache unreachable, not caching: %s", exc)
