"""A revoked or expired key stops working at the next request in every hub process, even after the cache dropped
its generation entry (the file cache culls at MAX_ENTRIES; Redis evicts under maxmemory), on both caches: the file
cache `make run` uses and Redis.

Two live hubs share the database and one cache; a key is verified in both (cached there), the generation entry
is evicted, and then the keys change through the operator's paths in those processes: the Django admin's revoke
action (hub A), the console's revoke button (hub B), and the admin's change form setting an expiry (this process:
only the model signal invalidates). Then other changes follow, as many as it would take a counter restarted by
the eviction to come back to the number the cached entries carry (the failure this guards against). Every key is
refused by both hubs at the next request."""

from __future__ import annotations

import re
from datetime import timedelta

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.middleware.csrf import _get_new_csrf_string, _mask_cipher_secret
from django.test import Client, override_settings
from django.utils import timezone

from accounts import authcache, services
from accounts.models import ApiKey, ModelKind, Role
from tests.support.hub import database_url_for_subprocess, start_hub, stop_hub

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


@pytest.fixture(params=["file", "redis"])
def shared_cache(request, tmp_path, redis_url, settings):
    """(the hubs' environment, the cache settings this process uses to reach the same cache)."""
    prefix = f"{settings.HUB_CACHE_PREFIX}:revoke-{request.param}"
    if request.param == "file":
        caches = {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": str(tmp_path / "cache")}
        env = {"HUB_REDIS_URL": "", "HUB_DATA_DIR": str(tmp_path)}
    else:
        caches = {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": redis_url}
        env = {"HUB_REDIS_URL": redis_url}
    # the same secret key as this process's (kept in the data directory otherwise): sessions made here sign in there
    env.update(
        HUB_DATABASE_URL=database_url_for_subprocess(), HUB_CACHE_PREFIX=prefix, HUB_SECRET_KEY=settings.SECRET_KEY
    )
    with override_settings(CACHES={"default": {**caches, "KEY_PREFIX": prefix}}):
        yield env  # the Redis keys are under this run's prefix, removed when the run ends


def _status(url: str, secret: str) -> int:
    return httpx.get(f"{url}/v1/models", headers={"authorization": f"Bearer {secret}"}, timeout=10).status_code


def _post_form(url: str, path: str, user, fields: dict) -> httpx.Response:
    """A form POST on a live hub as ``user``: their session (in the database) and a CSRF cookie and token."""
    client = Client()
    client.force_login(user)
    secret = _get_new_csrf_string()
    cookies = {"sessionid": client.cookies["sessionid"].value, "csrftoken": secret}
    data = {**fields, "csrfmiddlewaretoken": _mask_cipher_secret(secret)}
    return httpx.post(f"{url}{path}", data=data, cookies=cookies, timeout=30)


def test_revocation_and_expiry_reach_every_process_after_the_cache_is_culled(shared_cache):
    services.register_model("chat-small", ModelKind.CHAT, max_sequence_length=512, max_output_length=64)
    tenant = services.create_tenant("acme", "Acme")
    services.grant_models(tenant, ["chat-small"])
    owner = get_user_model().objects.create_user("acme-owner", password="pw")
    services.add_member(tenant, owner, Role.OWNER)
    operator = get_user_model().objects.create_superuser("operator", "", "operator-pw")
    keys = {name: services.issue_key(tenant, name=name) for name in ("by-admin", "by-console", "expired")}

    hub_a, url_a = start_hub(shared_cache, "--no-bootstrap")
    hub_b, url_b = start_hub(shared_cache, "--no-bootstrap")
    try:
        for url in (url_a, url_b):
            assert {name: _status(url, k.secret) for name, k in keys.items()} == dict.fromkeys(keys, 200)
        verified_at = authcache.current_generation()
        assert all(cache.get(authcache.entry_key(k.key.prefix)) for k in keys.values())  # cached, to be outdated

        cache.delete(authcache.GEN_KEY)  # culled / evicted; the keys' entries stay

        admin = _post_form(url_a, "/admin/accounts/apikey/", operator,
                           {"action": "revoke_keys", "_selected_action": [keys["by-admin"].key.pk]})  # fmt: skip
        assert admin.status_code == 302, admin.text[:500]
        path = f"/console/t/{tenant.slug}/keys/{keys['by-console'].key.pk}/revoke/"
        console = _post_form(url_b, path, owner, {})
        assert console.status_code == 302, console.text[:500]
        _expire_in_the_admin(keys["expired"].key, operator)

        assert ApiKey.objects.filter(pk__in=[k.key.pk for k in keys.values()], revoked_at__isnull=False).count() == 2
        for _ in range(64):  # other changes follow, each replacing the generation
            if authcache.current_generation() == verified_at:
                break
            authcache.bump_generation()
        assert all(cache.get(authcache.entry_key(k.key.prefix)) for k in keys.values())  # stale entries still there

        for url in (url_a, url_b):
            assert {name: _status(url, k.secret) for name, k in keys.items()} == dict.fromkeys(keys, 401), url
    finally:
        outputs = [stop_hub(hub_a), stop_hub(hub_b)]
    assert not any("Traceback" in output for output in outputs), outputs


def _expire_in_the_admin(key: ApiKey, operator) -> None:
    """The admin's change form, saving an expiry in the past: only the model's post_save signal invalidates."""
    client = Client()
    client.force_login(operator)
    page = client.get(f"/admin/accounts/apikey/{key.pk}/change/")
    assert page.status_code == 200
    past = timezone.localtime(timezone.now() - timedelta(minutes=1))
    response = client.post(f"/admin/accounts/apikey/{key.pk}/change/", {
        "name": key.name, **({"all_models": "on"} if key.all_models else {}),
        "expires_at_0": past.strftime("%Y-%m-%d"), "expires_at_1": past.strftime("%H:%M:%S"),
    })  # fmt: skip
    assert response.status_code == 302, re.findall(r'class="errorlist[^>]*>(.*?)</ul>', response.content.decode())
    key.refresh_from_db()
    assert key.expires_at is not None and key.expires_at <= timezone.now()
