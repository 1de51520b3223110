"""The hub's processes as an operator runs them: ``manage.py serve --workers N`` (uvicorn's workers, all serving
one port, limits shared through Redis), refused without Redis; ``/health`` (liveness) and ``/ready`` (readiness:
the database migrated, Redis, the cache, the catalog) with each dependency's state."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from accounts import services
from accounts.limits import Limits
from accounts.models import ModelKind
from tests.support.buckets import most_admitted, timed
from tests.support.hub import database_url_for_subprocess, start_hub, stop_hub
from tests.support.live import FAKE_CHAT, rows, sample, scrape
from tests.support.processes import ROOT, free_port

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _workers(pid: int, count: int, timeout: float = 30) -> list[int]:
    """uvicorn's worker processes under the hub's supervisor (multiprocessing's helpers aside)."""
    deadline = time.monotonic() + timeout
    while True:
        workers = [c for c in _children(pid) if "multiprocessing.spawn" in Path(f"/proc/{c}/cmdline").read_text()
                   and "resource_tracker" not in Path(f"/proc/{c}/cmdline").read_text()]  # fmt: skip
        if len(workers) >= count or time.monotonic() > deadline:
            return workers
        time.sleep(0.2)


def _key_on_the_fake(fake):
    """A key of tenant acme, entitled to ``fake-chat`` served by the fake of our service."""
    services.register_model(FAKE_CHAT, ModelKind.CHAT, max_sequence_length=4096, max_output_length=256,
                            deployment_url=fake.url)  # fmt: skip
    tenant = services.create_tenant("acme", "Acme")
    services.grant_models(tenant, [FAKE_CHAT])
    return services.issue_key(tenant, name="k")


def test_two_workers_serve_one_port_and_share_the_limits(live_hub, fake):
    issued = _key_on_the_fake(fake)
    services.set_limits(issued.key, Limits(rpm=10))
    env = {"HUB_DATABASE_URL": database_url_for_subprocess()}
    process, url = start_hub(env, "--no-bootstrap", "--workers", "2")
    try:
        assert len(_workers(process.pid, 2)) == 2
        assert httpx.get(f"{url}/ready", timeout=10).status_code == 200
        headers = {"authorization": f"Bearer {issued.secret}"}

        body = {"model": FAKE_CHAT, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}

        def call(_: int) -> int:  # new connections: the kernel spreads them over both workers' accepts
            with httpx.Client(timeout=30) as client:
                return client.post(f"{url}/v1/chat/completions", headers=headers, json=body).status_code

        with ThreadPoolExecutor(8) as pool:
            statuses, elapsed = timed(lambda: list(pool.map(call, range(16))))
        # the per-minute limit held across both processes: 10 through (and one more for each 6 s the burst took,
        # the bucket's refill), the rest refused
        through = statuses.count(200)
        assert set(statuses) == {200, 429} and 10 <= through <= most_admitted(10, elapsed), (elapsed, statuses)
        assert len(rows(through, route="chat/completions")) == through  # each metered once
        # either worker answers /metrics with both workers' counts
        http = {"route": "chat/completions", "method": "POST"}
        deadline = time.monotonic() + 10  # counted once its usage row is written, just after its answer
        while (
            sum(sample(after := scrape(url), "hub_http_requests_total", **http, status=s) for s in ("200", "429")) < 16
        ):
            assert time.monotonic() < deadline, after
            time.sleep(0.05)
        assert sample(after, "hub_http_requests_total", **http, status="200") == through
        assert sample(after, "hub_model_requests_total", model=FAKE_CHAT, route="chat/completions", status="200") == (
            through
        )
    finally:
        output = stop_hub(process)
    assert "Traceback" not in output, output


def test_json_logs_are_one_object_a_line_the_access_log_included(live_hub):
    """``HUB_LOG_FORMAT=json``: every line the hub writes is one JSON object (uvicorn's records, its access log with
    the request's fields apart, the serve banner, the hub's own), for a log pipeline to read."""
    env = {"HUB_DATABASE_URL": database_url_for_subprocess(), "HUB_LOG_FORMAT": "json", "HUB_LOG_LEVEL": "INFO"}
    process, url = start_hub(env, "--no-bootstrap")
    try:
        assert httpx.get(f"{url}/health", timeout=10).status_code == 200
        assert httpx.get(f"{url}/v1/models", timeout=10).status_code == 401
    finally:
        output = stop_hub(process)
    records = [json.loads(line) for line in output.splitlines() if line.strip()]  # each line parses, or this fails
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records), records
    access = {(r["method"], r["path"], r["status"]) for r in records if r["logger"] == "uvicorn.access"}
    assert {("GET", "/health", 200), ("GET", "/v1/models", 401)} <= access
    assert any(r["logger"] == "uvicorn.error" and "Uvicorn running" in r["message"] for r in records)
    [banner] = [r for r in records if r["logger"] == "hub.management.commands.serve"]
    assert banner["message"].startswith("LLM Hub: ") and "base_url" in banner["message"]


