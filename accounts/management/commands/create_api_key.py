from datetime import timedelta

from django.core.management.base import CommandError
from django.db import transaction
from django.utils import timezone

from accounts import services
from accounts.limits import Limits
from accounts.management.commands._base import OperatorCommand, split_models, tenant_by_slug
from accounts.management.commands.set_limits import add_limit_arguments, describe, merged


class Command(OperatorCommand):
    help = (
        "Issue an API key: create_api_key <tenant-slug> [--models m1,m2] [--name N] [--expires-in-days D] "
        "[--rpm N] [--tpm N] [--max-streams N] [--budget N --budget-period day|month]. Without --models the key "
        "may use every model of the tenant. The secret is printed once, alone on the last line."
    )

    def add_arguments(self, parser):
        parser.add_argument("tenant")
        parser.add_argument("--models", default=None, help="comma-separated model ids (default: all of the tenant's)")
        parser.add_argument("--name", default="")
        parser.add_argument("--expires-in-days", type=int, default=None)
        add_limit_arguments(parser)

    def handle(self, tenant, models, name, expires_in_days, **options):
        limits = merged(Limits(), options)
        tenant = tenant_by_slug(tenant)
        model_ids = split_models(models)
        if model_ids is not None and not model_ids:
            raise CommandError("--models needs at least one model id")
        expires_at = None
        if expires_in_days is not None:
            if expires_in_days <= 0:
                raise CommandError("--expires-in-days must be positive")
            try:
                expires_at = timezone.now() + timedelta(days=expires_in_days)
            except OverflowError:
                raise CommandError(f"--expires-in-days {expires_in_days} is past the last date there is") from None
        with transaction.atomic():
            issued = services.issue_key(tenant, name=name, model_ids=model_ids, expires_at=expires_at)
            if limits.any:
                services.set_limits(issued.key, limits)
        scope = ", ".join(model_ids) if model_ids is not None else "all models of the tenant"
        expiry = issued.key.expires_at.isoformat() if issued.key.expires_at else "never"
        self.stdout.write(
            f"key {issued.key.prefix} for {tenant.slug} ({scope}; expires {expiry}; {describe(limits)}); "
            "the secret follows, shown once:"
        )
        self.stdout.write(issued.secret)
