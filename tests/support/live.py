"""The live end-to-end setup's names (the models ``tests/e2e/conftest.py`` serves) and its waits: usage rows as the
hub writes them just after each answer, a barrier before asserting absence, and a fake deployment for the gateway's
own behaviour."""

from __future__ import annotations

import json
import secrets
import time
from contextlib import contextmanager

import httpx

from accounts.models import OpenRequest, UsageRecord
from tests.support.asgi_server import serving

CHAT, COMPLETION, EMBED = "smollm2-135m-instruct", "gemma-3-270m", "all-minilm-l6-v2"
VISION_NEXT, VISION_15 = "llava-next-tiny", "llava-1.5-tiny"
WHISPER = "whisper-base"
# the live hub's vector store reranker (HUB_VECTOR_STORE_RERANK_MODEL): a catalog model only the tests that register
# it have (the others search without re-ranking, as on a hub whose operator names none)
STORE_RERANKER = "store-reranker"
STORE_REWRITER = "store-rewriter"  # HUB_VECTOR_STORE_REWRITE_MODEL, likewise (registered by the test that uses it)
MAX_AUDIO_SECONDS = 300  # the live service's INFERENCE_MAX_AUDIO_SECONDS
FAKE_CHAT, FAKE_EMBED = "fake-chat", "fake-embed"  # the models the ``fake_hub`` fixture serves from a fake service

# The chat deployment's output cap, as an operator sets it: a chat without max_tokens (most reference examples)
# stops there instead of at the 8192-token context, which on this CPU can outlast an example's 5-minute timeout.
CHAT_MAX_OUTPUT = 1024


def settle(quiet: float = 0.1, limit: float = 10) -> None:
    """Wait until the hub has written the usage rows of the test's answers (flushing the database under an in-flight
    insert deadlocks on PostgreSQL): a request that went to a model has an open row from before it was sent until its
    usage row is written, in one transaction with the open row's deletion, so the open rows gone are the rows written
    (or discarded: it reached no model). Then ``quiet`` seconds without a new row, for a request the hub was still
    taking in (its answers, stored responses and chats are written before they are sent)."""
    deadline = time.monotonic() + limit
    while (left := list(OpenRequest.objects.filter(record__isnull=True))) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not left, [(r.request_id, r.route, r.model) for r in left]
    count, since = UsageRecord.objects.count(), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < quiet:
        time.sleep(0.02)
        now = UsageRecord.objects.count()
        if now != count:
            count, since = now, time.monotonic()


def rows(count: int = 1, **filters) -> list[UsageRecord]:
    """Usage rows, waiting (up to 10 s) for at least ``count``: a row is written just after its answer is
    sent, so the client can be a moment ahead of it."""
    deadline = time.monotonic() + 10
    while True:
        found = list(UsageRecord.objects.filter(**filters).order_by("id"))
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def hub_clients(live_hub, tenant, models: list[str], embed_model: str):
    """Tenant ``tenant`` entitled to ``models`` on ``live_hub``, a key for all of them (``everything``) and one for
    ``embed_model`` only (``embed_only``); returns ``client(key=everything, base="v1")``, an OpenAI client through
    the hub, which also carries the keys, the tenant, the hub's URL and the model ``barrier`` asks."""
    from openai import OpenAI

    from accounts import services

    services.grant_models(tenant, models)
    everything = services.issue_key(tenant, name="all")
    embed_only = services.issue_key(tenant, name="embed", model_ids=[embed_model])

    def client(key=everything, base: str = "v1") -> OpenAI:
        return OpenAI(base_url=live_hub.api(base), api_key=key.secret, max_retries=0)

    client.everything, client.embed_only, client.tenant, client.url = everything, embed_only, tenant, live_hub.url
    client.barrier_model = embed_model
    return client


def barrier(hub) -> None:
    """Before asserting that requests wrote no usage row (or no more than some): one metered request sent after
    them, and its row seen. The hub writes a request's row just after its answer, so rows of answers that came
    back before the barrier's are written by the time the barrier's is (or were never to be written)."""
    request_id = f"req_barrier_{secrets.token_hex(6)}"
    hub().embeddings.create(model=hub.barrier_model, input="barrier", extra_headers={"x-request-id": request_id})
    assert rows(request_id=request_id), "the barrier request's usage row was not written within 10 s"


@contextmanager
def chat_upstream(endpoint, route: str = "chat/completions"):
    """A fake deployment (for the gateway's own behaviour) on a loopback port: ``endpoint``, a Starlette endpoint,
    serves ``/v1/<route>`` (chat completions, or the Responses API of an external one); yields the base URL to
    register."""
    from starlette.applications import Starlette
    from starlette.routing import Route

    app = Starlette(routes=[Route(f"/v1/{route}", endpoint, methods=["POST"])])
    with serving(app) as url:
        yield f"{url}/v1"


def read_then_hang_up(hub, model: str, route: str, body: dict, chunks: int) -> tuple[str, dict]:
    """Stream with running usage in every chunk, read ``chunks`` data chunks, hang up: (request id, the usage in
    the last chunk read, i.e. the tokens the client received)."""
    body = {**body, "model": model, "stream": True,
            "stream_options": {"include_usage": True, "continuous_usage_stats": True}}  # fmt: skip
    with httpx.stream(
        "POST", f"{hub.url}/v1/{route}", headers={"authorization": f"Bearer {hub.everything.secret}"}, json=body,
        timeout=60,
    ) as response:  # fmt: skip
        request_id = response.headers["x-request-id"]
        seen, usage = 0, {}
        for line in response.iter_lines():
            if line.startswith("data: {"):
                seen += 1
                usage = json.loads(line[6:])["usage"] or usage
            if seen == chunks:
                break
    return request_id, usage


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    """A hub's ``/metrics`` (``url``: its root): each sample by (name, its labels sorted)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{url}/metrics", timeout=10).raise_for_status().text
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}  # fmt: skip


def sample(samples: dict[tuple[str, tuple], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)
