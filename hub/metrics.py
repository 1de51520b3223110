"""The hub's Prometheus metrics (``GET /metrics``): HTTP requests by route, method and status, in flight and their
durations (``MetricsMiddleware``, in front of everything), per model what the gateway metered: its requests by
route and status, tokens by kind and time to first token (``metered``, from each usage row as it is written), and the
work waiting or under way, counted in the database at each scrape (``Backlog``).

Labels stay bounded: a route is the API resource (``chat/completions``, ``files``, ``vector_stores``; never an id),
a model is a catalog id, and no key is named (the usage API and the console break usage down by those). A tenant is
named only where the operator asks for it (``HUB_METRICS_TENANTS``): ``hub_tenant_model_requests`` and
``hub_tenant_tokens`` then count the metered requests and tokens again by tenant slug, as LiteLLM's proxy does by
team, for a dashboard or a chargeback per tenant; a series per tenant and model (and status or kind).

``hub serve --workers N`` runs N processes: each writes its values to ``PROMETHEUS_MULTIPROC_DIR`` (a directory the
serve command makes), and any of them answers ``/metrics`` with the sum (prometheus_client's multiprocess mode: a
worker uvicorn replaced keeps its counts; the requests in flight of one killed mid-request are dropped at the next
scrape, ``_forget_dead``). One process keeps them in memory. ``HUB_METRICS_TOKEN``, when set, is
the bearer token a scraper must send."""

from __future__ import annotations

import functools
import glob
import logging
import os
import re
import secrets
import time

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess as _multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector

from hub.api.paths import BASE_PATHS

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

HTTP_REQUESTS = Counter("hub_http_requests", "HTTP requests answered, by route, method and status",
                        ["route", "method", "status"])  # fmt: skip
IN_FLIGHT = Gauge("hub_http_requests_in_flight", "HTTP requests being served (their usage rows included)",
                  multiprocess_mode="livesum")  # fmt: skip
DURATION = Histogram("hub_http_request_duration_seconds", "From a request's arrival to its last byte and usage row",
                     ["route"], buckets=_LATENCY_BUCKETS)  # fmt: skip
MODEL_REQUESTS = Counter("hub_model_requests", "Requests that reached a model, metered, by model, route and status",
                         ["model", "route", "status"])  # fmt: skip
TOKENS = Counter("hub_tokens", "Tokens metered, by model and kind (prompt, completion, cached: of the prompt's)",
                 ["model", "kind"])  # fmt: skip
TENANT_REQUESTS = Counter("hub_tenant_model_requests", "Requests that reached a model, metered, by tenant (its slug), "
                          "model, route and status (with HUB_METRICS_TENANTS)",
                          ["tenant", "model", "route", "status"])  # fmt: skip
TENANT_TOKENS = Counter("hub_tenant_tokens", "Tokens metered, by tenant (its slug), model and kind (with "
                        "HUB_METRICS_TENANTS)", ["tenant", "model", "kind"])  # fmt: skip
FALLBACKS = Counter("hub_model_fallbacks", "Requests a model could not answer that went on to its next fallback, "
                    "by model, fallback and reason (unavailable, busy, context)",
                    ["model", "fallback", "reason"])  # fmt: skip
TTFT = Histogram("hub_time_to_first_token_seconds", "Time to a stream's first token (a whole answer's arrival), as "
                 "the usage rows record it, by model", ["model"], buckets=_LATENCY_BUCKETS)  # fmt: skip


_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}  # any other a client sends: "other"


def _head(pattern) -> tuple[str, ...]:
    """A URL pattern's literal head as path segments (``files/<str:file_id>/content`` -> ``("files",)``; a regular
    expression's: none)."""
    head = str(pattern.pattern).split("<", 1)[0].strip("/")
    return tuple(head.split("/")) if re.fullmatch(r"[\w.-]+(/[\w.-]+)*", head) else ()


@functools.cache
def _known() -> tuple[frozenset[tuple[str, ...]], frozenset[str], int]:
    """(the API's resources as segments, the pages' first segments, the longest resource's length): from the URL
    confs and the gateway's routes, at the first request (the URL conf needs Django set up), so that a route added
    there is labelled as itself."""
    from hub.api.gateway import ROUTES
    from hub.api.urls import api_patterns
    from hub.urls import urlpatterns

    api = {_head(p) for p in api_patterns} | {tuple(route.split("/")) for route in ROUTES}
    pages = {head[0] for p in urlpatterns if (head := _head(p))} | {settings.STATIC_URL.strip("/")}
    api.discard(())
    return frozenset(api), frozenset(pages), max(map(len, api))


def route_of(path: str) -> str:
    """A bounded label for a path: the API resource it names, without ids (``/v1/files/file-1/content`` ->
    ``files``), else the page's first segment (``console``, ``admin``, ``health``); anything else is ``other``."""
    parts = [p for p in path.split("/") if p]
    if not parts:
        return "/"
    api, pages, longest = _known()
    if parts[0] not in BASE_PATHS:
        return parts[0] if parts[0] in pages else "other"
    rest = tuple(parts[1 : 1 + longest])
    for n in range(len(rest), 0, -1):  # the longest resource the path starts with
        if rest[:n] in api:
            return "/".join(rest[:n])
    return "other"


