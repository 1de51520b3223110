"""OpenAI's stored chat completions routes (``store: true`` on the create request, ``hub/api/chat_store.py``):
``GET /v1/chat/completions`` (the list, by model and metadata), ``GET``, ``POST`` (new metadata) and ``DELETE
/v1/chat/completions/{id}``, and ``GET /v1/chat/completions/{id}/messages``. ``POST /v1/chat/completions`` itself
is the gateway's. Scoped to the key's tenant by ``TenantAPIView``: another tenant's id is answered exactly like an
id that never existed (404)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from accounts import chat_completions as stored
from hub.api import errors, paging, validation
from hub.api.openapi import errors_for
from hub.api.openapi_schemas import ref
from hub.api.views import TenantAPIView

_ID = OpenApiParameter("completion_id", str, OpenApiParameter.PATH, description="The chat completion's id.")
_PAGE = [
    OpenApiParameter("limit", int, description=f"1 to {paging.MAX_LIMIT} (default 20)."),
    OpenApiParameter("order", str, enum=["asc", "desc"], description="By creation time; default `asc`."),
]


def _not_found(completion_id: str) -> errors.NotFound:
    return errors.NotFound(f"Chat completion with id '{errors.shown(completion_id)}' not found.", param="completion_id")


def _metadata_filter(request: Request) -> dict[str, str]:
    """``metadata[key]=value`` pairs (as the OpenAI SDK writes a dict in a query)."""
    found = {}
    for name, value in request.query_params.items():
        if name.startswith("metadata[") and name.endswith("]"):
            found[name[len("metadata[") : -1]] = value
        elif name == "metadata":
            raise errors.InvalidRequest("Filter on metadata as 'metadata[key]=value'.", param="metadata")
    validation.check_metadata(found, nul=False)
    return found


class _StoredView(TenantAPIView):
    def stored(self, completion_id: str):
        found = stored.find(self.key.tenant_id, completion_id)
        if found is None:
            raise _not_found(completion_id)
        return found


class ChatCompletionListView(_StoredView):
    @extend_schema(
        operation_id="list_chat_completions",
        summary="List stored chat completions",
        description="The key's tenant's chat completions created with `store: true`, oldest first (`order`), "
        "in pages (`after`, `has_more`).",
        tags=["generation"],
        parameters=[
            OpenApiParameter("model", str, description="Only this model's."),
            OpenApiParameter(
                "metadata",
                {"type": "object", "additionalProperties": {"type": "string"}},
                style="deepObject",
                explode=True,
                description="`metadata[key]=value`: only those with these pairs.",
            ),  # fmt: skip
            OpenApiParameter("after", str, description="A chat completion's id: list those after it."),
            *_PAGE,
        ],
        responses={200: ref("ChatCompletionList"), **errors_for(400, 401)},
    )
    def get(self, request: Request) -> Response:
        limit, descending = paging.limit_and_order(request, "asc")
        metadata = _metadata_filter(request)
        cursor = paging.cursor(request, lambda pk: stored.find(self.key.tenant_id, pk), "chat completion")
        page = stored.page(self.key.tenant_id, model=request.query_params.get("model"), metadata=metadata,
                           after=cursor, limit=limit, descending=descending)  # fmt: skip
        return Response(paging.list_object([row.answer() for row in page.rows], page.has_more))


class ChatCompletionDetailView(_StoredView):
    @extend_schema(
        operation_id="get_chat_completion",
        summary="Retrieve a stored chat completion",
        description="A chat completion created with `store: true`, as it was returned, with its `metadata`.",
        tags=["generation"],
        parameters=[_ID],
        responses={200: ref("ChatCompletion"), **errors_for(401, 404)},
    )
    def get(self, request: Request, completion_id: str) -> Response:
        return Response(self.stored(completion_id).answer())

    @extend_schema(
        operation_id="update_chat_completion",
        summary="Update a stored chat completion",
        description="Replaces its `metadata` (the only thing that may change).",
        tags=["generation"],
        parameters=[_ID],
        request={"application/json": ref("ChatCompletionUpdateRequest")},
        responses={200: ref("ChatCompletion"), **errors_for(400, 401, 404)},
    )
    def post(self, request: Request, completion_id: str) -> Response:
        body = request._request.scope["hub"].json
        if "metadata" not in body:
            raise validation.missing("metadata")
        validation.check_metadata(body["metadata"], nul=False)
        found = stored.set_metadata(self.key.tenant_id, completion_id, dict(body["metadata"] or {}))
        if found is None:
            raise _not_found(completion_id)
        return Response(found.answer())

    @extend_schema(
        operation_id="delete_chat_completion",
        summary="Delete a stored chat completion",
        tags=["generation"],
        parameters=[_ID],
        responses={200: ref("ChatCompletionDeleted"), **errors_for(401, 404)},
    )
    def delete(self, request: Request, completion_id: str) -> Response:
        if not stored.delete(self.key.tenant_id, completion_id):
            raise _not_found(completion_id)
        return Response({"object": "chat.completion.deleted", "id": completion_id, "deleted": True})


def message_object(completion_id: str, index: int, message: dict) -> dict:
    """A request message as the messages route lists it: ``content`` the text, ``content_parts`` the parts sent
    (null when the content was a string), of OpenAI's kinds there: text and image_url (a file part is left out)."""
    content, parts = message.get("content"), None
    if isinstance(content, list):
        parts = [p for p in content if isinstance(p, dict) and p.get("type") in ("text", "image_url")]
        texts = [p.get("text") or "" for p in content if isinstance(p, dict) and p.get("type") == "text"]
        content = "".join(texts) if texts else None
    out = {"id": f"{completion_id}-{index}", "role": message.get("role"), "content": content, "refusal": None,
           "name": message.get("name"), "content_parts": parts}  # fmt: skip
    for extra in ("tool_calls", "tool_call_id"):
        if message.get(extra) is not None:
            out[extra] = message[extra]
    return out


class ChatCompletionMessagesView(_StoredView):
    @extend_schema(
        operation_id="list_chat_completion_messages",
        summary="List a stored chat completion's messages",
        description="The messages of the request that created it, each with an id (`<completion id>-<index>`).",
        tags=["generation"],
        parameters=[_ID, OpenApiParameter("after", str, description="A message's id: list those after it."), *_PAGE],
        responses={200: ref("ChatCompletionMessageList"), **errors_for(400, 401, 404)},
    )
    def get(self, request: Request, completion_id: str) -> Response:
        limit, descending = paging.limit_and_order(request, "asc")
        found = self.stored(completion_id)
        messages = [message_object(found.pk, i, m) for i, m in enumerate(found.messages)]
        if descending:
            messages.reverse()
        messages = paging.after(messages, request, "message")
        return Response(paging.list_object(messages[:limit], len(messages) > limit))
