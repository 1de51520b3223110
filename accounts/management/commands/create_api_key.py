from datetime import timedelta

from django.core.management.base import CommandError
from django.utils import timezone

from accounts import services
from accounts.management.commands._base import OperatorCommand, split_models, tenant_by_slug


class Command(OperatorCommand):
    help = (
        "Issue an API key: create_api_key <tenant-slug> [--models m1,m2] [--name N] [--expires-in-days D]. "
        "Without --models the key may use every model of the tenant. The secret is printed once, "
        "alone on the last line."
    )

    def add_arguments(self, parser):
        parser.add_argument("tenant")
        parser.add_argument("--models", default=None, help="comma-separated model ids (default: all of the tenant's)")
        parser.add_argument("--name", default="")
        parser.add_argument("--expires-in-days", type=int, default=None)

    def handle(self, tenant, models, name, expires_in_days, **options):
        tenant = tenant_by_slug(tenant)
        model_ids = split_models(models)
        if model_ids is not None and not model_ids:
            raise CommandError("--models needs at least one model id")
        expires_at = None
        if expires_in_days is not None:
            if expires_in_days <= 0:
                raise CommandError("--expires-in-days must be positive")
            expires_at = timezone.now() + timedelta(days=expires_in_days)
        issued = services.issue_key(tenant, name=name, model_ids=model_ids, expires_at=expires_at)
        scope = ", ".join(model_ids) if model_ids is not None else "all models of the tenant"
        expiry = issued.key.expires_at.isoformat() if issued.key.expires_at else "never"
        self.stdout.write(
            f"key {issued.key.prefix} for {tenant.slug} ({scope}; expires {expiry}); the secret follows, shown once:"
        )
        self.stdout.write(issued.secret)
