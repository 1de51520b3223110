"""Prices and costs: each usage row's cost at the price in force at its time, exact decimals, cached prompt tokens
at their own price, audio per minute; a price change mid-month applies from its date and never rewrites earlier
rows; prices set by ``register_model --price-*``; a spooled row replayed later keeps its own time's price."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError

from accounts import metering, pricing, services, spool
from accounts.models import ModelPrice, ServedModel, UsageRecord

JAN = datetime(2026, 1, 1, tzinfo=UTC)
MID = datetime(2026, 1, 15, 12, tzinfo=UTC)


def _row(tenant, at: datetime, prompt: int, cached: int, completion: int, model="chat-small", audio=0.0,
         tier="default"):  # fmt: skip
    return metering.record_usage(metering.Usage(
        request_id=f"req_{at.timestamp()}_{prompt}_{tier}", tenant_id=tenant.id, api_key_id=None, model=model,
        route="chat/completions", prompt_tokens=prompt, completion_tokens=completion, status_code=200, streamed=False,
        aborted=False, time_to_first_token_ms=5, duration_ms=10, created_at=at, cached_tokens=cached,
        audio_seconds=audio, service_tier=tier,
    ))  # fmt: skip


def test_cost_is_exact_with_cached_tokens_at_their_price(acme):
    pricing.set_price("chat-small", input_per_million=Decimal("0.15"), cached_input_per_million=Decimal("0.075"),
                      output_per_million=Decimal("0.6"), effective_from=JAN)  # fmt: skip
    row = _row(acme.tenant, datetime(2026, 1, 3, tzinfo=UTC), prompt=1000, cached=400, completion=200)
    # 600 x 0.15 + 400 x 0.075 + 200 x 0.6 per million
    assert row.cost == Decimal("0.00024") and row.cached_tokens == 400
    assert isinstance(UsageRecord.objects.get(pk=row.pk).cost, Decimal)
    one = _row(acme.tenant, datetime(2026, 1, 4, tzinfo=UTC), prompt=1, cached=0, completion=0)
    assert UsageRecord.objects.get(pk=one.pk).cost == Decimal("0.00000015")  # one token: stored to the last digit


def test_no_cached_price_means_the_input_price_and_no_price_costs_nothing(acme):
    assert _row(acme.tenant, datetime(2026, 1, 2, tzinfo=UTC), 1000, 500, 0).cost == 0  # no price yet
    pricing.set_price("chat-small", input_per_million=Decimal(2), output_per_million=Decimal(8), effective_from=JAN)
    assert _row(acme.tenant, datetime(2026, 1, 3, tzinfo=UTC), 1000, 500, 100).cost == Decimal("0.0028")


def test_a_price_change_mid_month_applies_from_its_date_and_never_rewrites_past_rows(acme):
    pricing.set_price("chat-small", input_per_million=Decimal(1), output_per_million=Decimal(2), effective_from=JAN)
    before = _row(acme.tenant, datetime(2026, 1, 10, tzinfo=UTC), 1_000_000, 0, 1_000_000)
    pricing.set_price("chat-small", input_per_million=Decimal(3), output_per_million=Decimal(4), effective_from=MID)
    after = _row(acme.tenant, datetime(2026, 1, 20, tzinfo=UTC), 1_000_000, 0, 1_000_000)
    assert (before.cost, after.cost) == (Decimal(3), Decimal(7))
    # a price set later for a date already past: rows written before keep what they were charged
    pricing.set_price("chat-small", input_per_million=Decimal(9), output_per_million=Decimal(9),
                      effective_from=datetime(2026, 1, 5, tzinfo=UTC))  # fmt: skip
    assert sorted(UsageRecord.objects.values_list("cost", flat=True)) == [Decimal(3), Decimal(7)]
    assert ModelPrice.objects.filter(model_id="chat-small").count() == 3


def test_flex_and_batch_pay_the_prices_flex_share(acme):
    pricing.set_price("chat-small", input_per_million=Decimal("0.15"), cached_input_per_million=Decimal("0.075"),
                      output_per_million=Decimal("0.6"), effective_from=JAN)  # fmt: skip
    pricing.set_price("chat-small", input_per_million=Decimal("0.15"), cached_input_per_million=Decimal("0.075"),
                      output_per_million=Decimal("0.6"), flex_share=Decimal("0.25"), effective_from=MID)  # fmt: skip
    costs = {tier: _row(acme.tenant, datetime(2026, 1, 3, tzinfo=UTC), 1000, 400, 200, tier=tier).cost
             for tier in ("default", "flex", "batch")}  # fmt: skip
    assert costs == {"default": Decimal("0.00024"), "flex": Decimal("0.00012"), "batch": Decimal("0.00012")}
    later = _row(acme.tenant, datetime(2026, 1, 20, tzinfo=UTC), 1000, 400, 200, tier="flex")
    assert later.cost == Decimal("0.00006") and later.service_tier == "flex"
    with pytest.raises(ValidationError, match="at most 1"):
        pricing.set_price("chat-small", input_per_million=Decimal(1), output_per_million=Decimal(1),
                          flex_share=Decimal("1.5"))  # fmt: skip


def test_audio_is_charged_per_minute(acme):
    services.register_model("whisper", "audio")
    pricing.set_price("whisper", input_per_million=Decimal(0), output_per_million=Decimal(0),
                      per_audio_minute=Decimal("0.006"), effective_from=JAN)  # fmt: skip
    assert _row(acme.tenant, MID, 4500, 0, 120, model="whisper", audio=90.0).cost == Decimal("0.009")


def test_register_model_sets_prices_with_a_history(catalog):
    out = StringIO()
    call_command("register_model", "chat-small", "--kind", "chat", "--price-input", "0.5", "--price-output", "1.5",
                 "--price-cached-input", "0.05", "--price-from", "2026-01-01", stdout=out)  # fmt: skip
    call_command("register_model", "chat-small", "--kind", "chat", "--price-input", "0.6", "--price-output", "1.8",
                 "--price-flex-share", "0.4", "--price-from", "2026-02-01T00:00:00+00:00", stdout=out)  # fmt: skip
    prices = list(ModelPrice.objects.filter(model_id="chat-small").order_by("effective_from"))
    assert [(p.effective_from, p.input_per_million, p.cached_input_per_million, p.flex_share) for p in prices] == [
        (JAN, Decimal("0.5"), Decimal("0.05"), Decimal("0.5")),
        (datetime(2026, 2, 1, tzinfo=UTC), Decimal("0.6"), None, Decimal("0.4")),
    ]  # fmt: skip
    assert "price of chat-small from 2026-02-01" in out.getvalue()
    with pytest.raises(ValidationError, match="must not be negative"):
        pricing.set_price("chat-small", input_per_million=Decimal(-1), output_per_million=Decimal(0))
    with pytest.raises(ValidationError, match="not in the catalog"):
        pricing.set_price("nope", input_per_million=Decimal(1), output_per_million=Decimal(1))


def test_a_model_whose_price_is_refused_is_not_registered(db):
    """Found by hand: ``register_model x --price-input -1`` said "registered x", then refused the price, and the
    model stayed in the catalog without it. A command's writes are one transaction."""
    out = StringIO()
    with pytest.raises(CommandError, match="must not be negative"):
        call_command("register_model", "priced-wrong", "--kind", "chat", "--price-input", "-1", stdout=out)
    assert not ServedModel.objects.filter(id="priced-wrong").exists() and out.getvalue() == ""


