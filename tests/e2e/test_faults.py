"""Faults on a live hub, each taken away under it and given back: Redis; PostgreSQL (through a proxy this test
cuts, so the rest of the suite keeps its database); an inference service killed in the middle of a stream."""

from __future__ import annotations

import re
import time
from urllib.parse import urlsplit

import httpx
import openai
import pytest
from django.conf import settings
from openai import OpenAI

from accounts import services
from accounts.limits import Limits
from accounts.models import UsageRecord
from hub.inference_client import model_cards
from tests.support.hub import database_url_for_subprocess, start_hub, stop_hub
from tests.support.inference import model_flags, start_service
from tests.support.live import CHAT, EMBED, rows
from tests.support.processes import free_port, redis_server
from tests.support.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.real_model, pytest.mark.live, pytest.mark.django_db(transaction=True)]


def test_redis_down_limited_keys_fail_closed_others_keep_working(hub):
    """The documented choice (HUB_LIMITS_FAIL_OPEN unset): with the limit store gone, a request through a
    limited key gets 503 with a clear message (a budget is never overshot); keys without limits keep working,
    verified from the database; when Redis is back, everything works again."""
    port = free_port()
    redis = redis_server(port)
    env = {"HUB_DATABASE_URL": database_url_for_subprocess(), "HUB_REDIS_URL": f"redis://127.0.0.1:{port}/0"}
    process, url = start_hub(env, "--no-bootstrap")
    try:
        limited = services.issue_key(hub.tenant, name="limited")
        services.set_limits(limited.key, Limits(rpm=1000))
        free = services.issue_key(hub.tenant, name="free")
        clients = {name: OpenAI(base_url=f"{url}/v1", api_key=k.secret, max_retries=0)
                   for name, k in (("limited", limited), ("free", free))}  # fmt: skip
        for client in clients.values():
            assert client.embeddings.create(model=EMBED, input="before").data

        redis.terminate()
        redis.wait(timeout=10)
        assert clients["free"].embeddings.create(model=EMBED, input="during").data
        with pytest.raises(openai.InternalServerError) as caught:
            clients["limited"].embeddings.create(model=EMBED, input="during")
        assert caught.value.status_code == 503
        error = caught.value.response.json()["error"]
        assert error["code"] == "service_unavailable" and "limit store is unreachable" in error["message"]

        redis = redis_server(port)
        assert clients["limited"].embeddings.create(model=EMBED, input="after").data
        assert clients["free"].embeddings.create(model=EMBED, input="after").data
    finally:
        output = stop_hub(process)
        redis.kill()
    assert "Traceback" not in output, output
    assert "rate limiter unavailable" in output and "auth cache unreachable" in output


def test_postgres_down_answers_503_spools_usage_and_replays_it(hub, tmp_path):
    """With its database gone, the hub stays up: a key it verified before (cached in Redis) keeps being served
    and its usage is spooled on the hub's disk, a stream that was running finishes and is spooled too, and what
    needs the database (a key never seen, the model list, the console's sign-in) gets 503 with a clear message.
    When the database is back, the spooled rows are written, once, with the tokens the clients were given."""
    db = settings.DATABASES["default"]
    if not db["ENGINE"].endswith("postgresql"):
        pytest.fail("this test cuts the hub's PostgreSQL: run the suite on it, as `make test` does (HUB_DATABASE_URL)")
    proxy = TcpProxy(db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432))
    spool_dir = tmp_path / "spool"
    env = {
        "HUB_DATABASE_URL": f"postgres://{db['USER']}@127.0.0.1:{proxy.port}/{db['NAME']}",
        "HUB_SPOOL_DIR": str(spool_dir), "HUB_SPOOL_RETRY_SECONDS": "0.5", "HUB_DB_POOL_TIMEOUT": "1",
    }  # fmt: skip
    process, url = start_hub(env, "--no-bootstrap")
    cold = services.issue_key(hub.tenant, name="cold")
    ids = ["req_pgdown_stream", "req_pgdown_embed"]
    try:
        client = OpenAI(base_url=f"{url}/v1", api_key=hub.everything.secret, max_retries=0)
        cold_client = OpenAI(base_url=f"{url}/v1", api_key=cold.secret, max_retries=0)
        assert client.embeddings.create(model=EMBED, input="before").data  # the key and deployments are cached
        stream = client.chat.completions.create(
            model=CHAT, messages=[{"role": "user", "content": "Count to twenty."}], max_tokens=24, stream=True,
            stream_options={"include_usage": True}, extra_body={"ignore_eos": True},
            extra_headers={"x-request-id": ids[0]},
        )  # fmt: skip
        chunks = iter(stream)
        assert next(chunks).choices
        browser = httpx.Client(base_url=url, timeout=30)
        login = browser.get("/console/login/")  # needs no database: the form and its CSRF token
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text).group(1)
        proxy.cut()
        streamed = list(chunks)[-1].usage  # the stream goes on to its end
        assert streamed.completion_tokens == 24
        during = client.embeddings.with_raw_response.create(
            model=EMBED, input="during the outage", extra_headers={"x-request-id": ids[1]}
        )
        assert during.headers["x-request-id"] == ids[1]
        embedded = during.parse().usage.prompt_tokens
        for call in (lambda: cold_client.embeddings.create(model=EMBED, input="x"), client.models.list):
            with pytest.raises(openai.InternalServerError) as caught:  # a key never verified; the catalog
                call()
            error = caught.value.response.json()["error"]
            assert caught.value.status_code == 503 and error["code"] == "service_unavailable", error
            assert "database is unreachable" in error["message"]
        # an operator signing in to the console: a 503 page saying why, not a 500
        page = browser.post("/console/login/", data={"username": "op", "password": "pw", "csrfmiddlewaretoken": token})
        assert page.status_code == 503 and page.headers["content-type"].startswith("text/html"), page.text[:500]
        assert page.headers["retry-after"] == "30" and "database is unreachable" in page.text
        browser.close()
        deadline = time.monotonic() + 10  # a row is written just after its answer is sent
        while _spooled(spool_dir) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _spooled(spool_dir) == 2  # on the hub's disk, not lost
        assert not UsageRecord.objects.filter(request_id__in=ids).exists()

        proxy.restore()
        deadline = time.monotonic() + 30
        while UsageRecord.objects.filter(request_id__in=ids).count() < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        written = {r.request_id: r for r in UsageRecord.objects.filter(request_id__in=ids)}
        assert len(written) == 2, "the spooled rows were not replayed within 30 s"
        stream_row, embed_row = written[ids[0]], written[ids[1]]
        assert (stream_row.prompt_tokens, stream_row.completion_tokens) == (streamed.prompt_tokens, 24)
        assert stream_row.streamed and stream_row.status_code == 200
        assert (embed_row.prompt_tokens, embed_row.route) == (embedded, "embeddings")
        assert UsageRecord.objects.filter(request_id__in=ids).count() == 2
        assert not list(spool_dir.iterdir())
        assert cold_client.embeddings.create(model=EMBED, input="after").data
        assert client.models.list().data
    finally:
        output = stop_hub(process)
        proxy.close()
    assert "Traceback" not in output, output
    assert "spooled to" in output and "replayed 2 spooled usage rows" in output, output


