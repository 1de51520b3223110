"""The operator's price page: the price in force per model and the history, a new price from a date, validation
errors shown on the page; other users get the console's 403."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from accounts import pricing
from accounts.models import ModelPrice

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("op", "", "pw"))
    return client


def test_operators_set_prices_from_a_date_and_see_the_history(operator, catalog):
    pricing.set_price("chat-small", input_per_million=Decimal("0.5"), output_per_million=Decimal(2),
                      effective_from=datetime(2026, 1, 1, tzinfo=UTC))  # fmt: skip
    form = {"model": "chat-small", "input_per_million": "0.6", "cached_input_per_million": "0.06",
            "output_per_million": "2.4", "per_audio_minute": "", "flex_share": "0.3",
            "effective_from": "2099-01-01T00:00"}  # fmt: skip
    response = operator.post("/console/prices/", form, follow=True)
    assert response.status_code == 200 and "applies from 2099-01-01 00:00 UTC" in response.content.decode()
    prices = list(ModelPrice.objects.filter(model_id="chat-small").order_by("effective_from"))
    assert [(p.input_per_million, p.cached_input_per_million, p.flex_share) for p in prices] == [
        (Decimal("0.5"), None, Decimal("0.5")), (Decimal("0.6"), Decimal("0.06"), Decimal("0.3"))
    ]  # fmt: skip
    html = operator.get("/console/prices/").content.decode()
    current = html.split('id="prices"')[1].split("</table>")[0]
    assert re.search(r'<code>chat-small</code></td>\s*<td class="num">0.5</td>', current)  # the future one: not yet
    assert "no price: its usage costs nothing" in current  # the catalog's other models
    assert "2099-01-01 00:00 (future)" in html.split('id="price-history"')[1]
    bad = operator.post("/console/prices/", {**form, "input_per_million": "-1"}).content.decode()
    assert "Ensure this value is greater than or equal to 0" in bad
    too_much = operator.post("/console/prices/", {**form, "flex_share": "1.5"}).content.decode()
    assert "Ensure this value is less than or equal to 1" in too_much


def test_only_operators_see_prices(client, acme):
    client.force_login(acme.owner)
    assert client.get("/console/prices/").status_code == 403
    assert client.post("/console/prices/", {"model": "chat-small"}).status_code == 403
