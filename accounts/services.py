"""Every write to the control plane, each in one transaction.

Functions that act on behalf of a person take ``actor`` and check the actor's role in the
tenant (``None`` means the operator: management commands and the Django admin).
Changes that affect authentication invalidate the auth cache once the transaction commits.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import Error as DBError
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts import authcache
from accounts.database import database_unreachable
from accounts.keys import generate_secret, hash_secret
from accounts.limits import Limits
from accounts.models import (
    ROLE_RANK,
    ApiKey,
    Deployment,
    FallbackOn,
    Invitation,
    Membership,
    ModelFallback,
    ModelKind,
    Role,
    ServedModel,
    Tenant,
    TenantEntitlement,
)

log = logging.getLogger(__name__)


def role_of(user: AbstractBaseUser | None, tenant: Tenant) -> Role | None:
    """The user's role in the tenant; None for outsiders. Superusers act as owners."""
    if user is None:
        return None
    if getattr(user, "is_superuser", False):
        return Role.OWNER
    membership = Membership.objects.filter(user=user, tenant=tenant).only("role").first()
    return Role(membership.role) if membership else None


def require_role(actor: AbstractBaseUser | None, tenant: Tenant, minimum: Role) -> None:
    """Raise PermissionDenied unless ``actor`` (None = operator) holds at least ``minimum``."""
    if actor is None:
        return
    role = role_of(actor, tenant)
    if role is None or ROLE_RANK[role] < ROLE_RANK[minimum]:
        # Same message for outsiders and under-privileged members: no hint the tenant exists.
        raise PermissionDenied("not allowed")


def tenants_of(user: AbstractBaseUser):
    """The tenants a user may see (all of them for superusers)."""
    if getattr(user, "is_superuser", False):
        return Tenant.objects.all()
    return Tenant.objects.filter(memberships__user=user)


# --- tenants and members ---------------------------------------------------------------------


@transaction.atomic
def create_tenant(slug: str, name: str = "") -> Tenant:
    tenant = Tenant(slug=slug, name=name or slug)
    tenant.full_clean()
    tenant.save()
    return tenant


@transaction.atomic
def set_tenant_active(tenant: Tenant, active: bool) -> None:
    Tenant.objects.filter(pk=tenant.pk).update(is_active=active)
    _invalidate_tenant_keys(tenant)


@transaction.atomic
def add_member(tenant: Tenant, user: AbstractBaseUser, role: Role, *, actor: AbstractBaseUser | None = None):
    """Add ``user`` with ``role``; an existing member's role changes through ``set_role`` (which guards owners)."""
    require_role(actor, tenant, Role.ADMIN)
    if actor is not None and role == Role.OWNER:
        require_role(actor, tenant, Role.OWNER)
    if Membership.objects.filter(user=user, tenant=tenant).exists():
        return set_role(tenant, user, role, actor=actor)
    return Membership.objects.create(user=user, tenant=tenant, role=role)


INVITATION_DAYS = 14


@transaction.atomic
def invite_member(tenant: Tenant, username: str, role: Role, *, actor: AbstractBaseUser | None) -> Invitation:
    """Offer ``username`` membership with ``role``; nothing changes until that user accepts. The same answer
    whether the username exists or not (no one learns which accounts the hub has); a pending invitation of the
    same username is renewed."""
    require_role(actor, tenant, Role.ADMIN)
    role = Role(role)
    if actor is not None and role == Role.OWNER:
        require_role(actor, tenant, Role.OWNER)
    username = username.strip()
    if not username or len(username) > 150:
        raise ValidationError("a username is 1 to 150 characters")
    if Membership.objects.filter(tenant=tenant, user__username=username).exists():  # the page lists members
        raise ValidationError("already a member: change the role in the table instead")
    expires = timezone.now() + timedelta(days=INVITATION_DAYS)
    invitation = Invitation.objects.pending().select_for_update().filter(tenant=tenant, username=username).first()
    if invitation is None:
        invitation = Invitation(tenant=tenant, username=username)
    invitation.role, invitation.invited_by, invitation.expires_at = role, actor, expires
    invitation.save()
    log.info("%s invited %r to %s as %s", actor, username, tenant.slug, role)
    return invitation


