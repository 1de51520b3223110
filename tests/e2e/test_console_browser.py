"""The console in a real browser: Playwright driving Debian's Chromium, headless, against a live hub and the
real models. One user journey: sign in, create a key and see its secret once, call the API with it through
the OpenAI SDK and watch the usage dashboard update live, export the CSV, chat in the playground; and an
outsider who cannot open the tenant's pages.

Each main page is saved as a screenshot (under ``HUB_SCREENSHOTS_DIR`` when set: ``docs/screenshots`` for the
README; else a temporary folder). The dashboard has four weeks of earlier usage written first, so its charts
have something to show; the test's own requests are counted on top of them.
"""

from __future__ import annotations

import csv
import io
import os
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from openai import OpenAI
from playwright.sync_api import Page, expect

from accounts import metering, reports, services
from accounts.models import Role, UsageRecord
from tests.support.clock import clear_of_midnight
from tests.support.live import CHAT, EMBED, rows
from tests.support.webhooks import receiver

pytestmark = [pytest.mark.browser, pytest.mark.live, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct horse battery staple"


@pytest.fixture
def shots(tmp_path):
    """Where screenshots go; each is checked to be a real PNG."""
    folder = Path(os.environ.get("HUB_SCREENSHOTS_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)

    def shot(page: Page, name: str, **options) -> None:
        path = folder / f"{name}.png"
        page.screenshot(path=str(path), full_page=True, animations="disabled", **options)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    return shot


def history(tenant, keys) -> None:
    """Four weeks of earlier traffic through two keys, rolled up as the beat would have."""
    now = timezone.now()
    for day in range(1, 29):
        for i, (key, model) in enumerate([(keys[0], CHAT), (keys[1], CHAT), (keys[1], EMBED)]):
            n = 2 + (day * 7 + i * 3) % 5
            for _ in range(n):
                prompt = 150 + (day * 37 + i * 11) % 400
                completion = 0 if model == EMBED else 60 + (day * 53) % 220
                row = metering.record_usage(metering.Usage(
                    request_id="req_history", tenant_id=tenant.pk, api_key_id=key.pk, model=model,
                    route="embeddings" if model == EMBED else "chat/completions", prompt_tokens=prompt,
                    completion_tokens=completion, status_code=502 if (day + i) % 11 == 0 else 200, streamed=False,
                    aborted=False, time_to_first_token_ms=40, duration_ms=400,
                ))  # fmt: skip
                UsageRecord.objects.filter(pk=row.pk).update(created_at=now - timedelta(days=day, hours=i))
    metering.refresh_rollups()


def sign_in(page: Page, url: str, username: str, password: str = PASSWORD) -> None:
    page.goto(f"{url}/console/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{url}/console/")


def requests_figure(page: Page) -> int:
    return int(page.locator('[data-figure="requests"]').get_attribute("title").replace(",", ""))


def test_console_journey_in_a_browser(hub, browser, shots, django_user_model):
    url, tenant = hub.url, hub.tenant
    owner = django_user_model.objects.create_user("ada", password=PASSWORD)
    services.add_member(tenant, owner, Role.OWNER)
    services.add_member(tenant, get_user_model().objects.create_user("grace", password=PASSWORD), Role.MEMBER)
    history(tenant, [hub.everything.key, hub.embed_only.key])
    page = browser.new_page(viewport={"width": 1280, "height": 860}, accept_downloads=True)

    # Sign in.
    page.goto(f"{url}/console/t/acme/keys/")
    expect(page).to_have_url(f"{url}/console/login/?next=/console/t/acme/keys/")
    shots(page, "sign-in")
    page.get_by_label("Username").fill("ada")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="API keys")).to_be_visible()

    # Create a key: the secret is on the answer to the POST, once.
    page.get_by_label("Name").fill("browser-demo")
    page.get_by_role("button", name="Create key").click()
    secret = page.locator("#key-secret").inner_text().strip()
    assert secret.startswith("sk-hub-")
    shots(page, "key-created", mask=[page.locator("#key-secret")], mask_color="#1d2330")
    page.get_by_role("link", name="Done").click()
    expect(page.get_by_role("link", name="browser-demo")).to_be_visible()
    assert secret not in page.content()
    page.reload()
    assert secret not in page.content()
    shots(page, "keys")

    # The dashboard, open while the key is used through the OpenAI SDK: the figures follow live. Its range (the
    # default, to be the docs' picture) ends today: the requests must be sent on the day it was opened.
    clear_of_midnight(120)
    page.goto(f"{url}/console/t/acme/usage/")
    expect(page.locator("#usage-body.is-live")).to_have_count(1)
    before = requests_figure(page)
    client = OpenAI(base_url=f"{url}/v1", api_key=secret, max_retries=0)
    answer = client.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": "Hello!"}], max_tokens=8)
    assert answer.usage.completion_tokens >= 1
    client.embeddings.create(model=EMBED, input=["a sentence to embed"])
    expect(page.locator('[data-figure="requests"]')).to_have_attribute("title", f"{before + 2:,}", timeout=30_000)
    expect(page.locator("#by-key")).to_contain_text("browser-demo")
    shots(page, "usage")

    # CSV export of the same range.
    with page.expect_download() as download:
        page.get_by_role("link", name="Export CSV").click()
    table = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    mine = [r for r in table if r["key_name"] == "browser-demo"]
    assert {r["model"] for r in mine} == {CHAT, EMBED}
    assert sum(int(r["requests"]) for r in table) == before + 2

    # The playground: pick the chat model, stream an answer, metered as the tenant's.
    page.get_by_role("link", name="Playground").click()
    page.get_by_label("Model").select_option(CHAT)
    page.get_by_label("Max tokens").fill("24")
    page.get_by_label("Message").fill("Write one short sentence about the sea.")
    page.get_by_label("Message").press("Enter")
    expect(page.locator("#pg-status")).to_contain_text("completion tokens", timeout=60_000)
    reply = page.locator(".msg.assistant .body").inner_text()
    assert reply.strip()
    assert rows(1, route="playground")[0].completion_tokens >= 1
    shots(page, "playground")

    # The other main pages; last month's report built as the beat would.
    month = (timezone.now().replace(day=1) - timedelta(days=1)).date().replace(day=1)
    reports.build_report(tenant, month)
    for name in ("members", "models", "reports"):
        page.get_by_role("link", name=name.capitalize(), exact=True).click()
        expect(page.locator("h1")).to_be_visible()
        shots(page, name)

    # A webhook endpoint, added on its page (its secret shown once), sent a test event from there.
    with receiver() as hooks:
        page.get_by_role("link", name="Webhooks", exact=True).click()
        page.get_by_label("Name").fill("jobs")
        page.get_by_label("URL").fill(hooks.url)
        page.get_by_label("response.completed").check()
        page.get_by_label("batch.completed").check()
        page.get_by_role("button", name="Add the endpoint").click()
        signing = page.locator("#webhook-secret").inner_text().strip()
        assert signing.startswith("whsec_")
        page.get_by_role("link", name="Done").click()
        page.get_by_label("Test event type").select_option("batch.completed")
        page.get_by_role("button", name="Send a test event").click()
        expect(page.locator("body")).to_contain_text("it answered HTTP 200")
        assert signing not in page.content()
        event = client.webhooks.unwrap(hooks.received[0].body, hooks.received[0].headers, secret=signing)
        assert event.type == "batch.completed"
        shots(page, "webhooks")

    # An outsider signs in and cannot open any of acme's pages.
    get_user_model().objects.create_user("mallory", password=PASSWORD)
    outsider = browser.new_page()
    sign_in(outsider, url, "mallory")
    for path in ("keys/", "usage/", "usage.csv", "playground/", "members/", "reports/", "webhooks/"):
        response = outsider.goto(f"{url}/console/t/acme/{path}")
        assert response.status == 404, path
    assert "acme" not in outsider.goto(f"{url}/console/").text().lower()
    outsider.close()

    # The operator's pages: every tenant and the catalog with deployments' health; usage across tenants.
    django_user_model.objects.create_superuser("root", "", PASSWORD)
    operator = browser.new_page(viewport={"width": 1280, "height": 860})
    sign_in(operator, url, "root")
    expect(operator.locator("#operator")).to_contain_text("acme")
    expect(operator.locator(".badge.health.up")).to_have_count(6)  # the live service's six models, probed
    shots(operator, "operator")
    operator.get_by_role("link", name="Global usage").click()
    expect(operator.locator("#by-tenant")).to_contain_text("acme")
    shots(operator, "global-usage")
    operator.close()
