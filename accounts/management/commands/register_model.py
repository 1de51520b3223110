from accounts import services
from accounts.management.commands._base import OperatorCommand
from accounts.models import ModelKind


class Command(OperatorCommand):
    help = (
        "Add or update a catalog entry: register_model <model-id> --kind chat|completion|embedding|vision|audio "
        "[--max-sequence-length N] [--max-output-length N] [--hidden-size N] [--deployment URL "
        "[--upstream-model NAME] [--upstream-api-key KEY]]"
    )

    def add_arguments(self, parser):
        parser.add_argument("model_id")
        parser.add_argument("--kind", required=True, choices=ModelKind.values)
        parser.add_argument("--max-sequence-length", type=int, default=0)
        parser.add_argument("--max-output-length", type=int, default=0)
        parser.add_argument("--hidden-size", type=int, default=0)
        parser.add_argument("--owned-by", default="llm-hub")
        parser.add_argument("--deployment", default=None, help="OpenAI-compatible base URL serving it")
        parser.add_argument("--upstream-model", default="")
        parser.add_argument("--upstream-api-key", default="")
        parser.add_argument("--external", action="store_true", help="the deployment is not our inference service")

    def handle(self, model_id, **o):
        model = services.register_model(
            model_id,
            o["kind"],
            max_sequence_length=o["max_sequence_length"],
            hidden_size=o["hidden_size"],
            max_output_length=o["max_output_length"],
            owned_by=o["owned_by"],
            deployment_url=o["deployment"],
            upstream_model=o["upstream_model"],
            upstream_api_key=o["upstream_api_key"],
            external=o["external"],
        )
        self.stdout.write(f"registered {model.id} ({model.kind})")
