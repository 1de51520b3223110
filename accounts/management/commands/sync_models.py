from django.core.management.base import CommandError

from accounts import services
from accounts.management.commands._base import OperatorCommand
from hub.inference_client import InferenceUnavailable, model_cards


class Command(OperatorCommand):
    help = (
        "Register the models an inference service serves, with their limits, and the service as their "
        "deployment: sync_models <base-url> (e.g. http://gpu-1:8100/v1)"
    )

    def add_arguments(self, parser):
        parser.add_argument("base_url")

    def handle(self, base_url, **options):
        try:
            cards = model_cards(base_url)
        except InferenceUnavailable as exc:
            raise CommandError(str(exc)) from None
        for model in services.sync_deployment(base_url.rstrip("/"), cards):
            self.stdout.write(f"{model.id}\t{model.kind}\tseq={model.max_sequence_length}\tdeployment={base_url}")
