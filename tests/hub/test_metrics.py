"""The hub's Prometheus metrics (``hub/metrics.py``): bounded route labels, the middleware's counts (in flight while
the app runs, the status sent, a 500 for an app that fails before answering), what the gateway meters per model,
``/metrics`` behind ``HUB_METRICS_TOKEN``, and several processes summed in multiprocess mode."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from hub import metrics
from tests.support import ROOT


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize(
    ("path", "route"),
    [
        ("/v1/chat/completions", "chat/completions"),
        ("/v2/chat/completions/chatcmpl-123/messages", "chat/completions"),
        ("/v1/files/file-abc/content", "files"),
        ("/vision/audio/transcriptions", "audio/transcriptions"),
        ("/v1/vector_stores/vs_1/files/file-2", "vector_stores"),
        ("/v1/responses/resp_1/input_items", "responses"),
        ("/v1/responses/input_tokens", "responses/input_tokens"),  # a route of its own (the gateway's)
        ("/v1/models/org/some-model", "models"),
        ("/v1/webhook_event_types", "webhook_event_types"),
        ("/static/console.css", "static"),
        ("/v1/embeddings", "embeddings"),
        ("/v1/no-such-route/x", "other"),
        ("/v1", "other"),
        ("/console/t/acme/usage", "console"),
        ("/metrics", "metrics"),
        ("/wp-login.php", "other"),
        ("/", "/"),
    ],
)
def test_a_route_label_names_the_resource_never_an_id(path, route):
    """The resources are read from the URL confs and the gateway's routes: none is listed by hand."""
    assert metrics.route_of(path) == route


def call(app, path: str = "/v1/files", method: str = "GET") -> list[dict]:
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    asyncio.run(metrics.MetricsMiddleware(app)({"type": "http", "path": path, "method": method}, receive, send))
    return sent


def test_the_middleware_counts_in_flight_then_the_status_and_the_time():
    seen = []

    async def app(scope, receive, send):
        seen.append(value("hub_http_requests_in_flight"))
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    counted = ("hub_http_requests_total", {"route": "files", "method": "GET", "status": "404"})
    timed = ("hub_http_request_duration_seconds_count", {"route": "files"})
    before = (value(counted[0], **counted[1]), value(timed[0], **timed[1]), value("hub_http_requests_in_flight"))
    assert [m["type"] for m in call(app)] == ["http.response.start", "http.response.body"]
    assert seen == [before[2] + 1]
    assert value(counted[0], **counted[1]) == before[0] + 1 and value(timed[0], **timed[1]) == before[1] + 1
    assert value("hub_http_requests_in_flight") == before[2]


def test_a_method_of_the_clients_own_is_other():
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 405, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    before = value("hub_http_requests_total", route="files", method="other", status="405")
    call(app, "/v1/files", "BREW")
    assert value("hub_http_requests_total", route="files", method="other", status="405") == before + 1
    assert value("hub_http_requests_total", route="files", method="BREW", status="405") == 0


def test_a_client_that_leaves_before_an_answer_is_a_499():
    async def app(scope, receive, send):
        while (await receive())["type"] != "http.disconnect":
            pass

    async def leaving():
        return {"type": "http.disconnect"}

    before = value("hub_http_requests_total", route="embeddings", method="POST", status="499")
    scope = {"type": "http", "path": "/v1/embeddings", "method": "POST"}
    asyncio.run(metrics.MetricsMiddleware(app)(scope, leaving, None))
    assert value("hub_http_requests_total", route="embeddings", method="POST", status="499") == before + 1


def test_an_app_that_fails_before_answering_is_a_500_and_leaves_flight():
    async def app(scope, receive, send):
        raise RuntimeError("broken")

    before = value("hub_http_requests_total", route="batches", method="POST", status="500")
    flying = value("hub_http_requests_in_flight")
    with pytest.raises(RuntimeError):
        call(app, "/v1/batches", "POST")
    assert value("hub_http_requests_total", route="batches", method="POST", status="500") == before + 1
    assert value("hub_http_requests_in_flight") == flying


def test_what_the_gateway_meters_is_counted_per_model():
    labels = {"model": "m-metrics", "route": "chat/completions", "status": "200"}
    metrics.metered("m-metrics", "chat/completions", 200, prompt=12, completion=5, cached=8, ttft_seconds=0.2)
    metrics.metered("m-metrics", "chat/completions", 200, prompt=3, completion=0, cached=0, ttft_seconds=None)
    assert value("hub_model_requests_total", **labels) == 2
    assert [value("hub_tokens_total", model="m-metrics", kind=k) for k in ("prompt", "completion", "cached")] == [
        15, 5, 8,
    ]  # fmt: skip
    assert value("hub_time_to_first_token_seconds_count", model="m-metrics") == 1
    assert value("hub_time_to_first_token_seconds_bucket", model="m-metrics", le="0.25") == 1


