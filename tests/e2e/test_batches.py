"""OpenAI's Files and Batch APIs through a live hub, with the OpenAI SDK, against the fake service (the gateway's
behaviour): files uploaded, listed, read and deleted; a batch run by a Celery worker, as production runs it, every
line through the gateway (entitlements, metering, the deployment's name replaced), answers and errors in their
files; a bad input file failing the batch before anything runs; cancelling; a spent budget, a revoked key and the
24-hour window; a worker killed mid-batch and the batch finished by another, each line answered once; a worker
stopped (SIGTERM) handing its batch back at once, every request metered; the refusals. The embedded default (no
broker) and a real model are ``test_batches_live.py``'s."""

from __future__ import annotations

import signal
import time
from datetime import timedelta
from decimal import Decimal

import httpx
import openai
import pytest
from django.utils import timezone

from accounts import pricing, services
from accounts.limits import Limits
from accounts.models import Batch, BatchResult, UsageRecord
from hub.tasks import reap_open_requests, resume_batches
from tests.openai_spec import assert_valid
from tests.support.batches import STALE_SECONDS, answered, batch_worker, chat_line, jsonl, lines_of, wait_for
from tests.support.live import FAKE_CHAT, FAKE_EMBED, rows

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

DONE = ("completed", "failed", "expired", "cancelled")


def _raw(hub, method: str, path: str, **kw) -> httpx.Response:
    return httpx.request(method, f"{hub.url}/v1/{path}", headers={"authorization": f"Bearer {hub.everything.secret}"},
                         **kw)  # fmt: skip


def _upload(client, lines: list, purpose: str = "batch"):
    return client.files.create(file=("requests.jsonl", jsonl(lines)), purpose=purpose)


def test_files_are_uploaded_listed_read_and_deleted(fake_hub):
    client = fake_hub()
    first = _upload(client, [chat_line("a", FAKE_CHAT, "hi")])
    second = client.files.create(file=("notes.txt", b"some notes\n"), purpose="user_data",
                                 expires_after={"anchor": "created_at", "seconds": 7200})  # fmt: skip
    assert first.id.startswith("file-") and first.purpose == "batch" and first.filename == "requests.jsonl"
    assert first.bytes == len(jsonl([chat_line("a", FAKE_CHAT, "hi")]))
    assert first.expires_at - first.created_at == 30 * 24 * 3600  # a batch input's default, as OpenAI's
    assert second.expires_at - second.created_at == 7200
    assert_valid("OpenAIFile", _raw(fake_hub, "GET", f"files/{first.id}").json())
    assert client.files.retrieve(second.id) == second
    assert client.files.content(second.id).content == b"some notes\n"

    listed = _raw(fake_hub, "GET", "files").json()
    assert_valid("ListFilesResponse", listed)
    assert [f["id"] for f in listed["data"]] == [second.id, first.id]  # newest first
    assert [f.id for f in client.files.list(purpose="batch")] == [first.id]
    page = client.files.list(limit=1, order="asc")
    assert [f.id for f in page.data] == [first.id] and page.has_more
    assert [f.id for f in client.files.list(after=first.id, order="asc").data] == [second.id]

    deleted = _raw(fake_hub, "DELETE", f"files/{second.id}").json()
    assert_valid("DeleteFileResponse", deleted)
    assert deleted == {"id": second.id, "object": "file", "deleted": True}
    for call in (lambda: client.files.retrieve(second.id), lambda: client.files.content(second.id),
                 lambda: client.files.delete(second.id)):  # fmt: skip
        with pytest.raises(openai.NotFoundError):
            call()

    # another tenant sees none of it
    other = fake_hub(services.issue_key(services.create_tenant("other", "Other"), name="o"))
    with pytest.raises(openai.NotFoundError):
        other.files.retrieve(first.id)
    assert other.files.list().data == []


