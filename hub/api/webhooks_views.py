"""OpenAI's webhook endpoints (``client.webhooks``): ``POST`` and ``GET /v1/webhook_endpoints``; ``GET``, ``POST``
(name, url, event types) and ``DELETE /v1/webhook_endpoints/{id}``; ``POST .../rotate_secret``; ``POST .../test``
(a sample event sent now, its status answered); ``GET /v1/webhook_event_types``. The events themselves are sent by
``hub/webhooks/``. Scoped to the key's tenant by ``TenantAPIView``."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from accounts import webhooks
from accounts.models import WebhookEndpoint
from hub.api import errors, paging, validation
from hub.api.openapi import errors_for
from hub.api.openapi_schemas import ref
from hub.api.views import TenantAPIView
from hub.webhooks import addresses, sender

_ID = OpenApiParameter("webhook_endpoint_id", str, OpenApiParameter.PATH, description="The endpoint's id (`wh_...`).")
TAGS = ["webhooks"]
MAX_NAME, MAX_URL = webhooks.MAX_NAME, webhooks.MAX_URL


def _name(value: object) -> str:
    if not isinstance(value, str):
        raise validation.wrong_type("name", "a string", value)
    if not value.strip() or len(value) > MAX_NAME or "\x00" in value:
        raise errors.InvalidRequest(f"'name' must be a non-empty string of at most {MAX_NAME} characters.",
                                    param="name", code="invalid_value")  # fmt: skip
    return value


def _url(value: object) -> str:
    if not isinstance(value, str):
        raise validation.wrong_type("url", "a string", value)
    problem = "'url' is too long." if len(value) > MAX_URL or "\x00" in value else addresses.url_problem(value)
    if problem is not None:
        raise errors.InvalidRequest(problem, param="url", code="invalid_url")
    return value


def _event_type(value: object, param: str) -> str:
    if not isinstance(value, str) or value not in webhooks.EVENT_TYPES:
        raise errors.InvalidRequest(
            f"Invalid '{param}': {errors.shown(value)}. This hub sends: {', '.join(webhooks.EVENT_TYPES)}.",
            param=param, code="invalid_value",
        )  # fmt: skip
    return value


def _event_types(value: object) -> list[str]:
    if not isinstance(value, list):
        raise validation.wrong_type("event_types", "an array", value)
    if not value:
        raise errors.InvalidRequest("'event_types' must name at least one event type.", param="event_types",
                                    code="empty_array")  # fmt: skip
    chosen = [_event_type(item, f"event_types[{i}]") for i, item in enumerate(value)]
    return list(dict.fromkeys(chosen))  # each once, in the order given


class WebhookView(TenantAPIView):
    def body(self) -> dict:
        body = self.request._request.scope["hub"].json
        return body if isinstance(body, dict) else {}

    def endpoint(self, endpoint_id: str) -> WebhookEndpoint:
        found = webhooks.find(self.key.tenant_id, endpoint_id)
        if found is None:
            raise _not_found(endpoint_id)
        return found


def _not_found(endpoint_id: str) -> errors.NotFound:
    return errors.NotFound(f"No webhook endpoint found with id '{errors.shown(endpoint_id)}'.",
                           param="webhook_endpoint_id")  # fmt: skip


class WebhookListView(WebhookView):
    @extend_schema(
        operation_id="create_webhook_endpoint", summary="Create a webhook endpoint", tags=TAGS,
        description="The hub POSTs the chosen events to `url`, signed with the `signing_secret` answered here (only "
        "here and at rotation): `client.webhooks.unwrap(body, headers, secret=...)` verifies them.",
        request={"application/json": ref("CreateWebhookEndpointRequest")},
        responses={200: ref("WebhookEndpointWithSecret"), **errors_for(400, 401)},
    )  # fmt: skip
    def post(self, request: Request) -> Response:
        body = self.body()
        for name in ("name", "url", "event_types"):
            if body.get(name) is None:
                raise validation.missing(name)
        try:
            endpoint, secret = webhooks.create(self.key.tenant_id, name=_name(body["name"]), url=_url(body["url"]),
                                               event_types=_event_types(body["event_types"]))  # fmt: skip
        except webhooks.TooManyEndpoints:
            raise errors.InvalidRequest(f"A project may have at most {webhooks.MAX_ENDPOINTS} webhook endpoints; "
                                        "delete one first.", code="too_many_endpoints") from None  # fmt: skip
        return Response(webhooks.resource(endpoint, secret))

    @extend_schema(
        operation_id="list_webhook_endpoints", summary="List webhook endpoints", tags=TAGS,
        description="The tenant's webhook endpoints, newest first, in pages (`after`, `has_more`).",
        parameters=[OpenApiParameter("limit", int, description=f"1 to {paging.MAX_LIMIT} (default 20)."),
                    OpenApiParameter("after", str, description="An endpoint's id: list those after it.")],
        responses={200: ref("WebhookEndpointList"), **errors_for(400, 401)},
    )  # fmt: skip
    def get(self, request: Request) -> Response:
        limit, _ = paging.limit_and_order(request, "desc")
        cursor = paging.cursor(request, lambda pk: webhooks.find(self.key.tenant_id, pk), "webhook endpoint")
        page = webhooks.page(self.key.tenant_id, after=cursor, limit=limit)
        return Response(paging.list_object([webhooks.resource(row) for row in page.rows], page.has_more))


class WebhookDetailView(WebhookView):
    @extend_schema(operation_id="retrieve_webhook_endpoint", summary="Retrieve a webhook endpoint", tags=TAGS,
                   parameters=[_ID], responses={200: ref("WebhookEndpoint"), **errors_for(401, 404)})  # fmt: skip
    def get(self, request: Request, webhook_endpoint_id: str) -> Response:
        return Response(webhooks.resource(self.endpoint(webhook_endpoint_id)))

    @extend_schema(
        operation_id="update_webhook_endpoint", summary="Update a webhook endpoint", tags=TAGS, parameters=[_ID],
        description="Any of `name`, `url` and `event_types` (the whole set); `updated_at` moves when one changes.",
        request={"application/json": ref("UpdateWebhookEndpointRequest")},
        responses={200: ref("WebhookEndpoint"), **errors_for(400, 401, 404)},
    )  # fmt: skip
    def post(self, request: Request, webhook_endpoint_id: str) -> Response:
        self.endpoint(webhook_endpoint_id)  # 404 before the body's 400s
        body, changes = self.body(), {}
        for name, check in (("name", _name), ("url", _url), ("event_types", _event_types)):
            if body.get(name) is not None:
                changes[name] = check(body[name])
        found = webhooks.update(self.key.tenant_id, webhook_endpoint_id, changes)
        if found is None:
            raise _not_found(webhook_endpoint_id)
        return Response(webhooks.resource(found))

    @extend_schema(operation_id="delete_webhook_endpoint", summary="Delete a webhook endpoint", tags=TAGS,
                   description="Its deliveries still due are not sent.", parameters=[_ID],
                   responses={200: ref("DeletedWebhookEndpoint"), **errors_for(401, 404)})  # fmt: skip
    def delete(self, request: Request, webhook_endpoint_id: str) -> Response:
        if not webhooks.delete(self.key.tenant_id, webhook_endpoint_id):
            raise _not_found(webhook_endpoint_id)
        return Response({"id": webhook_endpoint_id, "object": "webhook_endpoint.deleted", "deleted": True})


class WebhookRotateView(WebhookView):
    @extend_schema(
        operation_id="rotate_webhook_endpoint_secret", summary="Rotate a webhook endpoint's signing secret",
        tags=TAGS, parameters=[_ID],
        description="A new secret, answered once. With `keep_old_secret_active_for_24_hours` deliveries carry both "
        "signatures for 24 hours; else the old secret stops signing at once.",
        request={"application/json": ref("RotateWebhookSecretRequest")},
        responses={200: ref("WebhookEndpointWithSecret"), **errors_for(400, 401, 404)},
    )  # fmt: skip
    def post(self, request: Request, webhook_endpoint_id: str) -> Response:
        self.endpoint(webhook_endpoint_id)
        keep = self.body().get("keep_old_secret_active_for_24_hours", False)
        if keep is not None and not isinstance(keep, bool):
            raise validation.wrong_type("keep_old_secret_active_for_24_hours", "a boolean", keep)
        rotated = webhooks.rotate(self.key.tenant_id, webhook_endpoint_id, keep_old=bool(keep))
        if rotated is None:
            raise _not_found(webhook_endpoint_id)
        return Response(webhooks.resource(*rotated))


class WebhookTestView(WebhookView):
    @extend_schema(
        operation_id="test_webhook_endpoint", summary="Send a test event to a webhook endpoint", tags=TAGS,
        parameters=[_ID],
        description="A sample event of `event_type` (about a `resp_test_...` or `batch_test_...` object), signed as "
        "every delivery, sent now; answers the endpoint's HTTP status, or a 400 when it could not be reached.",
        request={"application/json": ref("TestWebhookEndpointRequest")},
        responses={200: ref("WebhookEndpointTestResult"), **errors_for(400, 401, 404)},
    )  # fmt: skip
    def post(self, request: Request, webhook_endpoint_id: str) -> Response:
        endpoint = self.endpoint(webhook_endpoint_id)
        body = self.body()
        if body.get("event_type") is None:
            raise validation.missing("event_type")
        kind = _event_type(body["event_type"], "event_type")
        try:
            status = sender.send_sample(endpoint, kind)
        except sender.Unreachable as failed:
            message = f"The webhook endpoint could not be reached: {failed}"
            raise errors.InvalidRequest(message, param="webhook_endpoint_id", code="endpoint_unreachable") from None
        return Response({"object": "webhook_endpoint.test", "webhook_endpoint_id": endpoint.pk, "event_type": kind,
                         "status_code": status, "success": True})  # fmt: skip


class WebhookEventTypesView(TenantAPIView):
    @extend_schema(operation_id="list_webhook_event_types", summary="List the webhook event types", tags=TAGS,
                   responses={200: ref("WebhookEventTypeList"), **errors_for(401)})  # fmt: skip
    def get(self, request: Request) -> Response:
        return Response({"object": "list", "data": list(webhooks.EVENT_TYPES)})
