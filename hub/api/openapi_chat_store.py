"""The OpenAPI component schemas of the stored chat completions routes (``hub/api/chat_completions_views.py``)."""

from __future__ import annotations

from hub.api.openapi_schemas import _NULLABLE_STR, _STR, METADATA, _obj, list_of, ref

_MESSAGE = _obj(
    {
        "id": {**_STR, "description": "`<completion id>-<index>`."},
        "role": {"enum": ["system", "developer", "user", "assistant", "tool"]},
        "content": {**_NULLABLE_STR, "description": "The text (of its text parts, when content was parts)."},
        "name": _NULLABLE_STR,
        "content_parts": {
            "type": ["array", "null"],
            "items": {"type": "object"},
            "description": "The parts sent, or null when the content was a string.",
        },  # fmt: skip
        "tool_calls": {"type": "array", "items": {"type": "object"}},
        "tool_call_id": _STR,
    },
    ("id", "role", "content"),
)


CHAT_STORE_SCHEMAS: dict[str, dict] = {
    "ChatCompletionList": list_of({"allOf": [ref("ChatCompletion"), _obj({"metadata": METADATA}, ("metadata",))]}),
    "ChatCompletionMessageList": list_of(_MESSAGE),
    "ChatCompletionDeleted": _obj(
        {"object": {"const": "chat.completion.deleted"}, "id": _STR, "deleted": {"const": True}},
        ("object", "id", "deleted"),
    ),
    "ChatCompletionUpdateRequest": _obj({"metadata": {**METADATA, "type": ["object", "null"]}}, ("metadata",)),
}