def invitations_for(user: AbstractBaseUser):
    """The pending invitations addressed to this user's username."""
    return Invitation.objects.pending().filter(username=user.get_username()).select_related("tenant", "invited_by")


@transaction.atomic
def answer_invitation(invitation_id: int, user: AbstractBaseUser, *, accept: bool) -> Membership | None:
    """The invited user accepts (joins with the offered role) or declines. Only the addressee may answer, and only
    while it is pending: anything else is as if there were no such invitation."""
    invitation = (
        Invitation.objects.pending().select_for_update().filter(pk=invitation_id, username=user.get_username()).first()
    )
    if invitation is None:
        raise Invitation.DoesNotExist
    now = timezone.now()
    if not accept:
        invitation.declined_at = now
        invitation.save(update_fields=["declined_at"])
        return None
    invitation.accepted_at = now
    invitation.save(update_fields=["accepted_at"])
    membership, _ = Membership.objects.get_or_create(tenant=invitation.tenant, user=user,
                                                     defaults={"role": invitation.role})  # fmt: skip
    log.info("%s accepted the invitation to %s as %s", user, invitation.tenant.slug, invitation.role)
    return membership


@transaction.atomic
def cancel_invitation(tenant: Tenant, invitation_id: int, *, actor: AbstractBaseUser | None) -> None:
    require_role(actor, tenant, Role.ADMIN)
    Invitation.objects.pending().filter(tenant=tenant, pk=invitation_id).update(declined_at=timezone.now())


@transaction.atomic
def set_role(
    tenant: Tenant, user: AbstractBaseUser, role: Role, *, actor: AbstractBaseUser | None = None
) -> Membership:
    """Change an existing member's role.

    Admins manage members, but only an owner may make or unmake an owner (an admin must not be able
    to promote themselves or demote the people above them), and the last owner cannot step down, so a
    tenant is never left without someone who can manage its admins.
    """
    require_role(actor, tenant, Role.ADMIN)
    role = Role(role)
    membership = Membership.objects.select_for_update().filter(tenant=tenant, user=user).first()
    if membership is None:
        raise ValidationError("not a member of this tenant")
    if actor is not None and Role.OWNER in (role, membership.role):
        require_role(actor, tenant, Role.OWNER)
    if membership.role == Role.OWNER and role != Role.OWNER:
        # Lock the owner rows so two owners demoting each other at once cannot both succeed.
        owners = Membership.objects.select_for_update().filter(tenant=tenant, role=Role.OWNER)
        if len(owners.values_list("pk", flat=True)) <= 1:
            raise ValidationError("a tenant needs at least one owner")
    if membership.role != role:
        membership.role = role
        membership.save(update_fields=["role"])
    return membership


# --- the model catalog -------------------------------------------------------------------------


@transaction.atomic
def register_model(
    model_id: str,
    kind: str,
    *,
    max_sequence_length: int = 0,
    hidden_size: int = 0,
    max_output_length: int = 0,
    owned_by: str = "llm-hub",
    deployment_url: str | None = None,
    upstream_model: str = "",
    upstream_api_key: str = "",
    external: bool = False,
) -> ServedModel:
    """Create or update a catalog entry (and optionally add a deployment; ``external``: an OpenAI-compatible
    API other than our inference service)."""
    if kind not in ModelKind.values:
        raise ValidationError(f"kind must be one of {', '.join(ModelKind.values)}")
    model = ServedModel.objects.filter(pk=model_id).first() or ServedModel(id=model_id)
    model.kind = kind
    model.max_sequence_length = max_sequence_length
    model.hidden_size = hidden_size
    model.max_output_length = max_output_length
    model.owned_by = owned_by
    model.full_clean()
    model.save()
    if deployment_url:
        deployment = Deployment(
            model=model, base_url=deployment_url, upstream_model=upstream_model, api_key=upstream_api_key,
            external=external,
        )  # fmt: skip
        # The (model, base_url) pair may exist already: a restart or a re-sync updates it in place.
        deployment.full_clean(validate_unique=False, validate_constraints=False)
        Deployment.objects.update_or_create(
            model=model,
            base_url=deployment_url,
            defaults={
                "upstream_model": upstream_model,
                "api_key": upstream_api_key,
                "external": external,
                "enabled": True,
            },  # fmt: skip
        )
    authcache.bump_generation()
    return model


