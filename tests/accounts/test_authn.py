"""Key verification and its cache: every change is seen by the very next request."""

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts import services
from accounts.authn import AuthFailed, Failure, authenticate_secret
from accounts.keys import generate_secret

pytestmark = pytest.mark.django_db(transaction=True)  # on_commit invalidation must really run


def reason(secret: str) -> Failure | None:
    try:
        authenticate_secret(secret)
    except AuthFailed as failure:
        return failure.reason
    return None


def test_valid_key_yields_its_tenant_and_models(globex):
    issued = services.issue_key(globex.tenant)
    ctx = authenticate_secret(issued.secret)
    assert ctx.tenant_slug == "globex" and ctx.key_id == issued.key.pk
    assert ctx.model_ids == {"completion-small"}
    assert ctx.may_use("completion-small") and not ctx.may_use("chat-small")


def test_failure_reasons(acme):
    issued = services.issue_key(acme.tenant)
    assert reason("not-a-key") is Failure.MALFORMED
    assert reason(generate_secret()) is Failure.UNKNOWN
    # Right prefix, wrong secret: unknown, and revocation state is not revealed.
    forged = issued.secret[:-4] + ("aaaa" if not issued.secret.endswith("aaaa") else "bbbb")
    services.revoke_key(issued.key)
    assert reason(forged) is Failure.UNKNOWN
    assert reason(issued.secret) is Failure.REVOKED


def test_revocation_beats_a_warm_cache(acme):
    issued = services.issue_key(acme.tenant)
    assert reason(issued.secret) is None  # cache now warm
    services.revoke_key(issued.key)
    assert reason(issued.secret) is Failure.REVOKED


def test_expiry_change_beats_a_warm_cache(acme):
    issued = services.issue_key(acme.tenant, expires_at=timezone.now() + timedelta(hours=1))
    assert reason(issued.secret) is None  # cache now warm, with the old deadline
    services.set_key_expiry(issued.key, timezone.now() - timedelta(seconds=1))
    assert reason(issued.secret) is Failure.EXPIRED


def test_cached_deadline_alone_expires_a_key(acme, monkeypatch):
    issued = services.issue_key(acme.tenant, expires_at=timezone.now() + timedelta(seconds=30))
    assert reason(issued.secret) is None
    later = timezone.now() + timedelta(seconds=31)
    monkeypatch.setattr(timezone, "now", lambda: later)
    assert reason(issued.secret) is Failure.EXPIRED


def test_entitlement_changes_beat_a_warm_cache(acme):
    issued = services.issue_key(acme.tenant)
    assert "chat-small" in authenticate_secret(issued.secret).model_ids
    services.revoke_models(acme.tenant, ["chat-small"])
    assert "chat-small" not in authenticate_secret(issued.secret).model_ids
    services.grant_models(acme.tenant, ["chat-small"])
    assert "chat-small" in authenticate_secret(issued.secret).model_ids


def test_disabled_tenant(acme):
    issued = services.issue_key(acme.tenant)
    assert reason(issued.secret) is None
    services.set_tenant_active(acme.tenant, False)
    assert reason(issued.secret) is Failure.TENANT_DISABLED


def test_rotation_grace_then_expiry(acme, monkeypatch):
    issued = services.issue_key(acme.tenant)
    assert reason(issued.secret) is None
    rotated = services.rotate_key(issued.key, grace_seconds=60)
    assert reason(issued.secret) is None  # old secret in its grace period
    assert reason(rotated.secret) is None
    later = timezone.now() + timedelta(seconds=61)
    monkeypatch.setattr(timezone, "now", lambda: later)
    assert reason(issued.secret) is Failure.EXPIRED
    assert reason(rotated.secret) is None


def test_rotation_without_grace_kills_the_old_secret_at_once(acme):
    issued = services.issue_key(acme.tenant)
    rotated = services.rotate_key(issued.key, grace_seconds=0)
    assert reason(issued.secret) is Failure.UNKNOWN
    assert reason(rotated.secret) is None


def test_cache_hit_needs_no_query(acme, django_assert_num_queries):
    issued = services.issue_key(acme.tenant)
    authenticate_secret(issued.secret)
    with django_assert_num_queries(0):
        authenticate_secret(issued.secret)


def test_last_used_is_written_at_most_once_per_window(acme, django_assert_num_queries):
    issued = services.issue_key(acme.tenant)
    with django_assert_num_queries(1):
        services.touch_last_used(issued.key.pk)
    with django_assert_num_queries(0):
        for _ in range(5):
            services.touch_last_used(issued.key.pk)
    issued.key.refresh_from_db()
    assert issued.key.last_used_at is not None
