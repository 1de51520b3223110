"""Tests whose assertions name today's date: they start clear of midnight, so that the day can not change under
them between a page's range being fixed and the rows it should count being written."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from datetime import time as day_time

from django.utils import timezone


def seconds_to_midnight(now: datetime) -> float:
    """From ``now`` (aware) to the next midnight of its time zone."""
    midnight = datetime.combine(now.date() + timedelta(days=1), day_time(0), tzinfo=now.tzinfo)
    return (midnight - now).total_seconds()


def clear_of_midnight(margin: float) -> None:
    """Return at once unless midnight (the site's time zone) is under ``margin`` seconds away; then sleep past it."""
    left = seconds_to_midnight(timezone.localtime())
    if left < margin:
        time.sleep(left + 1)
