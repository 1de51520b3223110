"""The operator's price list in the console: every model's price in force and its history, and a form to set a
model's price from a date on (``accounts.pricing.set_price``; past usage keeps what it was charged)."""

from __future__ import annotations

from datetime import UTC
from decimal import Decimal

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone

from accounts import pricing
from accounts.models import ModelPrice, ServedModel
from hub.console.scoping import OperatorView

_MONEY = {"min_value": 0, "max_digits": 14, "decimal_places": 6}


class PriceForm(forms.Form):
    model = forms.ModelChoiceField(queryset=ServedModel.objects.order_by("id"), empty_label=None)
    input_per_million = forms.DecimalField(label="Prompt, per million tokens", **_MONEY)
    cached_input_per_million = forms.DecimalField(
        label="Cached prompt, per million tokens", required=False, help_text="empty: the prompt price", **_MONEY
    )
    output_per_million = forms.DecimalField(label="Completion, per million tokens", **_MONEY)
    per_audio_minute = forms.DecimalField(label="Per audio minute", required=False, initial=0, **_MONEY)
    flex_share = forms.DecimalField(
        label="Flex and batch share", required=False, initial=Decimal("0.5"), min_value=0, max_value=1,
        max_digits=5, decimal_places=4, help_text="of the price, for flex and batch requests; empty: half",
    )  # fmt: skip
    effective_from = forms.DateTimeField(
        label="From (UTC)", required=False, help_text="empty: now; usage before it keeps its price",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )  # fmt: skip


def _plain(amount: Decimal | None) -> str | None:
    """0.500000 → "0.5", 100 → "100" (not 1E+2)."""
    return None if amount is None else format(amount.normalize(), "f")


def _shown(price: ModelPrice) -> dict:
    return {
        "model": price.model_id, "since": price.effective_from, "input": _plain(price.input_per_million),
        "cached": _plain(price.cached_input_per_million), "output": _plain(price.output_per_million),
        "audio": _plain(price.per_audio_minute), "flex": _plain(price.flex_share),
    }  # fmt: skip


class PricesView(OperatorView):
    """``/console/prices/``: operators only."""

    section = "prices"

    def get(self, request: HttpRequest) -> HttpResponse:
        return self.render_page(PriceForm())

    def post(self, request: HttpRequest) -> HttpResponse:
        form = PriceForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            when = data["effective_from"]
            if when is not None and timezone.is_naive(when):
                when = timezone.make_aware(when, UTC)
            try:
                price = pricing.set_price(
                    data["model"].id, input_per_million=data["input_per_million"],
                    output_per_million=data["output_per_million"],
                    cached_input_per_million=data["cached_input_per_million"],
                    per_audio_minute=data["per_audio_minute"] or 0, effective_from=when,
                    flex_share=Decimal("0.5") if data["flex_share"] is None else data["flex_share"],
                )  # fmt: skip
            except ValidationError as exc:
                form.add_error(None, exc)
                return self.render_page(form)
            messages.success(
                request, f"The price of {price.model_id} applies from {price.effective_from:%Y-%m-%d %H:%M} UTC."
            )
            return redirect("console:prices")
        return self.render_page(form)

    def render_page(self, form: PriceForm) -> HttpResponse:
        now = timezone.now()
        history = list(ModelPrice.objects.select_related("model").order_by("model_id", "-effective_from"))
        current = {}
        for price in history:  # newest first per model: the first one in force now is the current price
            if price.effective_from <= now:
                current.setdefault(price.model_id, price)
        rows = [
            (model, current.get(model.id) and _shown(current[model.id])) for model in ServedModel.objects.order_by("id")
        ]
        context = self.get_context_data(
            form=form, history=[_shown(p) for p in history], rows=rows, currency=settings.HUB_CURRENCY.upper(), now=now
        )
        return render(self.request, "console/prices.html", context)
