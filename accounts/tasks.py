"""Background work for the control plane (Celery; in process when no broker is configured)."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.db import transaction
from django.utils import timezone

from accounts import authcache, services
from accounts.models import ApiKey, RollupPeriod


@shared_task(name="accounts.forget_rotated_secrets")
def forget_rotated_secrets() -> int:
    """Drop the hash and prefix of previous secrets whose grace period is over.

    Authentication already refuses them by date; this removes them from the database too.
    Returns how many keys were cleaned.
    """
    with transaction.atomic():
        count = ApiKey.objects.filter(previous_valid_until__lte=timezone.now()).update(
            previous_prefix=None, previous_secret_hash="", previous_valid_until=None
        )
        if count:
            authcache.bump_generation()
    return count


# Re-aggregated on every run: late rows (a long stream is written when it ends) land in a past hour.
ROLLUP_LOOKBACK = timedelta(hours=3)


@shared_task(name="accounts.rollup_usage")
def rollup_usage() -> dict[str, int]:
    """Refresh the recent hour buckets from the raw usage rows, then the day buckets they touch."""
    since = timezone.now() - ROLLUP_LOOKBACK
    hours = services.rebuild_rollups(RollupPeriod.HOUR, since)
    days = services.rebuild_rollups(RollupPeriod.DAY, since)
    return {"hour": hours, "day": days}