def test_uploads_are_refused_as_openai_refuses_them(fake_hub):
    client = fake_hub()
    with pytest.raises(openai.BadRequestError) as bad:
        client.files.create(file=("x.jsonl", b"{}\n"), purpose="fine-tuning")  # not a purpose
    assert bad.value.body["param"] == "purpose" and bad.value.status_code == 400
    with pytest.raises(openai.BadRequestError) as bad:
        client.files.create(file=("x.jsonl", b"{}\n"), purpose="batch", expires_after={"anchor": "created_at",
                                                                                      "seconds": 60})  # fmt: skip
    assert bad.value.body["param"] == "expires_after.seconds"
    missing = _raw(fake_hub, "POST", "files", data={"purpose": "batch"}, files={"other": ("x", b"1")})
    assert missing.status_code == 400 and "file" in missing.json()["error"]["message"]
    no_purpose = _raw(fake_hub, "POST", "files", files={"file": ("x.jsonl", b"{}\n")})
    assert no_purpose.status_code == 400 and no_purpose.json()["error"]["param"] == "purpose"
    as_json = _raw(fake_hub, "POST", "files", json={"purpose": "batch"})
    assert as_json.status_code == 415 and "'purpose' field" in as_json.json()["error"]["message"]


def test_a_batch_runs_every_line_through_the_gateway(fake_hub, fake):
    client = fake_hub()
    lines = [
        chat_line("first", FAKE_CHAT, "one two three"),
        chat_line("not-entitled", "no-such-model", "hi"),
        chat_line("short", FAKE_CHAT, "hello", max_tokens=5),
        chat_line("wrong-kind", FAKE_EMBED, "hi"),
        chat_line("last", FAKE_CHAT, "x", max_tokens=3),
    ]
    batch_file = _upload(client, lines)
    pricing.set_price(FAKE_CHAT, input_per_million=Decimal(100), output_per_million=Decimal(1000))
    with batch_worker():
        created = client.batches.create(input_file_id=batch_file.id, endpoint="/v1/chat/completions",
                                        completion_window="24h", metadata={"job": "nightly"})  # fmt: skip
        assert created.status in ("validating", "in_progress") and created.metadata == {"job": "nightly"}
        batch = wait_for(client, created.id, DONE)
    assert batch.status == "completed", batch
    assert_valid("Batch", _raw(fake_hub, "GET", f"batches/{batch.id}").json())
    assert batch.model is None  # the lines name different models
    assert (batch.request_counts.total, batch.request_counts.completed, batch.request_counts.failed) == (5, 3, 2)
    assert batch.in_progress_at and batch.finalizing_at and batch.completed_at and batch.expires_at

    outputs = lines_of(client, batch.output_file_id)
    assert [o["custom_id"] for o in outputs] == ["first", "short", "last"]  # in input order
    for output in outputs:
        assert output["error"] is None and output["id"].startswith("batch_req_")
        assert output["response"]["status_code"] == 200
        assert_valid("CreateChatCompletionResponse", output["response"]["body"])
        assert output["response"]["body"]["model"] == FAKE_CHAT  # the deployment's own name replaced
        assert output["response"]["body"]["service_tier"] == "default"  # as OpenAI's batch answers say
    assert [o["response"]["body"]["usage"]["completion_tokens"] for o in outputs] == [64, 5, 3]
    errors = {o["custom_id"]: o["response"] for o in lines_of(client, batch.error_file_id)}
    assert errors["not-entitled"]["status_code"] == 404
    assert errors["not-entitled"]["body"]["error"]["code"] == "model_not_found"
    assert errors["wrong-kind"]["status_code"] == 400
    assert client.files.retrieve(batch.output_file_id).purpose == "batch_output"

    # metered as any request, with the batch's key; the batch's usage is their sum
    metered = rows(3, api_key=fake_hub.everything.key)
    assert sorted(r.request_id for r in metered) == sorted(o["response"]["request_id"] for o in outputs)
    assert batch.usage.input_tokens == sum(r.prompt_tokens for r in metered)
    assert batch.usage.output_tokens == sum(r.completion_tokens for r in metered) == 72
    assert len(fake.requests) == 3
    # in the batch tier (hub/api/tiers.py): behind default and flex traffic, at the model's flex share of the price
    assert [r["priority"] for r in fake.requests] == [2, 2, 2]
    for row in metered:
        full = (Decimal(row.prompt_tokens) * 100 + Decimal(row.completion_tokens) * 1000) / 1_000_000
        assert row.service_tier == "batch" and row.cost == full / 2 > 0

    listed = _raw(fake_hub, "GET", "batches").json()
    assert_valid("ListBatchesResponse", listed)
    assert [b["id"] for b in listed["data"]] == [batch.id]