def test_several_workers_need_redis():
    env = {k: v for k, v in os.environ.items() if k != "HUB_REDIS_URL"}
    env.update(HUB_DATABASE_URL=database_url_for_subprocess(), HUB_PORT=str(free_port()), HUB_HOST="127.0.0.1")
    result = subprocess.run([sys.executable, "manage.py", "serve", "--no-bootstrap", "--workers", "2"], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode != 0
    assert "--workers > 1 needs HUB_REDIS_URL" in result.stderr


def test_readiness_names_what_is_down(live_hub):
    # liveness needs nothing; readiness fails, naming Redis, while Redis is unreachable
    env = {"HUB_DATABASE_URL": database_url_for_subprocess(), "HUB_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
           "HUB_CELERY_EAGER": "true"}  # fmt: skip
    process, url = start_hub(env, "--no-bootstrap")
    try:
        assert httpx.get(f"{url}/health").json() == {"status": "ok"}
        ready = httpx.get(f"{url}/ready", timeout=30)
        assert ready.status_code == 503
        body = ready.json()
        assert body["status"] == "unavailable" and body["redis"].startswith("error") and body["database"] == "ok"
    finally:
        stop_hub(process)


def test_a_stopping_hub_ends_its_streams_with_an_error_event_and_meters_them(live_hub, fake):
    issued = _key_on_the_fake(fake)
    fake.chunk_delay, fake.default_tokens = 0.1, 200  # a 20-second stream
    env = {"HUB_DATABASE_URL": database_url_for_subprocess(), "HUB_SHUTDOWN_GRACE_SECONDS": "1"}
    process, url = start_hub(env, "--no-bootstrap")
    body = {"model": FAKE_CHAT, "messages": [{"role": "user", "content": "Hi"}], "stream": True,
            "stream_options": {"include_usage": True, "continuous_usage_stats": True}}  # fmt: skip
    events, started = [], time.monotonic()
    try:
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=60,
                          headers={"authorization": f"Bearer {issued.secret}"}) as response:  # fmt: skip
            request_id = response.headers["x-request-id"]
            for line in response.iter_lines():
                if line.startswith("data: "):
                    events.append(line[6:])
                    if len(events) == 5:
                        process.terminate()  # SIGTERM, as Kubernetes and `docker stop` send it
    finally:
        output = stop_hub(process)
        fake.chunk_delay, fake.default_tokens = 0.0, 64
    *chunks, last = [json.loads(e) for e in events if e != "[DONE]"]
    assert last["error"]["code"] == "service_unavailable" and "shutting down" in last["error"]["message"]
    assert "[DONE]" not in events and time.monotonic() - started < 15  # ended at the grace period, not the answer
    [row] = rows(request_id=request_id)
    assert row.status_code == 503 and row.completion_tokens == chunks[-1]["usage"]["completion_tokens"] > 0
    assert "Traceback" not in output, output
