from accounts import services
from accounts.management.commands._base import OperatorCommand, key_by_prefix


class Command(OperatorCommand):
    help = "Revoke an API key at once: revoke_api_key <prefix>"

    def add_arguments(self, parser):
        parser.add_argument("prefix")

    def handle(self, prefix, **options):
        key = services.revoke_key(key_by_prefix(prefix))
        self.stdout.write(f"revoked {key.prefix} ({key.tenant.slug})")
