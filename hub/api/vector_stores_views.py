"""OpenAI's vector stores: ``POST`` and ``GET /v1/vector_stores``; ``GET``, ``POST`` (name, expiry, metadata) and
``DELETE /v1/vector_stores/{id}``; ``POST /v1/vector_stores/{id}/search``. A store's files are indexed in the
background (``hub/vector_stores/``; their routes in ``vector_store_files_views.py``). Scoped to the key's tenant by
``TenantAPIView``: another tenant's id is answered exactly like an id that never existed (404)."""

from __future__ import annotations

from asgiref.sync import async_to_sync
from django.db import transaction
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from accounts import vector_stores
from accounts.models import ServedModel, VectorStore
from hub.api import errors, paging, validation
from hub.api.openapi import errors_for
from hub.api.openapi_schemas import ref
from hub.api.views import TenantAPIView
from hub.vector_stores import dispatch, requests
from hub.vector_stores import filters as attribute_filters
from hub.vector_stores.embed import EmbeddingFailed
from hub.vector_stores.rewrite import rewritten
from hub.vector_stores.search import hybrid_of, search

MAX_QUERIES = 10
MAX_RESULTS = 50  # OpenAI's
RANKERS = ("none", "auto", "default-2024-11-15")
_ID = OpenApiParameter("vector_store_id", str, OpenApiParameter.PATH, description="The vector store's id (`vs_...`).")
TAGS = ["vector stores"]


def _name(value: object) -> str:
    if not isinstance(value, str) or len(value) > 256 or "\x00" in value:
        raise errors.InvalidRequest("'name' must be a string of at most 256 characters, without NUL.", param="name")
    return value


class VectorStoreView(TenantAPIView):
    """What the vector store routes share: the JSON body, the store by id (404), its embedding model's context."""

    def body(self) -> dict:
        body = self.request._request.scope["hub"].json
        return body if isinstance(body, dict) else {}

    def store(self, store_id: str) -> VectorStore:
        found = vector_stores.find_store(self.key.tenant_id, store_id)
        if found is None:
            raise errors.NotFound(f"No vector store found with id '{errors.shown(store_id)}'.", param="vector_store_id")
        return found

    def usable(self, store: VectorStore) -> VectorStore:
        """The store, unless it has expired (400, as OpenAI)."""
        if vector_stores.expired(store):
            raise errors.InvalidRequest(f"Vector store '{store.pk}' has expired and can no longer be used.",
                                        param="vector_store_id")  # fmt: skip
        return store

    @staticmethod
    def context(store: VectorStore) -> int:
        """The store's embedding model's context (0: not known), which its chunks must fit."""
        found = ServedModel.objects.filter(pk=store.embedding_model).values_list("max_sequence_length", flat=True)
        return found.first() or 0

    def add(self, store: VectorStore, entries: list, batch: bool = False):
        """Add the files and have them indexed once the rows are committed; (the batch or None, the rows)."""
        with transaction.atomic():
            if batch:
                made, rows = vector_stores.create_batch(store, entries, api_key_id=self.key.key_id)
            else:
                made, rows = None, vector_stores.add_files(store, entries, api_key_id=self.key.key_id)
            transaction.on_commit(lambda: dispatch.start([row.pk for row in rows]))
        return made, rows


