"""The stored responses' routes: ``GET`` and ``DELETE /v1/responses/{id}``, ``GET /v1/responses/{id}/input_items``
and ``POST /v1/responses/{id}/cancel``. Scoped to the key's tenant by ``TenantAPIView``: another tenant's id is
answered exactly like an id that never existed (404)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

from django.http import StreamingHttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from accounts import background
from accounts import responses as stored
from accounts.stored import valid_id
from hub.api import errors, paging
from hub.api.openapi import errors_for
from hub.api.openapi_schemas import ref
from hub.api.relay_common import SSE_HEADERS, typed_event
from hub.api.views import TenantAPIView
from hub.background import dispatch as background_dispatch
from hub.background import tail

_ID = OpenApiParameter("response_id", str, OpenApiParameter.PATH, description="The response's id (`resp_...`).")


def _not_found(response_id: str) -> errors.NotFound:
    return errors.NotFound(f"Response with id '{errors.shown(response_id)}' not found.", param="response_id")


RESULTS_INCLUDE = "file_search_call.results"


def _with_results(found) -> dict:
    """The response with its searches' results, also those the creating request did not ask to see (kept for the
    context): ``include[]=file_search_call.results`` on retrieve, as OpenAI's."""
    return {**found.response, "output": found.output_with_results()}


async def _sse_bytes(events) -> AsyncIterator[bytes]:
    async for event in events:
        yield typed_event(event)


class _StoredView(TenantAPIView):
    def stored(self, response_id: str):
        found = stored.find(self.key.tenant_id, response_id)
        if found is None:
            raise _not_found(response_id)
        return found


class ResponseDetailView(_StoredView):
    @extend_schema(
        operation_id="get_response",
        summary="Retrieve a response",
        description="A stored response (`store`, the default when it was created), as it was returned; a background "
        "response as it is now (`queued`, `in_progress`, then as it ended). With `stream=true`, a response created "
        "with `background` and `stream` is streamed again: its events (`text/event-stream`, as the creating request "
        "streamed them) after `starting_after`, then those to come, to the last.",
        tags=["responses"],
        parameters=[
            _ID,
            OpenApiParameter(
                "include[]",
                str,
                many=True,
                enum=[RESULTS_INCLUDE],
                description="`file_search_call.results`: its searches' results, also when the creating "
                "request did not include them.",
            ),
            OpenApiParameter("stream", bool, description="Stream a background response's events again."),
            OpenApiParameter(
                "starting_after",
                int,
                description="With `stream`: the sequence number to stream after (default: from the first event).",
            ),
        ],
        responses={200: ref("ResponseObject"), **errors_for(400, 401, 404)},
    )
    def get(self, request: Request, response_id: str) -> Response | StreamingHttpResponse:
        found = self.stored(response_id)
        if request.query_params.get("stream") not in ("true", "1"):
            include = request.query_params.getlist("include[]") + request.query_params.getlist("include")
            return Response(_with_results(found) if RESULTS_INCLUDE in include else found.response)
        after = request.query_params.get("starting_after", "-1")
        if not re.fullmatch(r"-1|\d{1,9}", after):
            raise errors.InvalidRequest(f"Invalid 'starting_after': {errors.shown(after)!r}; expected a sequence "
                                        "number (an integer from 0).", param="starting_after")  # fmt: skip
        if not background.streamed(self.key.tenant_id, response_id):
            raise errors.InvalidRequest("Only responses created with 'background': true and 'stream': true can be "
                                        "streamed again.", param="stream")  # fmt: skip
        events = tail.events(response_id, int(after))
        answer = StreamingHttpResponse(_sse_bytes(events))
        for name, value in SSE_HEADERS:  # the gateway's streams' own: no cache, no proxy buffering
            answer[name.decode()] = value.decode()
        return answer

    @extend_schema(
        operation_id="delete_response",
        summary="Delete a response",
        description="Deletes a stored response. Responses that continue it keep their own copy of the conversation.",
        tags=["responses"],
        parameters=[_ID],
        responses={200: ref("ResponseDeleted"), **errors_for(401, 404)},
    )
    def delete(self, request: Request, response_id: str) -> Response:
        if not stored.delete(self.key.tenant_id, response_id):
            raise _not_found(response_id)
        background_dispatch.stop(response_id)  # a background response's run and streams here end now
        return Response({"id": response_id, "object": "response.deleted", "deleted": True})


class InputItemsView(_StoredView):
    @extend_schema(
        operation_id="list_input_items",
        summary="List a response's input items",
        description="The input items of the request that created the response (not those of the responses "
        "it continued), with their ids.",
        tags=["responses"],
        parameters=[
            _ID,
            OpenApiParameter("limit", int, description=f"1 to {paging.MAX_LIMIT} (default 20)."),
            OpenApiParameter("order", str, enum=["asc", "desc"], description="Default `desc`."),
            OpenApiParameter("after", str, description="An item id: list the items after it."),
        ],
        responses={200: ref("ResponseItemList"), **errors_for(400, 401, 404)},
    )
    def get(self, request: Request, response_id: str) -> Response:
        limit, descending = paging.limit_and_order(request, "desc")
        items = list(self.stored(response_id).input_items)
        if descending:
            items.reverse()
        items = paging.after(items, request, "input item")
        return Response(paging.list_object(items[:limit], len(items) > limit))


class CancelView(_StoredView):
    @extend_schema(
        operation_id="cancel_response",
        request=None,
        summary="Cancel a response",
        description="A background response (`background: true`) that is queued or in progress becomes `cancelled`: "
        "its run stops within a second or so and is metered for what it produced. One that ended is answered as it "
        "is. A response created without `background` is answered 400 (a streamed one is cancelled by closing the "
        "stream), an unknown one 404.",
        tags=["responses"],
        parameters=[_ID],
        responses={200: ref("ResponseObject"), **errors_for(400, 401, 404)},
    )
    def post(self, request: Request, response_id: str) -> Response:
        if not valid_id(response_id):
            raise _not_found(response_id)
        try:
            response = background.cancel(self.key.tenant_id, response_id)
        except background.NotBackground:
            raise errors.InvalidRequest("Only responses created with 'background': true can be cancelled.",
                                        param="response_id") from None  # fmt: skip
        if response is None:
            raise _not_found(response_id)
        background_dispatch.stop(response_id)
        return Response(response)
