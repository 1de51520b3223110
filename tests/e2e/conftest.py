"""A live hub in front of a live inference service serving the four packaged models (Whisper base among them, with
a 300-second limit on a request's audio) and two tiny random-weight LLaVAs (1.5 and NeXT, written by transformers),
once per session; a local image server its allow-list permits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from accounts import services
from hub.inference_client import model_cards
from tests.support.checkpoints import llava_checkpoint
from tests.support.images import ALLOW_LOCAL_IMAGES, image_server
from tests.support.inference import inference_service
from tests.support.live import (
    CHAT,
    CHAT_MAX_OUTPUT,
    COMPLETION,
    EMBED,
    MAX_AUDIO_SECONDS,
    VISION_15,
    VISION_NEXT,
    WHISPER,
    hub_clients,
    settle,
)

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
def browser(monkeypatch):
    """Debian's Chromium, headless, driven by Playwright."""
    if not Path(CHROMIUM).exists():  # CI installs it (.ci/run); a missing browser is a failure, not a skip
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium")
    # Playwright's sync API runs an event loop on this thread, and Django then refuses ORM calls here (the
    # test's own setup and checks), though nothing async touches them: allow them, for this test only.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "1")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def images():
    """Pictures over http on 127.0.0.1 (``images.url``), which the service's allow-list permits."""
    with image_server() as server:
        yield server


@pytest.fixture(scope="session")
def inference_url(tmp_path_factory, images):
    """`python -m inference serve` with the packaged models and the two LLaVAs, once per session."""
    root = tmp_path_factory.mktemp("llava")
    models = [
        (CHAT, "packaged:smollm2", "chat", CHAT_MAX_OUTPUT),
        (COMPLETION, "packaged:gemma3", "completion", None),
        (EMBED, "packaged:minilm", "embedding", None),
        (WHISPER, "packaged:whisper-base", "audio", None),
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
    env = {**ALLOW_LOCAL_IMAGES, "INFERENCE_MAX_AUDIO_SECONDS": str(MAX_AUDIO_SECONDS)}
    with inference_service("--config", str(config), env=env) as url:
        yield f"{url}/v1"


@pytest.fixture
def hub(live_hub, inference_url):
    """The catalog synced from the service; tenant acme entitled to all six; a key for all of them
    and one for the embedding model only."""
    services.sync_deployment(inference_url, model_cards(inference_url))
    tenant = services.create_tenant("acme", "Acme")
    client = hub_clients(live_hub, tenant, [CHAT, COMPLETION, EMBED, WHISPER, VISION_NEXT, VISION_15], EMBED)
    client.inference_health = lambda: inference_url.removesuffix("/v1") + "/health"
    yield client
    settle()
