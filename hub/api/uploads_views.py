"""OpenAI's Uploads API (``client.uploads``, and the SDK's ``upload_file_chunked``): ``POST /v1/uploads`` (the file's
name, purpose, size and MIME type), ``POST /v1/uploads/{id}/parts`` (a multipart upload of one part, its bytes as
``data``, read at the edge), ``POST /v1/uploads/{id}/complete`` (the parts in order, and an optional md5) and
``POST /v1/uploads/{id}/cancel``. A completed upload is a file of the Files API. Scoped to the key's tenant by
``TenantAPIView``: another tenant's upload is answered exactly like one that never existed (404)."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from accounts import uploads
from hub.api import errors, validation
from hub.api.files_views import checked_expiry, checked_purpose
from hub.api.openapi import errors_for
from hub.api.openapi_schemas import ref
from hub.api.views import TenantAPIView

_ID = OpenApiParameter("upload_id", str, OpenApiParameter.PATH, description="The upload's id (`upload_...`).")


def _not_found(upload_id: str) -> errors.NotFound:
    return errors.NotFound(f"No Upload found with id '{errors.shown(upload_id)}'.", param="upload_id")


def _refused(error: uploads.UploadError) -> errors.InvalidRequest:
    return errors.InvalidRequest(str(error), param=error.param, code=error.code)


def _text(body: dict, name: str, longest: int) -> str:
    value = body.get(name)
    if value is None:
        raise validation.missing(name)
    if not isinstance(value, str) or not value or len(value) > longest or "\x00" in value:
        raise errors.InvalidRequest(f"'{name}' must be a string of 1 to {longest} characters.", param=name)
    return value


class UploadCreateView(TenantAPIView):
    @extend_schema(
        operation_id="create_upload",
        summary="Create an upload",
        description="A file to send in parts (each up to `HUB_MAX_UPLOAD_PART_BYTES`, 64 MB), for an hour; in all up "
        "to `HUB_MAX_FILE_BYTES` (200 MB). Completed, it is a file of the Files API.",
        tags=["uploads"],
        request={"application/json": ref("CreateUploadRequest")},
        responses={200: ref("Upload"), **errors_for(400, 401)},
    )
    def post(self, request: Request) -> Response:
        body = request._request.scope["hub"].json
        filename, mime_type = _text(body, "filename", 512), _text(body, "mime_type", 255)
        purpose = checked_purpose(body.get("purpose"))
        size = body.get("bytes")
        if size is None:
            raise validation.missing("bytes")
        limit = settings.HUB_MAX_FILE_BYTES
        if type(size) is not int or not 0 < size <= limit:
            raise errors.InvalidRequest(f"'bytes' must be an integer from 1 to {limit:,} (HUB_MAX_FILE_BYTES).",
                                        param="bytes", code="invalid_value")  # fmt: skip
        expiry = body.get("expires_after")
        if expiry is not None:
            if not isinstance(expiry, dict) or expiry.get("anchor") != "created_at":
                raise errors.InvalidRequest("'expires_after' must be {\"anchor\": \"created_at\", \"seconds\": ...}.",
                                            param="expires_after")  # fmt: skip
            seconds = expiry.get("seconds")
            expiry = checked_expiry(None if isinstance(seconds, str) else seconds, "expires_after.seconds")
        upload = uploads.create(tenant_id=self.key.tenant_id, api_key_id=self.key.key_id, filename=filename,
                                purpose=purpose, mime_type=mime_type, size=size, expires_seconds=expiry)  # fmt: skip
        return Response(uploads.resource(upload))


class UploadPartView(TenantAPIView):
    @extend_schema(
        operation_id="add_upload_part",
        summary="Add a part to an upload",
        description="One part's bytes as `data` (multipart/form-data), up to `HUB_MAX_UPLOAD_PART_BYTES` (64 MB).",
        tags=["uploads"],
        parameters=[_ID],
        request={"multipart/form-data": ref("AddUploadPartRequest")},
        responses={200: ref("UploadPart"), **errors_for(400, 401, 404, 413, 415)},
    )
    def post(self, request: Request, upload_id: str) -> Response:
        data = request._request.scope["hub"].upload
        if data is None:
            raise errors.InvalidRequest("Missing required parameter: 'data'.", param="data",
                                        code="missing_required_parameter")  # fmt: skip
        try:
            part = uploads.add_part(self.key.tenant_id, upload_id, data.data)
        except uploads.UploadError as exc:
            raise _refused(exc) from None
        if part is None:
            raise _not_found(upload_id)
        return Response(uploads.part_resource(part))


class UploadCompleteView(TenantAPIView):
    @extend_schema(
        operation_id="complete_upload",
        summary="Complete an upload",
        description="The parts in this order become the file; they must hold exactly the upload's `bytes` (and "
        "match `md5` when given).",
        tags=["uploads"],
        parameters=[_ID],
        request={"application/json": ref("CompleteUploadRequest")},
        responses={200: ref("Upload"), **errors_for(400, 401, 404)},
    )
    def post(self, request: Request, upload_id: str) -> Response:
        body = request._request.scope["hub"].json
        part_ids = body.get("part_ids")
        if part_ids is None:
            raise validation.missing("part_ids")
        if not isinstance(part_ids, list) or not part_ids or not all(isinstance(p, str) for p in part_ids):
            raise errors.InvalidRequest("'part_ids' must be a non-empty list of the upload's part ids.",
                                        param="part_ids")  # fmt: skip
        md5 = body.get("md5")
        if md5 is not None and (not isinstance(md5, str) or len(md5) != 32):
            raise errors.InvalidRequest("'md5' must be the content's MD5 checksum, 32 hexadecimal digits.",
                                        param="md5")  # fmt: skip
        try:
            upload = uploads.complete(self.key.tenant_id, upload_id, part_ids, md5)
        except uploads.UploadError as exc:
            raise _refused(exc) from None
        if upload is None:
            raise _not_found(upload_id)
        return Response(uploads.resource(upload))


class UploadCancelView(TenantAPIView):
    @extend_schema(
        operation_id="cancel_upload",
        summary="Cancel an upload",
        description="No parts may be added after; those sent are deleted.",
        tags=["uploads"],
        parameters=[_ID],
        request=None,
        responses={200: ref("Upload"), **errors_for(400, 401, 404)},
    )
    def post(self, request: Request, upload_id: str) -> Response:
        try:
            upload = uploads.cancel(self.key.tenant_id, upload_id)
        except uploads.UploadError as exc:
            raise _refused(exc) from None
        if upload is None:
            raise _not_found(upload_id)
        return Response(uploads.resource(upload))
