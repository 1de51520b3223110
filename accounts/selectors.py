"""Tenant-scoped reads for people (console, usage API): every query goes through ``require_role``,
so a user of one tenant can never read another tenant's keys, models or usage."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from accounts.models import ApiKey, Role, ServedModel, Tenant, UsageRecord
from accounts.services import require_role


def tenant_keys(actor: AbstractBaseUser, tenant: Tenant) -> QuerySet[ApiKey]:
    require_role(actor, tenant, Role.VIEWER)
    return ApiKey.objects.filter(tenant=tenant)


def tenant_models(actor: AbstractBaseUser, tenant: Tenant) -> QuerySet[ServedModel]:
    require_role(actor, tenant, Role.VIEWER)
    return ServedModel.objects.filter(entitlements__tenant=tenant, enabled=True)


def tenant_usage(actor: AbstractBaseUser, tenant: Tenant) -> QuerySet[UsageRecord]:
    require_role(actor, tenant, Role.VIEWER)
    return UsageRecord.objects.filter(tenant=tenant)
