"""OpenAI's Conversations API: ``POST /v1/conversations``; ``GET``, ``POST`` (new metadata) and ``DELETE
/v1/conversations/{id}``; ``GET`` and ``POST /v1/conversations/{id}/items``; ``GET`` and ``DELETE
/v1/conversations/{id}/items/{item_id}``. Items are the Responses API's input items, read as ``POST /v1/responses``
reads them (``responses_input.read_items``: an ``item_reference`` names an item of the conversation or of a stored
response); a response created with ``conversation`` continues the conversation
and adds its input and output to it (``responses_relay.py``). Scoped to the key's tenant by ``TenantAPIView``:
another tenant's id is answered exactly like an id that never existed (404)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from accounts import conversations as stored
from accounts import responses
from hub.api import errors, paging, validation
from hub.api.openapi import errors_for
from hub.api.openapi_schemas import ref
from hub.api.responses_input import read_items, references
from hub.api.views import TenantAPIView

MAX_NEW_ITEMS = 20  # OpenAI's, per request
_ID = OpenApiParameter("conversation_id", str, OpenApiParameter.PATH, description="The conversation's id (`conv_...`).")
_ITEM_ID = OpenApiParameter("item_id", str, OpenApiParameter.PATH, description="The item's id.")
_INCLUDE = OpenApiParameter("include", {"type": "array", "items": {"type": "string"}},
                            description="Accepted; items are always returned whole, as stored.")  # fmt: skip
_TAGS = ["conversations"]


def _not_found(conversation_id: str) -> errors.NotFound:
    return errors.NotFound(f"Conversation with id '{errors.shown(conversation_id)}' not found.",
                           param="conversation_id")  # fmt: skip


def _new_items(raw, history: list[dict], required: bool, tenant_id: int) -> list[dict]:
    """``items`` of a request: up to 20 input items, none by an id the conversation holds."""
    if raw is None:
        if required:
            raise validation.missing("items")
        return []
    if not isinstance(raw, list):
        raise validation.wrong_type("items", "an array of input items", raw)
    if len(raw) > MAX_NEW_ITEMS or (required and not raw):
        raise errors.InvalidRequest(f"'items' must hold 1 to {MAX_NEW_ITEMS} items.", param="items")
    items = read_items(raw, history, "items", responses.items_by_id(tenant_id, references(raw, history)))
    held = {item.get("id") for item in history}
    for n, item in enumerate(items):
        if item["id"] in held:
            raise errors.InvalidRequest(f"The conversation already has an item with id '{errors.shown(item['id'])}'.",
                                        param=f"items[{n}].id")  # fmt: skip
        held.add(item["id"])
    return items


class _ConversationView(TenantAPIView):
    def body(self) -> dict:
        return self.request._request.scope["hub"].json

    def conversation(self, conversation_id: str):
        found = stored.find(self.key.tenant_id, conversation_id)
        if found is None:
            raise _not_found(conversation_id)
        return found


class ConversationCreateView(_ConversationView):
    @extend_schema(
        operation_id="create_conversation",
        summary="Create a conversation",
        description=f"With up to {MAX_NEW_ITEMS} items and `metadata`. Kept until deleted.",
        tags=_TAGS,
        request={"application/json": ref("CreateConversationRequest")},
        responses={200: ref("Conversation"), **errors_for(400, 401)},
    )
    def post(self, request: Request) -> Response:
        body = self.body()
        validation.check_metadata(body.get("metadata"))
        items = _new_items(body.get("items"), [], required=False, tenant_id=self.key.tenant_id)
        conversation = stored.create(tenant_id=self.key.tenant_id, api_key_id=self.key.key_id,
                                     metadata=dict(body.get("metadata") or {}), items=items)  # fmt: skip
        return Response(conversation.resource())


class ConversationDetailView(_ConversationView):
    @extend_schema(operation_id="get_conversation", summary="Retrieve a conversation", tags=_TAGS, parameters=[_ID],
                   responses={200: ref("Conversation"), **errors_for(401, 404)})  # fmt: skip
    def get(self, request: Request, conversation_id: str) -> Response:
        return Response(self.conversation(conversation_id).resource())

    @extend_schema(
        operation_id="update_conversation",
        summary="Update a conversation",
        description="Replaces its `metadata`.",
        tags=_TAGS,
        parameters=[_ID],
        request={"application/json": ref("UpdateConversationRequest")},
        responses={200: ref("Conversation"), **errors_for(400, 401, 404)},
    )
    def post(self, request: Request, conversation_id: str) -> Response:
        body = self.body()
        if "metadata" not in body:
            raise validation.missing("metadata")
        validation.check_metadata(body["metadata"])
        found = stored.set_metadata(self.key.tenant_id, conversation_id, dict(body["metadata"] or {}))
        if found is None:
            raise _not_found(conversation_id)
        return Response(found.resource())

    @extend_schema(operation_id="delete_conversation", summary="Delete a conversation", tags=_TAGS,
                   description="The conversation and its items. Responses made in it are kept.", parameters=[_ID],
                   responses={200: ref("ConversationDeleted"), **errors_for(401, 404)})  # fmt: skip
    def delete(self, request: Request, conversation_id: str) -> Response:
        if not stored.delete(self.key.tenant_id, conversation_id):
            raise _not_found(conversation_id)
        return Response({"id": conversation_id, "object": "conversation.deleted", "deleted": True})


class ConversationItemsView(_ConversationView):
    @extend_schema(
        operation_id="list_conversation_items",
        summary="List a conversation's items",
        description="Newest first by default (`order`), in pages (`after`, `has_more`).",
        tags=_TAGS,
        parameters=[
            _ID,
            OpenApiParameter("limit", int, description=f"1 to {paging.MAX_LIMIT} (default 20)."),
            OpenApiParameter("order", str, enum=["asc", "desc"], description="Default `desc`."),
            OpenApiParameter("after", str, description="An item id: list the items after it."),
            _INCLUDE,
        ],
        responses={200: ref("ConversationItemList"), **errors_for(400, 401, 404)},
    )
    def get(self, request: Request, conversation_id: str) -> Response:
        conversation = self.conversation(conversation_id)
        limit, descending = paging.limit_and_order(request, "desc")
        after = request.query_params.get("after")
        page = stored.page(conversation.pk, after=after, limit=limit, descending=descending)
        if page is None:
            raise errors.InvalidRequest(f"No item with id '{errors.shown(after)}' in this conversation.",
                                        param="after")  # fmt: skip
        return Response(paging.list_object(page.items, page.has_more))

    @extend_schema(
        operation_id="create_conversation_items",
        summary="Add items to a conversation",
        description=f"1 to {MAX_NEW_ITEMS} input items, appended in order; returns them with their ids.",
        tags=_TAGS,
        parameters=[_ID, _INCLUDE],
        request={"application/json": ref("CreateConversationItemsRequest")},
        responses={200: ref("ConversationItemList"), **errors_for(400, 401, 404)},
    )
    def post(self, request: Request, conversation_id: str) -> Response:
        conversation = self.conversation(conversation_id)
        items = _new_items(
            self.body().get("items"), stored.items(conversation.pk), required=True, tenant_id=self.key.tenant_id
        )
        try:
            stored.add_items(conversation.pk, items)
        except stored.DuplicateItem as twice:  # added meanwhile by another request
            raise errors.InvalidRequest(f"The conversation already has an item with id "
                                        f"'{errors.shown(twice.item_id)}'.", param="items")  # fmt: skip
        return Response(paging.list_object(items, False))


class ConversationItemView(_ConversationView):
    @extend_schema(operation_id="get_conversation_item", summary="Retrieve a conversation's item", tags=_TAGS,
                   parameters=[_ID, _ITEM_ID, _INCLUDE],
                   responses={200: ref("ConversationItem"), **errors_for(401, 404)})  # fmt: skip
    def get(self, request: Request, conversation_id: str, item_id: str) -> Response:
        found = stored.item(self.conversation(conversation_id).pk, item_id)
        if found is None:
            raise errors.NotFound(f"Item with id '{errors.shown(item_id)}' not found.", param="item_id")
        return Response(found)

    @extend_schema(operation_id="delete_conversation_item", summary="Delete a conversation's item", tags=_TAGS,
                   description="Returns the conversation.", parameters=[_ID, _ITEM_ID],
                   responses={200: ref("Conversation"), **errors_for(401, 404)})  # fmt: skip
    def delete(self, request: Request, conversation_id: str, item_id: str) -> Response:
        conversation = self.conversation(conversation_id)
        if not stored.delete_item(conversation.pk, item_id):
            raise errors.NotFound(f"Item with id '{errors.shown(item_id)}' not found.", param="item_id")
        return Response(conversation.resource())
