"""The OpenAPI component schemas of the Conversations API (``hub/api/conversations_views.py``)."""

from __future__ import annotations

from hub.api.openapi_responses import ITEM
from hub.api.openapi_schemas import _INT, _STR, METADATA, _obj, list_of

_NEW_ITEMS = {"type": "array", "maxItems": 20, "items": {"type": "object"},
              "description": "Input items, as `POST /responses` takes them in `input`."}  # fmt: skip

CONVERSATION_SCHEMAS: dict[str, dict] = {
    "Conversation": _obj(
        {
            "id": {**_STR, "description": "`conv_...`"},
            "object": {"const": "conversation"},
            "created_at": _INT,
            "metadata": METADATA,
        },  # fmt: skip
        ("id", "object", "created_at", "metadata"),
    ),
    "ConversationDeleted": _obj(
        {"id": _STR, "object": {"const": "conversation.deleted"}, "deleted": {"const": True}},
        ("id", "object", "deleted"),
    ),
    "ConversationItem": ITEM,
    "ConversationItemList": list_of(ITEM),
    "CreateConversationRequest": _obj(
        {"items": {**_NEW_ITEMS, "type": ["array", "null"]}, "metadata": {**METADATA, "type": ["object", "null"]}}
    ),  # fmt: skip
    "UpdateConversationRequest": _obj({"metadata": {**METADATA, "type": ["object", "null"]}}, ("metadata",)),
    "CreateConversationItemsRequest": _obj({"items": {**_NEW_ITEMS, "minItems": 1}}, ("items",)),
}
