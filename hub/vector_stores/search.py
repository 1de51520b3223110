"""A vector store search: each query embedded by the stores' embedding model (through the gateway with the caller's
key, metered as ``vector_stores/search``), every chunk of the stores' completed files whose attributes pass the
filters scored by its cosine similarity to the nearest query (below 0 counts as 0: OpenAI's scores lie in [0, 1]),
the best ``max_num_results`` at or above ``score_threshold`` returned, best first. The chunks' vectors are read from
the database (``vectors.py`` keeps them in memory, per file, while they stay current) and compared in numpy; the
texts are read for the best only.

A hybrid search (the file_search tool's ``ranking_options.hybrid_search``) ranks the same chunks twice, by that
similarity and by their keywords' BM25 score (``keywords.py``), and fuses the two rankings by weighted reciprocal
rank fusion: ``embedding_weight / (60 + semantic rank) + text_weight / (60 + keyword rank)``, the second term only
for a chunk that holds a query term (60: Cormack et al.'s constant, Elasticsearch's and OpenSearch's default).
``score`` is that sum over the most it can be (first in both rankings), so it stays in [0, 1], and
``score_threshold`` applies to it.

Re-ranking (``ranking_options.ranker`` other than ``none``, OpenAI's default ``auto``): where the operator names a
catalog rerank model (``HUB_VECTOR_STORE_RERANK_MODEL``) that the caller's key may use, the best ``RERANK_DEPTH``
chunks of that ranking are scored again by it (a cross-encoder reads each query with each chunk; through the gateway
with the caller's key, metered as ``vector_stores/search``), and its relevance (the best query's, clipped to [0, 1])
is their ``score``, order and threshold. Without such a model the ranking above is the answer."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass

import numpy as np
from django.conf import settings

from accounts import vector_stores
from accounts.authn import KeyContext
from accounts.models import StoredFile, VectorStore, VectorStoreChunk
from hub.api import errors
from hub.api.relay_common import error_from_upstream
from hub.batches.call import call
from hub.pool import db
from hub.vector_stores import filters as attribute_filters
from hub.vector_stores import keywords, vectors
from hub.vector_stores.embed import EmbeddingFailed, embed
from hub.vector_stores.vectors import FileVectors

METERED_ROUTE = "vector_stores/search"
RRF_K = 60
RERANK_DEPTH = 50  # the chunks a re-ranking reads again: OpenAI's largest max_num_results


@dataclass(frozen=True)
class Hybrid:
    """``ranking_options.hybrid_search``: how much each ranking counts in the fusion."""

    embedding_weight: float
    text_weight: float


def hybrid_of(options: object, param: str) -> Hybrid | None:
    """The ``hybrid_search`` of ``options`` (``param``: where they are), checked; None without one."""
    given = options.get("hybrid_search") if isinstance(options, dict) else None
    if given is None:
        return None
    where = f"{param}.hybrid_search"
    if not isinstance(given, dict):
        raise errors.InvalidRequest(f"Invalid '{where}': expected an object.", param=where)
    weights = []
    for name in ("embedding_weight", "text_weight"):
        value = given.get(name)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value < float("inf"):
            raise errors.InvalidRequest(f"'{where}.{name}' must be a number of 0 or more.", param=f"{where}.{name}")
        weights.append(float(value))
    if not any(weights):
        raise errors.InvalidRequest(f"'{where}' needs a weight above 0.", param=where)
    return Hybrid(*weights)


def _ranks(scores: np.ndarray) -> np.ndarray:
    """[n] each score's rank, 1 for the best (ties in candidate order)."""
    ranks = np.empty(len(scores), np.float64)
    ranks[np.argsort(-scores, kind="stable")] = np.arange(1, len(scores) + 1)
    return ranks


def fuse(semantic: np.ndarray, keyword: np.ndarray, hybrid: Hybrid) -> np.ndarray:
    """[n] the weighted reciprocal rank fusion of the two scores, over its most (see above): in [0, 1]."""
    top = max(hybrid.embedding_weight, hybrid.text_weight)  # weights as large as 1e308 add up without overflowing
    semantic_weight, text_weight = hybrid.embedding_weight / top, hybrid.text_weight / top
    fused = semantic_weight / (RRF_K + _ranks(semantic))
    fused += np.where(keyword > 0, text_weight / (RRF_K + _ranks(keyword)), 0.0)
    return fused / ((semantic_weight + text_weight) / (RRF_K + 1))


@dataclass(frozen=True)
class Hit:
    file_id: str
    filename: str
    score: float
    attributes: dict
    text: str

    def resource(self) -> dict:
        """OpenAI's VectorStoreSearchResultItem."""
        return {"file_id": self.file_id, "filename": self.filename, "score": self.score,
                "attributes": self.attributes, "content": [{"type": "text", "text": self.text}]}  # fmt: skip


@dataclass(frozen=True)
class Candidates:
    """The chunks a search scores: the stores' completed files that pass the filters (``files``: row id -> Files API
    id and attributes) and their chunks' vectors (``vectors.py``)."""

    files: dict[int, tuple[str, dict]]
    vectors: dict[int, FileVectors]


