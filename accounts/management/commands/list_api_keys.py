from accounts.management.commands._base import OperatorCommand, tenant_by_slug
from accounts.models import ApiKey


def _when(value) -> str:
    return value.strftime("%Y-%m-%dT%H:%MZ") if value else "-"


class Command(OperatorCommand):
    help = "List a tenant's API keys (prefixes only; secrets are never stored): list_api_keys <tenant-slug>"

    def add_arguments(self, parser):
        parser.add_argument("tenant")

    def handle(self, tenant, **options):
        tenant = tenant_by_slug(tenant)
        keys = ApiKey.objects.filter(tenant=tenant).prefetch_related("allowed_models")
        self.stdout.write("prefix\tstatus\tname\tcreated\texpires\tlast_used\tmodels")
        for key in keys:
            models = "*" if key.all_models else ",".join(m.id for m in key.allowed_models.all()) or "-"
            self.stdout.write(
                "\t".join(
                    [
                        key.prefix,
                        key.status,
                        key.name or "-",
                        _when(key.created_at),
                        _when(key.expires_at),
                        _when(key.last_used_at),
                        models,
                    ]
                )
            )
