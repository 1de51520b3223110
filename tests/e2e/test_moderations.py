"""OpenAI's moderations through a live hub with the real OpenAI SDK (``client.moderations.create``), answered by a
guard model (a random-weight Llama with Llama Guard 3's template, served as ``omni-moderation-latest``, OpenAI's
default, so that a request without a model reaches it): the answer is OpenAI's (no ``usage``: the hub meters it), the
service's own, metered per request, also run as a batch's lines; the guard answers chat too, and refuses the other
routes with a hint."""

from __future__ import annotations

import httpx
import openai
import pytest

from accounts import services
from accounts.models import ModelKind, ServedModel
from hub.inference_client import model_cards
from tests.openai_spec import assert_valid
from tests.support.batches import batch_worker, jsonl, lines_of, wait_for
from tests.support.inference import guard_service
from tests.support.live import hub_clients, rows

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

GUARD = "omni-moderation-latest"
INPUTS = ["I want to kill them.", "What a lovely morning."]


@pytest.fixture(scope="module")
def guard_url(tmp_path_factory):
    with guard_service(tmp_path_factory.mktemp("guard"), GUARD) as url:
        yield url


@pytest.fixture
def hub(live_hub, guard_url):
    services.sync_deployment(guard_url, model_cards(guard_url))
    assert ServedModel.objects.get(id=GUARD).kind == ModelKind.MODERATION
    return hub_clients(live_hub, services.create_tenant("acme", "Acme"), [GUARD], GUARD)


def test_moderations_through_the_hub_are_openais_and_metered(hub, guard_url):
    client = hub()
    raw = client.moderations.with_raw_response.create(input=INPUTS)  # no model: OpenAI's default
    body = raw.http_response.json()
    assert_valid("CreateModerationResponse", body)
    assert "usage" not in body and body["model"] == GUARD
    direct = httpx.post(f"{guard_url}/moderations", json={"model": GUARD, "input": INPUTS}, timeout=60).json()
    assert body["results"] == direct["results"]
    parsed = raw.parse()
    assert [r.flagged for r in parsed.results] == [r["flagged"] for r in direct["results"]]
    [row] = rows(request_id=raw.headers["x-request-id"])
    assert (row.route, row.model, row.status_code) == ("moderations", GUARD, 200)
    assert (row.prompt_tokens, row.completion_tokens) == (direct["usage"]["prompt_tokens"],
                                                           direct["usage"]["completion_tokens"])  # fmt: skip


def test_the_guard_answers_chat_and_refuses_other_routes(hub):
    client = hub()
    answer = client.chat.completions.create(model=GUARD, messages=[{"role": "user", "content": "Hi"}], max_tokens=3)
    assert answer.choices[0].message.content is not None
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model=GUARD, input="x")
    assert "/moderations" in caught.value.body["message"]
    with pytest.raises(openai.BadRequestError) as caught:  # the service's refusal, relayed: nothing metered
        client.moderations.create(model=GUARD, input=[{"type": "image_url", "image_url": {"url": "https://x/y.png"}}])
    assert caught.value.body["param"] == "input[0]"
    with pytest.raises(openai.BadRequestError) as caught:  # the hub's own check
        client.moderations.create(model=GUARD, input=[{"type": "video", "video": "x"}])
    assert caught.value.body["param"] == "input[0].type"
    with pytest.raises(openai.NotFoundError):  # a model not in the catalog
        client.moderations.create(model="text-moderation-latest", input="x")


def test_a_batch_of_moderations(hub):
    client = hub()
    lines = [{"custom_id": f"m{i}", "method": "POST", "url": "/v1/moderations", "body": {"model": GUARD, "input": t}}
             for i, t in enumerate(INPUTS)]  # fmt: skip
    file = client.files.create(file=("in.jsonl", jsonl(lines)), purpose="batch")
    with batch_worker():
        batch = client.batches.create(input_file_id=file.id, endpoint="/v1/moderations", completion_window="24h")
        batch = wait_for(client, batch.id, ("completed", "failed"), timeout=120)
    assert batch.status == "completed" and batch.request_counts.completed == len(INPUTS), batch
    outputs = {line["custom_id"]: line["response"] for line in lines_of(client, batch.output_file_id)}
    alone = client.moderations.with_raw_response.create(model=GUARD, input=INPUTS[0]).http_response.json()
    assert outputs["m0"]["status_code"] == 200
    assert_valid("CreateModerationResponse", outputs["m0"]["body"])
    assert outputs["m0"]["body"]["results"] == alone["results"]
    metered = rows(len(INPUTS) + 1, route="moderations")
    assert sorted(r.service_tier for r in metered) == ["batch", "batch", "default"]
