"""``manage.py sync_models``: the hub asks an inference service (over HTTP, ``hub/inference_client.py``) what it
serves, and records its models and their deployment in the catalog (``accounts.services.sync_deployment``)."""

from django.core.management.base import CommandError

from accounts import services
from accounts.management.commands._base import OperatorCommand
from hub.env import env_str
from hub.inference_client import InferenceUnavailable, model_cards


class Command(OperatorCommand):
    help = (
        "Register the models an inference service serves, with their limits, and the service as their "
        "deployment: sync_models <base-url> (e.g. http://gpu-1:8100/v1)"
    )

    def add_arguments(self, parser):
        parser.add_argument("base_url")
        parser.add_argument(
            "--api-key", default=None,
            help="the service's shared secret (its INFERENCE_API_KEY); default: this environment's INFERENCE_API_KEY",
        )  # fmt: skip

    def handle(self, base_url, api_key, **options):
        api_key = env_str("INFERENCE_API_KEY", "") if api_key is None else api_key
        try:
            cards = model_cards(base_url, api_key)
        except InferenceUnavailable as exc:
            raise CommandError(str(exc)) from None
        for model in services.sync_deployment(base_url.rstrip("/"), cards, api_key):
            self.stdout.write(f"{model.id}\t{model.kind}\tseq={model.max_sequence_length}\tdeployment={base_url}")