def _candidates(store_ids: list[str], filters: dict | None) -> Candidates:
    files = {pk: (file_id, attributes or {}) for pk, file_id, attributes in vector_stores.completed_files(store_ids)}
    if filters is not None:
        files = {pk: meta for pk, meta in files.items() if attribute_filters.matches(filters, meta[1])}
    return Candidates(files, vectors.of_files(list(files)) if files else {})


def reranker(key: KeyContext, ranker: str | None) -> str | None:
    """The rerank model a search of ``key`` re-ranks with (see above), or None."""
    model = settings.HUB_VECTOR_STORE_RERANK_MODEL
    return model if model and ranker != "none" and key.may_use(model) else None


async def _relevance(key: KeyContext, model: str, queries: list[str], texts: list[str]) -> np.ndarray:
    """[len(texts)] the rerank model's relevance of each text to its best query, in [0, 1]."""
    best = np.zeros(len(texts))
    for query in queries:
        body = {"model": model, "query": query, "documents": texts, "return_documents": False}
        answer = await call(key, "rerank", body, "req_" + secrets.token_hex(12), batch=False,
                            metered_route=METERED_ROUTE)  # fmt: skip
        if answer.status != 200:  # as an embedding's failure: the client of the search gets the gateway's error
            raise EmbeddingFailed(error_from_upstream(answer.status, answer.body))
        for result in json.loads(answer.body)["results"]:
            best[result["index"]] = max(best[result["index"]], result["relevance_score"])
    return np.clip(best, 0.0, 1.0)


def _texts(chunk_ids: list[int]) -> dict[int, str]:
    return dict(VectorStoreChunk.objects.filter(pk__in=chunk_ids).values_list("pk", "text"))


def _texts_and_names(tenant_id: int, chunk_ids: list[int], file_ids: set[str]) -> tuple[dict, dict]:
    names = dict(StoredFile.objects.filter(tenant_id=tenant_id, pk__in=file_ids).values_list("pk", "filename"))
    return _texts(chunk_ids), names


async def search(
    key: KeyContext, stores: list[VectorStore], queries: list[str], *, max_results: int, threshold: float = 0.0,
    filters: dict | None = None, request_id: str | None = None, hybrid: Hybrid | None = None,
    ranker: str | None = None,
) -> list[Hit]:  # fmt: skip
    """The stores share one embedding model (the caller checks); ``request_id``: the id the query's usage row takes;
    ``hybrid``: fuse the keyword ranking in; ``ranker``: ``ranking_options.ranker`` (see above)."""
    for store in stores:
        await db(vector_stores.touch, store)
    found = await db(_candidates, [s.pk for s in stores], filters)
    asked = await embed(key, stores[0].embedding_model, queries, background=False, metered_route=METERED_ROUTE,
                        request_id=request_id)  # fmt: skip
    groups = [(row, v) for row, v in found.vectors.items() if v.matrix.shape[1] == asked.shape[1]]
    if not groups:  # nothing indexed (or by another model of the same name: nothing matches)
        return []
    scores = np.clip(np.concatenate([(v.matrix @ asked.T).max(axis=1) for _, v in groups]), 0.0, 1.0)
    if hybrid is not None:
        # current where they match the vectors just read (no second query); a file indexed again between the two
        # reads (its texts newer than its vectors) matches no keyword this once
        postings = await db(keywords.of_files, [row for row, _ in groups],
                            {row: (v.first, len(v.chunk_ids)) for row, v in groups})  # fmt: skip
        aligned = [t if (t := postings.get(row)) is not None and t.chunk_ids == v.chunk_ids
                   else keywords.index(v.chunk_ids, [""] * len(v.chunk_ids)) for row, v in groups]  # fmt: skip
        scores = fuse(scores, keywords.bm25(aligned, queries), hybrid)
    chunk_ids = [chunk for _, v in groups for chunk in v.chunk_ids]
    file_rows = [row for row, v in groups for _ in v.chunk_ids]
    ranked = np.argsort(-scores, kind="stable")
    read: dict[int, str] = {}  # chunk id -> text, of the chunks re-ranked (the best are among them)
    if (model := reranker(key, ranker)) is not None:
        top = ranked[:RERANK_DEPTH]
        read = await db(_texts, [chunk_ids[i] for i in top])
        relevance = await _relevance(key, model, queries, [read.get(chunk_ids[i], "") for i in top])
        scores = scores.astype(np.float64)
        scores[top] = relevance
        ranked = top[np.argsort(-relevance, kind="stable")]
    order = [int(i) for i in ranked if scores[i] >= threshold][:max_results]
    best = [chunk_ids[i] for i in order]
    files = [found.files[file_rows[i]] for i in order]
    texts, names = await db(_texts_and_names, stores[0].tenant_id, [c for c in best if c not in read],
                            {file_id for file_id, _ in files})  # fmt: skip
    texts.update(read)
    return [Hit(file_id, names.get(file_id, ""), round(float(scores[i]), 6), attributes, texts.get(chunk, ""))
            for i, chunk, (file_id, attributes) in zip(order, best, files, strict=True)]  # fmt: skip