def test_an_invalid_input_file_fails_the_batch_before_any_request(fake_hub, fake):
    client = fake_hub()
    lines = [
        chat_line("a", FAKE_CHAT, "fine"),
        "{not json",
        chat_line("a", FAKE_CHAT, "the same custom_id"),
        {**chat_line("b", FAKE_CHAT, "x"), "url": "/v1/embeddings"},
        chat_line("c", FAKE_CHAT, "x", stream=True),
    ]
    with batch_worker():
        created = client.batches.create(input_file_id=_upload(client, lines).id, endpoint="/v1/chat/completions",
                                        completion_window="24h")  # fmt: skip
        batch = wait_for(client, created.id, DONE)
    assert batch.status == "failed" and batch.failed_at
    found = [(e.line, e.code) for e in batch.errors.data]
    assert found == [(2, "invalid_json_line"), (3, "duplicate_custom_id"), (4, "mismatched_endpoint"),
                     (5, "invalid_value")]  # fmt: skip
    assert batch.output_file_id is None and fake.requests == []


def test_batch_requests_are_refused_as_openai_refuses_them(fake_hub):
    client = fake_hub()
    good = _upload(client, [chat_line("a", FAKE_CHAT, "hi")])
    notes = client.files.create(file=("n.txt", b"x"), purpose="user_data")
    cases = [
        ({"input_file_id": good.id, "endpoint": "/v1/images/generations", "completion_window": "24h"}, "endpoint"),
        ({"input_file_id": good.id, "endpoint": "/v1/chat/completions", "completion_window": "1h"},
         "completion_window"),
        ({"input_file_id": "file-nope", "endpoint": "/v1/chat/completions", "completion_window": "24h"},
         "input_file_id"),
        ({"input_file_id": notes.id, "endpoint": "/v1/chat/completions", "completion_window": "24h"}, "input_file_id"),
        ({"endpoint": "/v1/chat/completions", "completion_window": "24h"}, "input_file_id"),
        ({"input_file_id": good.id, "endpoint": ["x"], "completion_window": "24h"}, "endpoint"),
        ({"input_file_id": good.id, "endpoint": "/v1/chat/completions", "completion_window": "24h",
          "output_expires_after": {"anchor": "created_at", "seconds": 5}}, "output_expires_after.seconds"),
    ]  # fmt: skip
    for body, param in cases:
        answer = _raw(fake_hub, "POST", "batches", json=body)
        assert answer.status_code == 400 and answer.json()["error"]["param"] == param, (body, answer.text)
    for method, path in (("GET", "batches/batch_nope"), ("POST", "batches/batch_nope/cancel"),
                         ("GET", "batches/a%00b")):  # fmt: skip
        assert _raw(fake_hub, method, path).status_code == 404
    assert _raw(fake_hub, "GET", "batches?limit=0").json()["error"]["param"] == "limit"


def test_a_cancelled_batch_stops_sending_and_keeps_what_it_has(fake_hub, fake):
    client = fake_hub()
    fake.answer_delay = 0.4
    lines = [chat_line(f"r{i}", FAKE_CHAT, "hi", max_tokens=2) for i in range(60)]
    with batch_worker():
        created = client.batches.create(input_file_id=_upload(client, lines).id, endpoint="/v1/chat/completions",
                                        completion_window="24h")  # fmt: skip
        answered(created.id, 1)
        cancelling = client.batches.cancel(created.id)
        assert cancelling.status == "cancelling" and cancelling.cancelling_at
        batch = wait_for(client, created.id, DONE)
    assert batch.status == "cancelled" and batch.cancelled_at
    kept = lines_of(client, batch.output_file_id)
    assert 0 < len(kept) == batch.request_counts.completed < 60
    assert len(fake.requests) == len(kept)  # what was sent was answered and kept; nothing sent after
    with pytest.raises(openai.BadRequestError):  # a finished batch cannot be cancelled ...
        client.batches.cancel(_finished_batch(client))
    assert client.batches.cancel(batch.id).status == "cancelled"  # ... a cancelled one is answered as it is


