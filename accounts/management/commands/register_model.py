from datetime import UTC, datetime
from decimal import Decimal

from accounts import pricing, services
from accounts.management.commands._base import OperatorCommand
from accounts.models import ModelKind


class Command(OperatorCommand):
    help = (
        "Add or update a catalog entry: register_model <model-id> --kind chat|completion|embedding|vision|audio "
        "[--max-sequence-length N] [--max-output-length N] [--hidden-size N] [--deployment URL "
        "[--upstream-model NAME] [--upstream-api-key KEY]] [--price-input P --price-output P [--price-cached-input P] "
        "[--price-audio-minute P] [--price-flex-share S] [--price-from ISO-DATE]] (prices per million tokens)"
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
        # a price from --price-from (default now) on; earlier usage keeps the price it was charged
        parser.add_argument("--price-input", type=Decimal, help="per million prompt tokens")
        parser.add_argument("--price-cached-input", type=Decimal, help="per million cached prompt tokens")
        parser.add_argument("--price-output", type=Decimal, help="per million completion tokens")
        parser.add_argument("--price-audio-minute", type=Decimal, help="per minute of audio (speech models)")
        parser.add_argument("--price-flex-share", type=Decimal, help="the share flex and batch requests pay (0.5)")
        parser.add_argument("--price-from", type=datetime.fromisoformat, help="when the price applies (ISO 8601)")

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
        said = [f"registered {model.id} ({model.kind})"]  # written once all is done: a refused price undoes it
        prices = ("price_input", "price_cached_input", "price_output", "price_audio_minute", "price_flex_share")
        if any(o[name] is not None for name in prices):
            when = o["price_from"]
            if when is not None and when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            price = pricing.set_price(
                model.id, input_per_million=o["price_input"] or Decimal(0),
                output_per_million=o["price_output"] or Decimal(0), cached_input_per_million=o["price_cached_input"],
                per_audio_minute=o["price_audio_minute"] or Decimal(0), effective_from=when,
                flex_share=Decimal("0.5") if o["price_flex_share"] is None else o["price_flex_share"],
            )  # fmt: skip
            said.append(f"price of {model.id} from {price.effective_from.isoformat()}")
        self.stdout.write("\n".join(said))
