from accounts import services
from accounts.management.commands._base import OperatorCommand, key_by_prefix


class Command(OperatorCommand):
    help = (
        "Issue a new secret for a key: rotate_api_key <prefix> [--grace-seconds S]. The old secret stays "
        "valid for the grace period (HUB_KEY_ROTATION_GRACE_SECONDS, default 86400). The new secret is "
        "printed once, alone on the last line."
    )

    def add_arguments(self, parser):
        parser.add_argument("prefix")
        parser.add_argument("--grace-seconds", type=int, default=None)

    def handle(self, prefix, grace_seconds, **options):
        issued = services.rotate_key(key_by_prefix(prefix), grace_seconds=grace_seconds)
        until = issued.key.previous_valid_until
        self.stdout.write(
            f"rotated {prefix} -> {issued.key.prefix}; old secret valid until "
            f"{until.isoformat() if until else 'now (no grace)'}; the new secret follows, shown once:"
        )
        self.stdout.write(issued.secret)