def _finished_batch(client) -> str:
    with batch_worker():
        created = client.batches.create(input_file_id=_upload(client, [chat_line("a", FAKE_CHAT, "hi")]).id,
                                        endpoint="/v1/chat/completions", completion_window="24h")  # fmt: skip
        return wait_for(client, created.id, DONE).id


def _under_way(client, fake):
    """A batch of 40 slow requests (0.3 s each), 8 of them answered."""
    fake.answer_delay = 0.3
    lines = [chat_line(f"r{i}", FAKE_CHAT, "hi", max_tokens=2) for i in range(40)]
    created = client.batches.create(input_file_id=_upload(client, lines).id, endpoint="/v1/chat/completions",
                                    completion_window="24h")  # fmt: skip
    answered(created.id, 8)
    return created


def test_a_batch_whose_worker_died_is_finished_by_another_each_line_once(fake_hub, fake):
    client = fake_hub()
    with batch_worker() as first:
        created = _under_way(client, fake)
        first.send_signal(signal.SIGKILL)  # a crash: no goodbye, its requests under way lost
        first.wait()
    assert client.batches.retrieve(created.id).status == "in_progress"
    time.sleep(STALE_SECONDS + 0.5)
    # the requests it had under way: the reaper meters them from what the deployment counted (the beat does this
    # every HUB_OPEN_REQUEST_LEASE_SECONDS / 2)
    assert reap_open_requests() > 0
    with batch_worker():
        assert resume_batches.delay()  # what the beat does every HUB_BATCH_STALE_SECONDS / 2
        batch = wait_for(client, created.id, DONE)
    assert batch.status == "completed" and batch.request_counts.completed == 40
    assert sorted(o["custom_id"] for o in lines_of(client, batch.output_file_id)) == sorted(f"r{i}" for i in range(40))
    # the lines answered before the crash were not sent again; at most those under way then were
    assert 40 <= len(fake.requests) <= 40 + 8
    # every request that reached the model is metered once: the 40 answers, and each one the dead worker had under
    # way, from the deployment's tally (one it was killed before sending: a row with no tokens)
    metered = UsageRecord.objects.filter(api_key=fake_hub.everything.key)
    assert metered.filter(recovered=False).count() == 40
    recovered = metered.filter(recovered=True)
    assert recovered.filter(prompt_tokens__gt=0).count() == len(fake.requests) - 40
    assert {(r.status_code, r.aborted, r.completion_tokens) for r in recovered} <= {(503, True, 2), (503, True, 0)}


def test_a_stopping_worker_hands_its_batch_back_with_every_request_metered(fake_hub, fake):
    client = fake_hub()
    with batch_worker() as first:
        created = _under_way(client, fake)
        started = time.monotonic()
        first.send_signal(signal.SIGTERM)  # a deploy: the worker does not wait for the batch's end
        first.wait(timeout=20)
        assert time.monotonic() - started < 10
    handed_back = Batch.objects.get(pk=created.id)
    assert handed_back.status == "in_progress" and handed_back.runner == "" and handed_back.heartbeat_at is None
    # the requests under way were finished and kept
    assert BatchResult.objects.filter(batch_id=created.id).count() == len(fake.requests) < 40
    with batch_worker():
        assert resume_batches.delay()  # at once: a batch handed back is not waited for
        batch = wait_for(client, created.id, DONE)
    assert batch.status == "completed" and batch.request_counts.completed == 40
    assert len(fake.requests) == 40  # none sent twice
    assert UsageRecord.objects.filter(api_key=fake_hub.everything.key).count() == 40


