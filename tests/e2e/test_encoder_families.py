"""The encoder families through a live hub in front of a live inference service serving tiny random-weight
checkpoints: embeddings of XLM-RoBERTa (bge-m3's shape), JinaBERT and a headless Qwen3 (Qwen3-Embedding's) with the
OpenAI SDK; rerank and score of BERT and XLM-R cross-encoders over plain HTTP. Each answer equals the model run
in-process; the hub enforces entitlements, kinds and budgets on the rerank routes, meters their tokens, and its
answers validate against the hub's own OpenAPI document."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest
from jsonschema import Draft202012Validator

from accounts import services
from accounts.limits import Limits
from accounts.models import ServedModel
from hub.api.ratelimit import estimate
from hub.api.upstream import ModelInfo
from hub.inference_client import model_cards
from inference.engine.embedding_engine import embed
from inference.loader.safetensors import load_model
from inference.tokenizer.tokenizer import Tokenizer
from tests.support import encoders
from tests.support.inference import inference_service
from tests.support.live import hub_clients, rows, settle

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

EMBEDDERS = ("bge-m3-tiny", "jina-v2-tiny", "qwen3-embedding-tiny")
RERANKERS = ("ms-marco-minilm-tiny", "bge-reranker-tiny")
QUERY = "Where did the fisher live?"
DOCUMENTS = [
    "The quick brown fox jumps over the lazy dog!",
    {"text": "Once upon a time, in a small village by the sea, there lived a fisher."},
    "The capital of France is Paris.",
]
TEXTS = [d["text"] if isinstance(d, dict) else d for d in DOCUMENTS]


def _checkpoints(root) -> dict:
    xlmr = encoders.xlm_roberta_checkpoint(root / "xlmr")
    encoders.write_sentence_transformers_files(xlmr, 64, "cls", True, legacy=True)  # bge-m3's files
    jina, _ = encoders.jina_bert_checkpoint(root / "jina")
    qwen3 = encoders.qwen3_checkpoint(root / "qwen3", headless=True)
    encoders.write_sentence_transformers_files(qwen3, 64, "lasttoken", True)
    for path in (xlmr, jina, qwen3):
        encoders.byte_tokenizer().save_pretrained(path)
    return {
        "bge-m3-tiny": (xlmr, "embedding"),
        "jina-v2-tiny": (jina, "embedding"),
        "qwen3-embedding-tiny": (qwen3, "embedding"),
        "ms-marco-minilm-tiny": (encoders.bert_reranker_checkpoint(root / "bert-rerank"), "rerank"),
        "bge-reranker-tiny": (encoders.xlm_roberta_reranker_checkpoint(root / "xlmr-rerank"), "rerank"),
    }


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The service with the five checkpoints; yields its URL and {model id: checkpoint directory}."""
    root = tmp_path_factory.mktemp("encoders")
    models = _checkpoints(root)
    config = root / "inference.toml"
    config.write_text("".join(f"[[models]]\nid = {json.dumps(name)}\nsource = {json.dumps(str(path))}\n"
                              f"kind = {json.dumps(kind)}\n" for name, (path, kind) in models.items()))  # fmt: skip
    with inference_service("--config", str(config)) as url:
        yield f"{url}/v1", {name: path for name, (path, _) in models.items()}


@pytest.fixture
def hub(live_hub, served):
    url, _ = served
    services.sync_deployment(url, model_cards(url))
    client = hub_clients(live_hub, services.create_tenant("acme", "Acme"), [*EMBEDDERS, *RERANKERS], EMBEDDERS[0])
    yield client
    settle()


def _http(hub, key=None) -> httpx.Client:
    secret = (key or hub.everything).secret
    return httpx.Client(base_url=f"{hub.url}/v1", headers={"authorization": f"Bearer {secret}"}, timeout=60)


def _in_process_scores(path, texts: list[str]) -> list[float]:
    model, tokenizer = load_model(path), Tokenizer.from_dir(path)
    pairs = [tokenizer.encode_pair(QUERY, text, model.max_input_len) for text in texts]
    return model.scores([ids for ids, _ in pairs], [types for _, types in pairs]).tolist()


def test_embedding_families_through_the_hub_with_the_openai_sdk(hub, served):
    _, paths = served
    texts = ["Once upon a time", "The quick brown fox jumps over the lazy dog!", "Paris"]
    for name in EMBEDDERS:
        answer = hub().embeddings.create(model=name, input=texts)  # base64, as the SDK asks by default
        tokenizer = Tokenizer.from_dir(paths[name])
        ids = [tokenizer.encode(t, add_special_tokens=True) for t in texts]
        expected = embed(load_model(paths[name]), ids).numpy()
        got = np.array([d.embedding for d in answer.data])
        assert got.shape == expected.shape and np.abs(got - expected).max() < 1e-5, name
        assert np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)  # the checkpoints' Normalize
        assert answer.usage.prompt_tokens == sum(map(len, ids))
        (row,) = rows(request_id=answer._request_id)
        assert (row.route, row.model, row.prompt_tokens) == ("embeddings", name, answer.usage.prompt_tokens)