class VectorStoreListView(VectorStoreView):
    @extend_schema(
        operation_id="create_vector_store",
        summary="Create a vector store",
        description="A store, with `file_ids` indexed in the background (`status` `in_progress` until they are). Its "
        "embedding model: `embedding_model` (our extension) or `HUB_VECTOR_STORE_EMBEDDING_MODEL`, a catalog embedding "
        "model the key may use; chunks are cut to fit its context.",
        tags=TAGS,
        request={"application/json": ref("CreateVectorStoreRequest")},
        responses={200: ref("VectorStore"), **errors_for(400, 401, 404)},
    )
    def post(self, request: Request) -> Response:
        body = self.body()
        validation.check_metadata(body.get("metadata"))
        name = _name(body.get("name") or "")
        model = requests.embedding_model(self.key, body.get("embedding_model"))
        days = requests.expires_after_days(body.get("expires_after"))
        entries = requests.entries(self.key, body, model.max_sequence_length, limit=requests.MAX_STORE_FILES,
                                   required=False)  # fmt: skip
        with transaction.atomic():
            store = vector_stores.create_store(
                tenant_id=self.key.tenant_id,
                name=name,
                embedding_model=model.id,
                expires_after_days=days,
                metadata=dict(body.get("metadata") or {}),
            )
            self.add(store, entries)
        return Response(vector_stores.store_resource(store))

    @extend_schema(
        operation_id="list_vector_stores",
        summary="List vector stores",
        tags=TAGS,
        parameters=[
            OpenApiParameter("limit", int, description="1 to 100 (default 20)."),
            OpenApiParameter("order", str, enum=["asc", "desc"], description="By creation time; default `desc`."),
            OpenApiParameter("after", str, description="A vector store's id: list those after it."),
            OpenApiParameter("before", str, description="A vector store's id: list those just before it."),
        ],
        responses={200: ref("VectorStoreList"), **errors_for(400, 401)},
    )
    def get(self, request: Request) -> Response:
        limit, descending = paging.limit_and_order(request, "desc")
        after, before = paging.cursors(request, lambda pk: vector_stores.find_store(self.key.tenant_id, pk),
                                       "vector store")  # fmt: skip
        page = vector_stores.store_page(self.key.tenant_id, after=after, limit=limit, descending=descending,
                                        before=before)  # fmt: skip
        return Response(paging.list_object([vector_stores.store_resource(s) for s in page.rows], page.has_more))


class VectorStoreDetailView(VectorStoreView):
    @extend_schema(operation_id="retrieve_vector_store", summary="Retrieve a vector store", tags=TAGS, parameters=[_ID],
                   responses={200: ref("VectorStore"), **errors_for(401, 404)})  # fmt: skip
    def get(self, request: Request, vector_store_id: str) -> Response:
        return Response(vector_stores.store_resource(self.store(vector_store_id)))

    @extend_schema(
        operation_id="modify_vector_store",
        summary="Modify a vector store",
        description="Its `name`, `expires_after` (null: never) or `metadata`, each only when given.",
        tags=TAGS,
        parameters=[_ID],
        request={"application/json": ref("UpdateVectorStoreRequest")},
        responses={200: ref("VectorStore"), **errors_for(400, 401, 404)},
    )
    def post(self, request: Request, vector_store_id: str) -> Response:
        store, body = self.store(vector_store_id), self.body()
        fields: dict = {}
        if body.get("name") is not None:
            fields["name"] = _name(body["name"])
        if "expires_after" in body:
            fields["expires_after_days"] = requests.expires_after_days(body["expires_after"])
        if body.get("metadata") is not None:
            validation.check_metadata(body["metadata"])
            fields["metadata"] = dict(body["metadata"])
        return Response(vector_stores.store_resource(vector_stores.update_store(store, fields)))

    @extend_schema(operation_id="delete_vector_store", summary="Delete a vector store", tags=TAGS, parameters=[_ID],
                   description="The store, its files' chunks and batches; the files stay in the Files API.",
                   responses={200: ref("VectorStoreDeleted"), **errors_for(401, 404)})  # fmt: skip
    def delete(self, request: Request, vector_store_id: str) -> Response:
        if not vector_stores.delete_store(self.key.tenant_id, vector_store_id):
            self.store(vector_store_id)  # raises the 404
        return Response({"id": vector_store_id, "object": "vector_store.deleted", "deleted": True})


