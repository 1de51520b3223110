"""Rerank: cross-encoders (BERT, XLM-R) against transformers' ``*ForSequenceClassification``, the pair
tokenization against transformers' tokenizers, the engine's batching, and ``/v1/rerank`` and ``/v1/score`` over
HTTP on a live service."""

from __future__ import annotations

import json
import shutil

import httpx
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from inference import env
from inference.config import ModelSpec
from inference.engine.embedding_engine import EmbeddingEngine
from inference.engine.worker import EngineLoop
from inference.loader.safetensors import load_model
from inference.models.config import ConfigError
from inference.server import registry
from inference.server.metrics import Metrics
from inference.tokenizer.tokenizer import Tokenizer, TokenizerError
from tests.support import encoders
from tests.support.inference import inference_service, model_flags

QUERY = "Where did the fisher live?"
LONG = " ".join(["Once upon a time, in a small village by the sea, there lived a fisher."] * 6)
DOCUMENTS = [
    "Once upon a time, in a small village by the sea, there lived a fisher.",
    "The quick brown fox jumps over the lazy dog!",
    "def fibonacci(n):\n    return n if n < 2 else fibonacci(n - 1) + fibonacci(n - 2)\n",
    LONG,  # longer than the models' context: cut
    "",
    "The capital of France is Paris.",
]
BUILDERS = {"bert": encoders.bert_reranker_checkpoint, "xlm_roberta": encoders.xlm_roberta_reranker_checkpoint}


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    return {name: build(tmp_path_factory.mktemp(name)) for name, build in BUILDERS.items()}


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def reranker(request, paths):
    path = paths[request.param]
    ours = load_model(path)
    hf = AutoModelForSequenceClassification.from_pretrained(path, attn_implementation="eager").eval()
    return ours, Tokenizer.from_dir(path), hf, AutoTokenizer.from_pretrained(path)


def _pairs(ours, tokenizer, documents=DOCUMENTS):
    encoded = [tokenizer.encode_pair(QUERY, doc, ours.max_input_len) for doc in documents]
    return [ids for ids, _ in encoded], [types for _, types in encoded]


def test_pairs_tokenize_as_transformers_with_the_document_cut(reranker):
    ours, tokenizer, _, hf_tokenizer = reranker
    limit = ours.max_input_len
    # batched, as sentence-transformers' CrossEncoder calls it (a lone pair with an empty document would be read
    # as no pair at all)
    expected = hf_tokenizer([QUERY] * len(DOCUMENTS), DOCUMENTS, truncation="only_second", max_length=limit)
    for i, doc in enumerate(DOCUMENTS):
        ids, types = tokenizer.encode_pair(QUERY, doc, limit)
        assert ids == expected["input_ids"][i], doc
        assert types == (expected["token_type_ids"][i] if "token_type_ids" in expected else types), doc
    ids, _ = tokenizer.encode_pair(QUERY, LONG, limit)
    assert len(ids) == limit  # the long document is cut to the model's context, the query kept whole
    with pytest.raises(TokenizerError):
        tokenizer.encode_pair(LONG, "a document", limit)  # the query alone fills it


def test_logits_and_scores_match_transformers(reranker):
    ours, tokenizer, hf, hf_tokenizer = reranker
    ids, types = _pairs(ours, tokenizer)
    batch = hf_tokenizer([QUERY] * len(DOCUMENTS), DOCUMENTS, truncation="only_second",
                         max_length=ours.max_input_len, padding=True, return_tensors="pt")  # fmt: skip
    with torch.inference_mode():
        expected = hf(**batch).logits[:, 0]
    logits = ours.logits(ids, types)
    diff = (logits - expected).abs().max().item()
    print(f"{type(ours).__name__}: max |logit - transformers| = {diff:.3g}; logits {logits.tolist()}")
    assert diff < 1e-4
    # the documents score differently: a head reading a constant, or one position, would fail here
    assert len({round(x, 4) for x in logits.tolist()}) >= 4
    torch.testing.assert_close(ours.scores(ids, types), torch.sigmoid(expected), atol=1e-4, rtol=0)


def test_scores_do_not_depend_on_the_batch(reranker):
    ours, tokenizer, _, _ = reranker
    ids, types = _pairs(ours, tokenizer)
    alone = torch.cat([ours.scores([i], [t]) for i, t in zip(ids, types, strict=True)])
    engine = EmbeddingEngine(ours, max_batched_tokens=10_000)
    engine.add_request("a", ids[:2], types[:2])
    engine.add_request("b", ids[2:], types[2:])
    results = {r.request_id: r for r in engine.step()}  # both requests in one forward pass
    together = torch.cat([results["a"].values, results["b"].values])
    torch.testing.assert_close(together, alone, atol=1e-6, rtol=0)
    assert results["a"].prompt_tokens == sum(map(len, ids[:2]))


def test_classifier_configs_read_and_refused(tmp_path):
    identity = encoders.xlm_roberta_reranker_checkpoint(tmp_path / "identity", "torch.nn.modules.linear.Identity")
    model = load_model(identity)
    assert model.config.score_activation == "identity"
    ids, types = [[0, 5, 6, 2, 2, 7, 2]], [[0] * 7]
    torch.testing.assert_close(model.scores(ids, types), model.logits(ids, types))  # raw logits as the score
    config = json.loads((identity / "config.json").read_text())
    for change, words in (
        ({"id2label": {"0": "no", "1": "yes"}}, "one label"),
        ({"sentence_transformers": {"activation_fn": "torch.nn.modules.activation.Tanh"}}, "not supported"),
    ):
        (identity / "config.json").write_text(json.dumps({**config, **change}))
        with pytest.raises(ConfigError, match=words):
            load_model(identity)


