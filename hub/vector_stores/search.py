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
``score_threshold`` applies to it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from accounts import vector_stores
from accounts.authn import KeyContext
from accounts.models import StoredFile, VectorStore, VectorStoreChunk
from hub.api import errors
from hub.pool import db
from hub.vector_stores import filters as attribute_filters
from hub.vector_stores import keywords, vectors
from hub.vector_stores.embed import embed
from hub.vector_stores.vectors import FileVectors

METERED_ROUTE = "vector_stores/search"
RRF_K = 60


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


def _texts_and_names(tenant_id: int, chunk_ids: list[int], file_ids: set[str]) -> tuple[dict, dict]:
    texts = dict(VectorStoreChunk.objects.filter(pk__in=chunk_ids).values_list("pk", "text"))
    names = dict(StoredFile.objects.filter(tenant_id=tenant_id, pk__in=file_ids).values_list("pk", "filename"))
    return texts, names


async def search(
    key: KeyContext, stores: list[VectorStore], queries: list[str], *, max_results: int, threshold: float = 0.0,
    filters: dict | None = None, request_id: str | None = None, hybrid: Hybrid | None = None,
) -> list[Hit]:  # fmt: skip
    """The stores share one embedding model (the caller checks); ``request_id``: the id the query's usage row takes;
    ``hybrid``: fuse the keyword ranking in (see above)."""
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
    order = [int(i) for i in np.argsort(-scores, kind="stable") if scores[i] >= threshold][:max_results]
    best = [chunk_ids[i] for i in order]
    files = [found.files[file_rows[i]] for i in order]
    texts, names = await db(_texts_and_names, stores[0].tenant_id, best, {file_id for file_id, _ in files})
    return [Hit(file_id, names.get(file_id, ""), round(float(scores[i]), 6), attributes, texts.get(chunk, ""))
            for i, chunk, (file_id, attributes) in zip(order, best, files, strict=True)]  # fmt: skip
