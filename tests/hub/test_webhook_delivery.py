"""Webhooks sent by the hub's own process (no broker, as ``make run``): an event written is sent on its commit from
the background loop, signed as OpenAI's SDK verifies; a failing receiver gets it again from the beat's task; a 3xx
and a receiver that does not answer in time are failed attempts; and the addresses a webhook may not go to."""

from __future__ import annotations

import time
from http.server import BaseHTTPRequestHandler

import openai
import pytest
from django.db import transaction

from accounts import webhooks
from accounts.models import DeliveryState, WebhookDelivery
from hub.tasks import send_webhooks
from hub.webhooks import addresses, sender, signing
from tests.support.http_server import serving
from tests.support.rebinding import rebinding
from tests.support.tls import tls_listener
from tests.support.webhooks import receiver

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def embedded(settings):
    """The hub's own process without a broker: tasks eager, sends on its background loop."""
    settings.CELERY_TASK_ALWAYS_EAGER = True
    settings.HUB_WEBHOOK_ALLOW_PRIVATE_URLS, settings.HUB_WEBHOOK_RETRY_SECONDS = True, 0.05
    return settings


def _state(delivery_id: str, until: str, timeout: float = 10) -> WebhookDelivery:
    deadline = time.monotonic() + timeout
    while (row := WebhookDelivery.objects.get(pk=delivery_id)).state != until or row.last_status is None:
        assert time.monotonic() < deadline, f"{delivery_id}: {row.state} after {row.attempts} attempts"
        time.sleep(0.02)
    return row


def test_an_event_is_sent_on_commit_signed_and_sent_again_until_received(acme, embedded):
    sdk = openai.OpenAI(api_key="unused", base_url="http://127.0.0.1:9/v1")
    with receiver() as hooks:
        endpoint, secret = webhooks.create(acme.tenant.id, name="e", url=hooks.url, event_types=["batch.expired"])
        hooks.statuses = [500]
        with transaction.atomic():
            webhooks.emit(acme.tenant.id, "batch.expired", "batch_1")
        [first] = hooks.wait(1)  # sent on commit, with no worker and no beat
        time.sleep(0.1)  # the retry is due after 0.05 s: the beat's task sends it
        assert send_webhooks.apply().get() == 1
        [_, second] = hooks.wait(2)
    for attempt in (first, second):
        event = sdk.webhooks.unwrap(attempt.body, attempt.headers, secret=secret)
        assert (event.type, event.data.id) == ("batch.expired", "batch_1")
    assert first.headers["webhook-id"] == second.headers["webhook-id"] and first.body == second.body
    assert first.headers["user-agent"] == signing.USER_AGENT
    [row] = WebhookDelivery.objects.filter(endpoint_id=endpoint.id)
    assert (row.state, row.attempts) == (DeliveryState.DELIVERED, 2)
    with pytest.raises(openai.InvalidWebhookSignatureError):  # a changed body does not verify
        sdk.webhooks.unwrap(first.body.replace(b"batch_1", b"batch_2"), first.headers, secret=secret)


