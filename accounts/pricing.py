"""What usage costs: each model's price history (``ModelPrice``) and the exact cost of one request.

A row's cost is fixed when it is written, at the price in force at its ``created_at``: a later price change
applies from its own date and never rewrites past usage. Costs are ``Decimal`` (prices per million tokens with 6
decimals, costs with 10), never floats. Cached prompt tokens (found in the engine's prefix cache) are charged at
the cached-input price (the input price when none is set); speech is charged per minute of audio too. Flex and batch
requests (``hub/api/tiers.py``) pay the price's ``flex_share`` of all that (OpenAI's half by default).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from accounts.models import ModelPrice, ServedModel

MILLION = Decimal(1_000_000)
DISCOUNTED_TIERS = ("flex", "batch")  # the service tiers that pay the price's flex_share
COST_PLACES = Decimal("1e-10")  # UsageRecord.cost's decimal places


class PriceBook:
    """The prices of the models a batch of rows names, read once per model (a spool replay writes thousands)."""

    def __init__(self) -> None:
        self._history: dict[str, list[ModelPrice]] = {}

    def price_at(self, model: str, when: datetime) -> ModelPrice | None:
        if model not in self._history:  # newest first
            self._history[model] = list(ModelPrice.objects.filter(model_id=model).order_by("-effective_from"))
        return next((p for p in self._history[model] if p.effective_from <= when), None)

    def cost(
        self, model: str, when: datetime, prompt: int, cached: int, completion: int, audio_seconds: float,
        tier: str = "default",
    ) -> Decimal:  # fmt: skip
        return cost(self.price_at(model, when), prompt, cached, completion, audio_seconds, tier)


def cost(
    price: ModelPrice | None, prompt: int, cached: int, completion: int, audio_seconds: float = 0.0,
    tier: str = "default",
) -> Decimal:  # fmt: skip
    """One request's cost at ``price`` (None: the model has no price yet, so nothing) in service ``tier``."""
    if price is None:
        return Decimal(0)
    cached = min(cached, prompt)
    cached_price = (
        price.cached_input_per_million if price.cached_input_per_million is not None else price.input_per_million
    )
    tokens = (prompt - cached) * price.input_per_million + cached * cached_price + completion * price.output_per_million
    audio = Decimal(str(round(audio_seconds, 3))) / 60 * price.per_audio_minute
    share = price.flex_share if tier in DISCOUNTED_TIERS else 1
    return ((tokens / MILLION + audio) * share).quantize(COST_PLACES)


@transaction.atomic
def set_price(
    model_id: str,
    *,
    input_per_million: Decimal,
    output_per_million: Decimal,
    cached_input_per_million: Decimal | None = None,
    per_audio_minute: Decimal = Decimal(0),
    flex_share: Decimal = Decimal("0.5"),
    effective_from: datetime | None = None,
) -> ModelPrice:
    """A new price of ``model_id`` from ``effective_from`` (default: now); one at the same moment is replaced."""
    model = ServedModel.objects.filter(pk=model_id).first()
    if model is None:
        raise ValidationError(f"model {model_id!r} is not in the catalog")
    values = {"input_per_million": input_per_million, "output_per_million": output_per_million,
              "cached_input_per_million": cached_input_per_million, "per_audio_minute": per_audio_minute,
              "flex_share": flex_share}  # fmt: skip
    for name, value in values.items():
        if value is not None and Decimal(value) < 0:
            raise ValidationError(f"{name} must not be negative")
    if Decimal(flex_share) > 1:
        raise ValidationError("flex_share must be at most 1 (a share of the price)")
    price, _ = ModelPrice.objects.update_or_create(
        model=model, effective_from=effective_from or timezone.now(), defaults=values
    )
    return price
