"""OpenAI's Files API: ``POST /v1/files`` (an upload, multipart/form-data, read at the edge as the speech routes'
are), ``GET /v1/files`` (in pages, by purpose), ``GET`` and ``DELETE /v1/files/{id}``, ``GET
/v1/files/{id}/content``. A batch's input is such a file, and its output and errors come back as such files
(``batch_output``). Scoped to the key's tenant by ``TenantAPIView``: another tenant's id is answered exactly like an
id that never existed (404)."""

from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from accounts import files
from hub.api import errors, paging, validation
from hub.api.openapi import errors_for
from hub.api.openapi_schemas import ref
from hub.api.views import TenantAPIView

_ID = OpenApiParameter("file_id", str, OpenApiParameter.PATH, description="The file's id (`file-...`).")
MAX_LIST = 10_000  # OpenAI's limit (and default) for the files list


def _not_found(file_id: str) -> errors.NotFound:
    return errors.NotFound(f"No such File object: {errors.shown(file_id)}", param="id")


def checked_expiry(seconds: object, param: str) -> int:
    """An ``expires_after`` object's ``seconds`` (an int, or its text in a form), within OpenAI's range."""
    try:
        value = int(seconds) if isinstance(seconds, str) or type(seconds) is int else None
    except ValueError:
        value = None
    if value is None or not files.MIN_EXPIRY_SECONDS <= value <= files.MAX_EXPIRY_SECONDS:
        raise errors.InvalidRequest(
            f"'{param}' must be an integer from {files.MIN_EXPIRY_SECONDS} to {files.MAX_EXPIRY_SECONDS}.", param=param
        )
    return value


def checked_purpose(purpose: object) -> str:
    """An upload's ``purpose`` (a file's, or an Uploads API upload's): one of OpenAI's."""
    if purpose is None:
        raise validation.missing("purpose")
    if purpose not in files.UPLOAD_PURPOSES:
        raise errors.InvalidRequest(
            f"Invalid 'purpose': {errors.shown(purpose)}. Expected one of {', '.join(files.UPLOAD_PURPOSES)}.",
            param="purpose", code="invalid_value",
        )  # fmt: skip
    return purpose


def _expiry(fields: dict) -> int | None:
    """``expires_after[anchor]`` and ``expires_after[seconds]`` (as OpenAI's SDK writes the object in a form)."""
    anchor, seconds = fields.get("expires_after[anchor]"), fields.get("expires_after[seconds]")
    if anchor is None and seconds is None:
        return None
    if anchor != "created_at":
        raise errors.InvalidRequest("'expires_after[anchor]' must be 'created_at'.", param="expires_after.anchor")
    return checked_expiry(seconds, "expires_after.seconds")


class FileListView(TenantAPIView):
    @extend_schema(
        operation_id="create_file",
        summary="Upload a file",
        description="A file for later use: `purpose` `batch` for the Batch API's input (one request per line; it "
        "expires after 30 days unless `expires_after` says otherwise). Up to `HUB_MAX_FILE_BYTES` (200 MB).",
        tags=["files"],
        request={"multipart/form-data": ref("CreateFileRequest")},
        responses={200: ref("OpenAIFile"), **errors_for(400, 401, 413, 415)},
    )
    def post(self, request: Request) -> Response:
        ctx = request._request.scope["hub"]
        fields, upload = ctx.json or {}, ctx.upload
        if upload is None:
            raise errors.InvalidRequest("Missing required parameter: 'file'.", param="file",
                                        code="missing_required_parameter")  # fmt: skip
        purpose = checked_purpose(fields.get("purpose"))
        filename = (upload.filename or "file")[:512]
        if "\x00" in filename:
            raise errors.InvalidRequest("The file's name holds a NUL character.", param="file")
        row = files.create(tenant_id=self.key.tenant_id, api_key_id=self.key.key_id, purpose=purpose,
                           filename=filename, content=upload.data, expires_seconds=_expiry(fields))  # fmt: skip
        return Response(row.resource())

    @extend_schema(
        operation_id="list_files",
        summary="List files",
        description="The tenant's files, newest first (`order`), in pages (`after`, `has_more`).",
        tags=["files"],
        parameters=[
            OpenApiParameter("purpose", str, description="Only files with this purpose."),
            OpenApiParameter("limit", int, description=f"1 to {MAX_LIST:,} (default {MAX_LIST:,})."),
            OpenApiParameter("order", str, enum=["asc", "desc"], description="By creation time; default `desc`."),
            OpenApiParameter("after", str, description="A file's id: list those after it."),
        ],
        responses={200: ref("FileList"), **errors_for(400, 401)},
    )
    def get(self, request: Request) -> Response:
        limit, descending = paging.limit_and_order(request, "desc", default_limit=MAX_LIST, max_limit=MAX_LIST)
        cursor = paging.cursor(request, lambda pk: files.find(self.key.tenant_id, pk), "file")
        page = files.page(self.key.tenant_id, purpose=request.query_params.get("purpose"), after=cursor, limit=limit,
                          descending=descending)  # fmt: skip
        return Response(paging.list_object([row.resource() for row in page.rows], page.has_more))


class FileDetailView(TenantAPIView):
    @extend_schema(operation_id="retrieve_file", summary="Retrieve a file", tags=["files"], parameters=[_ID],
                   responses={200: ref("OpenAIFile"), **errors_for(401, 404)})  # fmt: skip
    def get(self, request: Request, file_id: str) -> Response:
        found = files.find(self.key.tenant_id, file_id)
        if found is None:
            raise _not_found(file_id)
        return Response(found.resource())

    @extend_schema(operation_id="delete_file", summary="Delete a file", tags=["files"], parameters=[_ID],
                   responses={200: ref("FileDeleted"), **errors_for(401, 404)})  # fmt: skip
    def delete(self, request: Request, file_id: str) -> Response:
        if not files.delete(self.key.tenant_id, file_id):
            raise _not_found(file_id)
        return Response({"id": file_id, "object": "file", "deleted": True})


class FileContentView(TenantAPIView):
    def perform_content_negotiation(self, request: Request, force: bool = False):
        # the bytes go out as they are, whatever Accept asks (OpenAI's SDK asks for application/binary); only an
        # error is rendered, as JSON
        return super().perform_content_negotiation(request, force=True)

    @extend_schema(
        operation_id="download_file",
        summary="Retrieve a file's content",
        description="The bytes as uploaded, or a batch's output or errors (JSON Lines).",
        tags=["files"],
        parameters=[_ID],
        responses={(200, "application/octet-stream"): {"type": "string", "format": "binary"},
                   **errors_for(401, 404)},
    )  # fmt: skip
    def get(self, request: Request, file_id: str) -> HttpResponse:
        content = files.content(self.key.tenant_id, file_id)
        if content is None:
            raise _not_found(file_id)
        return HttpResponse(content, content_type="application/octet-stream")