def test_a_kind_needs_its_checkpoint(paths, tmp_path):
    """A cross-encoder is no embedding model, and an encoder without a head cannot rerank: refused at start."""
    bert = encoders.bert_checkpoint(tmp_path / "bert")
    shutil.copy(paths["bert"] / "tokenizer.json", bert / "tokenizer.json")
    for spec, words in (
        (ModelSpec(id="r", source=str(paths["bert"]), kind="embedding"), "serve it as kind rerank"),
        (ModelSpec(id="r", source=str(bert), kind="rerank"), "kind rerank needs a cross-encoder"),
    ):
        with pytest.raises(env.ConfigError, match=words):
            registry.load(spec, Metrics(), EngineLoop())


# --- over HTTP ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def service(paths):
    with inference_service(*model_flags(*(f"{name}={path}:rerank" for name, path in paths.items()))) as url:
        yield url


def _post(service: str, route: str, body: dict) -> httpx.Response:
    return httpx.post(f"{service}{route}", json=body, timeout=60)


@pytest.mark.live
@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_rerank_over_http_sorts_the_scores_of_the_model(service, paths, name):
    model = load_model(paths[name])
    ids, types = _pairs(model, Tokenizer.from_dir(paths[name]))
    scores = model.scores(ids, types).tolist()
    documents = [{"text": d} if i % 2 else d for i, d in enumerate(DOCUMENTS)]  # strings and objects alike
    answer = _post(service, "/v1/rerank", {"model": name, "query": QUERY, "documents": documents})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    results = body["results"]
    assert [r["index"] for r in results] == sorted(range(len(scores)), key=lambda i: -scores[i])
    for r in results:
        assert r["relevance_score"] == pytest.approx(scores[r["index"]], abs=1e-5)
        assert r["document"] == {"text": DOCUMENTS[r["index"]]}
    assert body["model"] == name and body["id"].startswith("rerank-")
    # the tokens the model read: the long document counted as cut
    assert body["usage"] == {"prompt_tokens": sum(map(len, ids)), "total_tokens": sum(map(len, ids))}
    assert max(map(len, ids)) == model.max_input_len

    top = _post(service, "/v2/rerank", {"model": name, "query": QUERY, "documents": DOCUMENTS, "top_n": 2,
                                        "return_documents": False}).json()  # fmt: skip
    assert top["results"] == [{k: r[k] for k in ("index", "relevance_score")} for r in results[:2]]


@pytest.mark.live
def test_score_pairs_one_to_many_and_pair_by_pair(service, paths):
    model = load_model(paths["bert"])
    tokenizer = Tokenizer.from_dir(paths["bert"])
    ids, types = _pairs(model, tokenizer)
    scores = model.scores(ids, types).tolist()
    body = _post(service, "/v1/score", {"model": "bert", "text_1": QUERY, "text_2": DOCUMENTS}).json()
    assert body["object"] == "list" and [d["index"] for d in body["data"]] == list(range(len(DOCUMENTS)))
    assert [d["score"] for d in body["data"]] == pytest.approx(scores, abs=1e-5)
    assert body["usage"]["prompt_tokens"] == sum(map(len, ids)) and body["usage"]["completion_tokens"] == 0
    pairs = _post(service, "/v1/score", {"model": "bert", "text_1": [QUERY, "x"], "text_2": DOCUMENTS[:2]}).json()
    second, second_types = tokenizer.encode_pair("x", DOCUMENTS[1], model.max_input_len)
    expected = [scores[0], model.scores([second], [second_types]).item()]
    assert [d["score"] for d in pairs["data"]] == pytest.approx(expected, abs=1e-5)


@pytest.mark.live
@pytest.mark.parametrize(
    ("route", "body", "param", "code"),
    [
        ("/v1/rerank", {"query": QUERY, "documents": []}, "documents", "invalid_type"),
        ("/v1/rerank", {"query": 3, "documents": ["a"]}, "query", "invalid_type"),
        ("/v1/rerank", {"query": QUERY, "documents": ["a", {"text": 4}]}, "documents[1].text", "invalid_type"),
        ("/v1/rerank", {"query": QUERY, "documents": ["a"], "top_n": 0}, "top_n", "invalid_type"),
        ("/v1/rerank", {"query": QUERY, "documents": ["a"] * 1001}, "documents", None),
        ("/v1/rerank", {"query": LONG, "documents": ["a"]}, "query", "context_length_exceeded"),
        ("/v1/score", {"text_1": ["a", "b"], "text_2": ["a", "b", "c"]}, "text_2", None),
        ("/v1/score", {"text_1": "a"}, "text_2", "invalid_type"),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}, "model", None),
    ],
)
def test_bad_rerank_requests_get_openai_errors(service, route, body, param, code):
    answer = _post(service, route, {"model": "bert", **body})
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert (error["param"], error["code"]) == (param, code), error
    assert set(error) == {"message", "type", "param", "code"}
