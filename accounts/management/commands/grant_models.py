from accounts import services
from accounts.management.commands._base import OperatorCommand, tenant_by_slug


class Command(OperatorCommand):
    help = "Entitle a tenant to models: grant_models <tenant-slug> <model-id>... [--revoke]"

    def add_arguments(self, parser):
        parser.add_argument("tenant")
        parser.add_argument("model_ids", nargs="+")
        parser.add_argument("--revoke", action="store_true", help="remove the entitlements instead")

    def handle(self, tenant, model_ids, revoke, **options):
        tenant = tenant_by_slug(tenant)
        if revoke:
            services.revoke_models(tenant, model_ids)
            self.stdout.write(f"{tenant.slug}: revoked {', '.join(model_ids)}")
        else:
            services.grant_models(tenant, model_ids)
            self.stdout.write(f"{tenant.slug}: granted {', '.join(model_ids)}")
