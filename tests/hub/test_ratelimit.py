"""The limits' counters, on real Redis (shared by hub processes) and in process (the embedded default): token
buckets, budgets that concurrent requests cannot overshoot, stream slots, all-or-nothing checks; and the
limiter's refusals, headers and its behaviour with Redis unreachable."""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys

import pytest
from django.conf import settings

from accounts.authn import KeyContext
from accounts.limits import Limits
from hub.api import errors
from hub.api.limit_store import BUDGET, RATE, STREAMS, Check, LocalStore, Outcome, RedisStore
from hub.api.ratelimit import Estimate, Limiter, estimate, estimate_tokens, reset_text
from hub.api.upstream import ModelInfo
from tests.support import ROOT

T0 = 1_800_000_000.0


def run_prefix() -> str:
    """Counters of one test, inside this run's namespace (removed when the run ends)."""
    return f"{settings.HUB_CACHE_PREFIX}:limits-test-{secrets.token_hex(6)}:"


@pytest.fixture(params=["redis", "local"])
def store(request, redis_url):
    return RedisStore(redis_url, run_prefix()) if request.param == "redis" else LocalStore()


def run(coro):
    return asyncio.run(coro)


def test_a_rate_bucket_refills_at_its_limit_per_minute(store):
    rpm = Check(RATE, "k:rpm", 3, 1)
    results = [run(store.acquire([rpm], f"r{i}", T0)) for i in range(4)]
    assert [r.failed for r in results] == [None, None, None, 0]
    assert [r.remaining for r in results[:3]] == [[2], [1], [0]]
    assert results[3].retry_after == pytest.approx(20.0)  # one request per 20 s at 3 a minute
    assert run(store.acquire([rpm], "later", T0 + 20)).failed is None


def test_checks_are_all_or_nothing(store):
    key_rpm, tenant_tpm = Check(RATE, "key:rpm", 10, 1), Check(RATE, "tenant:tpm", 100, 80)
    assert run(store.acquire([key_rpm, tenant_tpm], "a", T0)).failed is None
    refused = run(store.acquire([key_rpm, tenant_tpm], "b", T0))
    assert refused.failed == 1 and refused.retry_after == pytest.approx(36.0)  # 60 tokens short at 100/min
    assert refused.remaining == [9, 20]  # what each check has left now (the 429's x-ratelimit-* headers)
    after = run(store.acquire([key_rpm], "c", T0))
    assert after.remaining == [8]  # the refused request took nothing from the key's bucket


def test_a_request_larger_than_the_limit_can_never_pass(store):
    outcome = run(store.acquire([Check(RATE, "k:tpm", 100, 101)], "big", T0))
    assert outcome.failed == 0 and outcome.retry_after == -1


def test_settling_gives_back_or_charges_the_difference(store):
    tpm = Check(RATE, "k:tpm", 1000, 600)
    run(store.acquire([tpm], "r", T0))
    run(store.settle([(tpm, 50 - 600)], "r", T0))  # used 50 of the 600 reserved
    assert run(store.acquire([Check(RATE, "k:tpm", 1000, 0)], "probe", T0)).remaining == [950]
    run(store.settle([(tpm, 2000)], "r", T0))  # used far more than reserved: the bucket goes into debt
    assert run(store.acquire([Check(RATE, "k:tpm", 1000, 1)], "next", T0)).failed == 0


def test_concurrent_requests_cannot_overshoot_a_budget(store):
    budget = Check(BUDGET, "k:month:budget", 100, 10, T0 + 3600)

    async def burst():
        return await asyncio.gather(*(store.acquire([budget], f"r{i}", T0) for i in range(50)))

    outcomes = run(burst())
    assert sum(o.failed is None for o in outcomes) == 10
    refused = next(o for o in outcomes if o.failed is not None)
    assert refused.retry_after == pytest.approx(3600) and refused.remaining == [0]
    # Each used 4 tokens, not 10: settling frees 60, so six more fit.
    run(store.settle([(budget, 4 - 10)] * 10, "x", T0))
    assert sum(run(store.acquire([budget], f"s{i}", T0)).failed is None for i in range(8)) == 6


def test_a_budget_counter_is_seeded_once_from_what_was_metered(store):
    assert not run(store.has("k:budget"))
    run(store.seed("k:budget", 90, T0 + 60))
    run(store.seed("k:budget", 0, T0 + 60))  # another process, later: ignored
    assert run(store.has("k:budget"))
    assert run(store.acquire([Check(BUDGET, "k:budget", 100, 11, T0 + 60)], "r", T0)).failed == 0


