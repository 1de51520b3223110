"""A vector store search: each query embedded by the stores' embedding model (through the gateway with the caller's
key, metered as ``vector_stores/search``), every chunk of the stores' completed files whose attributes pass the
filters scored by its cosine similarity to the nearest query (below 0 counts as 0: OpenAI's scores lie in [0, 1]),
the best ``max_num_results`` at or above ``score_threshold`` returned, best first. The chunks' vectors are read from
the database and compared in memory (numpy), which suits stores of up to some hundred thousand chunks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from accounts import vector_stores
from accounts.authn import KeyContext
from accounts.models import StoredFile, VectorStore
from hub.pool import db
from hub.vector_stores import filters as attribute_filters
from hub.vector_stores.embed import embed

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


def _candidates(store_ids: list[str], filters: dict | None) -> tuple[list[tuple], np.ndarray]:
    """The chunks that pass the filters: (file id, file's attributes, text) each, and their vectors."""
    rows = list(vector_stores.chunks_of(store_ids).values_list("file__file_id", "file__attributes", "text",
                                                               "embedding"))  # fmt: skip
    if filters is not None:
        rows = [r for r in rows if attribute_filters.matches(filters, r[1] or {})]
    if not rows:
        return [], np.zeros((0, 0), np.float32)
    return [r[:3] for r in rows], np.stack([np.frombuffer(bytes(r[3]), "<f4") for r in rows])


def _filenames(tenant_id: int, file_ids: set[str]) -> dict[str, str]:
    return dict(StoredFile.objects.filter(tenant_id=tenant_id, pk__in=file_ids).values_list("pk", "filename"))


async def search(
    key: KeyContext, stores: list[VectorStore], queries: list[str], *, max_results: int, threshold: float = 0.0,
    filters: dict | None = None, request_id: str | None = None,
) -> list[Hit]:  # fmt: skip
    """The stores share one embedding model (the caller checks); ``request_id``: the id the query's usage row takes."""
    for store in stores:
        await db(vector_stores.touch, store)
    chunks, vectors = await db(_candidates, [s.pk for s in stores], filters)
    asked = await embed(key, stores[0].embedding_model, queries, background=False, metered_route=METERED_ROUTE,
                        request_id=request_id)  # fmt: skip
    if not chunks:
        return []
    if vectors.shape[1] != asked.shape[1]:  # a store indexed by another model of the same name: nothing matches
        return []
    scores = np.clip((vectors @ asked.T).max(axis=1), 0.0, 1.0)
    order = [int(i) for i in np.argsort(-scores, kind="stable") if scores[i] >= threshold][:max_results]
    names = await db(_filenames, stores[0].tenant_id, {chunks[i][0] for i in order})
    return [Hit(chunks[i][0], names.get(chunks[i][0], ""), round(float(scores[i]), 6), chunks[i][1] or {},
                chunks[i][2]) for i in order]  # fmt: skip
