"""A hub process killed outright (SIGKILL: an out-of-memory kill, a lost node) with requests under way at the model.
It cannot meter them; their open rows outlive it (``accounts/open_requests.py``), and the reaper meters each from
what the inference service tallied under its usage id (``inference/server/tally.py``): a stream up to where the
service saw its client go, a whole answer it was still generating. Their budget reservations are settled to those
counts. The service's tally of a speech call is checked here too."""

from __future__ import annotations

import threading
import time

import httpx
import openai
import pytest
import redis
from django.conf import settings
from openai import OpenAI

from accounts import services
from accounts.limits import Limits
from accounts.models import OpenRequest, UsageRecord
from hub import reaper
from hub.inference_client import model_cards
from tests.support import speech
from tests.support.hub import database_url_for_subprocess, start_hub
from tests.support.inference import model_flags, start_service
from tests.support.live import CHAT, WHISPER
from tests.support.processes import free_port

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

STORY = [{"role": "user", "content": "Tell me a long story about a lighthouse keeper."}]


def _budget_used(row: OpenRequest) -> int:
    """The key's budget counter in Redis, which the gateway reserved the request's worst case in."""
    [key] = [c[1] for c in row.grant["checks"] if c[1].endswith(":budget")]
    value = redis.Redis.from_url(settings.REDIS_URL).get(f"{settings.HUB_CACHE_PREFIX}:limits:{key}")
    return int(value)


def _running_at_the_service(inference_url: str, count: int) -> None:
    deadline = time.monotonic() + 30
    health = inference_url.removesuffix("/v1") + "/health"
    while httpx.get(health, timeout=5).json()["models"][CHAT]["running"] < count:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def _open_rows(count: int) -> list[OpenRequest]:
    deadline = time.monotonic() + 30
    while (found := list(OpenRequest.objects.order_by("started_at"))) and len(found) < count:
        assert time.monotonic() < deadline, found
        time.sleep(0.05)
    return found


def test_the_requests_of_a_killed_hub_are_metered_from_the_services_tally(inference_url):
    services.sync_deployment(inference_url, model_cards(inference_url))
    tenant = services.create_tenant("acme", "Acme")
    services.grant_models(tenant, [CHAT])
    issued = services.issue_key(tenant, name="k")
    services.set_limits(issued.key, Limits(budget=1_000_000))
    env = {"HUB_DATABASE_URL": database_url_for_subprocess(), "HUB_OPEN_REQUEST_LEASE_SECONDS": "1"}
    process, url = start_hub(env, "--no-bootstrap")
    client = OpenAI(base_url=f"{url}/v1", api_key=issued.secret, max_retries=0)
    whole_failed = threading.Event()

    def whole() -> None:  # a request that is not streamed, still being generated when its hub dies
        try:
            client.chat.completions.create(model=CHAT, messages=STORY, max_tokens=600, extra_body={"ignore_eos": True},
                                           extra_headers={"x-request-id": "req_whole"})  # fmt: skip
        except openai.APIConnectionError:
            whole_failed.set()

    waiting = threading.Thread(target=whole)
    waiting.start()
    try:
        stream = client.chat.completions.create(
            model=CHAT, messages=STORY, max_tokens=400, stream=True, extra_body={"ignore_eos": True},
            stream_options={"include_usage": True, "continuous_usage_stats": True},
            extra_headers={"x-request-id": "req_stream"},
        )  # fmt: skip
        chunks, seen = iter(stream), None
        for chunk in chunks:
            seen = chunk.usage or seen
            if seen is not None and seen.completion_tokens >= 5:
                break
        _running_at_the_service(inference_url, 2)
        rows = {r.request_id: r for r in _open_rows(2)}
        assert set(rows) == {"req_whole", "req_stream"} and all(r.record is None for r in rows.values())
        reserved = _budget_used(rows["req_stream"])
        assert reserved >= 400 + 600  # both worst cases

        process.kill()  # no goodbye: nothing metered, nothing settled
        process.wait(timeout=30)
        with pytest.raises(openai.APIError):
            for _ in chunks:
                pass
    finally:
        waiting.join(timeout=60)
    assert whole_failed.is_set() and not UsageRecord.objects.exists()

    deadline, reaped = time.monotonic() + 60, 0
    while reaped < 2:  # the leases run out a second later; the service saw its client go within a step or two
        assert time.monotonic() < deadline, list(OpenRequest.objects.values())
        time.sleep(0.5)
        reaped += reaper.reap()
    records = {r.request_id: r for r in UsageRecord.objects.all()}
    assert set(records) == {"req_whole", "req_stream"}
    for record in records.values():
        assert record.recovered and record.aborted and record.status_code == 503
        assert record.model == CHAT and record.api_key_id == issued.key.id and record.cost >= 0
    stream_row, whole_row = records["req_stream"], records["req_whole"]
    assert stream_row.streamed and stream_row.prompt_tokens == seen.prompt_tokens
    assert seen.completion_tokens <= stream_row.completion_tokens < 400  # what was generated before the abort
    assert not whole_row.streamed and whole_row.prompt_tokens == seen.prompt_tokens
    assert 0 < whole_row.completion_tokens < 600
    # the reservations became the counted tokens
    assert _budget_used(rows["req_stream"]) == stream_row.total_tokens + whole_row.total_tokens
    assert reaper.reap() == 0  # once


