"""A vector store search: each query embedded by the stores' embedding model (through the gateway with the caller's
key, metered as ``vector_stores/search``), every chunk of the stores' completed files whose attributes pass the
filters scored by its cosine similarity to the nearest query (below 0 counts as 0: OpenAI's scores lie in [0, 1]),
the best ``max_num_results`` at or above ``score_threshold`` returned, best first. The chunks' vectors are read from
the database (``vectors.py`` keeps them in memory, per file, while they stay current) and compared in numpy; the
texts are read for the best only."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from accounts import vector_stores
from accounts.authn import KeyContext
from accounts.models import StoredFile, VectorStore, VectorStoreChunk
from hub.pool import db
from hub.vector_stores import filters as attribute_filters
from hub.vector_stores import vectors
from hub.vector_stores.embed import embed
from hub.vector_stores.vectors import FileVectors

METERED_ROUTE = "vector_stores/search"


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
    filters: dict | None = None, request_id: str | None = None,
) -> list[Hit]:  # fmt: skip
    """The stores share one embedding model (the caller checks); ``request_id``: the id the query's usage row takes."""
    for store in stores:
        await db(vector_stores.touch, store)
    found = await db(_candidates, [s.pk for s in stores], filters)
    asked = await embed(key, stores[0].embedding_model, queries, background=False, metered_route=METERED_ROUTE,
                        request_id=request_id)  # fmt: skip
    groups = [(row, v) for row, v in found.vectors.items() if v.matrix.shape[1] == asked.shape[1]]
    if not groups:  # nothing indexed (or by another model of the same name: nothing matches)
        return []
    scores = np.clip(np.concatenate([(v.matrix @ asked.T).max(axis=1) for _, v in groups]), 0.0, 1.0)
    chunk_ids = [chunk for _, v in groups for chunk in v.chunk_ids]
    file_rows = [row for row, v in groups for _ in v.chunk_ids]
    order = [int(i) for i in np.argsort(-scores, kind="stable") if scores[i] >= threshold][:max_results]
    best = [chunk_ids[i] for i in order]
    files = [found.files[file_rows[i]] for i in order]
    texts, names = await db(_texts_and_names, stores[0].tenant_id, best, {file_id for file_id, _ in files})
    return [Hit(file_id, names.get(file_id, ""), round(float(scores[i]), 6), attributes, texts.get(chunk, ""))
            for i, chunk, (file_id, attributes) in zip(order, best, files, strict=True)]  # fmt: skip
