from django.contrib.auth import get_user_model
from django.core.management.base import CommandError

from accounts import services
from accounts.management.commands._base import OperatorCommand, tenant_by_slug
from accounts.models import Role


class Command(OperatorCommand):
    help = "Give a user a role in a tenant: add_member <tenant-slug> <username> --role owner|admin|member|viewer"

    def add_arguments(self, parser):
        parser.add_argument("tenant")
        parser.add_argument("username")
        parser.add_argument("--role", choices=Role.values, default=Role.MEMBER)

    def handle(self, tenant, username, role, **options):
        tenant = tenant_by_slug(tenant)
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user {username!r} (create one with createsuperuser or the admin)")
        services.add_member(tenant, user, Role(role))
        self.stdout.write(f"{username} is {role} of {tenant.slug}")
