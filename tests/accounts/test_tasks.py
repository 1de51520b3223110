"""Celery tasks, run by a real worker on the Redis broker when one is configured."""

import os
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts import services
from accounts.authn import AuthFailed, authenticate_secret
from accounts.models import ApiKey
from accounts.tasks import forget_rotated_secrets
from tests.conftest import ROOT, database_url_for_subprocess

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
        env = {**os.environ, "HUB_DATABASE_URL": database_url_for_subprocess()}
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "hub", "worker", "--pool", "solo", "--concurrency", "1",
             "--loglevel", "WARNING", "--without-heartbeat", "--without-gossip", "--without-mingle"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:
            forget_rotated_secrets.delay()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if ApiKey.objects.get(pk=old.key.pk).previous_prefix is None:
                    break
                time.sleep(0.25)
        finally:
            worker.terminate()
            output = worker.communicate(timeout=30)[0]
        assert ApiKey.objects.get(pk=old.key.pk).previous_prefix is None, f"the worker did not run it:\n{output}"
