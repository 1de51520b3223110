"""The OpenAPI component schemas of the vector store routes (``vector_stores_views.py``,
``vector_store_files_views.py``), OpenAI's shapes; limits from ``hub/vector_stores/requests.py``."""

from __future__ import annotations

from accounts import vector_stores as vs
from hub.api.openapi_schemas import _BOOL, _INT, _NUM, _STR, HYBRID_SEARCH, METADATA, _obj, list_of
from hub.vector_stores import filters
from hub.vector_stores import requests as r

_COUNTS = _obj({name: _INT for name in ("in_progress", "completed", "failed", "cancelled", "total")},
               ("in_progress", "completed", "failed", "cancelled", "total"))  # fmt: skip
_EXPIRES = _obj({"anchor": {"const": "last_active_at"}, "days": {**_INT, "minimum": 1, "maximum": 365}},
                ("anchor", "days"))  # fmt: skip
_STATIC = _obj(
    {"max_chunk_size_tokens": {**_INT, "minimum": vs.MIN_CHUNK_TOKENS, "maximum": vs.MAX_CHUNK_TOKENS},
     "chunk_overlap_tokens": {**_INT, "minimum": 0, "description": "At most half of max_chunk_size_tokens."}},
    ("max_chunk_size_tokens", "chunk_overlap_tokens"),
)  # fmt: skip
_CHUNKING = {
    "oneOf": [
        _obj({"type": {"const": "auto"}}, ("type",), description="800 tokens, 400 overlapping."),
        _obj({"type": {"const": "static"}, "static": _STATIC}, ("type", "static")),
    ],
    "description": "Chunks larger than the embedding model's context are cut to fit it (the overlap to half).",
}
_ATTRIBUTES = {
    "type": ["object", "null"],
    "maxProperties": r.MAX_ATTRIBUTES,
    "propertyNames": {"maxLength": r.MAX_ATTRIBUTE_KEY},
    "additionalProperties": {"oneOf": [{**_STR, "maxLength": r.MAX_ATTRIBUTE_VALUE}, _NUM, _BOOL]},
}
_COMPARISON = _obj(
    {"type": {"enum": list(filters.COMPARISONS)}, "key": _STR,
     "value": {"oneOf": [_STR, _NUM, _BOOL, {"type": "array", "items": {"oneOf": [_STR, _NUM]}}]}},
    ("type", "key", "value"),
)  # fmt: skip
_FILTER = {
    "oneOf": [
        _COMPARISON,
        _obj({"type": {"enum": ["and", "or"]}, "filters": {"type": "array", "items": {"type": "object"}}},
             ("type", "filters"), description="Comparisons or compounds, nested up to 8 deep."),
    ]
}  # fmt: skip
_STORE = _obj(
    {
        "id": {**_STR, "description": "`vs_...`"}, "object": {"const": "vector_store"}, "created_at": _INT,
        "name": _STR, "usage_bytes": {**_INT, "description": "Its chunks' text and vectors."}, "file_counts": _COUNTS,
        "status": {"enum": ["expired", "in_progress", "completed"]}, "expires_after": _EXPIRES,
        "expires_at": {"type": ["integer", "null"]}, "last_active_at": {"type": ["integer", "null"]},
        "metadata": METADATA,
    },
    ("id", "object", "usage_bytes", "created_at", "status", "last_active_at", "name", "file_counts", "metadata"),
)  # fmt: skip
_FILE = _obj(
    {
        "id": {**_STR, "description": "The file's id (`file-...`)."}, "object": {"const": "vector_store.file"},
        "usage_bytes": _INT, "created_at": _INT, "vector_store_id": _STR,
        "status": {"enum": ["in_progress", "completed", "cancelled", "failed"]},
        "last_error": {"anyOf": [_obj({"code": {"enum": ["server_error", "unsupported_file", "invalid_file"]},
                                       "message": _STR}, ("code", "message")), {"type": "null"}]},
        "chunking_strategy": _obj({"type": {"const": "static"}, "static": _STATIC}, ("type", "static")),
        "attributes": _ATTRIBUTES,
    },
    ("id", "object", "usage_bytes", "created_at", "vector_store_id", "status", "last_error"),
)  # fmt: skip
_FILE_REQUEST = _obj({"file_id": _STR, "chunking_strategy": _CHUNKING, "attributes": _ATTRIBUTES}, ("file_id",))

REWRITE = (
    "Rewrite each query into a search query with the operator's rewrite model (HUB_VECTOR_STORE_REWRITE_MODEL) "
    "where the key may use it; else the query is used as given. search_query gives what was searched."
)