def metered(model: str, route: str, status: int, prompt: int, completion: int, cached: int,
            ttft_seconds: float | None, tenant: str | None = None) -> None:  # fmt: skip
    """One usage row's figures, counted as the gateway writes it (just before: a scrape that sees the row's
    effects in the database sees them here too); by ``tenant`` (a slug) too where ``HUB_METRICS_TENANTS``."""
    by_tenant = tenant is not None and settings.HUB_METRICS_TENANTS
    MODEL_REQUESTS.labels(model, route, str(status)).inc()
    if by_tenant:
        TENANT_REQUESTS.labels(tenant, model, route, str(status)).inc()
    for kind, count in (("prompt", prompt), ("completion", completion), ("cached", cached)):
        if count:
            TOKENS.labels(model, kind).inc(count)
            if by_tenant:
                TENANT_TOKENS.labels(tenant, model, kind).inc(count)
    if ttft_seconds is not None:
        TTFT.labels(model).observe(ttft_seconds)


class MetricsMiddleware:
    """ASGI: each HTTP request counted in flight until the app returns (a gateway request returns once its usage row
    is written), then by its route, method and status (499: the client left before an answer began), and timed."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = 500  # what a request that ends without a response start is (uvicorn answers 500)
        started = False

        async def watched(message):
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
            await send(message)

        async def heard():
            nonlocal status
            message = await receive()
            if message["type"] == "http.disconnect" and not started:
                status = 499  # the client left before an answer began (as its usage row says, and nginx)
            return message

        start = time.monotonic()
        IN_FLIGHT.inc()
        try:
            await self.app(scope, heard, watched)
        finally:
            IN_FLIGHT.dec()
            route = route_of(scope.get("path", ""))
            method = scope.get("method", "")
            HTTP_REQUESTS.labels(route, method if method in _METHODS else "other", str(status)).inc()
            DURATION.labels(route).observe(time.monotonic() - start)


# Work waiting or under way, counted in the database at each scrape: (kind, model, its state field, the states)
_BACKLOG = (
    ("batches", "accounts.Batch", "status", ("validating", "in_progress", "finalizing", "cancelling")),
    ("background_responses", "accounts.BackgroundResponse", "state", ("queued", "in_progress")),
    ("vector_store_files", "accounts.VectorStoreFile", "status", ("in_progress",)),
    ("webhook_deliveries", "accounts.WebhookDelivery", "state", ("pending",)),
)


class Backlog(Collector):
    """``hub_backlog{kind, state}``: the batches, background responses, vector store files and webhook deliveries
    waiting or under way, and the requests on their way to a model (``model_requests``, ``open``: their open rows),
    hub-wide. Every hub process reports the same counts (aggregate with ``max``, not ``sum``). A database that does
    not answer leaves the family out and the rest of the scrape answered."""

    def collect(self):
        from django.apps import apps
        from django.db.models import Count

        family = GaugeMetricFamily("hub_backlog", "Work waiting or under way, hub-wide (the database's counts: every "
                                   "hub process reports the same)", labels=["kind", "state"])  # fmt: skip
        try:
            for kind, model, field, states in _BACKLOG:
                rows = apps.get_model(model).objects.filter(**{f"{field}__in": states}).order_by().values(field)
                counts = dict(rows.annotate(n=Count("pk")).values_list(field, "n"))  # one GROUP BY
                for state in states:
                    family.add_metric([kind, state], counts.get(state, 0))
            pending = apps.get_model("accounts.OpenRequest").objects.filter(record__isnull=True).count()
            family.add_metric(["model_requests", "open"], pending)
        except Exception as exc:  # noqa: BLE001 - the database down (or not migrated): the scrape answers without it
            log.warning("metrics: the backlog could not be counted: %s", exc)
            return
        yield family


_BACKLOG_REGISTRY = CollectorRegistry()
_BACKLOG_REGISTRY.register(Backlog())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # no signal sent: only whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's: alive
        pass
    return True


def _forget_dead(directory: str) -> None:
    """The live gauges (requests in flight) of the workers that are gone: a worker killed mid-request never took its
    requests out of flight. gunicorn's ``child_exit`` hook would call ``mark_process_dead``; uvicorn's supervisor has
    none, so a scrape does (counters and histograms of the dead stay summed)."""
    for path in glob.glob(os.path.join(directory, "gauge_live*_*.db")):
        pid = os.path.basename(path)[: -len(".db")].rsplit("_", 1)[1]
        if pid.isdigit() and not _alive(int(pid)):
            _multiprocess.mark_process_dead(int(pid), directory)


def _registry() -> CollectorRegistry:
    if directory := os.environ.get(MULTIPROC_ENV):
        _forget_dead(directory)
        registry = CollectorRegistry()
        _multiprocess.MultiProcessCollector(registry)
        return registry
    from prometheus_client import REGISTRY

    return REGISTRY


def view(request: HttpRequest) -> HttpResponse:
    """``GET /metrics``: Prometheus's text format; a 401 without ``HUB_METRICS_TOKEN`` where it is set."""
    token = settings.HUB_METRICS_TOKEN
    if token:
        sent = request.headers.get("Authorization", "")
        if not secrets.compare_digest(sent.encode(), f"Bearer {token}".encode()):
            response = HttpResponse("metrics need the bearer token HUB_METRICS_TOKEN\n", status=401,
                                    content_type="text/plain")  # fmt: skip
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
    body = generate_latest(_registry()) + generate_latest(_BACKLOG_REGISTRY)
    return HttpResponse(body, content_type=CONTENT_TYPE_PLAIN_0_0_4)  # as the service's