def _queries(value: object) -> list[str]:
    if isinstance(value, str) and value:
        return [value]
    if isinstance(value, list) and 1 <= len(value) <= MAX_QUERIES and all(isinstance(q, str) and q for q in value):
        return list(value)
    raise errors.InvalidRequest(f"'query' must be a non-empty string or an array of 1 to {MAX_QUERIES} of them.",
                                param="query")  # fmt: skip


def _threshold(options: object) -> float:
    if options is None:
        return 0.0
    if not isinstance(options, dict) or options.get("ranker", "auto") not in RANKERS:
        raise errors.InvalidRequest(f"'ranking_options.ranker' must be one of {', '.join(RANKERS)}.",
                                    param="ranking_options.ranker")  # fmt: skip
    threshold = options.get("score_threshold", 0.0)
    if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or not 0.0 <= threshold <= 1.0:
        raise errors.InvalidRequest("'ranking_options.score_threshold' must be a number from 0 to 1.",
                                    param="ranking_options.score_threshold")  # fmt: skip
    return float(threshold)


class VectorStoreSearchView(VectorStoreView):
    @extend_schema(
        operation_id="search_vector_store",
        summary="Search a vector store",
        description="The chunks nearest the query (or queries) by the store's embedding model, best first: `score` is "
        "their cosine similarity (below 0 counts as 0), or with `ranking_options.hybrid_search` (as the file_search "
        "tool's) that ranking fused with the keywords' (BM25, stemmed words); then, where the operator names a rerank "
        "model the key "
        "may use (`HUB_VECTOR_STORE_RERANK_MODEL`) and `ranking_options.ranker` is not `none`, the best 50 re-ranked "
        "by it (`score`: its relevance). `filters` on the files' attributes. With `rewrite_query`, where the operator "
        "names a chat model the key may use (`HUB_VECTOR_STORE_REWRITE_MODEL`), each query is first rewritten by it "
        "into a search query, and `search_query` gives what was searched; otherwise the query is used as given. The "
        "query's embedding (and its rewriting, re-ranking) is metered as `vector_stores/search`.",
        tags=TAGS,
        parameters=[_ID],
        request={"application/json": ref("VectorStoreSearchRequest")},
        responses={200: ref("VectorStoreSearchResultsPage"), **errors_for(400, 401, 404, 429)},
    )
    def post(self, request: Request, vector_store_id: str) -> Response:
        store, body = self.usable(self.store(vector_store_id)), self.body()
        queries = _queries(body.get("query"))
        limit = body.get("max_num_results", 10)
        if type(limit) is not int or not 1 <= limit <= MAX_RESULTS:
            raise errors.InvalidRequest(f"'max_num_results' must be an integer from 1 to {MAX_RESULTS}.",
                                        param="max_num_results")  # fmt: skip
        if body.get("filters") is not None:
            attribute_filters.check(body["filters"])
        threshold = _threshold(body.get("ranking_options"))
        hybrid = hybrid_of(body.get("ranking_options"), "ranking_options")
        if not isinstance(rewrite := body.get("rewrite_query", False), bool):
            raise errors.InvalidRequest("'rewrite_query' must be a boolean.", param="rewrite_query")
        if not self.key.may_use(store.embedding_model):
            raise errors.InvalidRequest(f"The store's embedding model '{store.embedding_model}' is not one this key "
                                        "may use.", param="vector_store_id")  # fmt: skip
        try:
            if rewrite:
                queries = async_to_sync(rewritten)(self.key, queries)
            hits = async_to_sync(search)(self.key, [store], queries, max_results=limit, threshold=threshold,
                                         filters=body.get("filters"), hybrid=hybrid,
                                         ranker=(body.get("ranking_options") or {}).get("ranker"),
                                         request_id=self.request._request.scope["hub"].request_id)  # fmt: skip
        except EmbeddingFailed as failed:
            raise failed.error from None
        return Response({"object": "vector_store.search_results.page", "search_query": queries,
                         "data": [hit.resource() for hit in hits], "has_more": False, "next_page": None})  # fmt: skip