def test_rerank_and_score_through_the_hub(hub, served):
    _, paths = served
    document = httpx.get(f"{hub.url}/openapi.json", timeout=10).json()

    def check(name: str, instance: dict) -> None:
        schema = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
        errors = sorted(Draft202012Validator(schema).iter_errors(instance), key=str)
        assert not errors, f"{name}: {errors[0].message} at {list(errors[0].absolute_path)}\n{instance}"

    with _http(hub) as http:
        meta = http.get(f"/models/{RERANKERS[0]}").json()["meta_data"]  # the context; no embedding dimensions
        assert (meta["max_sequence_length"], meta["hidden_size"]) == (encoders.RERANK_MAX_POSITIONS, 0)
        for name in RERANKERS:
            scores = _in_process_scores(paths[name], TEXTS)
            response = http.post("/rerank", json={"model": name, "query": QUERY, "documents": DOCUMENTS})
            assert response.status_code == 200, response.text
            body = response.json()
            check("RerankResponse", body)
            assert [r["index"] for r in body["results"]] == sorted(range(3), key=lambda i: -scores[i])
            assert [r["relevance_score"] for r in body["results"]] == pytest.approx(sorted(scores, reverse=True),
                                                                                    abs=1e-5)  # fmt: skip
            assert body["results"][0]["document"] == {"text": TEXTS[body["results"][0]["index"]]}
            assert body["model"] == name and body["usage"]["prompt_tokens"] > 0
            (row,) = rows(request_id=response.headers["x-request-id"])
            assert (row.route, row.model, row.prompt_tokens, row.completion_tokens, row.status_code) == (
                "rerank", name, body["usage"]["prompt_tokens"], 0, 200)  # fmt: skip

        # Cohere's v2 path, top_n, no documents back
        cohere = httpx.post(f"{hub.url}/v2/rerank", headers=http.headers, timeout=60,
                            json={"model": RERANKERS[1], "query": QUERY, "documents": TEXTS, "top_n": 1,
                                  "return_documents": False})  # fmt: skip
        assert cohere.status_code == 200 and len(cohere.json()["results"]) == 1
        assert set(cohere.json()["results"][0]) == {"index", "relevance_score"}

        response = http.post("/score", json={"model": RERANKERS[0], "text_1": QUERY, "text_2": TEXTS})
        assert response.status_code == 200, response.text
        check("ScoreResponse", response.json())
        assert [d["score"] for d in response.json()["data"]] == pytest.approx(
            _in_process_scores(paths[RERANKERS[0]], TEXTS), abs=1e-5
        )
        (row,) = rows(request_id=response.headers["x-request-id"])
        assert (row.route, row.prompt_tokens) == ("score", response.json()["usage"]["prompt_tokens"])

        # the kinds: a rerank model is no embedding model, and the other way round
        wrong = http.post("/embeddings", json={"model": RERANKERS[0], "input": "x"})
        assert wrong.status_code == 400 and "/rerank or /score" in wrong.json()["error"]["message"]
        wrong = http.post("/rerank", json={"model": EMBEDDERS[0], "query": "q", "documents": ["d"]})
        assert wrong.status_code == 400 and wrong.json()["error"]["param"] == "model"
        bad = http.post("/rerank", json={"model": RERANKERS[0], "query": "q", "documents": [], "top_n": 0})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "documents"
    # a key entitled to the embedding model only does not see the rerankers
    with _http(hub, hub.embed_only) as http:
        denied = http.post("/rerank", json={"model": RERANKERS[0], "query": QUERY, "documents": TEXTS})
        assert denied.status_code == 404 and denied.json()["error"]["code"] == "model_not_found"


def test_a_budget_holds_on_rerank(hub):
    """A key's budget that fits one rerank's reservation and a half of its counted tokens: the first request runs and
    is settled to what it counted, the second no longer fits its reservation and is refused."""
    body = {"model": RERANKERS[1], "query": QUERY, "documents": TEXTS}
    model = ServedModel.objects.get(pk=RERANKERS[1])
    info = ModelInfo(model.id, model.kind, model.max_sequence_length, model.max_output_length, model.hidden_size, True)
    reservation = estimate("rerank", body, info).total
    with _http(hub) as http:
        counted = http.post("/rerank", json=body).json()["usage"]["prompt_tokens"]
    assert counted < reservation
    key = services.issue_key(hub.tenant, name="tight", model_ids=[RERANKERS[1]])
    services.set_limits(key.key, Limits(budget=reservation + counted // 2, budget_period="day"))
    with _http(hub, key) as http:
        first = http.post("/rerank", json=body)
        second = http.post("/rerank", json=body)
    assert first.status_code == 200 and first.json()["usage"]["prompt_tokens"] == counted
    assert second.status_code == 429 and second.json()["error"]["code"] == "insufficient_quota"
    (row,) = rows(api_key_id=key.key.pk)
    assert row.total_tokens == counted