def _spooled(directory) -> int:
    return sum(path.read_text().count("\n") for path in directory.glob("usage*"))


FAILOVER = "failover-chat"


def _running(service) -> int:
    return httpx.get(f"{service.url}/health", timeout=5).json()["models"][FAILOVER]["running"]


def test_inference_killed_mid_stream_errors_meters_fails_over_and_recovers(hub):
    """Two deployments of one model; the one serving a stream is killed (SIGKILL) in its middle. The client gets
    an error event; the tokens it was sent are metered; the next request goes to the other deployment; with
    both gone the hub answers 503; one started again on its address serves again."""
    flags = model_flags(f"{FAILOVER}=packaged:smollm2:chat")
    started, victim = [start_service(*flags), start_service(*flags)], None
    try:
        for service in started:
            services.sync_deployment(f"{service.url}/v1", model_cards(f"{service.url}/v1"))
        services.grant_models(hub.tenant, [FAILOVER])
        client = hub(services.issue_key(hub.tenant, name="failover"))
        ask = {"model": FAILOVER, "messages": [{"role": "user", "content": "Tell me a story."}]}

        stream = client.chat.completions.create(
            **ask, max_tokens=400, stream=True, extra_body={"ignore_eos": True},
            stream_options={"include_usage": True, "continuous_usage_stats": True},
            extra_headers={"x-request-id": "req_killed_mid_stream"},
        )  # fmt: skip
        chunks, usage, texts = iter(stream), None, 0
        for chunk in chunks:
            usage = chunk.usage or usage
            texts += bool(chunk.choices and chunk.choices[0].delta.content)
            if texts >= 5:
                break
        victim, survivor = sorted(started, key=_running, reverse=True)
        assert _running(victim) == 1 and _running(survivor) == 0
        victim.process.kill()
        victim.process.wait(timeout=30)
        with pytest.raises(openai.APIError) as caught:
            for chunk in chunks:
                usage = chunk.usage or usage
        assert "failed while streaming" in str(caught.value)
        [row] = rows(request_id="req_killed_mid_stream")
        assert row.status_code == 502 and row.streamed and not row.aborted
        assert (row.prompt_tokens, row.completion_tokens) == (usage.prompt_tokens, usage.completion_tokens)
        assert 5 <= row.completion_tokens < 400

        assert client.chat.completions.create(**ask, max_tokens=4).choices[0].message  # the other deployment
        survivor.process.terminate()
        survivor.process.wait(timeout=60)
        with pytest.raises(openai.InternalServerError) as caught:
            client.chat.completions.create(**ask, max_tokens=4)
        error = caught.value.response.json()["error"]
        assert caught.value.status_code == 503 and error["code"] == "service_unavailable", error
        assert f"No deployment of the model '{FAILOVER}' is reachable" in error["message"]

        started.append(start_service(*flags, port=urlsplit(victim.url).port))
        assert client.chat.completions.create(**ask, max_tokens=4).choices[0].message
        assert UsageRecord.objects.filter(model=FAILOVER, status_code=200).count() >= 1
    finally:
        for service in started:
            if service.process.poll() is None:
                service.process.terminate()
                service.process.wait(timeout=60)
    for service in started:
        if service is not victim:  # the killed one was cut off mid-line, whatever it was writing
            assert "Traceback" not in service.output(), service.output()
