"""What a rate limit may let through in a burst. The hub's limits are token buckets (``hub/api/limit_store.py``):
full at ``limit`` units, refilled at ``limit`` a minute. A burst that takes ``elapsed`` seconds may so get
``limit`` through and a refill on top: exactly ``limit`` only while the burst is faster than one unit's refill,
which a loaded runner does not promise (30 a minute refill one every 2 s)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def most_admitted(limit: int, elapsed: float) -> int:
    """The most units a full bucket of ``limit`` a minute can admit in ``elapsed`` seconds."""
    return limit + int(elapsed * limit / 60)


def timed(burst: Callable[[], T]) -> tuple[T, float]:
    """``burst()``'s result and the seconds it took, start to end: at least the span its requests were admitted in."""
    started = time.monotonic()
    result = burst()
    return result, time.monotonic() - started
