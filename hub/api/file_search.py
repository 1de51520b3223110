"""The Responses API's ``file_search`` tool, run by the hub over its vector stores (``hub/vector_stores/``).

The model sees the tool as a function, ``file_search(queries)``; when it calls it, the relay (``responses_relay.py``)
runs the search here with the request's key (each query's embedding metered as ``vector_stores/search``), shows the
call as a ``file_search_call`` item (its ``results`` only with ``include: ["file_search_call.results"]``, as
OpenAI's), gives the model the results as the function's output, and lets it answer. The tool's
``vector_store_ids`` (this tenant's stores, one embedding model), ``max_num_results``, ``filters``,
``ranking_options.score_threshold``, ``ranking_options.hybrid_search`` (keywords' ranking fused with the
embeddings', ``hub/vector_stores/search.py``) and ``ranking_options.ranker`` (re-ranking by the operator's rerank
model, or ``none``) apply as on ``POST /vector_stores/{id}/search``."""

from __future__ import annotations

import json
from dataclasses import dataclass

from accounts import vector_stores
from accounts.authn import KeyContext
from accounts.models import VectorStore
from hub.api import errors
from hub.api.citations import marker
from hub.pool import db
from hub.vector_stores.search import Hybrid, hybrid_of, search

FILE_SEARCH_NAME = "file_search"  # the function the model calls it by
RESULTS_INCLUDE = "file_search_call.results"
DEFAULT_RESULTS = 10
MAX_QUERIES = 5
FILE_SEARCH_FUNCTION = {
    "type": "function",
    "function": {
        "name": FILE_SEARCH_NAME,
        "description": "Search the user's files for passages relevant to the question. Call it with one or more "
        "short search queries; the passages found come back, each with its file name.",
        "parameters": {
            "type": "object",
            "properties": {"queries": {"type": "array", "items": {"type": "string"}, "minItems": 1,
                                       "maxItems": MAX_QUERIES}},
            "required": ["queries"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}  # fmt: skip


@dataclass(frozen=True)
class FileSearch:
    stores: list[VectorStore]
    max_results: int
    threshold: float
    filters: dict | None
    include_results: bool
    hybrid: Hybrid | None = None
    ranker: str | None = None

    async def run(self, key: KeyContext, queries: list[str]) -> list[dict]:
        """The results, best first, as the file_search_call item shows them."""
        hits = await search(key, self.stores, queries, max_results=self.max_results, threshold=self.threshold,
                            filters=self.filters, hybrid=self.hybrid, ranker=self.ranker)  # fmt: skip
        return [{"file_id": h.file_id, "filename": h.filename, "score": h.score, "text": h.text,
                 "attributes": h.attributes} for h in hits]  # fmt: skip


def tool_of(body: dict) -> dict | None:
    return next((t for t in body.get("tools") or [] if t.get("type") == "file_search"), None)


def _stores(tenant_id: int, ids: list[str]) -> list[VectorStore]:
    found = []
    for store_id in dict.fromkeys(ids):
        store = vector_stores.find_store(tenant_id, store_id)
        if store is None:
            raise errors.NotFound(f"No vector store found with id '{errors.shown(store_id)}'.",
                                  param="tools.vector_store_ids")  # fmt: skip
        if vector_stores.expired(store):
            raise errors.InvalidRequest(f"Vector store '{store.pk}' has expired and can no longer be used.",
                                        param="tools.vector_store_ids")  # fmt: skip
        found.append(store)
    return found


async def plan(key: KeyContext, body: dict) -> FileSearch | None:
    """The request's file search (None without the tool): its stores read and checked."""
    tool = tool_of(body)
    if tool is None:
        return None
    stores = await db(_stores, key.tenant_id, tool["vector_store_ids"])
    models = {s.embedding_model for s in stores}
    if len(models) > 1:
        shown = ", ".join(sorted(models))
        message = f"The vector stores of a file_search tool must share their embedding model; these use {shown}."
        raise errors.InvalidRequest(message, param="tools.vector_store_ids")
    if not key.may_use(next(iter(models))):
        raise errors.InvalidRequest(f"The vector stores' embedding model '{next(iter(models))}' is not one this key "
                                    "may use.", param="tools.vector_store_ids")  # fmt: skip
    options = tool.get("ranking_options") or {}
    threshold = float(options.get("score_threshold") or 0)
    include = RESULTS_INCLUDE in (body.get("include") or [])
    return FileSearch(stores, tool.get("max_num_results") or DEFAULT_RESULTS, threshold, tool.get("filters"), include,
                      hybrid_of(options, "tools.ranking_options"), options.get("ranker"))  # fmt: skip


def queries(arguments: str) -> list[str]:
    """The queries of the model's call (its arguments' JSON): the non-blank strings, at most ``MAX_QUERIES``."""
    try:
        found = json.loads(arguments or "{}").get("queries") or []
    except (ValueError, AttributeError):
        return []
    return [q for q in found if isinstance(q, str) and q.strip()][:MAX_QUERIES]


def results_text(results: list[dict] | None) -> str:
    """What the model reads of a search: each passage with its file's name and citation marker (``citations.py``),
    and how to cite one."""
    if results is None:
        return "The search results were not kept."
    if not results:
        return "No results found."
    passages = "\n\n".join(f"[{i}] {r.get('filename') or r.get('file_id')} {marker(r.get('file_id', ''))}:\n"
                           f"{r.get('text', '')}" for i, r in enumerate(results, 1))  # fmt: skip
    how = (f"Cite a passage you use by writing its file's marker, such as {marker(results[0].get('file_id', ''))}, "
           "right after the sentence it supports.")  # fmt: skip
    return f"{how}\n\n{passages}"