def test_stream_slots_are_released_or_expire(store):
    streams = Check(STREAMS, "k:streams", 2, 1, 900)
    assert run(store.acquire([streams], "a", T0)).failed is None
    assert run(store.acquire([streams], "b", T0)).failed is None
    assert run(store.acquire([streams], "c", T0)).failed == 0
    run(store.settle([(streams, 0)], "a", T0))
    assert run(store.acquire([streams], "c", T0)).failed is None
    assert run(store.acquire([streams], "d", T0 + 901)).failed is None  # b and c's leases ran out


def test_a_peek_tells_the_outcome_and_charges_nothing(store):
    """``peek``: what acquiring would answer (the limiter's early refusal, before a request's files are read)."""
    rpm, budget = Check(RATE, "k:rpm", 2, 1), Check(BUDGET, "k:budget", 100, 30, T0 + 60)
    streams = Check(STREAMS, "k:streams", 1, 1, 900)
    for _ in range(3):
        assert run(store.acquire([rpm, budget, streams], "a", T0, peek=True)) == Outcome(None, 0.0, [1, 70, 0])
    assert run(store.acquire([rpm, budget, streams], "a", T0)).failed is None  # nothing was taken by the peeks
    assert run(store.acquire([rpm, budget], "b", T0, peek=True)).remaining == [0, 40]
    assert run(store.acquire([streams], "b", T0, peek=True)).failed == 0  # a's stream holds the one slot
    assert run(store.acquire([rpm, budget], "b", T0)).failed is None
    refused = run(store.acquire([rpm], "c", T0, peek=True))
    assert refused.failed == 0 and refused.retry_after == pytest.approx(30.0)
    run(store.settle([(streams, 0)], "a", T0))
    assert run(store.acquire([streams], "c", T0, peek=True)).failed is None


# Each process waits at a start line until all four are there (a process slow to start, behind another test's
# load, would otherwise most often find the budget already spent), then takes 60 tries at the budget.
HAMMER = """
import asyncio, sys, time
import redis
from hub.api.limit_store import BUDGET, Check, RedisStore
start = sys.argv[2] + ":hammer-start"
client = redis.Redis.from_url(sys.argv[1])
client.incr(start)
deadline = time.monotonic() + 60
while int(client.get(start)) < 4 and time.monotonic() < deadline:
    time.sleep(0.005)
store = RedisStore(sys.argv[1], sys.argv[2])
budget = Check(BUDGET, "shared:budget", 100, 1, {end})
print(sum(asyncio.run(store.acquire([budget], str(i), {now})).failed is None for i in range(60)))
"""


def test_processes_sharing_redis_share_one_limit(redis_url):
    """Four OS processes (as four hub replicas would) race for one budget of 100: exactly 100 get through."""
    prefix = run_prefix()
    code = HAMMER.format(end=T0 + 3600, now=T0)
    workers = [
        subprocess.Popen([sys.executable, "-c", code, redis_url, prefix], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    granted = [int(w.communicate(timeout=120)[0]) for w in workers]
    # 60 tries each: 100 through means at least two processes took part. Not that all four did: on a loaded machine
    # one can be scheduled after the others have spent the budget, start line or not.
    assert sum(granted) == 100, granted


# --- the limiter ------------------------------------------------------------------------------------------

INFO = ModelInfo("chat", "chat", max_sequence_length=2048, max_output_length=512, hidden_size=0, enabled=True)


def context(key: Limits | None = None, tenant: Limits | None = None) -> KeyContext:
    key, tenant = key or Limits(), tenant or Limits()
    return KeyContext(7, "sk-hub-abcdefgh", 3, "acme", frozenset({"chat"}), limits=key, tenant_limits=tenant)


def test_the_worst_case_estimate():
    body = {"messages": [{"role": "user", "content": "é" * 200}], "max_tokens": 50, "n": 2}
    # bytes bound the tokens; the prompt counted once (as usage reports it, OpenAI's and vLLM's), each choice's output
    assert estimate("chat/completions", body, INFO) == Estimate(64 + 8 + 400, 100)
    assert estimate_tokens("chat/completions", {"messages": []}, INFO) == 64 + 512  # the model's output limit
    assert estimate_tokens("completions", {"prompt": "x" * 5000, "max_tokens": 1}, INFO) == 2048 + 1
    # several prompts: each bounded by the context, each generating max_tokens per choice
    body = {"prompt": ["x" * 5000, "abc", [1, 2, 3, 4]], "max_tokens": 7, "n": 3}
    assert estimate("completions", body, INFO) == Estimate(2048 + 3 + 4, 7 * 3 * 3)
    assert estimate("completions", {"prompt": [5, 6, 7]}, INFO) == Estimate(3, 16)  # one prompt of token ids
    # best_of: every candidate is generated and counted, as n of them would be
    assert estimate("completions", {"prompt": [5, 6, 7], "n": 2, "best_of": 5}, INFO) == Estimate(3, 16 * 5)
    assert estimate_tokens("embeddings", {"input": ["abcd", "efgh"]}, INFO) == 8
    assert estimate_tokens("embeddings", {"input": ["x" * 3000, "x" * 3000]}, INFO) == 2 * 2048  # each input
    assert estimate_tokens("embeddings", {"input": [[1, 2], [3]]}, INFO) == 3
    # rerank and score: a (query, document) pair per document with its markers, each bounded by the context
    rerank = {"query": "abc", "documents": ["de", {"text": "x" * 5000}]}
    assert estimate("rerank", rerank, INFO) == Estimate((3 + 2 + 4) + 2048, 0)
    assert estimate_tokens("score", {"text_1": "ab", "text_2": ["c", "d"]}, INFO) == 2 * (2 + 1 + 4)
    assert estimate_tokens("score", {"text_1": ["ab", "abc"], "text_2": ["c", "d"]}, INFO) == (2 + 1 + 4) + (3 + 1 + 4)
    image = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]}
    assert estimate_tokens("chat/completions", {"messages": [image], "max_tokens": 1}, INFO) == 2048 + 1  # the context