@pytest.mark.real_model
def test_a_call_running_when_the_hub_and_its_service_die_together_is_metered_from_the_journal(tmp_path):
    """``make run``'s hub and service are one process group: killed together (SIGKILL, the out-of-memory killer), the
    service's memory ledger goes too. Its journal (``server.tally_path``, written every second) is read back when it
    starts again on the same file, and the reaper meters the call from it."""
    port, journal = free_port(), str(tmp_path / "tally.sqlite3")
    flags = [*model_flags(f"{CHAT}=packaged:smollm2:chat"), "--tally-path", journal]
    service = start_service(*flags, port=port)
    url = f"{service.url}/v1"
    process = None
    try:
        services.sync_deployment(url, model_cards(url))
        tenant = services.create_tenant("acme", "Acme")
        services.grant_models(tenant, [CHAT])
        issued = services.issue_key(tenant, name="k")
        env = {"HUB_DATABASE_URL": database_url_for_subprocess(), "HUB_OPEN_REQUEST_LEASE_SECONDS": "1"}
        process, hub_url = start_hub(env, "--no-bootstrap")
        client = OpenAI(base_url=f"{hub_url}/v1", api_key=issued.secret, max_retries=0)
        stream = client.chat.completions.create(
            model=CHAT, messages=STORY, max_tokens=400, stream=True, extra_body={"ignore_eos": True},
            stream_options={"include_usage": True, "continuous_usage_stats": True},
        )  # fmt: skip
        chunks, seen, early, since = iter(stream), None, None, None
        for chunk in chunks:
            seen = chunk.usage or seen
            if early is None and seen is not None and seen.completion_tokens >= 3:
                early, since = seen, time.monotonic()
            if since is not None and time.monotonic() - since > 3:  # the journal was written at least twice since
                break
        assert early is not None and seen.completion_tokens < 400
        process.kill()  # both at once, no goodbye
        service.process.kill()
        process.wait(timeout=30)
        service.process.wait(timeout=30)
        service.process.stop()
        assert not UsageRecord.objects.exists()

        service = start_service(*flags, port=port)  # the same file
        deadline, reaped = time.monotonic() + 60, 0
        while not reaped:
            assert time.monotonic() < deadline, list(OpenRequest.objects.values())
            time.sleep(0.5)
            reaped += reaper.reap()
        [record] = UsageRecord.objects.all()
        assert record.recovered and record.aborted and record.streamed and record.api_key_id == issued.key.id
        assert record.prompt_tokens == early.prompt_tokens  # the prompt, counted when it was submitted
        assert early.completion_tokens <= record.completion_tokens < 400
    finally:
        if process is not None:
            process.stop()
        output = service.process.stop()
        assert "Traceback" not in output, output


def test_a_transcription_is_tallied_as_its_metering_headers(inference_url, tmp_path):
    """A speech call's tally: the audio's tokens and seconds as the prompt, the decoder's sampled tokens (what the
    gateway meters from x-audio-tokens, x-audio-duration and x-output-tokens)."""
    audio = speech.speak(speech.ENGLISH[0], "en", tmp_path / "en.wav")
    answer = httpx.post(f"{inference_url}/audio/transcriptions", data={"model": WHISPER},
                        files={"file": ("en.wav", audio.read_bytes(), "audio/wav")},
                        headers={"x-usage-id": "speech-call"}, timeout=120)  # fmt: skip
    assert answer.status_code == 200, answer.text
    tally = httpx.get(f"{inference_url}/requests/speech-call", timeout=10).json()
    assert tally["running"] is False
    assert tally["prompt_tokens"] == int(answer.headers["x-audio-tokens"]) > 0
    assert tally["completion_tokens"] == int(answer.headers["x-output-tokens"]) > 0
    assert tally["audio_seconds"] == pytest.approx(float(answer.headers["x-audio-duration"]), abs=1e-3)
