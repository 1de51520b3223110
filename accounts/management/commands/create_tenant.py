from accounts import services
from accounts.management.commands._base import OperatorCommand


class Command(OperatorCommand):
    help = "Create a tenant: create_tenant <slug> [--name NAME]"

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--name", default="")

    def handle(self, slug, name, **options):
        tenant = services.create_tenant(slug, name)
        self.stdout.write(f"created tenant {tenant.slug} ({tenant.name})")
