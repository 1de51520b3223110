"""The Batch API as users run it: on a real model (SmolLM2, the configuration ``make run`` serves), a batch's
answers are the answers the same requests get one by one, for chat completions and the Responses API; and on the
embedded default (no broker: ``manage.py serve`` runs batches in its own process), a batch runs with no worker, and
a hub restarted mid-batch (stopped as a deploy stops it) finishes it, every request sent once and metered."""

from __future__ import annotations

import pytest
from openai import OpenAI

from accounts.models import BatchResult, UsageRecord
from tests.support.batches import answered, batch_worker, chat_line, jsonl, lines_of, wait_for
from tests.support.hub import database_url_for_subprocess, start_hub, stop_hub
from tests.support.live import CHAT, FAKE_CHAT
from tests.support.processes import free_port

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

DONE = ("completed", "failed", "expired", "cancelled")
PROMPTS = ["Name a colour.", "What is 2 + 2?", "Say hello in French."]


def test_a_batch_on_a_real_model_answers_as_the_requests_do_one_by_one(hub):
    client = hub()
    direct = [client.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": p}], max_tokens=12,
                                             temperature=0).choices[0].message.content for p in PROMPTS]  # fmt: skip
    lines = [chat_line(f"q{i}", CHAT, p, max_tokens=12, temperature=0) for i, p in enumerate(PROMPTS)]
    chats = client.files.create(file=("chats.jsonl", jsonl(lines)), purpose="batch")
    body = {"model": CHAT, "input": PROMPTS[1], "max_output_tokens": 12, "temperature": 0}
    responses_line = {"custom_id": "r", "method": "POST", "url": "/v1/responses", "body": body}
    responses = client.files.create(file=("responses.jsonl", jsonl([responses_line])), purpose="batch")
    with batch_worker():
        first = client.batches.create(input_file_id=chats.id, endpoint="/v1/chat/completions", completion_window="24h")
        second = client.batches.create(input_file_id=responses.id, endpoint="/v1/responses", completion_window="24h")
        chat_batch = wait_for(client, first.id, DONE, timeout=120)
        responses_batch = wait_for(client, second.id, DONE, timeout=120)
    assert chat_batch.status == "completed" and chat_batch.model == CHAT, chat_batch
    answers = {o["custom_id"]: o["response"]["body"] for o in lines_of(client, chat_batch.output_file_id)}
    assert [answers[f"q{i}"]["choices"][0]["message"]["content"] for i in range(3)] == direct
    assert chat_batch.usage.output_tokens == sum(a["usage"]["completion_tokens"] for a in answers.values())

    assert responses_batch.status == "completed", responses_batch
    (output,) = lines_of(client, responses_batch.output_file_id)
    body = output["response"]["body"]
    assert body["object"] == "response" and body["status"] in ("completed", "incomplete")
    text = "".join(c["text"] for item in body["output"] if item["type"] == "message" for c in item["content"])
    assert text == direct[1]
    assert responses_batch.usage.input_tokens == body["usage"]["input_tokens"] > 0


def _embedded_hub(port: int):
    """``manage.py serve`` as the embedded default runs it (tasks in process), on the test database."""
    env = {"HUB_DATABASE_URL": database_url_for_subprocess(), "HUB_CELERY_EAGER": "true",
           "HUB_BATCH_STALE_SECONDS": "2"}  # fmt: skip
    return start_hub(env, "--no-bootstrap", port=port)


def test_the_embedded_default_runs_batches_itself_and_across_a_restart(fake_hub, fake):
    port = free_port()
    process, url = _embedded_hub(port)
    try:
        client = OpenAI(base_url=f"{url}/v1", api_key=fake_hub.everything.secret, max_retries=0)
        small = client.files.create(file=("a.jsonl", jsonl([chat_line("a", FAKE_CHAT, "hi")])), purpose="batch")
        created = client.batches.create(input_file_id=small.id, endpoint="/v1/chat/completions",
                                        completion_window="24h")  # fmt: skip
        assert wait_for(client, created.id, DONE).status == "completed"  # no worker anywhere

        fake.requests.clear()
        fake.answer_delay = 0.3
        lines = [chat_line(f"r{i}", FAKE_CHAT, "hi", max_tokens=2) for i in range(30)]
        big = client.files.create(file=("b.jsonl", jsonl(lines)), purpose="batch")
        created = client.batches.create(input_file_id=big.id, endpoint="/v1/chat/completions", completion_window="24h")
        answered(created.id, 8)
        output = stop_hub(process)  # SIGTERM: a restart, as a deploy does it
        assert "Traceback" not in output, output
        assert BatchResult.objects.filter(batch_id=created.id).count() == len(fake.requests) < 30, output
        process, url = _embedded_hub(port)
        batch = wait_for(client, created.id, DONE)
        custom_ids = sorted(o["custom_id"] for o in lines_of(client, batch.output_file_id))
    finally:
        output = stop_hub(process)
    assert "Traceback" not in output, output
    assert batch.status == "completed" and batch.request_counts.completed == 30
    assert custom_ids == sorted(f"r{i}" for i in range(30))
    assert len(fake.requests) == 30  # none sent twice
    assert UsageRecord.objects.filter(api_key=fake_hub.everything.key).count() == 31