@transaction.atomic
def set_model_enabled(model: ServedModel, enabled: bool) -> None:
    ServedModel.objects.filter(pk=model.pk).update(enabled=enabled)
    authcache.bump_generation()


def _models_by_id(model_ids: Iterable[str]) -> list[ServedModel]:
    ids = list(dict.fromkeys(model_ids))
    found = {m.id: m for m in ServedModel.objects.filter(pk__in=ids)}
    missing = [i for i in ids if i not in found]
    if missing:
        raise ValidationError(f"unknown model(s): {', '.join(missing)}")
    return [found[i] for i in ids]


@transaction.atomic
def set_fallbacks(model_id: str, fallback_ids: Iterable[str], *, context_only: Iterable[str] = (),
                  unavailable_only: Iterable[str] = ()) -> list[ModelFallback]:  # fmt: skip
    """``model_id``'s fallbacks become ``fallback_ids`` (taking any request it cannot answer), then ``context_only``
    (only one over its context or output length: LiteLLM's ``context_window_fallbacks``), then ``unavailable_only``
    (only one no deployment of it takes), in that order (none: it has none). Each must be another model of its kind
    (``ModelFallback.mismatch``), once; a fallback's own fallbacks are not followed."""
    [model] = _models_by_id([model_id])
    given = [(i, FallbackOn.ANY) for i in fallback_ids] + [(i, FallbackOn.CONTEXT) for i in context_only]
    given += [(i, FallbackOn.UNAVAILABLE) for i in unavailable_only]
    if len({i for i, _ in given}) < len(given):
        raise ValidationError("a model is its fallback at most once")
    fallbacks = _models_by_id([i for i, _ in given])
    for fallback in fallbacks:
        if (why := ModelFallback.mismatch(model, fallback)) is not None:
            raise ValidationError(why)
    ModelFallback.objects.filter(model=model).delete()
    return ModelFallback.objects.bulk_create(
        ModelFallback(model=model, fallback=fallback, position=i, on=on)
        for i, (fallback, (_, on)) in enumerate(zip(fallbacks, given, strict=True))
    )


@transaction.atomic
def grant_models(tenant: Tenant, model_ids: Iterable[str]) -> list[ServedModel]:
    models = _models_by_id(model_ids)
    for model in models:
        TenantEntitlement.objects.get_or_create(tenant=tenant, model=model)
    authcache.bump_generation()
    return models


@transaction.atomic
def revoke_models(tenant: Tenant, model_ids: Iterable[str]) -> None:
    """Remove tenant entitlements, and the same models from every key of the tenant (subset rule)."""
    models = _models_by_id(model_ids)
    TenantEntitlement.objects.filter(tenant=tenant, model__in=models).delete()
    ApiKey.allowed_models.through.objects.filter(apikey__tenant=tenant, servedmodel__in=models).delete()
    authcache.bump_generation()


# --- API keys --------------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedKey:
    key: ApiKey
    secret: str  # shown once to the caller, never stored


def _new_secret_fields() -> tuple[str, str, str]:
    secret = generate_secret()
    return secret, secret[: len("sk-hub-") + 8], hash_secret(secret)


def _check_key_models(tenant: Tenant, model_ids: list[str]) -> list[ServedModel]:
    models = _models_by_id(model_ids)
    entitled = set(TenantEntitlement.objects.filter(tenant=tenant).values_list("model_id", flat=True))
    outside = [m.id for m in models if m.id not in entitled]
    if outside:
        raise ValidationError(f"tenant {tenant.slug} is not entitled to: {', '.join(outside)}")
    return models


