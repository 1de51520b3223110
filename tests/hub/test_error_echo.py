"""An error message repeats at most ~200 characters of what the client sent: a 100k-character model name, date
or content type comes back cut, with how much more there was, never whole."""

import httpx
import pytest

from accounts import services
from hub.api.errors import SHOWN_CHARS, ModelNotFound
from inference.server.errors import model_not_found

pytestmark = pytest.mark.live

HUGE = "m" * 100_000


@pytest.fixture
def secret(acme):
    return services.issue_key(acme.tenant, name="echo").secret


def _assert_cut(answer: httpx.Response, status: int) -> None:
    assert answer.status_code == status, answer.text
    message = answer.json()["error"]["message"]
    assert len(message) < SHOWN_CHARS + 200 and "more characters" in message, message[:500]


@pytest.mark.django_db(transaction=True)
def test_long_client_values_are_cut_in_error_messages(live_hub, secret):
    headers = {"Authorization": f"Bearer {secret}"}
    for route in ("chat/completions", "completions", "embeddings"):
        answer = httpx.post(f"{live_hub.api()}/{route}", json={"model": HUGE, "messages": [], "prompt": "x",
                            "input": "x"}, headers=headers, timeout=30)  # fmt: skip
        _assert_cut(answer, 404)
    _assert_cut(httpx.get(f"{live_hub.api()}/models/{HUGE[:5000]}", headers=headers, timeout=30), 404)
    _assert_cut(httpx.get(f"{live_hub.api()}/usage", params={"start": HUGE[:5000]}, headers=headers, timeout=30), 400)
    answer = httpx.post(f"{live_hub.api()}/chat/completions", content=b"{}", timeout=30,
                        headers={**headers, "Content-Type": "text/" + HUGE[:5000]})  # fmt: skip
    _assert_cut(answer, 415)


def test_both_services_cut_the_model_name():
    for body in (ModelNotFound(HUGE).body(), model_not_found(HUGE).body()):
        message = body["error"]["message"]
        assert (
            len(message) < 400
            and message.endswith("does not exist or you do not have access to it.")
            or (message.endswith("does not exist."))
        )
        assert f"{len(HUGE) - SHOWN_CHARS} more characters" in message
