"""CORS on the live hub (``hub/api/cors.py``, default ``HUB_CORS_ALLOWED_ORIGINS=*``): a browser page may call the
API as it calls OpenAI's, its preflight answered without a key; the console, signed in by cookie, gets none of it."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.support.http_server import static_server
from tests.support.live import FAKE_CHAT

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

PAGE = "http://localhost:3000"


def test_a_browser_page_calls_the_api_and_reads_its_answers(fake_hub):
    url = f"{fake_hub.url}/v1/chat/completions"
    asked = {"Origin": PAGE, "Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "authorization,content-type,x-stainless-os"}  # fmt: skip
    preflight = httpx.options(url, headers=asked)
    assert preflight.status_code == 200  # no key: a browser never sends one with a preflight
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert preflight.headers["access-control-allow-headers"] == "authorization,content-type,x-stainless-os"

    body = {"model": FAKE_CHAT, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
    key = {"Authorization": f"Bearer {fake_hub.everything.secret}", "Origin": PAGE}
    for stream in (False, True):
        answer = httpx.post(url, json={**body, "stream": stream}, headers=key)
        assert answer.status_code == 200 and answer.headers["access-control-allow-origin"] == "*"
        exposed = answer.headers["access-control-expose-headers"].split(",")
        assert {"x-request-id", "x-ratelimit-remaining-requests", "retry-after"} <= {h.strip() for h in exposed}
    # the errors too, so that the page reads OpenAI's error object rather than a network failure
    refused = httpx.post(url, json=body, headers={"Origin": PAGE})
    assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == "*"
    assert refused.json()["error"]["code"] == "missing_api_key"
    listed = httpx.get(f"{fake_hub.url}/v1/models", headers=key)
    assert listed.status_code == 200 and listed.headers["access-control-allow-origin"] == "*"

    for path in ("/console/login/", "/admin/login/"):
        page = httpx.get(f"{fake_hub.url}{path}", headers={"Origin": PAGE})
        assert page.status_code == 200 and "access-control-allow-origin" not in page.headers
        preflight = httpx.options(
            f"{fake_hub.url}{path}", headers={"Origin": PAGE, "Access-Control-Request-Method": "POST"}
        )
        assert "access-control-allow-origin" not in preflight.headers


FETCH = """async ([url, key, body]) => {
    const answer = await fetch(url, {method: "POST", body: JSON.stringify(body),
        headers: {"Authorization": "Bearer " + key, "Content-Type": "application/json", "X-Stainless-Os": "Linux"}});
    return {status: answer.status, requestId: answer.headers.get("x-request-id"), text: await answer.text()};
}"""


@pytest.mark.browser
def test_chromium_on_another_origin_reads_whole_and_streamed_answers(fake_hub, browser):
    """The real thing: a page of another origin (a loopback server of its own, another port) calls the hub with
    fetch, the preflight included, and reads the answer, a stream and an error, as a browser app would."""
    with static_server({"/": (b"<p>app</p>", "text/html")}, {}) as app:
        page = browser.new_page()
        page.goto(f"{app.url}/")
        url, key = f"{fake_hub.url}/v1/chat/completions", fake_hub.everything.secret
        body = {"model": FAKE_CHAT, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
        whole = page.evaluate(FETCH, [url, key, body])
        assert whole["status"] == 200 and whole["requestId"].startswith("req_")
        assert json.loads(whole["text"])["choices"][0]["message"]["content"] == "w0 w1 "
        streamed = page.evaluate(FETCH, [url, key, {**body, "stream": True}])
        assert streamed["status"] == 200 and streamed["text"].rstrip().endswith("data: [DONE]")
        refused = page.evaluate(FETCH, [url, "sk-hub-wrong", body])
        assert refused["status"] == 401 and json.loads(refused["text"])["error"]["code"] == "invalid_api_key"
