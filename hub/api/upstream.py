"""Deployments of a model and the pooled HTTP client that reaches them.

A model may have several deployments (our inference services, or an external OpenAI-compatible
API with its own key). A generation request goes to the healthy one most likely to hold its prompt's prefix in
its KV cache, within a load bound (``affinity.py``); others to the one with the fewest requests outstanding
from this process. One that refuses connections or answers 503 is benched for ``BENCH_SECONDS``, and the
request moves on to the next (one answering 429 too: ``gateway._elsewhere``). The deployment list is read from
the database at most every ``CACHE_SECONDS`` per model (a deployment change reaches every hub process within that);
while the database is unreachable, the last list read keeps being used.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import httpx
from asgiref.sync import sync_to_async
from django.db import DatabaseError
from django.utils import timezone

from accounts.database import database_unreachable
from accounts.models import Deployment, ModelFallback, ModelPrice, ServedModel
from accounts.pricing import PriceBook
from hub.api.affinity import rank

log = logging.getLogger(__name__)

CACHE_SECONDS = 5.0
OUTAGE_RETRY_SECONDS = 30.0  # with the database unreachable, how long the last list read is used before asking again
BENCH_SECONDS = 10.0
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 600.0  # a long generation streams for minutes; each chunk resets it
# Our inference service refuses a prompt longer than the reservation a request names (413, before it runs) and gives
# the exact count: the gateway then reserves that and sends the request again (``gateway._serve``), and counts a
# Responses request's input tokens so (``responses_count.py``).
RESERVED_PROMPT_HEADER = "x-reserved-prompt-tokens"
PROMPT_TOKENS_HEADER = "x-prompt-tokens"


@dataclass(frozen=True)
class Target:
    deployment_id: int
    base_url: str  # ".../v1"
    model: str  # the model's name upstream
    api_key: str
    external: bool

    @classmethod
    def of(cls, deployment: Deployment, model_id: str) -> Target:
        return cls(deployment.id, deployment.base_url, deployment.upstream_model or model_id, deployment.api_key,
                   deployment.external)  # fmt: skip

    def url(self, route: str) -> str:
        return f"{self.base_url.rstrip('/')}/{route}"

    def headers(self, request_id: str) -> dict[str, str]:
        headers = {"x-request-id": request_id}
        if self.api_key:
            headers["authorization"] = f"Bearer {self.api_key}"
        return headers


@dataclass(frozen=True)
class ModelInfo:
    id: str
    kind: str
    max_sequence_length: int
    max_output_length: int
    hidden_size: int
    enabled: bool
    price: ModelPrice | None = None  # in force when read (a money budget reserves and settles at it)
    # where its requests go when it cannot answer them, in order: (model id, when: ModelFallback.on) (fallbacks.py)
    fallbacks: tuple[tuple[str, str], ...] = ()


def _load(model_id: str) -> tuple[ModelInfo | None, list[Target]]:
    model = ServedModel.objects.filter(pk=model_id).first()
    if model is None:
        return None, []
    price = PriceBook().price_at(model.id, timezone.now())
    fallbacks = tuple(ModelFallback.objects.filter(model=model).values_list("fallback_id", "on"))
    info = ModelInfo(model.id, model.kind, model.max_sequence_length, model.max_output_length, model.hidden_size,
                     model.enabled, price, fallbacks)  # fmt: skip
    deployments = Deployment.objects.filter(model_id=model_id, enabled=True).order_by("id")
    return info, [Target.of(d, model.id) for d in deployments]


class Upstreams:
    """Per process: the deployment cache, outstanding counts, benched deployments and the client."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[float, ModelInfo | None, list[Target]]] = {}
        self._outstanding: dict[int, int] = {}
        self._benched_until: dict[int, float] = {}
        self._clients: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}

    def client(self) -> httpx.AsyncClient:
        """One pooled client per event loop (a client cannot be shared across loops)."""
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            timeout = httpx.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT)
            limits = httpx.Limits(max_connections=1000, max_keepalive_connections=200)
            client = self._clients[loop] = httpx.AsyncClient(timeout=timeout, limits=limits)
        return client

    async def model(self, model_id: str) -> tuple[ModelInfo | None, list[Target]]:
        now = time.monotonic()
        cached = self._cache.get(model_id)
        if cached is None or now - cached[0] > CACHE_SECONDS:
            try:
                info, targets = await sync_to_async(_load, thread_sensitive=False)(model_id)
            except DatabaseError as exc:
                if cached is None or not database_unreachable(exc):
                    raise
                # The database is down: keep routing by what we knew, and ask it again OUTAGE_RETRY_SECONDS from
                # now (each try may hold a request for the pool's timeout).
                log.warning("database unreachable: the deployments of %s are served from the cache", model_id)
                self._cache[model_id] = (now + OUTAGE_RETRY_SECONDS - CACHE_SECONDS, cached[1], cached[2])
                return cached[1], cached[2]
            cached = self._cache[model_id] = (now, info, targets)
        return cached[1], cached[2]

    def order(self, targets: list[Target], affinity: str | None = None) -> list[Target]:
        """Healthy deployments first, benched ones last (still tried). Among the healthy: with an ``affinity`` key
        (``affinity.prefix_key``) the one most likely to hold the prompt's prefix in its cache, within a load
        bound (``affinity.rank``); without, fewest outstanding requests first."""
        now = time.monotonic()

        def key(t: Target) -> tuple[bool, int]:
            return self._benched_until.get(t.deployment_id, 0) > now, self._outstanding.get(t.deployment_id, 0)

        ordered = sorted(targets, key=key)
        healthy = [t for t in ordered if self._benched_until.get(t.deployment_id, 0) <= now]
        if affinity is None or len(healthy) < 2:
            return ordered
        by_id = {t.deployment_id: t for t in healthy}
        ranked = [by_id[i] for i in rank(affinity, list(by_id), self._outstanding)]
        return ranked + ordered[len(healthy) :]

    def all_benched(self, targets: list[Target]) -> bool:
        """Every one of ``targets`` failed in the last ``BENCH_SECONDS`` (refused a connection, broke, answered 503):
        a model with a fallback is passed over at once (LiteLLM's cooldown), until one's bench ends."""
        now = time.monotonic()
        return all(self._benched_until.get(t.deployment_id, 0) > now for t in targets)

    def bench(self, target: Target) -> None:
        self._benched_until[target.deployment_id] = time.monotonic() + BENCH_SECONDS

    def acquire(self, target: Target) -> None:
        self._outstanding[target.deployment_id] = self._outstanding.get(target.deployment_id, 0) + 1

    def release(self, target: Target) -> None:
        self._outstanding[target.deployment_id] -= 1

    def outstanding(self, target: Target) -> int:
        return self._outstanding.get(target.deployment_id, 0)


upstreams = Upstreams()