def test_tools_and_response_formats_are_reserved():
    """What reaches the prompt besides the messages: each tool's JSON twice (listed, and an example call) plus its
    framing, and a JSON schema with its instruction."""
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}
    size = len(json.dumps(tool))
    plain = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    base = estimate("chat/completions", plain, INFO).prompt
    assert estimate("chat/completions", {**plain, "tools": [tool] * 3}, INFO).prompt == base + 3 * (2 * size + 64)
    assert estimate("chat/completions", {**plain, "tools": [tool], "tool_choice": "none"}, INFO).prompt == base
    schema = {"name": "answer", "schema": {"type": "object", "properties": {"é": {"type": "string"}}}}
    answer = {**plain, "response_format": {"type": "json_schema", "json_schema": schema}}
    schema_bytes = len(json.dumps(schema, ensure_ascii=False).encode())
    assert estimate("chat/completions", answer, INFO).prompt == base + schema_bytes + 32
    assert estimate("chat/completions", {**plain, "response_format": {"type": "json_object"}}, INFO).prompt == base + 32
    assert estimate("chat/completions", {**plain, "response_format": {"type": "text"}}, INFO).prompt == base


def test_reset_text():
    assert [reset_text(s) for s in (0.02, 1.5, 6, 360)] == ["20ms", "1.5s", "6s", "6m0s"]


@pytest.fixture
def limiter(settings):
    settings.REDIS_URL = None  # this process's store: the Redis one is covered above and live
    return Limiter()


def test_no_limits_no_work(limiter):
    assert run(limiter.acquire(context(), "r", 100, stream=True)) is None


def test_refusals_are_openai_errors_with_retry_headers(limiter, monkeypatch):
    monkeypatch.setattr("hub.api.ratelimit.time.time", lambda: T0)  # the buckets refill nothing between the calls
    ctx = context(key=Limits(rpm=1), tenant=Limits(tpm=1000))
    grant = run(limiter.acquire(ctx, "r1", 300, stream=False))
    assert grant.headers["x-ratelimit-limit-requests"] == "1"
    assert grant.headers["x-ratelimit-remaining-requests"] == "0"
    assert grant.headers["x-ratelimit-reset-requests"] == "1m0s"
    assert grant.headers["x-ratelimit-remaining-tokens"] == "700"
    with pytest.raises(errors.RateLimited) as caught:
        run(limiter.acquire(ctx, "r2", 300, stream=False))
    error = caught.value
    assert error.status == 429 and error.type == "requests" and error.code == "rate_limit_exceeded"
    assert "requests per minute (RPM) on key sk-hub-abcdefgh…" in error.message
    assert error.headers()["Retry-After"] == "60"
    # the 429 carries OpenAI's x-ratelimit-* headers too, each limit's level now (the refusal took nothing)
    assert {k: v for k, v in error.headers().items() if k.startswith("x-ratelimit-")} == {
        "x-ratelimit-limit-requests": "1", "x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1m0s",
        "x-ratelimit-limit-tokens": "1000", "x-ratelimit-remaining-tokens": "700", "x-ratelimit-reset-tokens": "18s",
    }  # fmt: skip
    with pytest.raises(errors.RateLimited) as caught:
        run(limiter.acquire(context(tenant=Limits(tpm=100)), "r3", 101, stream=False))
    assert "Request too large" in caught.value.message and caught.value.headers()["x-should-retry"] == "false"
    assert caught.value.headers()["x-ratelimit-remaining-tokens"] == "100"


