from accounts import services
from accounts.management.commands._base import OperatorCommand


class Command(OperatorCommand):
    help = (
        "Where a model's requests go when it cannot answer them (no deployment reachable or free, or the request "
        "over its context): set_fallbacks <model-id> [<fallback-id>...], tried in that order; none clears them."
    )

    def add_arguments(self, parser):
        parser.add_argument("model_id")
        parser.add_argument("fallback_ids", nargs="*")

    def handle(self, model_id, fallback_ids, **options):
        fallbacks = services.set_fallbacks(model_id, fallback_ids)
        self.stdout.write(f"{model_id}: falls back to {', '.join(f.id for f in fallbacks) or 'nothing'}")
