"""The OpenAPI component schemas of the webhook endpoints (``hub/api/webhooks_views.py``), OpenAI's shapes, and the
events the hub sends (the document's ``webhooks``, as OpenAI's)."""

from __future__ import annotations

from accounts import webhooks
from hub.api.openapi_schemas import _BOOL, _INT, _STR, _obj, list_of, ref

_TYPES = {"type": "array", "items": {"enum": list(webhooks.EVENT_TYPES)}, "minItems": 1}
_FIELDS = {
    "id": {**_STR, "description": "`wh_...`"}, "object": {"const": "webhook_endpoint"}, "name": _STR, "url": _STR,
    "event_types": {"type": "array", "items": _STR}, "created_at": _INT, "updated_at": _INT,
    "signing_secret_hint": {**_STR, "description": "`whsec_...` and the secret's last four characters."},
}  # fmt: skip
# what a creation sets and an update may change
_SETTABLE = {"name": {**_STR, "minLength": 1, "maxLength": webhooks.MAX_NAME},
             "url": {**_STR, "maxLength": webhooks.MAX_URL}, "event_types": _TYPES}  # fmt: skip
_REQUIRED = ("id", "object", "name", "url", "event_types", "created_at")
_ENDPOINT = _obj(_FIELDS, _REQUIRED)
_EVENT = _obj(
    {"id": {**_STR, "description": "`evt_...`, the same for every endpoint it is sent to."},
     "object": {"const": "event"}, "type": {"enum": list(webhooks.EVENT_TYPES)},
     "created_at": {**_INT, "description": "Unix seconds: when the batch or response ended."},
     "data": _obj({"id": {**_STR, "description": "The batch's or the response's id."}}, ("id",))},
    ("id", "type", "created_at", "data"),
)  # fmt: skip

WEBHOOK_SCHEMAS: dict[str, dict] = {
    "WebhookEndpoint": _ENDPOINT,
    "WebhookEndpointWithSecret": _obj(
        {**_FIELDS, "signing_secret": {**_STR, "description": "`whsec_...`: answered only here."}},
        (*_REQUIRED, "signing_secret"),
    ),
    "WebhookEndpointList": list_of(_ENDPOINT),
    "DeletedWebhookEndpoint": _obj(
        {"id": _STR, "object": {"const": "webhook_endpoint.deleted"}, "deleted": {"const": True}},
        ("id", "object", "deleted"),
    ),  # fmt: skip
    "CreateWebhookEndpointRequest": _obj(_SETTABLE, ("name", "url", "event_types")),
    "UpdateWebhookEndpointRequest": _obj(_SETTABLE),
    "RotateWebhookSecretRequest": _obj({"keep_old_secret_active_for_24_hours": _BOOL}),
    "TestWebhookEndpointRequest": _obj({"event_type": {"enum": list(webhooks.EVENT_TYPES)}}, ("event_type",)),
    "WebhookEndpointTestResult": _obj(
        {
            "object": {"const": "webhook_endpoint.test"},
            "webhook_endpoint_id": _STR,
            "event_type": _STR,
            "status_code": _INT,
            "success": {"const": True},
        },
        ("object", "webhook_endpoint_id", "event_type", "status_code", "success"),
    ),  # fmt: skip
    "WebhookEventTypeList": _obj(
        {"object": {"const": "list"}, "data": {"type": "array", "items": _STR}}, ("object", "data")
    ),  # fmt: skip
    "WebhookEvent": _EVENT,
}


def webhooks_section() -> dict:
    """The document's ``webhooks``: each event the hub POSTs, signed (``webhook-id``, ``webhook-timestamp``,
    ``webhook-signature``); a 2xx acknowledges it, anything else has it sent again."""
    what = {"batch": "a batch", "response": "a background response"}
    return {
        kind.replace(".", "_"): {"post": {
            "summary": kind, "description": f"Sent when {what[kind.split('.')[0]]} has {kind.split('.', 1)[1]}. "
            "Signed as Standard Webhooks; answer 2xx, or it is sent again.",
            "requestBody": {"content": {"application/json": {"schema": ref("WebhookEvent")}}},
            "responses": {"200": {"description": "Received."}},
        }}
        for kind in webhooks.EVENT_TYPES
    }  # fmt: skip
