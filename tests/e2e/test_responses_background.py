"""Background responses (``background: true``) through the live hub and a Celery worker, as production runs them,
against a fake of our service: queued at once, answered by the worker (polled with ``GET /v1/responses/{id}`` as
OpenAI's SDK users do), metered once; cancelled while they run (stopped within a second, metered for what they
produced); failed with OpenAI's error object when the run is refused; answered again from the start when their
worker died; and the requests that cannot be one refused."""

from __future__ import annotations

import signal
import time

import httpx
import openai
import pytest

from accounts import services
from accounts.models import BackgroundResponse, UsageRecord
from hub.tasks import reap_open_requests, resume_background_responses
from tests.openai_spec import assert_valid
from tests.support.batches import STALE_SECONDS, batch_worker
from tests.support.live import FAKE_CHAT, rows

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

RUNNING = ("queued", "in_progress")


def _polled(client, response_id: str, until: tuple[str, ...] | None = None, timeout: float = 30):
    """The response once its status is no longer queued / in progress (or is one of ``until``)."""
    deadline = time.monotonic() + timeout
    while True:
        response = client.responses.retrieve(response_id)
        if (response.status in until) if until else response.status not in RUNNING:
            return response
        assert time.monotonic() < deadline, f"response {response_id} still {response.status} after {timeout} s"
        time.sleep(0.1)


def test_a_background_response_is_queued_then_answered_by_a_worker(fake_hub, fake):
    client = fake_hub()
    fake.default_tokens = 4  # the answer's whole length: completed
    with batch_worker():
        raw = client.responses.with_raw_response.create(model=FAKE_CHAT, input="Hi", background=True)
        queued = raw.http_response.json()
        assert_valid("Response", queued)
        assert (queued["status"], queued["background"], queued["output"]) == ("queued", True, [])
        done = _polled(client, queued["id"])
    assert_valid("Response", client.responses.with_raw_response.retrieve(done.id).http_response.json())
    assert (done.status, done.background, done.output_text, done.created_at) == (
        "completed", True, "w0 w1 w2 w3 ", queued["created_at"])  # fmt: skip
    [row] = rows(1, route="responses")
    assert (row.completion_tokens, row.status_code) == (4, 200) and done.usage.output_tokens == 4
    assert [r["stream"] for r in fake.requests if "messages" in r] == [True]
    # the conversation goes on from it, and its input items are the request's
    more = client.responses.create(model=FAKE_CHAT, previous_response_id=done.id, input="More", max_output_tokens=2)
    assert more.output_text == "w0 w1 " and fake.requests[-1]["messages"][-2]["content"] == "w0 w1 w2 w3 "
    assert [i.content[0].text for i in client.responses.input_items.list(done.id).data] == ["Hi"]
    # an ended background response is left as it is by a cancel, as OpenAI's
    assert client.responses.cancel(done.id).status == "completed"

    # in a conversation: its input and output are added to it once it is answered
    conversation = client.conversations.create()
    with batch_worker():
        queued = client.responses.create(model=FAKE_CHAT, input="Again", background=True,
                                         conversation=conversation.id)  # fmt: skip
        answered = _polled(client, queued.id)
    items = list(client.conversations.items.list(conversation.id, order="asc"))
    assert [i.type for i in items] == ["message", "message"] and items[1].id == answered.output[0].id
    assert items[0].content[0].text == "Again"


def test_a_background_response_is_cancelled_while_it_runs(fake_hub, fake):
    client = fake_hub()
    fake.chunk_delay = 0.05  # 64 tokens: about 3 s
    with batch_worker():
        queued = client.responses.create(model=FAKE_CHAT, input="Hi", background=True)
        _polled(client, queued.id, until=("in_progress",))
        while not fake.requests:
            time.sleep(0.05)
        time.sleep(0.3)  # some tokens out
        cancelled = client.responses.cancel(queued.id)
        assert cancelled.status == "cancelled" and client.responses.cancel(queued.id).status == "cancelled"
        [row] = rows(1, route="responses")  # the run stopped (within a heartbeat) and was metered
    assert (row.status_code, row.aborted) == (499, True) and 0 < row.completion_tokens < 64
    time.sleep(0.5)
    final = client.responses.retrieve(queued.id)
    assert (final.status, final.output) == ("cancelled", [])  # never overwritten by the stopped run
    assert BackgroundResponse.objects.get(pk=queued.id).state == "cancelled"