class _Redirect(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        if self.path == "/slow":
            time.sleep(1.0)
        self.send_response(307)
        self.send_header("location", "/elsewhere")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_a_redirect_and_a_receiver_too_slow_are_failed_attempts(acme, embedded):
    embedded.HUB_WEBHOOK_TIMEOUT_SECONDS, embedded.HUB_WEBHOOK_RETRY_SECONDS = 0.3, 60.0
    with serving(_Redirect) as server:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        for path, kind in (("/moved", "batch.failed"), ("/slow", "batch.cancelled")):
            webhooks.create(acme.tenant.id, name=path, url=base + path, event_types=[kind])
            with transaction.atomic():
                webhooks.emit(acme.tenant.id, kind, "batch_1")
        moved = _state(WebhookDelivery.objects.get(event_type="batch.failed").pk, DeliveryState.PENDING)
        assert (moved.last_status, moved.last_error, moved.attempts) == (307, "HTTP 307", 1)
        deadline = time.monotonic() + 10
        while not (slow := WebhookDelivery.objects.get(event_type="batch.cancelled")).last_error:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert slow.last_status is None and slow.last_error.startswith("ReadTimeout")


@pytest.mark.parametrize(
    ("url", "refused"),
    [("http://127.0.0.1:8000/h", True), ("http://localhost/h", True), ("http://10.1.2.3/h", True),
     ("http://[::1]/h", True), ("http://169.254.169.254/latest", True), ("http://[::ffff:127.0.0.1]/h", True),
     ("https://93.184.215.14/h", False), ("https://hooks.example.com/h", False)],
)  # fmt: skip
def test_private_addresses_are_refused_unless_the_operator_allows_them(settings, url, refused):
    settings.HUB_WEBHOOK_ALLOW_PRIVATE_URLS = False
    problem = addresses.url_problem(url)
    assert (problem is not None) is refused
    if refused:
        assert "HUB_WEBHOOK_ALLOW_PRIVATE_URLS" in problem and addresses.resolve(url)[1] is not None
    settings.HUB_WEBHOOK_ALLOW_PRIVATE_URLS = True
    assert addresses.url_problem(url) is None and addresses.resolve(url)[1] is None


@pytest.mark.parametrize("url", ["ftp://x.example.com/", "https://", "http://x.example.com:99999/", "x.example.com"])
def test_what_is_not_an_http_url_is_refused_whatever_the_setting(settings, url):
    settings.HUB_WEBHOOK_ALLOW_PRIVATE_URLS = True
    assert addresses.url_problem(url) is not None


def test_a_name_resolving_to_a_private_address_is_not_sent_to(settings):
    settings.HUB_WEBHOOK_ALLOW_PRIVATE_URLS = False
    assert addresses.url_problem("http://loopback.test.invalid/h") is None  # a name: judged when resolved
    _, problem = addresses.resolve("http://localhost:8080/h")  # resolved (/etc/hosts), not named
    assert problem is not None and "127.0.0.1" in problem


def test_a_webhook_goes_to_the_address_checked_not_to_where_its_name_resolves_later(acme, settings, monkeypatch):
    """DNS rebinding: the endpoint's name resolves elsewhere after the check; the attempt still goes to the address
    checked, naming the host in ``Host``."""
    settings.HUB_WEBHOOK_ALLOW_PRIVATE_URLS = False
    rebinding(monkeypatch, "hooks.rebind.test")
    with receiver() as hooks:
        url = hooks.url.replace("127.0.0.1", "hooks.rebind.test")
        endpoint, _ = webhooks.create(acme.tenant.id, name="e", url=url, event_types=["batch.expired"])
        assert sender.send_sample(endpoint, "batch.expired") == 200
        [attempt] = hooks.wait(1)
    assert attempt.headers["host"] == url.split("/")[2]


def test_a_pinned_url_keeps_all_but_its_host():
    pinned = addresses.Pinned("hooks.example.com", "93.184.215.14")
    url = "https://u:p@hooks.example.com:8443/h/ook?a=1"
    assert pinned.url(url) == "https://u:p@93.184.215.14:8443/h/ook?a=1"
    assert pinned.headers(url) == {"Host": "hooks.example.com:8443"}
    assert pinned.extensions(url) == {"sni_hostname": "hooks.example.com"}
    six = addresses.Pinned("h.example.com", "2606:2800:21f:cb07:6820:80da:af6b:8b2c")
    assert six.url("http://h.example.com/x") == "http://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]/x"
    assert six.extensions("http://h.example.com/x") == {} and six.headers("http://h.example.com/x") == {
        "Host": "h.example.com"}  # fmt: skip
    unpinned = addresses.Pinned("h.example.com")  # private addresses allowed: the resolver decides
    assert (unpinned.url(url), unpinned.headers(url), unpinned.extensions(url)) == (url, {}, {})


def test_an_https_webhook_to_the_checked_address_names_its_host_for_tls(acme, settings, monkeypatch, tmp_path):
    """Connected to the address checked, TLS still names the endpoint's host (SNI) and checks its certificate (here
    a self-signed one, refused)."""
    settings.HUB_WEBHOOK_ALLOW_PRIVATE_URLS = False
    rebinding(monkeypatch, "hooks.rebind.test")
    with tls_listener(tmp_path) as (port, names):
        endpoint, _ = webhooks.create(acme.tenant.id, name="e", url=f"https://hooks.rebind.test:{port}/h",
                                      event_types=["batch.expired"])  # fmt: skip
        with pytest.raises(sender.Unreachable) as failed:
            sender.send_sample(endpoint, "batch.expired")
    assert names == ["hooks.rebind.test"] and "CERTIFICATE_VERIFY_FAILED" in str(failed.value)


def test_a_broker_that_cannot_take_the_send_leaves_the_change_committed_and_the_delivery_due(acme, settings,
                                                                                             monkeypatch):  # fmt: skip
    settings.CELERY_TASK_ALWAYS_EAGER = False

    def unreachable(*args, **kwargs):
        raise ConnectionError("broker down")

    monkeypatch.setattr(send_webhooks, "delay", unreachable)
    webhooks.create(acme.tenant.id, name="e", url="https://x.example.com/", event_types=["batch.failed"])
    with transaction.atomic():  # commits, its on-commit send failing: nothing raised here
        webhooks.emit(acme.tenant.id, "batch.failed", "batch_1")
    assert WebhookDelivery.objects.get().state == DeliveryState.PENDING  # the beat's sweep sends it
