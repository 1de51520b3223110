from django.db import transaction

from accounts import services
from accounts.limits import Limits
from accounts.management.commands._base import OperatorCommand
from accounts.management.commands.set_limits import add_limit_arguments, describe, merged


class Command(OperatorCommand):
    help = (
        "Create a tenant: create_tenant <slug> [--name NAME] [--rpm N] [--tpm N] [--budget N --budget-period day|month]"
    )

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--name", default="")
        add_limit_arguments(parser, streams=False)

    def handle(self, slug, name, **options):
        limits = merged(Limits(), options)
        with transaction.atomic():
            tenant = services.create_tenant(slug, name)
            if limits.any:
                services.set_limits(tenant, limits)
        self.stdout.write(f"created tenant {tenant.slug} ({tenant.name}); {describe(limits)}")
