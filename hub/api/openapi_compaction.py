"""The OpenAPI component schemas of ``POST /responses/compact`` (``hub/api/compaction.py``)."""

from __future__ import annotations

from hub.api import validation as v
from hub.api.openapi_responses import COMPACTION, MESSAGE, USAGE
from hub.api.openapi_schemas import _INT, _STR, _TEXT, _obj, ref

COMPACTION_SCHEMAS: dict[str, dict] = {
    "CompactResponseRequest": _obj(
        {
            "model": {**_STR, "description": "A `chat` or `vision` model the key may use; it writes the summary."},
            "input": {
                "oneOf": [
                    _TEXT,
                    {"type": "array", "maxItems": v.MAX_MESSAGES, "items": {"type": "object"}},
                    {"type": "null"},
                ],
                "description": "The context to compact: a string or items, as `POST /responses` takes them (a "
                "compaction item among them too), after the stored context of `previous_response_id`. One of the two "
                "must give something.",
            },  # fmt: skip
            "previous_response_id": {**_STR, "description": "A stored response of the key's tenant (else 404)."},
            "instructions": {**_TEXT, "description": "A system message before the context, for the summary."},
            "prompt_cache_key": _STR,
            "service_tier": {"enum": ["auto", "default", "flex", "priority", None]},
        },
        ("model",),
        additionalProperties=False,
    ),
    "CompactResource": _obj(
        {
            "id": _STR,
            "object": {"const": "response.compaction"},
            "output": {
                "type": "array",
                "items": {"oneOf": [{**MESSAGE, "required": [*MESSAGE["required"], "id"]}, ref("CompactionItem")]},
                "description": "The context's user messages as they were, then one compaction item: send them back "
                "as the next input.",
            },
            "created_at": _INT,
            "usage": {**USAGE, "description": "The summary's pass (metered as route `responses/compact`)."},
        },
        ("id", "object", "output", "created_at", "usage"),
    ),
    "CompactionItem": {**COMPACTION, "required": ["type", "id", "encrypted_content"]},
}