def test_a_spent_budget_fails_the_lines_past_it_and_the_batch_still_completes(fake_hub, fake):
    client = fake_hub()
    services.set_limits(fake_hub.everything.key, Limits(budget=300))  # tokens: a few of the lines' worth
    lines = [chat_line(f"r{i}", FAKE_CHAT, "hi", max_tokens=50) for i in range(20)]
    with batch_worker():
        created = client.batches.create(input_file_id=_upload(client, lines).id, endpoint="/v1/chat/completions",
                                        completion_window="24h")  # fmt: skip
        batch = wait_for(client, created.id, DONE, timeout=30)  # not waited out: a spent budget is final
    assert batch.status == "completed" and 0 < batch.request_counts.completed < 20
    refused = lines_of(client, batch.error_file_id)
    assert len(refused) == batch.request_counts.failed == 20 - batch.request_counts.completed
    assert {(e["response"]["status_code"], e["response"]["body"]["error"]["code"]) for e in refused} == {
        (429, "insufficient_quota")
    }
    assert UsageRecord.objects.filter(api_key=fake_hub.everything.key).count() == batch.request_counts.completed
    assert len(fake.requests) == batch.request_counts.completed


def test_a_batch_whose_key_is_revoked_fails_with_what_it_answered(fake_hub, fake):
    client = fake_hub()
    with batch_worker():
        created = _under_way(client, fake)
        services.revoke_key(fake_hub.everything.key)
        other = fake_hub(fake_hub.embed_only)  # the tenant's other key reads the batch
        batch = wait_for(other, created.id, DONE)
    assert batch.status == "failed" and batch.failed_at
    assert [e.code for e in batch.errors.data] == ["invalid_api_key"] and "revoked" in batch.errors.data[0].message
    kept = lines_of(other, batch.output_file_id)
    assert 8 <= len(kept) == batch.request_counts.completed < 40 and len(fake.requests) == len(kept)


def test_a_batch_past_its_window_expires_with_the_lines_it_never_ran(fake_hub, fake):
    client = fake_hub()
    lines = [chat_line(f"r{i}", FAKE_CHAT, "hi") for i in range(5)]
    created = client.batches.create(input_file_id=_upload(client, lines).id, endpoint="/v1/chat/completions",
                                    completion_window="24h")  # fmt: skip
    assert (created.expires_at - created.created_at) == 24 * 3600
    Batch.objects.filter(pk=created.id).update(expires_at=timezone.now() - timedelta(seconds=1))  # no worker yet
    with batch_worker():
        batch = wait_for(client, created.id, DONE)
    assert batch.status == "expired" and batch.expired_at and batch.request_counts.total == 5
    never_ran = lines_of(client, batch.error_file_id)
    assert [(e["custom_id"], e["response"], e["error"]["code"]) for e in never_ran] == [
        (f"r{i}", None, "batch_expired") for i in range(5)
    ]
    assert fake.requests == []


def test_lines_waiting_out_a_rate_limit_wait_and_a_cancel_cuts_the_wait_short(fake_hub, fake):
    client = fake_hub()
    services.set_limits(fake_hub.everything.key, Limits(rpm=2))  # the third request waits for the next minute
    lines = [chat_line(f"r{i}", FAKE_CHAT, "hi", max_tokens=2) for i in range(6)]
    with batch_worker():
        created = client.batches.create(input_file_id=_upload(client, lines).id, endpoint="/v1/chat/completions",
                                        completion_window="24h")  # fmt: skip
        answered(created.id, 2)
        time.sleep(1.5)  # the others are refused (429, Retry-After) and wait; none is recorded as failed
        assert client.batches.retrieve(created.id).request_counts.failed == 0
        cancelled_at = time.monotonic()
        client.batches.cancel(created.id)
        batch = wait_for(client, created.id, DONE)
        assert time.monotonic() - cancelled_at < STALE_SECONDS  # not after the minute's wait
    assert batch.status == "cancelled" and batch.request_counts.completed == 2 == len(fake.requests)
