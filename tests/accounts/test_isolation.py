"""Owner / member / outsider: a user sees their own tenant's keys, models and usage, never another's."""

import pytest
from django.core.exceptions import PermissionDenied

from accounts import selectors, services
from accounts.models import UsageRecord


@pytest.fixture
def usage(acme, globex):
    acme_key = services.issue_key(acme.tenant, actor=acme.owner).key
    globex_key = services.issue_key(globex.tenant, actor=globex.owner).key
    for tenant, key, model in [(acme.tenant, acme_key, "chat-small"), (globex.tenant, globex_key, "completion-small")]:
        UsageRecord.objects.create(
            request_id=f"req_{tenant.slug}", tenant=tenant, api_key=key, model=model, route="chat.completions",
            prompt_tokens=3, completion_tokens=4, total_tokens=7, status_code=200,
        )  # fmt: skip
    return acme_key, globex_key


@pytest.mark.parametrize("role", ["owner", "member", "viewer"])
def test_members_see_their_own_tenant(acme, usage, role):
    user = getattr(acme, role)
    assert list(selectors.tenant_keys(user, acme.tenant)) == [usage[0]]
    assert [m.id for m in selectors.tenant_models(user, acme.tenant)] == [
        "chat-small", "completion-small", "embed-small", "vision-small",
    ]  # fmt: skip
    assert [r.request_id for r in selectors.tenant_usage(user, acme.tenant)] == ["req_acme"]


@pytest.mark.parametrize("who", ["outsider", "globex-owner", "globex-member", "globex-viewer"])
@pytest.mark.parametrize("selector", [selectors.tenant_keys, selectors.tenant_models, selectors.tenant_usage])
def test_nobody_else_sees_a_tenant(acme, globex, outsider, usage, who, selector):
    user = {
        "outsider": outsider,
        "globex-owner": globex.owner,
        "globex-member": globex.member,
        "globex-viewer": globex.viewer,
    }[who]
    with pytest.raises(PermissionDenied):
        selector(user, acme.tenant)


def test_other_tenants_keys_cannot_be_used_to_act(acme, globex, usage):
    acme_key, _ = usage
    for actor in (globex.owner, globex.member):
        with pytest.raises(PermissionDenied):
            services.revoke_key(acme_key, actor=actor)
        with pytest.raises(PermissionDenied):
            services.rotate_key(acme_key, actor=actor)
        with pytest.raises(PermissionDenied):
            services.set_key_models(acme_key, ["chat-small"], actor=actor)
