"""OpenAI's Batch API: ``POST /v1/batches`` (from an uploaded ``batch`` file), ``GET /v1/batches`` (newest first,
in pages), ``GET /v1/batches/{id}``, ``POST /v1/batches/{id}/cancel``. The batch runs in the background
(``hub/batches/``), its requests sent through the gateway with the key that created it: entitlements, limits and
metering as for any request. Scoped to the key's tenant by ``TenantAPIView``: another tenant's id is answered exactly
like an id that never existed (404)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from accounts import batches, files
from hub.api import errors, paging, validation
from hub.api.files_views import checked_expiry
from hub.api.openapi import errors_for
from hub.api.openapi_schemas import ref
from hub.api.views import TenantAPIView
from hub.batches import dispatch

_ID = OpenApiParameter("batch_id", str, OpenApiParameter.PATH, description="The batch's id (`batch_...`).")


def _not_found(batch_id: str) -> errors.NotFound:
    return errors.NotFound(f"No batch found with id '{errors.shown(batch_id)}'.", param="batch_id")


def _output_expiry(value: object) -> int | None:
    if value is None:
        return None
    if not isinstance(value, dict) or value.get("anchor") != "created_at":
        raise errors.InvalidRequest("'output_expires_after' must be {\"anchor\": \"created_at\", \"seconds\": ...}.",
                                    param="output_expires_after")  # fmt: skip
    seconds = value.get("seconds")
    if isinstance(seconds, str):  # JSON: a number, not its text
        seconds = None
    return checked_expiry(seconds, "output_expires_after.seconds")


class BatchListView(TenantAPIView):
    @extend_schema(
        operation_id="create_batch",
        summary="Create a batch",
        description="Runs the requests of a `batch` file (JSON Lines: `custom_id`, `method`, `url`, `body`) in the "
        "background, within 24 hours; their answers come back in `output_file_id` and `error_file_id`.",
        tags=["batches"],
        request={"application/json": ref("CreateBatchRequest")},
        responses={200: ref("Batch"), **errors_for(400, 401)},
    )
    def post(self, request: Request) -> Response:
        body = request._request.scope["hub"].json
        for name in ("input_file_id", "endpoint", "completion_window"):
            if name not in body:
                raise validation.missing(name)
        if not isinstance(body["endpoint"], str) or body["endpoint"] not in batches.ENDPOINTS:
            raise errors.InvalidRequest(
                f"Invalid 'endpoint': {errors.shown(body['endpoint'])}. Supported: {', '.join(batches.ENDPOINTS)}.",
                param="endpoint", code="invalid_value",
            )  # fmt: skip
        if body["completion_window"] != "24h":
            raise errors.InvalidRequest("Invalid 'completion_window': only '24h' is supported.",
                                        param="completion_window", code="invalid_value")  # fmt: skip
        validation.check_metadata(body.get("metadata"))
        expiry = _output_expiry(body.get("output_expires_after"))
        found = files.find(self.key.tenant_id, body["input_file_id"])
        if found is None:
            raise errors.InvalidRequest(f"No such File object: {errors.shown(body['input_file_id'])}",
                                        param="input_file_id")  # fmt: skip
        if found.purpose != "batch":
            raise errors.InvalidRequest(
                f"The file's purpose is '{found.purpose}'; a batch's input file needs purpose 'batch'.",
                param="input_file_id",
            )  # fmt: skip
        batch = batches.create(tenant_id=self.key.tenant_id, api_key_id=self.key.key_id, input_file=found,
                               endpoint=body["endpoint"], metadata=dict(body.get("metadata") or {}),
                               output_expires_seconds=expiry)  # fmt: skip
        dispatch.start(batch.pk)
        return Response(batches.resource(batches.find(self.key.tenant_id, batch.pk)))

    @extend_schema(
        operation_id="list_batches",
        summary="List batches",
        description="The tenant's batches, newest first, in pages (`after`, `has_more`).",
        tags=["batches"],
        parameters=[
            OpenApiParameter("limit", int, description=f"1 to {paging.MAX_LIMIT} (default 20)."),
            OpenApiParameter("after", str, description="A batch's id: list those after it."),
        ],
        responses={200: ref("BatchList"), **errors_for(400, 401)},
    )
    def get(self, request: Request) -> Response:
        limit, _ = paging.limit_and_order(request, "desc")
        cursor = paging.cursor(request, lambda pk: batches.find(self.key.tenant_id, pk), "batch")
        page = batches.page(self.key.tenant_id, after=cursor, limit=limit)
        return Response(paging.list_object([batches.resource(row) for row in page.rows], page.has_more))


class BatchDetailView(TenantAPIView):
    @extend_schema(operation_id="retrieve_batch", summary="Retrieve a batch", tags=["batches"], parameters=[_ID],
                   responses={200: ref("Batch"), **errors_for(401, 404)})  # fmt: skip
    def get(self, request: Request, batch_id: str) -> Response:
        found = batches.find(self.key.tenant_id, batch_id)
        if found is None:
            raise _not_found(batch_id)
        return Response(batches.resource(found))


class BatchCancelView(TenantAPIView):
    @extend_schema(
        operation_id="cancel_batch",
        request=None,
        summary="Cancel a batch",
        description="The batch becomes `cancelling`: no more of its requests are sent, those under way finish, "
        "then it is `cancelled`, with the answers it has in its output file.",
        tags=["batches"],
        parameters=[_ID],
        responses={200: ref("Batch"), **errors_for(400, 401, 404)},
    )
    def post(self, request: Request, batch_id: str) -> Response:
        try:
            found = batches.cancel(self.key.tenant_id, batch_id)
        except batches.NotCancellable as refused:
            raise errors.InvalidRequest(f"Cannot cancel a batch with status '{refused}'.", param="batch_id") from None
        if found is None:
            raise _not_found(batch_id)
        return Response(batches.resource(found))
