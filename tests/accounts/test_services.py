"""The control plane's writes: validation, the subset rule, rotation, and who may do what."""

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from accounts import services
from accounts.authn import effective_model_ids
from accounts.models import ApiKey, Role, Tenant


def test_tenant_slug_is_validated(db):
    with pytest.raises(ValidationError):
        services.create_tenant("Not A Slug")
    services.create_tenant("ok-slug")
    with pytest.raises(ValidationError):
        services.create_tenant("ok-slug")  # unique


def test_register_model_rejects_unknown_kind(db):
    with pytest.raises(ValidationError):
        services.register_model("m", "telepathy")


def test_grant_unknown_model_fails(acme):
    with pytest.raises(ValidationError, match="unknown model"):
        services.grant_models(acme.tenant, ["no-such-model"])


def test_key_models_must_be_a_subset_of_the_tenants(globex):
    with pytest.raises(ValidationError, match="not entitled"):
        services.issue_key(globex.tenant, model_ids=["chat-small"])
    issued = services.issue_key(globex.tenant, model_ids=["completion-small"])
    assert effective_model_ids(issued.key) == {"completion-small"}


def test_revoking_a_tenant_entitlement_removes_it_from_keys(acme):
    issued = services.issue_key(acme.tenant, model_ids=["chat-small", "embed-small"])
    everything = services.issue_key(acme.tenant)
    services.revoke_models(acme.tenant, ["chat-small"])
    assert set(issued.key.allowed_models.values_list("id", flat=True)) == {"embed-small"}
    assert effective_model_ids(issued.key) == {"embed-small"}
    assert "chat-small" not in effective_model_ids(everything.key)


def test_all_models_key_follows_the_tenant_and_disabled_models_vanish(acme, catalog):
    issued = services.issue_key(acme.tenant)
    assert effective_model_ids(issued.key) == {"chat-small", "completion-small", "embed-small", "vision-small"}
    services.set_model_enabled(catalog["vision"], False)
    assert "vision-small" not in effective_model_ids(issued.key)


def test_secret_is_not_stored(acme):
    issued = services.issue_key(acme.tenant, name="ci")
    row = ApiKey.objects.filter(pk=issued.key.pk).values().get()
    assert all(issued.secret not in str(value) for value in row.values())
    assert issued.secret.startswith(row["prefix"])


def test_expiry_must_be_in_the_future(acme):
    with pytest.raises(ValidationError):
        services.issue_key(acme.tenant, expires_at=timezone.now() - timedelta(seconds=1))


def test_rotation_keeps_identity_and_old_secret_for_the_grace_period(acme):
    issued = services.issue_key(acme.tenant, name="svc")
    rotated = services.rotate_key(issued.key, grace_seconds=600)
    assert rotated.key.pk == issued.key.pk
    assert rotated.secret != issued.secret
    assert rotated.key.previous_prefix == issued.key.prefix
    assert timezone.now() + timedelta(seconds=590) < rotated.key.previous_valid_until
    services.revoke_key(rotated.key)
    with pytest.raises(ValidationError, match="revoked"):
        services.rotate_key(rotated.key)


@pytest.mark.parametrize(
    "who, may_issue",
    [("owner", True), ("member", True), ("viewer", False), ("outsider", False), ("other_owner", False)],
)
def test_who_may_issue_keys(acme, globex, outsider, who, may_issue):
    actor = {
        "owner": acme.owner,
        "member": acme.member,
        "viewer": acme.viewer,
        "outsider": outsider,
        "other_owner": globex.owner,
    }[who]
    if may_issue:
        assert services.issue_key(acme.tenant, actor=actor).key.created_by == actor
    else:
        with pytest.raises(PermissionDenied):
            services.issue_key(acme.tenant, actor=actor)


def test_members_manage_only_their_own_keys_admins_all(acme, globex):
    mine = services.issue_key(acme.tenant, actor=acme.member).key
    owners = services.issue_key(acme.tenant, actor=acme.owner).key
    with pytest.raises(PermissionDenied):
        services.revoke_key(owners, actor=acme.member)
    with pytest.raises(PermissionDenied):
        services.revoke_key(mine, actor=globex.owner)  # another tenant's owner
    with pytest.raises(PermissionDenied):
        services.rotate_key(mine, actor=acme.viewer)
    services.revoke_key(mine, actor=acme.member)
    services.revoke_key(owners, actor=acme.owner)
    assert {k.status for k in ApiKey.objects.all()} == {"revoked"}


def test_only_owners_appoint_owners(acme, outsider):
    admin = services.add_member(acme.tenant, outsider, Role.ADMIN).user
    with pytest.raises(PermissionDenied):
        services.add_member(acme.tenant, acme.viewer, Role.OWNER, actor=admin)
    with pytest.raises(PermissionDenied):
        services.add_member(acme.tenant, acme.viewer, Role.ADMIN, actor=acme.member)
    services.add_member(acme.tenant, acme.viewer, Role.ADMIN, actor=admin)
    services.add_member(acme.tenant, acme.member, Role.OWNER, actor=acme.owner)


def test_tenants_of_scopes_users(acme, globex, outsider, django_user_model):
    assert list(services.tenants_of(acme.member)) == [acme.tenant]
    assert list(services.tenants_of(outsider)) == []
    root = django_user_model.objects.create_superuser("root", "", "pw")
    assert set(services.tenants_of(root)) == set(Tenant.objects.all())


def test_an_admin_cannot_demote_an_owner_by_adding_them_again(acme):
    from django.contrib.auth import get_user_model

    from accounts.models import Membership

    admin = get_user_model().objects.create_user("acme-admin", password="pw-acme-admin")
    services.add_member(acme.tenant, admin, Role.ADMIN)
    with pytest.raises(PermissionDenied):
        services.add_member(acme.tenant, acme.owner, Role.MEMBER, actor=admin)
    assert Membership.objects.get(tenant=acme.tenant, user=acme.owner).role == Role.OWNER
    services.add_member(acme.tenant, acme.viewer, Role.MEMBER, actor=admin)  # re-adding changes a lower role
    assert Membership.objects.get(tenant=acme.tenant, user=acme.viewer).role == Role.MEMBER
