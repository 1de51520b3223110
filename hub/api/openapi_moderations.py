"""The OpenAPI component schemas of ``/moderations``: OpenAI's request and answer, served by a guard model (kind
``moderation``). Its limits are ``hub.api.validation``'s."""

from __future__ import annotations

from hub.api import validation as v
from hub.api.openapi_schemas import _BOOL, _CACHE_SALT, _NUM, _STR, _TEXT, _obj

# OpenAI's categories (inference/server/guard.py's OPENAI_CATEGORIES)
CATEGORIES = (
    "harassment", "harassment/threatening", "hate", "hate/threatening", "illicit", "illicit/violent", "self-harm",
    "self-harm/intent", "self-harm/instructions", "sexual", "sexual/minors", "violence", "violence/graphic",
)  # fmt: skip
_PART = {
    "oneOf": [
        _obj({"type": {"const": "text"}, "text": _TEXT}, ("type", "text")),
        _obj({"type": {"const": "image_url"}, "image_url": _obj({"url": _STR}, ("url",))}, ("type", "image_url"),
             description="Refused (400) by a guard model that reads text only."),
    ]
}  # fmt: skip


def _each(value: dict, description: str) -> dict:
    return _obj({c: value for c in CATEGORIES}, CATEGORIES, description=description)


MODERATION_SCHEMAS = {
    "ModerationRequest": _obj(
        {
            "model": {
                **_STR,
                "description": "A `moderation` model; default `HUB_MODERATION_MODEL` "
                "(`omni-moderation-latest`), as OpenAI's default.",
            },  # fmt: skip
            "input": {
                "oneOf": [
                    _TEXT,
                    {"type": "array", "items": _TEXT, "minItems": 1, "maxItems": v.MAX_MODERATION_INPUTS},
                    {"type": "array", "items": _PART, "minItems": 1, "description": "One input: its texts joined."},
                ]
            },
            "cache_salt": _CACHE_SALT,
        },
        ("input",),
    ),
    "ModerationResponse": _obj(
        {
            "id": _STR,
            "model": _STR,
            "results": {
                "type": "array",
                "items": _obj(
                    {
                        "flagged": {**_BOOL, "description": "The guard model answered `unsafe`."},
                        "categories": _each(_BOOL, "The OpenAI categories of the guard's categories it named."),
                        "category_scores": _each(
                            {**_NUM, "minimum": 0, "maximum": 1},
                            "The model's probability of `unsafe` for the categories it named, 0 for the others.",
                        ),
                        "category_applied_input_types": _each(
                            {"type": "array", "items": {"const": "text"}}, "The input types each category read."
                        ),
                    },
                    ("flagged", "categories", "category_scores", "category_applied_input_types"),
                ),
            },
        },
        ("id", "model", "results"),
        description="One result per input, in order.",
    ),
}
