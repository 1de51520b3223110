"""The Batch API's parts below the routes: the input file's checks (``accounts/batch_input.py``), one runner at a
time (``claim``), which batches are taken up again (``stale``), a line recorded once, and files that expire."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts import batch_input, batches, files, services
from accounts.models import Batch, BatchResult, StoredFile

pytestmark = pytest.mark.django_db

URL = "/v1/chat/completions"


def _line(custom_id: str = "a", **changes) -> str:
    line = {"custom_id": custom_id, "method": "POST", "url": URL, "body": {"model": "m", "messages": []}}
    return json.dumps({**line, **changes})


def _read(*lines: str) -> batch_input.Input:
    return batch_input.read("\n".join(lines).encode(), URL)


def test_good_lines_are_read_in_order_and_blank_lines_skipped():
    found = _read(_line("a"), "", "   ", _line("b", body={"model": "m", "input": "x"}))
    assert found.errors == [] and [(r.line, r.custom_id) for r in found.requests] == [(1, "a"), (4, "b")]
    assert found.model == "m"
    assert _read(_line("a"), _line("b", body={"model": "n"})).model == ""  # the lines name different models


@pytest.mark.parametrize(
    ("line", "code", "param"),
    [
        ("[1, 2]", "invalid_json_line", None),
        ("{bad", "invalid_json_line", None),
        ("[" * 100_000, "invalid_json_line", None),  # deeper than the parser goes
        (_line(custom_id=""), "missing_required_parameter", "custom_id"),
        (_line(custom_id=7), "missing_required_parameter", "custom_id"),
        (_line(custom_id="x" * 513), "invalid_value", "custom_id"),
        (_line(method="GET"), "invalid_value", "method"),
        (_line(url="/v1/embeddings"), "mismatched_endpoint", "url"),
        (_line(body=[1]), "missing_required_parameter", "body"),
        (_line(body={"messages": []}), "missing_required_parameter", "body.model"),
        (_line(body={"model": "m", "stream": True}), "invalid_value", "body.stream"),
        # found under make run: a Responses line in the background was answered "queued" and run outside the batch
        (_line(body={"model": "m", "background": True}), "invalid_value", "body.background"),
    ],
)  # fmt: skip
def test_a_bad_line_is_named_with_its_number(line, code, param):
    found = _read(_line("first"), line)
    assert [(e.line, e.code, e.param) for e in found.errors] == [(2, code, param)]


def test_whole_file_errors():
    assert [e.code for e in batch_input.read(b"", URL).errors] == ["empty_file"]
    assert [e.code for e in batch_input.read(b"\xff\xfe", URL).errors] == ["invalid_file"]
    duplicate = _read(_line("a"), _line("a"))
    assert [(e.line, e.code) for e in duplicate.errors] == [(2, "duplicate_custom_id")]
    many = _read(*("{bad" for _ in range(250)))
    assert len(many.errors) == batch_input.MAX_ERRORS and many.errors[-1].code == "too_many_errors"
    assert many.errors[-1].message.startswith("151 more")


def _batch(tenant) -> Batch:
    key = services.issue_key(tenant, name="k")
    source = files.create(tenant_id=tenant.pk, api_key_id=key.key.pk, purpose="batch", filename="in.jsonl",
                          content=_line().encode())  # fmt: skip
    return batches.create(tenant_id=tenant.pk, api_key_id=key.key.pk, input_file=source, endpoint=URL, metadata={},
                          output_expires_seconds=None)  # fmt: skip


def test_one_runner_at_a_time_until_it_goes_quiet():
    batch = _batch(services.create_tenant("acme"))
    assert batches.claim(batch.pk, "one", stale_seconds=60) is not None
    assert batches.claim(batch.pk, "two", stale_seconds=60) is None  # "one" showed life just now
    assert batches.claim(batch.pk, "one", stale_seconds=60) is not None  # its own again
    Batch.objects.filter(pk=batch.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=61))
    assert batches.stale(60) == [batch.pk]
    assert batches.claim(batch.pk, "two", stale_seconds=60) is not None
    assert batches.heartbeat(batch.pk, "one") is None  # taken over: "one" leaves it alone
    batches.release(batch.pk, "two")
    assert batches.stale(60) == []  # never started: released only counts once in progress
    batches.start(batch.pk, total=1, model="m")
    assert batches.stale(60) == [batch.pk]  # handed back: taken up at once


def test_a_line_is_recorded_once_and_a_finished_batch_is_not_claimed():
    batch = _batch(services.create_tenant("acme"))
    batches.record(batch.pk, 1, True, {"first": True}, {"input_tokens": 3})
    batches.record(batch.pk, 1, True, {"second": True}, {"input_tokens": 5})
    assert [r.output for r in BatchResult.objects.filter(batch_id=batch.pk)] == [{"first": True}]
    batches.finish(batch.pk, batches.BatchStatus.COMPLETED, [])
    found = batches.find(batch.tenant_id, batch.pk)
    assert batches.resource(found)["usage"]["input_tokens"] == 3 and found.output_file_id
    assert batches.claim(batch.pk, "one", stale_seconds=60) is None and batches.stale(0) == []
    with pytest.raises(batches.NotCancellable):
        batches.cancel(batch.tenant_id, batch.pk)


def test_expired_files_are_not_found_and_then_deleted():
    tenant = services.create_tenant("acme")
    kept = files.create(tenant_id=tenant.pk, api_key_id=None, purpose="user_data", filename="a", content=b"a")
    short = files.create(tenant_id=tenant.pk, api_key_id=None, purpose="user_data", filename="b", content=b"b",
                         expires_seconds=3600)  # fmt: skip
    assert kept.expires_at is None
    StoredFile.objects.filter(pk=short.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert files.find(tenant.pk, short.pk) is None and files.content(tenant.pk, short.pk) is None
    assert not files.delete(tenant.pk, short.pk)
    assert files.expire() == 1
    assert list(StoredFile.objects.values_list("pk", flat=True)) == [kept.pk]


@pytest.mark.parametrize(
    ("status", "headers", "attempt", "wait"),
    [
        (200, {}, 0, None),
        (400, {}, 0, None),
        (429, {"retry-after": "3"}, 0, 3.0),  # a rate limit: as long as the hub says
        (429, {"retry-after": "600"}, 0, 30.0),  # at most MAX_RETRY_WAIT, then asked again
        (429, {"x-should-retry": "false"}, 0, None),  # a spent budget, a request over a limit: final
        (503, {}, 0, 1.0),
        (503, {}, 3, 8.0),  # no Retry-After: doubling
    ],
)  # fmt: skip
def test_which_answers_a_batch_line_waits_out(status, headers, attempt, wait):
    from hub.batches.call import Answer, retry_after

    assert retry_after(Answer(status, headers, b"{}"), attempt) == wait