def test_a_tenant_is_named_only_where_the_operator_asks(settings):
    """``HUB_METRICS_TENANTS``: off (the default), a tenant's requests and tokens are counted per model alone; on, by
    its slug too, each tenant apart; a request without a tenant (none given) only per model."""
    settings.HUB_METRICS_TENANTS = False
    metrics.metered("m-tenants", "embeddings", 200, prompt=7, completion=0, cached=0, ttft_seconds=None, tenant="acme")
    assert value("hub_tenant_model_requests_total", tenant="acme", model="m-tenants", route="embeddings",
                 status="200") == 0  # fmt: skip
    assert value("hub_tenant_tokens_total", tenant="acme", model="m-tenants", kind="prompt") == 0
    settings.HUB_METRICS_TENANTS = True
    for tenant, prompt in (("acme", 4), ("acme", 6), ("globex", 9), (None, 100)):
        metrics.metered("m-tenants", "embeddings", 200, prompt=prompt, completion=0, cached=0, ttft_seconds=None,
                        tenant=tenant)  # fmt: skip
    per_tenant = {t: (value("hub_tenant_model_requests_total", tenant=t, model="m-tenants", route="embeddings",
                            status="200"), value("hub_tenant_tokens_total", tenant=t, model="m-tenants", kind="prompt"))
                  for t in ("acme", "globex")}  # fmt: skip
    assert per_tenant == {"acme": (2, 10), "globex": (1, 9)}
    assert value("hub_tenant_tokens_total", tenant="acme", model="m-tenants", kind="completion") == 0  # none counted
    assert value("hub_model_requests_total", model="m-tenants", route="embeddings", status="200") == 5
    assert value("hub_tokens_total", model="m-tenants", kind="prompt") == 126


def backlog(text: str) -> dict[tuple[str, str], float]:
    return {(s.labels["kind"], s.labels["state"]): s.value for family in text_string_to_metric_families(text)
            if family.name == "hub_backlog" for s in family.samples}  # fmt: skip


@pytest.mark.django_db
def test_the_backlog_is_counted_in_the_database_at_each_scrape(client, acme):
    from datetime import timedelta

    from django.utils import timezone

    from accounts.models import Batch, OpenRequest

    now = timezone.now()
    for i, status in enumerate(("in_progress", "in_progress", "validating", "completed")):
        Batch.objects.create(id=f"batch_{i}", tenant=acme.tenant, endpoint="/v1/chat/completions", status=status,
                             input_file_id="file-x", created_at=now, expires_at=now + timedelta(1))  # fmt: skip
    OpenRequest.objects.create(usage_id="u1", request_id="req_1", tenant=acme.tenant, model="m", route="embeddings",
                               owner="hub-1", lease_until=now)  # fmt: skip
    counts = backlog(client.get("/metrics").content.decode())
    assert counts[("batches", "in_progress")] == 2 and counts[("batches", "validating")] == 1
    assert counts[("batches", "finalizing")] == 0 and ("batches", "completed") not in counts  # ended: not a backlog
    assert counts[("background_responses", "queued")] == 0 and counts[("model_requests", "open")] == 1
    Batch.objects.filter(status="validating").update(status="in_progress")
    assert backlog(client.get("/metrics").content.decode())[("batches", "in_progress")] == 3


@pytest.mark.django_db
def test_metrics_are_prometheus_text_and_behind_the_token_where_set(client, settings):
    settings.HUB_METRICS_TOKEN = None
    response = client.get("/metrics")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain; version=0.0.4")
    names = {family.name for family in text_string_to_metric_families(response.content.decode())}
    assert {
        "hub_http_requests",
        "hub_http_requests_in_flight",
        "hub_tokens",
        "hub_model_requests",
        "hub_backlog",
    } <= names
    settings.HUB_METRICS_TOKEN = "scrape-secret"
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "scrape-secret"}):
        refused = client.get("/metrics", headers=headers)
        assert refused.status_code == 401 and refused["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert client.get("/metrics", headers={"Authorization": "Bearer scrape-secret"}).status_code == 200


WORKER = """
import os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
import django
django.setup()
from hub import metrics
metrics.metered("m-multi", "embeddings", 200, prompt=int(sys.argv[1]), completion=0, cached=0, ttft_seconds=None)
if sys.argv[2] == "killed":  # a worker killed mid-request: its request never leaves flight
    metrics.IN_FLIGHT.inc()
    os._exit(0)
if sys.argv[2] == "scrape":
    from django.test import RequestFactory
    print(metrics.view(RequestFactory().get("/metrics")).content.decode())
"""


def test_the_processes_of_a_multi_worker_hub_are_summed(tmp_path):
    """``serve --workers N`` points every worker at one directory (PROMETHEUS_MULTIPROC_DIR): a scrape of any of them
    answers the sum, the processes that ended included; a process killed mid-request has no request in flight."""
    env = {**os.environ, metrics.MULTIPROC_ENV: str(tmp_path)}
    script = textwrap.dedent(WORKER)
    subprocess.run([sys.executable, "-c", script, "7", "killed"], env=env, cwd=ROOT, check=True, timeout=120)
    assert list(tmp_path.glob("gauge_livesum_*.db"))  # what it left
    scraped = subprocess.run([sys.executable, "-c", script, "5", "scrape"], env=env, cwd=ROOT, check=True,
                             timeout=120, capture_output=True, text=True).stdout  # fmt: skip
    samples = {(s.name, s.labels.get("model"), s.labels.get("kind")): s.value
               for family in text_string_to_metric_families(scraped) for s in family.samples}  # fmt: skip
    assert samples[("hub_tokens_total", "m-multi", "prompt")] == 12
    assert samples[("hub_model_requests_total", "m-multi", None)] == 2
    assert samples[("hub_http_requests_in_flight", None, None)] == 0  # the killed worker's request dropped
    assert len(list(tmp_path.glob("gauge_livesum_*.db"))) == 1  # the scraper's own
