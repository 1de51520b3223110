"""LoRA adapters served end to end: ``python -m inference serve --lora NAME=PATH`` on a tiny random-weight Llama (a
completion model: it has no chat template) with two adapters PEFT wrote, the hub's catalog synced from the service
(each adapter a model of its own), and the OpenAI SDK through the hub. Each model's greedy answer is what
transformers with PEFT generates (float32, as the service runs with ``--quantize none``); entitlements and metering
are per adapter name."""

from __future__ import annotations

import time

import httpx
import openai
import pytest
import torch
from django.core.management import call_command
from openai import OpenAI

from accounts import services
from accounts.models import ServedModel
from hub.inference_client import model_cards
from tests.support.checkpoints import lora_adapter, tiny_chat_checkpoint
from tests.support.inference import inference_service, model_flags
from tests.support.live import hub_clients, rows, settle

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

BASE, SQL, POEM = "tiny", "tiny-sql", "tiny-poem"
PROMPT = "Once upon a time, in a small village"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("lora-live")
    checkpoint = tiny_chat_checkpoint(root / "tiny")
    sql = lora_adapter(checkpoint, root / "sql", 1)
    poem = lora_adapter(checkpoint, root / "poem", 2, targets=["q_proj", "v_proj"], r=4)
    args = [*model_flags(f"{BASE}={checkpoint}:completion"), "--lora", f"{SQL}={sql[1]}", "--lora", f"{POEM}={poem[1]}",
            "--quantize", "none"]  # fmt: skip
    with inference_service(*args, env={"INFERENCE_ALLOW_RUNTIME_LORA": "1"}) as url:
        yield f"{url}/v1", {SQL: sql[0], POEM: poem[0]}, checkpoint


def _expected(peft, service_url: str, disable: bool = False) -> str:
    """PEFT's greedy continuation of the prompt as the service tokenizes it (its /tokenize), as text."""
    from inference.tokenizer.tokenizer import Tokenizer

    ids = httpx.post(service_url.removesuffix("/v1") + "/tokenize", json={"model": BASE, "prompt": PROMPT},
                     timeout=30).json()["tokens"]  # fmt: skip
    with torch.inference_mode():
        if disable:
            with peft.disable_adapter():
                out = peft.generate(torch.tensor([ids]), max_new_tokens=12, min_new_tokens=12, do_sample=False)
        else:
            out = peft.generate(torch.tensor([ids]), max_new_tokens=12, min_new_tokens=12, do_sample=False)
    return Tokenizer.from_dir(peft.peft_config["default"].base_model_name_or_path).decode(
        out[0, len(ids) :].tolist(), skip_special_tokens=True
    )


def test_adapters_are_models_of_their_own_through_the_hub(live_hub, served):
    url, pefts, _ = served
    cards = {c["id"]: c for c in model_cards(url)}
    assert set(cards) == {BASE, SQL, POEM}
    assert cards[SQL]["parent"] == BASE and cards[SQL]["kind"] == "completion" and "parent" not in cards[BASE]
    call_command("sync_models", url)  # the operator's command: every adapter in the catalog, on this deployment
    assert set(ServedModel.objects.values_list("id", flat=True)) >= {BASE, SQL, POEM}
    tenant = services.create_tenant("acme", "Acme")
    client = hub_clients(live_hub, tenant, [BASE, SQL], BASE)
    try:
        hub: OpenAI = client()
        assert {m.id for m in hub.models.list().data} == {BASE, SQL}
        answers = {}
        for model in (BASE, SQL):
            response = hub.completions.with_raw_response.create(
                model=model, prompt=PROMPT, max_tokens=12, temperature=0, extra_body={"ignore_eos": True}
            )
            answers[model] = response.parse().choices[0].text
            [row] = rows(request_id=response.headers["x-request-id"])
            assert row.model == model and row.completion_tokens == 12
        assert answers[SQL] == _expected(pefts[SQL], url)
        assert answers[BASE] == _expected(pefts[SQL], url, disable=True) != answers[SQL]
        with pytest.raises(
            openai.NotFoundError, match="does not exist or you do not have access"
        ):  # not entitled to the other adapter
            hub.completions.create(model=POEM, prompt=PROMPT, max_tokens=2)
    finally:
        settle()


def test_the_service_answers_each_adapter_by_its_name(served):
    url, pefts, _ = served
    client = OpenAI(base_url=url, api_key="unused", max_retries=0)
    answer = client.completions.create(
        model=POEM, prompt=PROMPT, max_tokens=12, temperature=0, extra_body={"ignore_eos": True}
    )
    assert answer.model == POEM and answer.choices[0].text == _expected(pefts[POEM], url)


def _admin(url: str, route: str, **body) -> httpx.Response:
    return httpx.post(f"{url}/{route}", json=body, timeout=60)


def test_adapters_load_and_unload_at_run_time(served, tmp_path):
    """vLLM's /v1/load_lora_adapter and /v1/unload_lora_adapter: an adapter added without a restart answers as PEFT
    does; one in use is not unloaded; a name unloaded and loaded again with other weights answers with the new
    ones (its blocks in the prefix cache are not the old adapter's)."""
    url, _, checkpoint = served
    client = OpenAI(base_url=url, api_key="unused", max_retries=0)
    late = lora_adapter(checkpoint, tmp_path / "late", 5, targets=["o_proj", "down_proj"])
    other = lora_adapter(checkpoint, tmp_path / "other", 6)

    def answer(model: str) -> str:
        return client.completions.create(model=model, prompt=PROMPT, max_tokens=12, temperature=0,
                                         extra_body={"ignore_eos": True}).choices[0].text  # fmt: skip

    loaded = _admin(url, "load_lora_adapter", lora_name="late", lora_path=str(late[1]))
    assert loaded.status_code == 200 and loaded.json()["parent"] == BASE
    assert {"late": BASE} == {c["id"]: c.get("parent") for c in model_cards(url) if c["id"] == "late"}
    assert answer("late") == _expected(late[0], url)
    assert _admin(url, "load_lora_adapter", lora_name="late", lora_path=str(late[1])).status_code == 400
    bad = _admin(url, "load_lora_adapter", lora_name="broken", lora_path=str(tmp_path / "nowhere"))
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "lora_path"

    with client.completions.create(model="late", prompt=PROMPT, max_tokens=200, stream=True,
                                   extra_body={"ignore_eos": True}) as stream:  # fmt: skip
        next(iter(stream))  # under way
        busy = _admin(url, "unload_lora_adapter", lora_name="late")
        assert busy.status_code == 409 and busy.json()["error"]["code"] == "lora_in_use"
    assert answer("late") == _expected(late[0], url)  # still served
    deadline = time.monotonic() + 30  # the aborted stream leaves the engine within a step
    while (gone := _admin(url, "unload_lora_adapter", lora_name="late")).status_code == 409:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert gone.status_code == 200
    with pytest.raises(openai.NotFoundError):
        answer("late")
    missing = _admin(url, "unload_lora_adapter", lora_name="late")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "lora_not_found"

    assert _admin(url, "load_lora_adapter", lora_name="late", lora_path=str(other[1])).status_code == 200
    assert answer("late") == _expected(other[0], url) != _expected(late[0], url)
