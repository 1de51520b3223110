"""Background work for the control plane (Celery; in process when no broker is configured)."""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from accounts import authcache, chat_completions, files, metering, reports, responses, uploads, vector_stores, webhooks
from accounts.models import ApiKey, Tenant, UsageReport

log = logging.getLogger(__name__)


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
    return metering.refresh_rollups(since=timezone.now() - ROLLUP_LOOKBACK)


@shared_task(name="accounts.build_monthly_reports")
def build_monthly_reports() -> int:
    """Build last month's report for every active tenant that has none yet. Idempotent: run on the beat, it
    builds each report once, and a tenant whose build failed is tried again on the next run. Returns how many
    it built."""
    month = reports.previous_month(timezone.now())
    done = UsageReport.objects.filter(month=month).values_list("tenant_id", flat=True)
    built = 0
    for tenant in Tenant.objects.filter(is_active=True).exclude(pk__in=done):
        try:
            reports.build_report(tenant, month)
        except Exception:  # noqa: BLE001 - one tenant's failure must not cost the others their report
            log.exception("usage report of %s for %s failed", tenant.slug, month)
        else:
            built += 1
    return built


@shared_task(name="accounts.build_usage_report")
def build_usage_report(tenant_id: int, month_iso: str, user_id: int | None = None) -> int:
    """Build (or rebuild) one report on demand; ``user_id`` is the person who asked (None: the operator).
    Returns the report's id."""
    tenant = Tenant.objects.get(pk=tenant_id)
    actor = get_user_model().objects.get(pk=user_id) if user_id is not None else None
    return reports.build_report(tenant, reports.parse_month(month_iso), actor=actor).pk


@shared_task(name="accounts.expire_responses")
def expire_responses() -> int:
    """Delete stored Responses API answers older than ``HUB_RESPONSES_RETENTION_DAYS``; returns how many."""
    return responses.expire()


@shared_task(name="accounts.expire_chat_completions")
def expire_chat_completions() -> int:
    """Delete stored chat completions older than ``HUB_CHAT_COMPLETIONS_RETENTION_DAYS``; returns how many."""
    return chat_completions.expire()


@shared_task(name="accounts.expire_files")
def expire_files() -> int:
    """Delete the files whose ``expires_at`` has passed (a batch's input after 30 days, by default), and the parts of
    uploads left pending past their hour, and the vector stores past their expiry; returns how many of them."""
    return files.expire() + uploads.expire() + vector_stores.expire()


@shared_task(name="accounts.expire_webhook_deliveries")
def expire_webhook_deliveries() -> int:
    """Delete the webhook deliveries that ended more than ``HUB_WEBHOOK_DELIVERIES_DAYS`` ago; returns how many."""
    return webhooks.expire()