@pytest.mark.django_db
def test_a_spent_budget_is_insufficient_quota_and_settling_returns_the_unused(limiter):
    ctx = context(tenant=Limits(budget=1000, budget_period="day"))
    grant = run(limiter.acquire(ctx, "r1", 800, stream=False))
    with pytest.raises(errors.QuotaExceeded) as caught:
        run(limiter.acquire(ctx, "r2", 300, stream=False))
    assert caught.value.code == "insufficient_quota" and "tenant acme has a budget of 1,000 tokens per day" in (
        caught.value.message
    )
    assert caught.value.headers() == {"x-should-retry": "false"}  # a budget alone: no rate headers
    run(limiter.settle(grant, 100))  # it used 100
    assert run(limiter.acquire(ctx, "r3", 300, stream=False)) is not None


@pytest.mark.django_db
def test_a_spent_budget_of_a_rate_limited_key_has_the_rate_headers(limiter, monkeypatch):
    monkeypatch.setattr("hub.api.ratelimit.time.time", lambda: T0)
    ctx = context(key=Limits(rpm=10, budget=100, budget_period="month"))
    run(limiter.acquire(ctx, "r1", 80, stream=False))
    with pytest.raises(errors.QuotaExceeded) as caught:
        run(limiter.acquire(ctx, "r2", 30, stream=False))
    assert "20 are left" in caught.value.message
    assert caught.value.headers() == {
        "x-ratelimit-limit-requests": "10", "x-ratelimit-remaining-requests": "9", "x-ratelimit-reset-requests": "6s",
        "x-should-retry": "false",
    }  # fmt: skip


def test_streams_per_key(limiter):
    ctx = context(key=Limits(max_streams=1))
    first = run(limiter.acquire(ctx, "s1", 10, stream=True))
    assert run(limiter.acquire(ctx, "n1", 10, stream=False)) is None  # not a stream: no slot needed
    with pytest.raises(errors.RateLimited) as caught:
        run(limiter.acquire(ctx, "s2", 10, stream=True))
    assert caught.value.code == "concurrent_streams_exceeded"
    assert caught.value.headers()["Retry-After"] == "1"
    run(limiter.settle(first, 5))
    assert run(limiter.acquire(ctx, "s3", 10, stream=True)) is not None


def test_redis_unreachable_fails_closed_or_open_as_configured(settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    limiter = Limiter()
    with pytest.raises(errors.ServiceUnavailable) as caught:
        run(limiter.acquire(context(key=Limits(rpm=5)), "r", 1, stream=False))
    assert "limit store is unreachable" in caught.value.message
    settings.HUB_LIMITS_FAIL_OPEN = True
    assert run(limiter.acquire(context(key=Limits(rpm=5)), "r", 1, stream=False)) is None


def test_a_check_refuses_as_acquiring_would_and_charges_nothing(limiter):
    ctx = context(key=Limits(rpm=1, max_streams=1), tenant=Limits(tpm=1000))
    for _ in range(3):
        assert run(limiter.check(ctx, "r1", 600, True, None)) is None
    assert run(limiter.acquire(ctx, "r1", 600, stream=True)) is not None  # the checks took nothing
    with pytest.raises(errors.RateLimited) as caught:
        run(limiter.check(ctx, "r2", 1, False, None))
    assert caught.value.type == "requests" and "RPM" in caught.value.message
    with pytest.raises(errors.RateLimited) as caught:
        run(limiter.check(context(tenant=Limits(tpm=100)), "r3", 101, False, None))
    assert "Request too large" in caught.value.message


def test_speech_reserves_its_characters_and_the_slowest_audio():
    """Text to speech: the input's characters, and the audio at 8 characters a second (slower than a voice speaks at
    speed 1) with a pause's tokens per 2 characters, scaled by speed (a slower speed, longer audio)."""
    tts = ModelInfo("voice", "tts", max_sequence_length=0, max_output_length=0, hidden_size=0, enabled=True)
    text = "Hello there. How are you today?"  # 31 characters
    assert estimate("audio/speech", {"input": text}, tts) == Estimate(31, 210)  # 31/8 s * 50 + 15.5, rounded up
    assert estimate("audio/speech", {"input": text, "speed": 0.25}, tts).output == 791  # four times the audio
    assert estimate("audio/speech", {"input": text, "speed": 4.0}, tts).output == 64
    assert estimate("audio/speech", {"input": 7}, tts) == Estimate(0, 0)  # refused by validation, reserves nothing
