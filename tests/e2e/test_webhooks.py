"""Webhooks through the live hub and a Celery worker, as production runs them, with OpenAI's SDK: endpoints made,
listed, changed, rotated and deleted with ``client.webhooks``; the events of background responses and batches sent
to a receiver on a loopback port, each verified with ``client.webhooks.unwrap`` and valid against OpenAI's event
schemas; a receiver that fails gets the same delivery again until it answers 2xx; a test event sent on demand."""

from __future__ import annotations

import time

import openai
import pytest

from accounts import services
from accounts.models import DeliveryState, WebhookDelivery
from hub.tasks import send_webhooks
from tests.openai_spec import assert_valid
from tests.support.batches import batch_worker, chat_line, jsonl, wait_for
from tests.support.live import FAKE_CHAT
from tests.support.webhooks import receiver

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

SCHEMA = {"response.completed": "WebhookResponseCompleted", "response.cancelled": "WebhookResponseCancelled",
          "response.failed": "WebhookResponseFailed", "response.incomplete": "WebhookResponseIncomplete",
          "batch.completed": "WebhookBatchCompleted", "batch.failed": "WebhookBatchFailed",
          "batch.cancelled": "WebhookBatchCancelled", "batch.expired": "WebhookBatchExpired"}  # fmt: skip


def _verified(client, received, secret: str):
    """The event, verified as a receiver does; valid against OpenAI's schema of its type."""
    event = client.webhooks.unwrap(received.body, received.headers, secret=secret)
    assert_valid(SCHEMA[event.type], received.event)
    assert received.headers["webhook-id"].startswith("msg_") and received.event["object"] == "event"
    return event


