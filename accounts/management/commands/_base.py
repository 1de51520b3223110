"""Shared helpers for the operator commands: errors become CommandError, never tracebacks."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from accounts.models import ApiKey, Tenant


def tenant_by_slug(slug: str) -> Tenant:
    tenant = Tenant.objects.filter(slug=slug).first()
    if tenant is None:
        raise CommandError(f"no tenant with slug {slug!r}")
    return tenant


def key_by_prefix(prefix: str) -> ApiKey:
    key = ApiKey.objects.select_related("tenant").filter(prefix=prefix).first()
    if key is None:
        raise CommandError(f"no API key with prefix {prefix!r} (see list_api_keys)")
    return key


def split_models(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [m.strip() for m in value.split(",") if m.strip()]


def validation_message(exc: ValidationError) -> str:
    return "; ".join(exc.messages)


class OperatorCommand(BaseCommand):
    """Turns ValidationError from the services into a clean CommandError. A command's writes are one transaction:
    one that fails part way changes nothing (register_model registered a model, then refused its price)."""

    def execute(self, *args, **options):
        try:
            with transaction.atomic():
                return super().execute(*args, **options)
        except ValidationError as exc:
            raise CommandError(validation_message(exc)) from None
