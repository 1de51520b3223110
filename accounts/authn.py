"""Bearer secret → the key's tenant and effective models, with the cache in front."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from accounts import authcache
from accounts.keys import prefix_of, secret_matches
from accounts.limits import Limits
from accounts.models import ApiKey, ServedModel


class Failure(enum.Enum):
    MALFORMED = "malformed"
    UNKNOWN = "unknown"
    REVOKED = "revoked"
    EXPIRED = "expired"
    TENANT_DISABLED = "tenant_disabled"


class AuthFailed(Exception):
    def __init__(self, reason: Failure):
        super().__init__(reason.value)
        self.reason = reason


@dataclass(frozen=True)
class KeyContext:
    """What a request may do, as verified from its key (``key_id`` None: the console's playground, which a
    signed-in member uses on the tenant's behalf without a key)."""

    key_id: int | None
    prefix: str
    tenant_id: int
    tenant_slug: str
    model_ids: frozenset[str]
    limits: Limits = Limits()  # the key's own
    tenant_limits: Limits = Limits()
    # models the key would use but that are disabled (by the operator, or no longer served): a request for one goes
    # to its fallbacks that take ``unavailable``, else is a 404 (hub/api/fallbacks.py)
    disabled_model_ids: frozenset[str] = frozenset()

    def may_use(self, model_id: str) -> bool:
        return model_id in self.model_ids


def model_ids_of(key: ApiKey) -> tuple[frozenset[str], frozenset[str]]:
    """The tenant's models, narrowed to the key's own list unless it has all of them: (enabled, disabled), one query."""
    qs = ServedModel.objects.filter(entitlements__tenant_id=key.tenant_id)
    if not key.all_models:
        qs = qs.filter(api_keys=key)
    rows = list(qs.values_list("id", "enabled"))
    return frozenset(i for i, on in rows if on), frozenset(i for i, on in rows if not on)


def effective_model_ids(key: ApiKey) -> frozenset[str]:
    """Enabled models of the tenant, narrowed to the key's own list unless it has all of them."""
    return model_ids_of(key)[0]


def _load(prefix: str) -> dict | None:
    key = (
        ApiKey.objects.select_related("tenant").filter(prefix=prefix).first()
        or ApiKey.objects.select_related("tenant").filter(previous_prefix=prefix).first()
    )
    if key is None:
        return None
    is_current = key.prefix == prefix
    valid_until: datetime | None = key.expires_at
    if not is_current:
        if key.previous_valid_until is None and key.revoked_at is None:
            return None  # the grace period was cut short
        valid_until = min(filter(None, [key.expires_at, key.previous_valid_until]), default=None)
    enabled, disabled = model_ids_of(key)
    return {
        "key_id": key.pk,
        "tenant_id": key.tenant_id,
        "tenant_slug": key.tenant.slug,
        "tenant_active": key.tenant.is_active,
        "hash": key.secret_hash if is_current else key.previous_secret_hash,
        "revoked": key.revoked_at is not None,
        "valid_until": valid_until.timestamp() if valid_until else None,
        "models": sorted(enabled),
        "disabled": sorted(disabled),
        "limits": Limits.of(key).as_dict(),
        "tenant_limits": Limits.of(key.tenant).as_dict(),
    }


def context_of(key_id: int | None) -> KeyContext:
    """What the key may do now, by its id, as authenticating its secret would give it (for work done later on the
    key's behalf: a batch's requests); AuthFailed if it may no longer be used."""
    key = ApiKey.objects.select_related("tenant").filter(pk=key_id).first() if key_id is not None else None
    if key is None:
        raise AuthFailed(Failure.UNKNOWN)
    if key.revoked_at is not None:
        raise AuthFailed(Failure.REVOKED)
    if key.expires_at is not None and key.expires_at <= timezone.now():
        raise AuthFailed(Failure.EXPIRED)
    if not key.tenant.is_active:
        raise AuthFailed(Failure.TENANT_DISABLED)
    enabled, disabled = model_ids_of(key)
    return KeyContext(
        key_id=key.pk, prefix=key.prefix, tenant_id=key.tenant_id, tenant_slug=key.tenant.slug,
        model_ids=enabled, limits=Limits.of(key), tenant_limits=Limits.of(key.tenant), disabled_model_ids=disabled,
    )  # fmt: skip


def authenticate_secret(secret: str) -> KeyContext:
    """Verify a presented secret. Raises AuthFailed with the reason (never echoing the secret)."""
    prefix = prefix_of(secret)
    if prefix is None:
        raise AuthFailed(Failure.MALFORMED)
    gen, entry = authcache.get(prefix)
    if entry is None:
        entry = _load(prefix)
        if entry is None:
            raise AuthFailed(Failure.UNKNOWN)
        authcache.put(prefix, gen, entry)
    # Compare before reporting revoked/expired, so those answers need the real secret.
    if not secret_matches(secret, entry["hash"]):
        raise AuthFailed(Failure.UNKNOWN)
    if entry["revoked"]:
        raise AuthFailed(Failure.REVOKED)
    if entry["valid_until"] is not None and entry["valid_until"] <= timezone.now().timestamp():
        raise AuthFailed(Failure.EXPIRED)
    if not entry["tenant_active"]:
        raise AuthFailed(Failure.TENANT_DISABLED)
    return KeyContext(
        key_id=entry["key_id"],
        prefix=prefix,
        tenant_id=entry["tenant_id"],
        tenant_slug=entry["tenant_slug"],
        model_ids=frozenset(entry["models"]),
        limits=Limits(**entry.get("limits", {})),
        tenant_limits=Limits(**entry.get("tenant_limits", {})),
        disabled_model_ids=frozenset(entry.get("disabled", ())),  # absent from entries cached before it was kept
    )
