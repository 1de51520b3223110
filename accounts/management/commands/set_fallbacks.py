from accounts import services
from accounts.management.commands._base import OperatorCommand


class Command(OperatorCommand):
    help = (
        "Where a model's requests go when it cannot answer them (no deployment reachable or free, or the request "
        "over its context): set_fallbacks <model-id> [<fallback-id>...] [--context-only <id>...] [--unavailable-only "
        "<id>...], tried in that order, each where it takes the request; none clears them."
    )

    def add_arguments(self, parser):
        parser.add_argument("model_id")
        parser.add_argument("fallback_ids", nargs="*", help="taking any request the model cannot answer")
        parser.add_argument("--context-only", nargs="+", default=[], metavar="ID",
                            help="only a request over the model's context or output length (LiteLLM's "
                            "context_window_fallbacks)")  # fmt: skip
        parser.add_argument("--unavailable-only", nargs="+", default=[], metavar="ID",
                            help="only a request no deployment of the model takes (unreachable, busy)")  # fmt: skip

    def handle(self, model_id, fallback_ids, context_only, unavailable_only, **options):
        links = services.set_fallbacks(model_id, fallback_ids, context_only=context_only,
                                       unavailable_only=unavailable_only)  # fmt: skip
        shown = [link.fallback_id + (f" ({link.on} only)" if link.on != "any" else "") for link in links]
        self.stdout.write(f"{model_id}: falls back to {', '.join(shown) or 'nothing'}")