@transaction.atomic
def issue_key(
    tenant: Tenant,
    *,
    name: str = "",
    model_ids: list[str] | None = None,
    expires_at: datetime | None = None,
    actor: AbstractBaseUser | None = None,
) -> IssuedKey:
    """Create a key. ``model_ids=None`` means every model the tenant has, now and later."""
    require_role(actor, tenant, Role.MEMBER)
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError("expiry must be in the future")
    longest = ApiKey._meta.get_field("name").max_length
    if len(name) > longest:
        raise ValidationError(f"a key's name may have at most {longest} characters; this one has {len(name)}")
    models = _check_key_models(tenant, model_ids) if model_ids is not None else []
    for _ in range(5):  # prefix collisions are ~1e-14 likely; retry rather than fail
        secret, prefix, digest = _new_secret_fields()
        try:
            with transaction.atomic():
                key = ApiKey.objects.create(
                    tenant=tenant,
                    name=name,
                    prefix=prefix,
                    secret_hash=digest,
                    all_models=model_ids is None,
                    expires_at=expires_at,
                    created_by=actor,
                )
            break
        except IntegrityError:
            continue
    else:  # pragma: no cover - astronomically unlikely
        raise RuntimeError("could not allocate a unique key prefix")
    key.allowed_models.set(models)
    return IssuedKey(key=key, secret=secret)


def _can_manage_key(actor: AbstractBaseUser | None, key: ApiKey) -> None:
    """Admins manage every key of their tenant; members only the keys they created."""
    if actor is None:
        return
    role = role_of(actor, key.tenant)
    if role is not None and ROLE_RANK[role] >= ROLE_RANK[Role.ADMIN]:
        return
    if role is not None and ROLE_RANK[role] >= ROLE_RANK[Role.MEMBER] and key.created_by_id == actor.pk:
        return
    raise PermissionDenied("not allowed")


@transaction.atomic
def revoke_key(key: ApiKey, *, actor: AbstractBaseUser | None = None) -> ApiKey:
    _can_manage_key(actor, key)
    key = ApiKey.objects.select_for_update().get(pk=key.pk)
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.previous_valid_until = None
        key.save(update_fields=["revoked_at", "previous_valid_until"])
    authcache.invalidate_key(key)
    return key


@transaction.atomic
def rotate_key(key: ApiKey, *, actor: AbstractBaseUser | None = None, grace_seconds: int | None = None) -> IssuedKey:
    """Issue a new secret for the same key; the old one works for ``grace_seconds`` more."""
    _can_manage_key(actor, key)
    key = ApiKey.objects.select_for_update().get(pk=key.pk)
    if key.status != "active":
        raise ValidationError(f"cannot rotate a {key.status} key")
    grace = settings.HUB_KEY_ROTATION_GRACE_SECONDS if grace_seconds is None else grace_seconds
    old_prefix = key.prefix
    authcache.invalidate_key(key)  # both the old and (if any) the previous-previous prefix
    secret, prefix, digest = _new_secret_fields()
    key.previous_prefix, key.previous_secret_hash = (old_prefix, key.secret_hash) if grace > 0 else (None, "")
    key.previous_valid_until = timezone.now() + timedelta(seconds=grace) if grace > 0 else None
    key.prefix, key.secret_hash = prefix, digest
    key.save(update_fields=["prefix", "secret_hash", "previous_prefix", "previous_secret_hash", "previous_valid_until"])
    return IssuedKey(key=key, secret=secret)


@transaction.atomic
def set_key_models(key: ApiKey, model_ids: list[str] | None, *, actor: AbstractBaseUser | None = None) -> None:
    _can_manage_key(actor, key)
    models = _check_key_models(key.tenant, model_ids) if model_ids is not None else []
    ApiKey.objects.filter(pk=key.pk).update(all_models=model_ids is None)
    key.allowed_models.set(models)
    authcache.invalidate_key(key)


@transaction.atomic
def set_key_expiry(key: ApiKey, expires_at: datetime | None, *, actor: AbstractBaseUser | None = None) -> None:
    _can_manage_key(actor, key)
    ApiKey.objects.filter(pk=key.pk).update(expires_at=expires_at)
    authcache.invalidate_key(key)