def test_a_run_refused_fails_the_response_with_openais_error(fake_hub):
    """Queued with no worker running (it waits), its key revoked meanwhile: the run that picks it up fails it with
    OpenAI's error object, which any other key of the tenant reads."""
    client = fake_hub()
    queued = client.responses.create(model=FAKE_CHAT, input="Hi", background=True)
    assert client.responses.retrieve(queued.id).status == "queued"
    services.revoke_key(fake_hub.everything.key)
    with batch_worker():  # takes the start that waited in the broker
        failed = _polled(fake_hub(key=fake_hub.embed_only), queued.id)
    assert failed.status == "failed" and failed.error.code == "invalid_api_key"
    assert not UsageRecord.objects.exists()  # no model was reached


def test_a_background_response_whose_worker_died_is_answered_again(fake_hub, fake, settings):
    settings.HUB_BATCH_STALE_SECONDS = STALE_SECONDS
    client = fake_hub()
    fake.chunk_delay = 0.05
    with batch_worker() as first:
        queued = client.responses.create(model=FAKE_CHAT, input="Hi", background=True, max_output_tokens=40)
        while not fake.requests:
            time.sleep(0.05)
        time.sleep(0.3)  # some tokens out
        first.send_signal(signal.SIGKILL)  # a crash: its run lost mid-answer
        first.wait()
    assert client.responses.retrieve(queued.id).status == "in_progress"
    fake.chunk_delay = 0.0
    time.sleep(STALE_SECONDS + 0.5)
    with batch_worker():
        assert resume_background_responses() == 1
        done = _polled(client, queued.id)
    assert (done.status, done.output_text) == ("incomplete", " ".join(f"w{i}" for i in range(40)) + " ")
    assert BackgroundResponse.objects.get(pk=queued.id).attempts == 2
    assert len([r for r in fake.requests if "messages" in r]) == 2
    # the answer is metered, and the lost run by the reaper, from the deployment's tally (tests/e2e/test_batches.py)
    assert [r.completion_tokens for r in rows(1, route="responses", recovered=False)] == [40]
    assert reap_open_requests() == 1
    [lost] = UsageRecord.objects.filter(recovered=True)
    assert lost.route == "responses" and 0 < lost.completion_tokens < 40


def test_requests_that_cannot_be_background_responses_are_refused(fake_hub):
    client = fake_hub()
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model=FAKE_CHAT, input="Hi", background=True, store=False)
    assert refused.value.body["param"] == "background"
    foreground = client.responses.create(model=FAKE_CHAT, input="Hi", max_output_tokens=2)
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.cancel(foreground.id)
    assert refused.value.body["param"] == "response_id"
    for unknown in ("resp_nope", "resp_\x00"):
        with pytest.raises(openai.NotFoundError):
            client.responses.cancel(unknown)
    assert not BackgroundResponse.objects.exists()


def _events_of(stream) -> list[dict]:
    return [event.model_dump(mode="json", exclude_unset=True) for event in stream]


def test_a_streamed_background_response_is_streamed_again_from_any_event(fake_hub, fake):
    """``background`` with ``stream``: the creating request streams it (``response.created`` and ``response.queued``
    first, then the run's events, numbered on), and ``GET …?stream=true&starting_after=N`` streams the same events
    after N again, whatever became of the first client."""
    client = fake_hub()
    fake.default_tokens, fake.chunk_delay = 8, 0.02
    with batch_worker():
        events = _events_of(client.responses.create(model=FAKE_CHAT, input="Hi", background=True, stream=True))
    for event in events:
        assert_valid("ResponseStreamEvent", event)
    kinds = [e["type"] for e in events]
    assert kinds[:3] == ["response.created", "response.queued", "response.in_progress"] and kinds[-1] == (
        "response.completed")  # fmt: skip
    assert kinds.count("response.created") == 1 and events[0]["response"]["status"] == "queued"
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    response_id = events[0]["response"]["id"]
    done = client.responses.retrieve(response_id)
    assert (text, done.status, done.output_text, done.background) == ("w0 w1 w2 w3 w4 w5 w6 w7 ", "completed", text,
                                                                       True)  # fmt: skip
    assert _events_of(client.responses.retrieve(response_id, stream=True)) == events
    assert _events_of(client.responses.retrieve(response_id, stream=True, starting_after=5)) == events[6:]
    with client.responses.with_streaming_response.retrieve(response_id, stream=True) as again:  # a stream's headers
        shown = {name: again.headers.get(name) for name in ("content-type", "cache-control", "x-accel-buffering")}
        assert shown == {"content-type": "text/event-stream", "cache-control": "no-cache", "x-accel-buffering": "no"}
    [row] = rows(1, route="responses")
    assert (row.completion_tokens, row.aborted) == (8, False)