def _polled(client, response_id: str, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while (response := client.responses.retrieve(response_id)).status in ("queued", "in_progress"):
        assert time.monotonic() < deadline, f"{response_id} still {response.status}"
        time.sleep(0.05)
    return response


def test_endpoints_are_made_listed_changed_rotated_and_deleted_with_the_sdk(fake_hub):
    client = fake_hub()
    made = client.webhooks.create(name="ops", url="https://hooks.example.com/a", event_types=["batch.completed"])
    assert made.id.startswith("wh_") and made.signing_secret.startswith("whsec_")
    assert made.signing_secret_hint == "whsec_..." + made.signing_secret[-4:]
    assert (made.object, made.event_types, made.updated_at) == (
        "webhook_endpoint",
        ["batch.completed"],
        made.created_at,
    )
    shown = client.webhooks.retrieve(made.id)
    assert "signing_secret" not in shown.model_dump() and shown.url == made.url
    others = [client.webhooks.create(name=f"n{i}", url=f"https://h{i}.example.com/", event_types=["response.failed"])
              for i in range(2)]  # fmt: skip
    listed = client.webhooks.list(limit=2)
    assert [e.id for e in listed.data] == [others[1].id, others[0].id] and listed.has_more
    assert [e.id for e in client.webhooks.list(limit=2, after=others[0].id).data] == [made.id]
    # an update that changes nothing leaves updated_at; one that does moves it (a second later at least)
    assert client.webhooks.update(made.id, name="ops").updated_at == made.created_at
    time.sleep(1.05)
    changed = client.webhooks.update(made.id, event_types=["batch.failed", "batch.failed", "response.completed"])
    assert changed.event_types == ["batch.failed", "response.completed"] and changed.updated_at > made.created_at
    rotated = client.webhooks.rotate_secret(made.id, keep_old_secret_active_for_24_hours=True)
    assert rotated.signing_secret != made.signing_secret and rotated.signing_secret_hint.endswith(
        rotated.signing_secret[-4:])  # fmt: skip
    assert set(client.webhooks.event_types.list().data) == set(SCHEMA)
    assert client.webhooks.delete(made.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.webhooks.retrieve(made.id)
    # another tenant's endpoint is not there for this one
    stranger = services.create_tenant("strangers", "Strangers")
    key = services.issue_key(stranger, name="k")
    with pytest.raises(openai.NotFoundError):
        fake_hub(key).webhooks.retrieve(others[0].id)


@pytest.mark.parametrize(
    ("fields", "param"),
    [({"url": "ftp://x.example.com/"}, "url"), ({"url": "not a url"}, "url"), ({"event_types": []}, "event_types"),
     ({"event_types": ["video.completed"]}, "event_types[0]"), ({"name": ""}, "name"), ({"name": None}, "name"),
     ({"event_types": "batch.failed"}, "event_types")],
)  # fmt: skip
def test_bad_endpoints_are_refused_with_openai_errors(fake_hub, fields, param):
    client = fake_hub()
    body = {"name": "n", "url": "https://x.example.com/", "event_types": ["batch.failed"], **fields}
    with pytest.raises(openai.BadRequestError) as refused:
        client.post("/webhook_endpoints", cast_to=object, body=body)
    assert refused.value.body["param"] == param and refused.value.status_code == 400


def test_a_background_response_tells_its_end_signed_and_a_failing_receiver_gets_it_again(fake_hub, fake):
    client = fake_hub()
    fake.default_tokens = 3
    with receiver() as hooks, batch_worker():
        endpoint = client.webhooks.create(name="r", url=hooks.url,
                                          event_types=["response.completed", "response.cancelled"])  # fmt: skip
        hooks.statuses = [500, 503]  # the first two attempts fail: the delivery is sent again
        done = _polled(client, client.responses.create(model=FAKE_CHAT, input="Hi", background=True).id)
        assert done.status == "completed"
        deadline = time.monotonic() + 30
        while len(hooks.received) < 3:  # what the beat does every HUB_WEBHOOK_SWEEP_SECONDS
            assert time.monotonic() < deadline, f"{len(hooks.received)} attempts"
            send_webhooks.delay()
            time.sleep(0.25)
        attempts = hooks.wait(3)
        events = [_verified(client, a, endpoint.signing_secret) for a in attempts]
        assert {(e.type, e.data.id, e.id) for e in events} == {("response.completed", done.id, events[0].id)}
        assert len({a.headers["webhook-id"] for a in attempts}) == 1  # the same delivery, each time
        [row] = WebhookDelivery.objects.filter(endpoint_id=endpoint.id)
        assert (row.state, row.attempts, row.last_status) == (DeliveryState.DELIVERED, 3, 200)
        # a cancel is told too; a wrong secret does not verify. The run must still be going when the cancel comes:
        # the hub streams from the deployment (a Responses request always is), so each word waits 10 s (a whole
        # answer's delay would not apply, and a loaded machine's cancel could come after the answer: "completed")
        fake.chunk_delay = 10.0
        try:
            running = client.responses.create(model=FAKE_CHAT, input="Hi", background=True)
            client.responses.cancel(running.id)
            cancelled = _verified(client, hooks.wait(4)[3], endpoint.signing_secret)
        finally:
            fake.chunk_delay = 0.0  # the session's fake: the next tests answer at once
        assert (cancelled.type, cancelled.data.id) == ("response.cancelled", running.id)
        with pytest.raises(openai.InvalidWebhookSignatureError):
            client.webhooks.unwrap(hooks.received[3].body, hooks.received[3].headers,
                                   secret=client.webhooks.rotate_secret(endpoint.id).signing_secret)  # fmt: skip


def test_many_background_responses_at_once_each_tell_their_end_once(fake_hub, fake):
    client = fake_hub()
    fake.default_tokens = 2
    with receiver() as hooks, batch_worker():
        endpoint = client.webhooks.create(name="r", url=hooks.url, event_types=["response.completed"])
        ids = {client.responses.create(model=FAKE_CHAT, input=f"Hi {i}", background=True).id for i in range(8)}
        got = hooks.wait(8)
        time.sleep(0.5)  # nothing more comes
    assert len(hooks.received) == 8
    assert {_verified(client, r, endpoint.signing_secret).data.id for r in got} == ids


def test_a_batch_tells_its_end_to_the_endpoints_that_asked_and_both_secrets_sign_after_a_rotation(fake_hub):
    client = fake_hub()
    with receiver() as hooks, receiver() as quiet, batch_worker():
        endpoint = client.webhooks.create(name="b", url=hooks.url, event_types=["batch.completed"])
        client.webhooks.create(name="q", url=quiet.url, event_types=["response.completed"])
        rotated = client.webhooks.rotate_secret(endpoint.id, keep_old_secret_active_for_24_hours=True)
        upload = client.files.create(file=("in.jsonl", jsonl([chat_line("a", FAKE_CHAT, "Hi", max_tokens=2)])),
                                     purpose="batch")  # fmt: skip
        batch = client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions",
                                      completion_window="24h")  # fmt: skip
        assert wait_for(client, batch.id, ("completed",)).status == "completed"
        [delivered] = hooks.wait(1)
    for secret in (endpoint.signing_secret, rotated.signing_secret):  # the old one signs for 24 hours yet
        event = _verified(client, delivered, secret)
    assert (event.type, event.data.id) == ("batch.completed", batch.id) and quiet.received == []
    assert len(delivered.headers["webhook-signature"].split()) == 2


def test_a_test_event_is_sent_now_and_its_status_answered(fake_hub):
    client = fake_hub()
    with receiver() as hooks:
        endpoint = client.webhooks.create(name="t", url=hooks.url, event_types=["batch.failed"])
        hooks.statuses = [204]
        result = client.webhooks.test(endpoint.id, event_type="response.incomplete")
        assert (result.status_code, result.success, result.event_type) == (204, True, "response.incomplete")
        event = _verified(client, hooks.received[0], endpoint.signing_secret)
        assert event.type == "response.incomplete" and event.data.id.startswith("resp_test_")
    with pytest.raises(openai.BadRequestError) as refused:  # the receiver has stopped: its port refuses
        client.webhooks.test(endpoint.id, event_type="batch.failed")
    assert refused.value.code == "endpoint_unreachable"