@transaction.atomic
def set_limits(owner: Tenant | ApiKey, limits: Limits, *, actor: AbstractBaseUser | None = None) -> None:
    """Set a tenant's or a key's rate limits and budgets in tokens and money (``Limits``; None fields: unlimited).

    A tenant's limits are the operator's to set (its own admins could otherwise lift them); a key's, its
    tenant's admins'. Both apply to every request through the key. The auth cache, which carries the
    limits to the gateway, is invalidated when this commits.
    """
    if isinstance(owner, Tenant):
        if actor is not None and not getattr(actor, "is_superuser", False):
            raise PermissionDenied("only an operator may change a tenant's limits")
        if limits.max_streams is not None:
            raise ValidationError("a stream limit applies to keys, not tenants")
    else:
        require_role(actor, owner.tenant, Role.ADMIN)
    fields = {
        "rpm_limit": limits.rpm,
        "tpm_limit": limits.tpm,
        "token_budget": limits.budget,
        "budget_period": limits.budget_period,
        "cost_budget": limits.cost_limit,
    }
    if isinstance(owner, ApiKey):
        fields["max_streams"] = limits.max_streams
    type(owner).objects.filter(pk=owner.pk).update(**fields)
    for name, value in fields.items():
        setattr(owner, name, value)
    if isinstance(owner, Tenant):
        _invalidate_tenant_keys(owner)
    else:
        authcache.invalidate_key(owner)


def _invalidate_tenant_keys(tenant: Tenant) -> None:
    for key in ApiKey.objects.filter(tenant=tenant).only("prefix", "previous_prefix"):
        authcache.invalidate_key(key)


def touch_last_used(key_id: int) -> None:
    """Record use without a write per request: at most one UPDATE per key per resolution window."""
    from django.core.cache import cache

    try:
        first = cache.add(f"auth:last_used:{key_id}", 1, timeout=settings.HUB_LAST_USED_RESOLUTION_SECONDS)
    except Exception:  # noqa: BLE001 - the cache (Redis) is down: skip it rather than write on every request
        return
    if first:
        try:
            ApiKey.objects.filter(pk=key_id).update(last_used_at=timezone.now())
        except DBError as exc:  # Django's Error: DatabaseError and InterfaceError (a closed connection) alike
            if not database_unreachable(exc):
                raise
            # the database down: a cached key still serves
            log.warning("last_used_at of key %s not written, the database is unreachable: %s", key_id, exc)


_SERVICE_KINDS = {
    "chat": ModelKind.CHAT,
    "completion": ModelKind.COMPLETION,
    "embedding": ModelKind.EMBEDDING,
    "rerank": ModelKind.RERANK,
    "vision": ModelKind.VISION,
    "audio": ModelKind.AUDIO,
    "moderation": ModelKind.MODERATION,
    "tts": ModelKind.TTS,
}


@transaction.atomic
def sync_deployment(base_url: str, cards: list[dict], api_key: str = "") -> list[ServedModel]:
    """Register the models an inference service reports (its ``/v1/models`` cards, with ``meta_data``
    measured from the loaded models) and record that service as a deployment of each.

    Idempotent: a restart updates the same rows. A model this service served before and serves no
    more loses its deployment here (disabled, not deleted); when no deployment of it is left, the model
    is disabled too (``unserved_since``), its entitlements and usage history kept, until a service
    serves it again. A model an operator disabled stays disabled. ``api_key``: the service's shared secret
    (its INFERENCE_API_KEY), sent by the gateway with every request to it."""
    synced = []
    for card in cards:
        meta = card.get("meta_data") or {}
        kind = _SERVICE_KINDS.get(card.get("kind", "chat"))
        if kind is None:
            raise ValidationError(f"model {card.get('id')!r}: unknown kind {card.get('kind')!r}")
        synced.append(
            register_model(
                card["id"],
                kind,
                max_sequence_length=int(meta.get("max_sequence_length", 0)),
                hidden_size=int(meta.get("hidden_size", 0)),
                max_output_length=int(meta.get("max_output_length", 0)),
                deployment_url=base_url,
                upstream_api_key=api_key,
            )
        )
    served = [m.id for m in synced]
    ServedModel.objects.filter(pk__in=served, unserved_since__isnull=False).update(enabled=True, unserved_since=None)
    gone = Deployment.objects.filter(base_url=base_url, enabled=True).exclude(model_id__in=served)
    gone_ids = list(gone.values_list("model_id", flat=True))
    if gone_ids:
        gone.update(enabled=False)
        log.warning("%s no longer serves %s: its deployment there is disabled", base_url, ", ".join(gone_ids))
        orphaned = ServedModel.objects.filter(pk__in=gone_ids, enabled=True).exclude(deployments__enabled=True)
        orphaned.update(enabled=False, unserved_since=timezone.now())
    authcache.bump_generation()
    return synced
