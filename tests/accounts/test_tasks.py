"""Celery tasks, run by a real worker on the Redis broker when one is configured."""

import os
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts import services
from accounts.authn import AuthFailed, authenticate_secret
from accounts.models import ApiKey
from accounts.tasks import forget_rotated_secrets
from tests.support.hub import run_on_worker

pytestmark = pytest.mark.django_db(transaction=True)


def _rotated_past_grace(tenant):
    issued = services.issue_key(tenant)
    rotated = services.rotate_key(issued.key, grace_seconds=60)
    ApiKey.objects.filter(pk=issued.key.pk).update(previous_valid_until=timezone.now() - timedelta(seconds=1))
    return issued, rotated


def test_forget_rotated_secrets_directly(acme):
    old, new = _rotated_past_grace(acme.tenant)
    fresh = services.rotate_key(services.issue_key(acme.tenant).key, grace_seconds=3600)
    assert forget_rotated_secrets() == 1
    key = ApiKey.objects.get(pk=old.key.pk)
    assert key.previous_prefix is None and key.previous_secret_hash == ""
    assert ApiKey.objects.get(pk=fresh.key.pk).previous_prefix is not None  # still in grace
    with pytest.raises(AuthFailed):
        authenticate_secret(old.secret)
    assert authenticate_secret(new.secret).key_id == old.key.pk


def test_task_runs_through_the_configured_broker(acme):
    old, _ = _rotated_past_grace(acme.tenant)
    if not os.environ.get("HUB_REDIS_URL"):
        # Embedded default: no broker, the task runs in the calling process.
        assert forget_rotated_secrets.delay().get() == 1
    else:
        output = run_on_worker(
            forget_rotated_secrets.delay, lambda: ApiKey.objects.get(pk=old.key.pk).previous_prefix is None
        )
        assert ApiKey.objects.get(pk=old.key.pk).previous_prefix is None, f"the worker did not run it:\n{output}"
