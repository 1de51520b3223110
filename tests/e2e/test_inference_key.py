"""The inference service authenticates the hub: with INFERENCE_API_KEY set, every route but /health needs
it (401, OpenAI-shaped, otherwise), and the hub, synced with the same key, serves and meters through it."""

import httpx
import pytest
from django.core.management import call_command
from openai import OpenAI

from accounts import services
from accounts.models import Deployment
from tests.support.inference import inference_service, model_flags
from tests.support.live import rows

pytestmark = [pytest.mark.real_model, pytest.mark.live]

SECRET = "inference-secret-0123456789"
EMBED = "keyed-minilm"


@pytest.fixture(scope="module")
def keyed_service():
    with inference_service(
        *model_flags(f"{EMBED}=packaged:minilm:embedding"), env={"INFERENCE_API_KEY": SECRET}
    ) as url:
        yield url


def test_the_service_refuses_requests_without_its_key(keyed_service):
    body = {"model": EMBED, "input": "hi"}
    for headers in ({}, {"Authorization": "Bearer wrong-key-wrong-key"}):
        for method, path in (("GET", "/v1/models"), ("POST", "/v1/embeddings"), ("GET", "/metrics")):
            answer = httpx.request(method, f"{keyed_service}{path}", json=body, headers=headers, timeout=30)
            assert answer.status_code == 401, (path, answer.text)
            assert answer.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(f"{keyed_service}/health", timeout=30).status_code == 200  # probes need no key
    good = {"Authorization": f"Bearer {SECRET}"}
    assert httpx.post(f"{keyed_service}/v1/embeddings", json=body, headers=good, timeout=30).status_code == 200


def test_the_hub_synced_with_the_key_serves_through_it(transactional_db, live_hub, keyed_service):
    call_command("sync_models", f"{keyed_service}/v1", "--api-key", SECRET)
    assert Deployment.objects.get(model_id=EMBED).api_key == SECRET
    tenant = services.create_tenant("keyed", "Keyed")
    services.grant_models(tenant, [EMBED])
    key = services.issue_key(tenant)
    client = OpenAI(base_url=live_hub.api(), api_key=key.secret, max_retries=0)
    assert len(client.embeddings.create(model=EMBED, input="hello").data[0].embedding) == 384
    assert rows(1, model=EMBED)[0].prompt_tokens > 0
