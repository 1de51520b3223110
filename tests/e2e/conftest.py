"""A live hub in front of a live inference service serving the three packaged models and two tiny random-weight
LLaVAs (1.5 and NeXT, written by transformers), once per session; a local image server its allow-list permits."""

from __future__ import annotations

import json
import secrets
import threading
import time
from contextlib import contextmanager

import pytest
from openai import OpenAI

from accounts import services
from accounts.models import UsageRecord
from hub.inference_client import model_cards
from tests.conftest import free_port
from tests.inference.image_server import ALLOW_LOCAL_IMAGES, image_server
from tests.inference.live_service import inference_service
from tests.inference.reference_checkpoints import llava_checkpoint

CHAT, COMPLETION, EMBED = "smollm2-135m-instruct", "gemma-3-270m", "all-minilm-l6-v2"
VISION_NEXT, VISION_15 = "llava-next-tiny", "llava-1.5-tiny"


@pytest.fixture(scope="session")
def images():
    """Pictures over http on 127.0.0.1 (``images.url``), which the service's allow-list permits."""
    with image_server() as server:
        yield server


# The chat deployment's output cap, as an operator sets it: a chat without max_tokens (most reference examples)
# stops there instead of at the 8192-token context, which on this CPU can outlast an example's 5-minute timeout.
CHAT_MAX_OUTPUT = 1024


@pytest.fixture(scope="session")
def inference_url(tmp_path_factory, images):
    """`python -m inference serve` with the packaged models and the two LLaVAs, once per session."""
    root = tmp_path_factory.mktemp("llava")
    models = [
        (CHAT, "packaged:smollm2", "chat", CHAT_MAX_OUTPUT),
        (COMPLETION, "packaged:gemma3", "completion", None),
        (EMBED, "packaged:minilm", "embedding", None),
        (VISION_NEXT, str(llava_checkpoint(root / "next", next_=True)), "vision", None),
        (VISION_15, str(llava_checkpoint(root / "v15")), "vision", None),
    ]
    config = root / "inference.toml"
    config.write_text(
        "".join(
            f"[[models]]\nid = {json.dumps(i)}\nsource = {json.dumps(src)}\nkind = {json.dumps(kind)}\n"
            + (f"max_output_length = {cap}\n" if cap else "")
            for i, src, kind, cap in models
        )
    )
    with inference_service("--config", str(config), env=ALLOW_LOCAL_IMAGES) as url:
        yield f"{url}/v1"


@pytest.fixture
def hub(live_hub, inference_url):
    """The catalog synced from the service; tenant acme entitled to all five; a key for all of them
    and one for the embedding model only."""
    services.sync_deployment(inference_url, model_cards(inference_url))
    tenant = services.create_tenant("acme", "Acme")
    services.grant_models(tenant, [CHAT, COMPLETION, EMBED, VISION_NEXT, VISION_15])
    everything = services.issue_key(tenant, name="all")
    embed_only = services.issue_key(tenant, name="embed", model_ids=[EMBED])

    def client(key=everything, base: str = "v1") -> OpenAI:
        return OpenAI(base_url=live_hub.api(base), api_key=key.secret, max_retries=0)

    client.everything, client.embed_only, client.tenant, client.url = everything, embed_only, tenant, live_hub.url
    client.inference_health = lambda: inference_url.removesuffix("/v1") + "/health"
    yield client
    _settle()


def _settle(quiet: float = 0.3, limit: float = 10) -> None:
    """Wait until the hub has written the usage rows of the test's last answers (a row is committed just
    after its answer is sent): flushing the database under an in-flight insert deadlocks on PostgreSQL."""
    deadline = time.monotonic() + limit
    count, since = UsageRecord.objects.count(), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < quiet:
        time.sleep(0.05)
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


def barrier(hub) -> None:
    """Before asserting that requests wrote no usage row (or no more than some): one metered request sent after
    them, and its row seen. The hub writes a request's row just after its answer, so rows of answers that came
    back before the barrier's are written by the time the barrier's is (or were never to be written)."""
    request_id = f"req_barrier_{secrets.token_hex(6)}"
    hub().embeddings.create(model=EMBED, input="barrier", extra_headers={"x-request-id": request_id})
    assert rows(request_id=request_id), "the barrier request's usage row was not written within 10 s"


@contextmanager
def chat_upstream(endpoint):
    """A fake deployment (for the gateway's own behaviour) on a loopback port: ``endpoint``, a Starlette endpoint,
    serves ``/v1/chat/completions``; yields the base URL to register."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.routing import Route

    port = free_port()
    app = Starlette(routes=[Route("/v1/chat/completions", endpoint, methods=["POST"])])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