def _deleted(kind: str) -> dict:
    return _obj({"id": _STR, "object": {"const": kind}, "deleted": {"const": True}}, ("id", "object", "deleted"))


VECTOR_STORE_SCHEMAS = {
    "VectorStore": _STORE,
    "VectorStoreList": list_of(_STORE),
    "VectorStoreDeleted": _deleted("vector_store.deleted"),
    "CreateVectorStoreRequest": _obj(
        {
            "name": {**_STR, "maxLength": 256},
            "file_ids": {"type": "array", "items": _STR, "maxItems": r.MAX_STORE_FILES},
            "expires_after": _EXPIRES,
            "chunking_strategy": _CHUNKING,
            "metadata": METADATA,
            "embedding_model": {
                **_STR,
                "description": "Ours: the catalog embedding model that indexes and searches it "
                "(default HUB_VECTOR_STORE_EMBEDDING_MODEL).",
            },
        }
    ),  # fmt: skip
    "UpdateVectorStoreRequest": _obj(
        {
            "name": {"type": ["string", "null"], "maxLength": 256},
            "expires_after": {"anyOf": [_EXPIRES, {"type": "null"}]},
            "metadata": {**METADATA, "type": ["object", "null"]},
        }
    ),  # fmt: skip
    "VectorStoreSearchRequest": _obj(
        {
            "query": {"oneOf": [_STR, {"type": "array", "items": _STR, "minItems": 1, "maxItems": 10}]},
            "rewrite_query": {**_BOOL, "default": False, "description": REWRITE},
            "max_num_results": {**_INT, "minimum": 1, "maximum": 50, "default": 10},
            "filters": _FILTER,
            "ranking_options": _obj(
                {
                    "ranker": {"enum": ["none", "auto", "default-2024-11-15"]},
                    "score_threshold": {**_NUM, "minimum": 0, "maximum": 1},
                    "hybrid_search": HYBRID_SEARCH,
                }
            ),  # fmt: skip
        },
        ("query",),
    ),
    "VectorStoreSearchResultsPage": _obj(
        {
            "object": {"const": "vector_store.search_results.page"},
            "search_query": {"type": "array", "items": _STR},
            "data": {
                "type": "array",
                "items": _obj(
                    {
                        "file_id": _STR,
                        "filename": _STR,
                        "score": {**_NUM, "minimum": 0, "maximum": 1},
                        "attributes": _ATTRIBUTES,
                        "content": {
                            "type": "array",
                            "items": _obj({"type": {"const": "text"}, "text": _STR}, ("type", "text")),
                        },
                    },
                    ("file_id", "filename", "score", "attributes", "content"),
                ),
            },
            "has_more": _BOOL,
            "next_page": {"type": ["string", "null"]},
        },
        ("object", "search_query", "data", "has_more", "next_page"),
    ),  # fmt: skip
    "VectorStoreFile": _FILE,
    "VectorStoreFileList": list_of(_FILE),
    "VectorStoreFileDeleted": _deleted("vector_store.file.deleted"),
    "CreateVectorStoreFileRequest": _FILE_REQUEST,
    "UpdateVectorStoreFileAttributesRequest": _obj({"attributes": _ATTRIBUTES}, ("attributes",)),
    "VectorStoreFileContent": _obj(
        {
            "object": {"const": "vector_store.file_content.page"},
            "data": {"type": "array", "items": _obj({"type": {"const": "text"}, "text": _STR}, ("type", "text"))},
            "has_more": _BOOL,
            "next_page": {"type": ["string", "null"]},
        },
        ("object", "data", "has_more", "next_page"),
    ),  # fmt: skip
    "CreateVectorStoreFileBatchRequest": _obj(
        {
            "file_ids": {"type": "array", "items": _STR, "minItems": 1, "maxItems": r.MAX_BATCH_FILES},
            "files": {"type": "array", "items": _FILE_REQUEST, "minItems": 1, "maxItems": r.MAX_BATCH_FILES},
            "chunking_strategy": _CHUNKING,
            "attributes": _ATTRIBUTES,
        }
    ),  # fmt: skip
    "VectorStoreFileBatch": _obj(
        {
            "id": {**_STR, "description": "`vsfb_...`"},
            "object": {"const": "vector_store.files_batch"},
            "created_at": _INT,
            "vector_store_id": _STR,
            "status": {"enum": ["in_progress", "completed", "cancelled", "failed"]},
            "file_counts": _COUNTS,
        },
        ("id", "object", "created_at", "vector_store_id", "status", "file_counts"),
    ),  # fmt: skip
}
