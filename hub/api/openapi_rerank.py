"""The OpenAPI component schemas of the rerank routes: ``/rerank`` in Jina's and Cohere's shape (as vLLM and
TEI serve it) and ``/score`` in vLLM's. Their limits are ``hub.api.validation``'s."""

from __future__ import annotations

from hub.api import validation as v
from hub.api.openapi_schemas import _BOOL, _INT, _NUM, _STR, _TEXT, _obj

_TEXTS = {"oneOf": [_TEXT, {"type": "array", "items": _TEXT, "minItems": 1, "maxItems": v.MAX_DOCUMENTS}]}
_DOCUMENT = {"oneOf": [_TEXT, _obj({"text": _TEXT}, ("text",))]}
_USAGE = _obj(
    {"prompt_tokens": _INT, "total_tokens": _INT, "completion_tokens": _INT},
    ("prompt_tokens", "total_tokens"),
    description="The tokens the model read: every (query, document) pair, a document cut at the model's context "
    "counted as cut. The hub meters exactly these.",
)

RERANK_SCHEMAS = {
    "RerankRequest": _obj(
        {
            "model": _STR,
            "query": _TEXT,
            "documents": {
                "type": "array",
                "items": _DOCUMENT,
                "minItems": 1,
                "maxItems": v.MAX_DOCUMENTS,
                "description": "Strings, or objects with `text`. A document longer than the model's context (with "
                "the query) is cut at its end.",
            },
            "top_n": {**_INT, "minimum": 1, "description": "Return the best `top_n` only (default: all)."},
            "return_documents": {**_BOOL, "default": True, "description": "Each result carries its `document`."},
        },
        ("model", "query", "documents"),
    ),
    "RerankResponse": _obj(
        {
            "id": _STR,
            "model": _STR,
            "results": {
                "type": "array",
                "description": "Best first.",
                "items": _obj(
                    {
                        "index": {**_INT, "description": "The document's position in `documents`."},
                        "relevance_score": {
                            **_NUM,
                            "description": "The cross-encoder's score: its logit through the checkpoint's activation "
                            "(sigmoid, in (0, 1), unless the checkpoint names another).",
                        },
                        "document": _obj({"text": _STR}, ("text",)),
                    },
                    ("index", "relevance_score"),
                ),
            },
            "usage": _USAGE,
        },
        ("id", "model", "results", "usage"),
    ),
    "ScoreRequest": _obj(
        {
            "model": _STR,
            "text_1": {**_TEXTS, "description": "One text, scored against every `text_2`; or as many as `text_2`."},
            "text_2": _TEXTS,
        },
        ("model", "text_1", "text_2"),
    ),
    "ScoreResponse": _obj(
        {
            "id": _STR,
            "object": {"const": "list"},
            "created": _INT,
            "model": _STR,
            "data": {
                "type": "array",
                "description": "One score per pair, in the order of `text_2`.",
                "items": _obj({"index": _INT, "object": {"const": "score"}, "score": _NUM}, ("index", "score")),
            },
            "usage": _USAGE,
        },
        ("id", "object", "created", "model", "data", "usage"),
    ),
}
