from django.core.management.base import CommandError

from accounts import background, sealed, webhooks
from accounts.management.commands._base import OperatorCommand


class Command(OperatorCommand):
    help = (
        "Seal the secrets kept in the database (webhook endpoints' signing secrets, the mcp tools' credentials of "
        "background responses not run yet) again with the current HUB_SECRET_KEY, after a rotation: run it with "
        "the old key in HUB_SECRET_KEY_FALLBACKS, which can then be dropped."
    )

    def handle(self, **options):
        try:
            endpoints, requests = webhooks.reseal(), background.reseal()
        except sealed.Unreadable as unreadable:
            raise CommandError(str(unreadable)) from None
        self.stdout.write(f"resealed the secrets of {endpoints} webhook endpoint(s) and {requests} background "
                          "request(s)")  # fmt: skip
