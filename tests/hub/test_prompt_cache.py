"""hub/api/prompt_cache.py: the cache_salt each request to our deployments carries, one per tenant (and per the
client's own salt), from the hub's secret; none for an external deployment or under a shared scope. That the
service keys its cache by it, and that tenants then share no cached prompt, is tests/e2e/test_gateway.py's."""

from __future__ import annotations

from hub.api import prompt_cache


def test_each_tenant_and_each_of_its_own_salts_is_cached_apart(settings):
    settings.HUB_PROMPT_CACHE_SCOPE = "tenant"
    acme, globex = (prompt_cache.salt({"messages": []}, tenant, False)["cache_salt"] for tenant in (1, 2))
    assert acme != globex and len(acme) == 32
    assert prompt_cache.salt({"messages": []}, 1, False)["cache_salt"] == acme  # stable: the cache is shared over time
    mine = prompt_cache.salt({"cache_salt": "user-7"}, 1, False)["cache_salt"]
    assert mine not in (acme, "user-7") and mine == prompt_cache.tenant_salt(1, "user-7")
    assert prompt_cache.salt({"cache_salt": "user-7"}, 2, False)["cache_salt"] != mine


def test_the_salt_is_keyed_by_the_hubs_secret(settings):
    settings.HUB_PROMPT_CACHE_SCOPE = "tenant"
    before = prompt_cache.tenant_salt(1, None)
    settings.SECRET_KEY = "another secret key, at least thirty-two characters long"
    assert prompt_cache.tenant_salt(1, None) != before  # not computable from the tenant's id alone


def test_external_deployments_a_shared_scope_and_no_tenant_get_the_body_as_written(settings):
    settings.HUB_PROMPT_CACHE_SCOPE = "tenant"
    assert prompt_cache.salt({"cache_salt": "x"}, 1, True) == {"cache_salt": "x"}
    assert prompt_cache.salt({}, None, False) == {}
    settings.HUB_PROMPT_CACHE_SCOPE = "shared"
    assert prompt_cache.salt({}, 1, False) == {}
    assert prompt_cache.salt({"cache_salt": "x"}, 1, False) == {"cache_salt": "x"}
