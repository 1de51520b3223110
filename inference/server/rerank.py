"""POST /v1/rerank (Jina's and Cohere's shape, as vLLM and TEI serve it) and POST /v1/score (vLLM's), on a
cross-encoder (kind ``rerank``).

Each (query, document) pair is one sequence: the tokenizer joins the two texts as its model was trained to read
them, and a document too long for the model is cut at its end (the query is kept whole: a query that alone fills
the model's context is refused). The usage counts the tokens the model read, after that cut. All the pairs of a
request go to the engine as one request, which batches them with whatever else waits.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import JSONResponse

from inference.errors import RequestError
from inference.server.errors import check_reservation
from inference.server.registry import LoadedModel
from inference.server.streams import deltas, new_id
from inference.server.tally import tally_of
from inference.tokenizer.tokenizer import TokenizerError

MAX_DOCUMENTS = 1000  # Cohere's limit per request; the hub refuses more first


@dataclass
class Pairs:
    ids: list[list[int]]  # one tokenized (query, document) pair per document
    token_types: list[list[int]]

    @property
    def tokens(self) -> int:
        return sum(map(len, self.ids))


def _text(value: object, param: str) -> str:
    if not isinstance(value, str):
        raise RequestError(f"'{param}' must be a string.", param=param, code="invalid_type")
    return value


def _texts(value: object, param: str, documents: bool = False) -> list[str]:
    """A string or a non-empty list of strings (rerank's documents may also be objects with ``text``)."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not value:
        raise RequestError(f"'{param}' must be a non-empty list.", param=param, code="invalid_type")
    if len(value) > MAX_DOCUMENTS:
        raise RequestError(f"'{param}' has {len(value)} items; at most {MAX_DOCUMENTS} are allowed.", param=param)
    texts = []
    for i, item in enumerate(value):
        if documents and isinstance(item, dict):
            item = item.get("text")
        texts.append(_text(item, f"{param}[{i}]" + (".text" if documents and isinstance(value[i], dict) else "")))
    return texts


def _rerank_model(request: Request, body: dict) -> LoadedModel:
    model = request.app.state.registry.get(body.get("model"))
    if model.kind != "rerank":
        raise RequestError(f"'{model.id}' is not a rerank model (a cross-encoder).", param="model")
    return model


def encode_pairs(model: LoadedModel, queries: list[str], documents: list[str], param: str) -> Pairs:
    """Each query with its document, the document cut to fit the model's context."""
    ids, types = [], []
    for i, (query, document) in enumerate(zip(queries, documents, strict=True)):
        try:
            pair, token_types = model.tokenizer.encode_pair(query, document, model.max_model_len)
        except TokenizerError:
            where = param if len(set(queries)) == 1 else f"{param}[{i}]"
            raise RequestError(
                f"This model's maximum context length is {model.max_model_len} tokens, and '{where}' alone fills "
                "it. Please shorten it.",
                param=where,
                code="context_length_exceeded",
            ) from None
        ids.append(pair)
        types.append(token_types)
    return Pairs(ids, types)


async def _scores(request: Request, model: LoadedModel, pairs: Pairs, prefix: str) -> list[float]:
    state = request.app.state
    check_reservation(request.headers, pairs.tokens)
    request_id = new_id(prefix)
    queue = model.worker.submit(request_id, pairs.ids, pairs.token_types)
    tally_of(request).prompt(pairs.tokens)
    result = None
    async for item in deltas(model, request_id, queue, 1, state.metrics):
        result = item
    state.metrics.prompt_tokens.labels(model.id).inc(result.prompt_tokens)
    state.metrics.requests.labels(model.id, "rerank", "ok").inc()
    return result.values.tolist()


def _usage(pairs: Pairs) -> dict:
    return {"prompt_tokens": pairs.tokens, "total_tokens": pairs.tokens}


async def rerank(request: Request, body: dict) -> JSONResponse:
    model = _rerank_model(request, body)
    query = _text(body.get("query"), "query")
    raw_documents = body.get("documents")
    documents = _texts(raw_documents, "documents", documents=True)
    top_n = body.get("top_n")
    if top_n is not None and (isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 1):
        raise RequestError("'top_n' must be a positive integer.", param="top_n", code="invalid_type")
    return_documents = body.get("return_documents", True)
    if not isinstance(return_documents, bool):
        raise RequestError("'return_documents' must be a boolean.", param="return_documents", code="invalid_type")
    pairs = encode_pairs(model, [query] * len(documents), documents, "query")
    scores = await _scores(request, model, pairs, "rerank")
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:top_n]
    results = []
    for i in order:
        result = {"index": i, "relevance_score": scores[i]}
        if return_documents:
            result["document"] = {"text": documents[i]}
        results.append(result)
    return JSONResponse({"id": new_id("rerank"), "model": model.id, "results": results, "usage": _usage(pairs)})


async def score(request: Request, body: dict) -> JSONResponse:
    """vLLM's pairing: one ``text_1`` against every ``text_2``, or two lists of the same length, pair by pair."""
    model = _rerank_model(request, body)
    first, second = _texts(body.get("text_1"), "text_1"), _texts(body.get("text_2"), "text_2")
    if len(first) == 1:
        first = first * len(second)
    elif len(first) != len(second):
        raise RequestError(
            f"'text_1' has {len(first)} texts and 'text_2' {len(second)}: give one 'text_1', or as many as 'text_2'.",
            param="text_2",
        )
    pairs = encode_pairs(model, first, second, "text_1")
    scores = await _scores(request, model, pairs, "score")
    data = [{"index": i, "object": "score", "score": s} for i, s in enumerate(scores)]
    usage = {**_usage(pairs), "completion_tokens": 0}
    body = {"id": new_id("score"), "object": "list", "created": int(time.time()), "model": model.id, "data": data}
    return JSONResponse({**body, "usage": usage})