def test_a_spooled_row_replayed_later_is_charged_at_its_own_time(acme, tmp_path, settings):
    settings.HUB_SPOOL_DIR = tmp_path
    pricing.set_price("chat-small", input_per_million=Decimal(1), output_per_million=Decimal(0), effective_from=JAN)
    pricing.set_price("chat-small", input_per_million=Decimal(5), output_per_million=Decimal(0), effective_from=MID)
    for at in (datetime(2026, 1, 10, tzinfo=UTC), datetime(2026, 1, 20, tzinfo=UTC)):
        spool.append(metering.Usage(
            request_id=f"spooled_{at.day}", tenant_id=acme.tenant.id, api_key_id=None, model="chat-small",
            route="chat/completions", prompt_tokens=1_000_000, completion_tokens=0, status_code=200, streamed=True,
            aborted=True, time_to_first_token_ms=None, duration_ms=1, created_at=at, cached_tokens=250_000,
        ))  # fmt: skip
    spool.replay()
    costs = dict(UsageRecord.objects.values_list("request_id", "cost"))
    assert costs == {"spooled_10": Decimal(1), "spooled_20": Decimal(5)}  # no cached price: the input price


def test_money_budgets_are_set_validated_and_carried_to_the_gateway(acme, django_capture_on_commit_callbacks):
    from accounts.authn import authenticate_secret
    from accounts.limits import Limits

    issued = services.issue_key(acme.tenant, name="k")
    out = StringIO()
    call_command("set_limits", issued.key.prefix, "--cost-budget", "12.50", "--budget-period", "day", stdout=out)
    assert "money budget 12.5 usd" in out.getvalue()
    limits = authenticate_secret(issued.secret).limits  # what the gateway reads, through the auth cache
    assert limits.cost_limit == Decimal("12.50") and limits.budget_period == "day" and limits.any
    with django_capture_on_commit_callbacks(execute=True):  # the auth cache is invalidated when the change commits
        call_command("set_limits", issued.key.prefix, "--cost-budget", "none", stdout=out)
    assert authenticate_secret(issued.secret).limits.cost_budget is None
    for bad in ("-1", "NaN", "lots"):
        with pytest.raises(ValueError, match="cost_budget must be a non-negative amount"):
            Limits(cost_budget=bad)
    with pytest.raises(Exception, match="a money budget must be"):
        call_command("set_limits", issued.key.prefix, "--cost-budget", "0", stdout=out)
