"""A vector store's files and file batches, as OpenAI's: ``POST`` and ``GET /v1/vector_stores/{id}/files``;
``GET``, ``POST`` (attributes) and ``DELETE .../files/{file_id}``; ``GET .../files/{file_id}/content``; ``POST
.../file_batches``, ``GET .../file_batches/{batch_id}``, ``POST .../cancel``, ``GET .../files``. A file added is
indexed in the background (``hub/vector_stores/indexer.py``): ``in_progress`` until it is ``completed`` or
``failed`` (``last_error``). The SDK's ``upload_and_poll`` and ``create_and_poll`` poll these routes."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from accounts import files, vector_stores
from accounts.models import VectorStoreFileBatch, VectorStoreFileStatus
from hub.api import errors, paging
from hub.api.openapi import errors_for
from hub.api.openapi_schemas import ref
from hub.api.vector_stores_views import TAGS, VectorStoreView
from hub.documents import Failed, read_text
from hub.vector_stores import requests

_STORE = OpenApiParameter("vector_store_id", str, OpenApiParameter.PATH, description="The vector store's id.")
_FILE = OpenApiParameter("file_id", str, OpenApiParameter.PATH, description="The file's id (`file-...`).")
_BATCH = OpenApiParameter("batch_id", str, OpenApiParameter.PATH, description="The file batch's id (`vsfb_...`).")
_LIST = [
    OpenApiParameter("limit", int, description="1 to 100 (default 20)."),
    OpenApiParameter("order", str, enum=["asc", "desc"], description="By creation time; default `desc`."),
    OpenApiParameter("after", str, description="A file's id: list those after it."),
    OpenApiParameter("before", str, description="A file's id: list those just before it."),
    OpenApiParameter("filter", str, enum=[s.value for s in VectorStoreFileStatus], description="Only this status."),
]


class _FilesView(VectorStoreView):
    def file(self, store, file_id: str):
        found = vector_stores.find_file(store, file_id)
        if found is None:
            raise errors.NotFound(f"No file found with id '{errors.shown(file_id)}' in vector store '{store.pk}'.",
                                  param="file_id")  # fmt: skip
        return found

    def batch(self, store, batch_id: str) -> VectorStoreFileBatch:
        found = vector_stores.find_batch(store, batch_id)
        if found is None:
            raise errors.NotFound(f"No file batch found with id '{errors.shown(batch_id)}'.", param="batch_id")
        return found

    def page(self, request: Request, store, rows) -> Response:
        limit, descending = paging.limit_and_order(request, "desc")
        status = request.query_params.get("filter")
        if status is not None and status not in VectorStoreFileStatus.values:
            raise errors.InvalidRequest(f"'filter' must be one of {', '.join(VectorStoreFileStatus.values)}.",
                                        param="filter")  # fmt: skip
        after, before = paging.cursors(request, lambda pk: vector_stores.find_file(store, pk), "vector store file")
        page = vector_stores.file_page(rows, status=status, after=after, limit=limit, descending=descending,
                                       before=before)  # fmt: skip
        return Response(paging.list_object([vector_stores.file_resource(r) for r in page.rows], page.has_more))


class VectorStoreFileListView(_FilesView):
    @extend_schema(
        operation_id="create_vector_store_file",
        summary="Add a file to a vector store",
        description="One of the tenant's files, indexed in the background (UTF-8 text, or a PDF's text), with its "
        "`chunking_strategy` (cut to fit the embedding model's context) and `attributes` for search filters.",
        tags=TAGS,
        parameters=[_STORE],
        request={"application/json": ref("CreateVectorStoreFileRequest")},
        responses={200: ref("VectorStoreFile"), **errors_for(400, 401, 404)},
    )
    def post(self, request: Request, vector_store_id: str) -> Response:
        store, body = self.usable(self.store(vector_store_id)), self.body()
        if not isinstance(body.get("file_id"), str):
            raise errors.InvalidRequest("Missing required parameter: 'file_id'.", param="file_id",
                                        code="missing_required_parameter")  # fmt: skip
        entries = requests.entries(self.key, {**body, "file_ids": [body["file_id"]]}, self.context(store), limit=1,
                                   required=True)  # fmt: skip
        _, rows = self.add(store, entries)
        return Response(vector_stores.file_resource(rows[0]))

    @extend_schema(
        operation_id="list_vector_store_files",
        summary="List a vector store's files",
        tags=TAGS,
        parameters=[_STORE, *_LIST],
        responses={200: ref("VectorStoreFileList"), **errors_for(400, 401, 404)},
    )
    def get(self, request: Request, vector_store_id: str) -> Response:
        store = self.store(vector_store_id)
        return self.page(request, store, store.files.all())


class VectorStoreFileDetailView(_FilesView):
    @extend_schema(
        operation_id="retrieve_vector_store_file",
        summary="Retrieve a vector store file",
        tags=TAGS,
        parameters=[_STORE, _FILE],
        responses={200: ref("VectorStoreFile"), **errors_for(401, 404)},
    )
    def get(self, request: Request, vector_store_id: str, file_id: str) -> Response:
        return Response(vector_stores.file_resource(self.file(self.store(vector_store_id), file_id)))

    @extend_schema(
        operation_id="update_vector_store_file_attributes",
        summary="Update a vector store file's attributes",
        tags=TAGS,
        parameters=[_STORE, _FILE],
        request={"application/json": ref("UpdateVectorStoreFileAttributesRequest")},
        responses={200: ref("VectorStoreFile"), **errors_for(400, 401, 404)},
    )
    def post(self, request: Request, vector_store_id: str, file_id: str) -> Response:
        row, body = self.file(self.store(vector_store_id), file_id), self.body()
        if "attributes" not in body:
            raise errors.InvalidRequest("Missing required parameter: 'attributes'.", param="attributes",
                                        code="missing_required_parameter")  # fmt: skip
        row = vector_stores.set_attributes(row, requests.attributes(body["attributes"]))
        return Response(vector_stores.file_resource(row))

    @extend_schema(operation_id="delete_vector_store_file", summary="Remove a file from a vector store", tags=TAGS,
                   description="Its chunks go; the file stays in the Files API.", parameters=[_STORE, _FILE],
                   responses={200: ref("VectorStoreFileDeleted"), **errors_for(401, 404)})  # fmt: skip
    def delete(self, request: Request, vector_store_id: str, file_id: str) -> Response:
        store = self.store(vector_store_id)
        if not vector_stores.remove_file(store, file_id):
            self.file(store, file_id)  # raises the 404
        return Response({"id": file_id, "object": "vector_store.file.deleted", "deleted": True})


class VectorStoreFileContentView(_FilesView):
    @extend_schema(operation_id="retrieve_vector_store_file_content", summary="A vector store file's text",
                   tags=TAGS, parameters=[_STORE, _FILE],
                   responses={200: ref("VectorStoreFileContent"), **errors_for(401, 404)})  # fmt: skip
    def get(self, request: Request, vector_store_id: str, file_id: str) -> Response:
        row = self.file(self.store(vector_store_id), file_id)
        content = files.content(self.key.tenant_id, row.file_id)
        try:
            data = [] if content is None else [{"type": "text", "text": read_text(content)}]
        except Failed:  # not a text file: nothing was indexed of it
            data = []
        return Response({"object": "vector_store.file_content.page", "data": data, "has_more": False,
                         "next_page": None})  # fmt: skip


class FileBatchCreateView(_FilesView):
    @extend_schema(
        operation_id="create_vector_store_file_batch",
        summary="Add files to a vector store in one batch",
        description="`file_ids` (the request's `chunking_strategy` and `attributes` for each) or `files` (each with "
        "its own), up to 2,000; indexed in the background.",
        tags=TAGS,
        parameters=[_STORE],
        request={"application/json": ref("CreateVectorStoreFileBatchRequest")},
        responses={200: ref("VectorStoreFileBatch"), **errors_for(400, 401, 404)},
    )
    def post(self, request: Request, vector_store_id: str) -> Response:
        store, body = self.usable(self.store(vector_store_id)), self.body()
        entries = requests.entries(self.key, body, self.context(store), limit=requests.MAX_BATCH_FILES, required=True)
        batch, _ = self.add(store, entries, batch=True)
        return Response(vector_stores.batch_resource(batch))


class FileBatchDetailView(_FilesView):
    @extend_schema(
        operation_id="retrieve_vector_store_file_batch",
        summary="Retrieve a file batch",
        tags=TAGS,
        parameters=[_STORE, _BATCH],
        responses={200: ref("VectorStoreFileBatch"), **errors_for(401, 404)},
    )
    def get(self, request: Request, vector_store_id: str, batch_id: str) -> Response:
        return Response(vector_stores.batch_resource(self.batch(self.store(vector_store_id), batch_id)))


class FileBatchCancelView(_FilesView):
    @extend_schema(operation_id="cancel_vector_store_file_batch", request=None, summary="Cancel a file batch",
                   tags=TAGS, description="Its files not indexed yet are cancelled.", parameters=[_STORE, _BATCH],
                   responses={200: ref("VectorStoreFileBatch"), **errors_for(401, 404)})  # fmt: skip
    def post(self, request: Request, vector_store_id: str, batch_id: str) -> Response:
        batch = vector_stores.cancel_batch(self.batch(self.store(vector_store_id), batch_id))
        return Response(vector_stores.batch_resource(batch))


class FileBatchFilesView(_FilesView):
    @extend_schema(operation_id="list_vector_store_file_batch_files", summary="List a file batch's files", tags=TAGS,
                   parameters=[_STORE, _BATCH, *_LIST],
                   responses={200: ref("VectorStoreFileList"), **errors_for(400, 401, 404)})  # fmt: skip
    def get(self, request: Request, vector_store_id: str, batch_id: str) -> Response:
        store = self.store(vector_store_id)
        return self.page(request, store, self.batch(store, batch_id).files.all())