def test_a_client_leaving_the_stream_leaves_the_run_going_and_a_cancel_ends_every_stream(fake_hub, fake):
    client = fake_hub()
    fake.default_tokens, fake.chunk_delay = 16, 0.02
    with batch_worker():
        with client.responses.create(model=FAKE_CHAT, input="Hi", background=True, stream=True) as stream:
            first = next(iter(stream))  # then the client goes
        response_id = first.response.id
        done = _polled(client, response_id)
        assert (done.status, done.output_text) == ("completed", " ".join(f"w{i}" for i in range(16)) + " ")
        [row] = rows(1, route="responses")
        assert (row.completion_tokens, row.aborted) == (16, False)

        fake.default_tokens, fake.chunk_delay = 64, 0.05
        seen: list[str] = []
        for event in client.responses.create(model=FAKE_CHAT, input="Hi", background=True, stream=True):
            seen.append(event.type)
            if event.type == "response.created":
                response_id = event.response.id
            elif event.type == "response.output_text.delta" and seen.count(event.type) == 3:
                assert client.responses.cancel(response_id).status == "cancelled"
        [_, row] = rows(2, route="responses")  # the run stopped, metered for what it produced
    assert "response.completed" not in seen and seen.count("response.output_text.delta") < 64  # ended by the cancel
    assert (row.status_code, row.aborted) == (499, True) and row.completion_tokens < 64
    assert client.responses.retrieve(response_id).status == "cancelled"
    again = _events_of(client.responses.retrieve(response_id, stream=True))
    assert "response.completed" not in [e["type"] for e in again]


def test_streaming_again_is_for_streamed_background_responses(fake_hub):
    client = fake_hub()
    foreground = client.responses.create(model=FAKE_CHAT, input="Hi", max_output_tokens=2)
    queued = client.responses.create(model=FAKE_CHAT, input="Hi", background=True)  # not streamed (no worker: waits)
    for response_id, query, param in [(foreground.id, "stream=true", "stream"), (queued.id, "stream=true", "stream"),
                                      (queued.id, "stream=true&starting_after=x", "starting_after")]:  # fmt: skip
        answer = httpx.get(f"{fake_hub.url}/v1/responses/{response_id}?{query}",
                           headers={"authorization": f"Bearer {fake_hub.everything.secret}"})  # fmt: skip
        assert answer.status_code == 400 and answer.json()["error"]["param"] == param, answer.text


def test_a_streamed_background_response_whose_worker_died_fails_rather_than_streaming_twice(fake_hub, fake, settings):
    """Its clients have part of an answer, which cannot be taken back: the next run fails it, and a client streaming
    it again gets the part, then ``response.failed``."""
    settings.HUB_BATCH_STALE_SECONDS = STALE_SECONDS
    client = fake_hub()
    fake.chunk_delay = 0.05
    with batch_worker() as first:
        stream = client.responses.create(model=FAKE_CHAT, input="Hi", background=True, stream=True)
        for event in stream:
            if event.type == "response.created":
                response_id = event.response.id
            if event.type == "response.output_text.delta":
                break
        first.send_signal(signal.SIGKILL)
        first.wait()
    stream.close()
    time.sleep(STALE_SECONDS + 0.5)
    with batch_worker():
        assert resume_background_responses() == 1
        events = _events_of(client.responses.retrieve(response_id, stream=True))
    assert events[-1]["type"] == "response.failed" and events[-1]["response"]["error"]["code"] == "server_error"
    assert "response.output_text.delta" in [e["type"] for e in events]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert client.responses.retrieve(response_id).status == "failed"
    assert len([r for r in fake.requests if "messages" in r]) == 1  # not sent again
    assert reap_open_requests() == 1  # the lost run, metered from the deployment's tally
