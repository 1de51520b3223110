"""ASGI requests for the hub's tests, and a POST through the hub's API edge alone (``hub/api/edge.py``), no server:
what reached the view, or what the edge answered instead."""

from __future__ import annotations

import asyncio

from hub.api.edge import ApiEdgeMiddleware


def request_messages(body: bytes, chunk: int | None = None) -> list[dict]:
    """ASGI ``http.request`` messages carrying ``body``: one, or ``chunk`` bytes each."""
    step = chunk or max(len(body), 1)
    return [{"type": "http.request", "body": body[i : i + step], "more_body": i + step < len(body)}
            for i in range(0, max(len(body), 1), step)]  # fmt: skip


def post_through_edge(
    secret: str, body: bytes, content_type: str | None = "application/json", *, chunk: int | None = None
) -> tuple[list, list[dict]]:
    """POST ``body`` to /v1/chat/completions with ``secret`` as its key (no Content-Type header when
    ``content_type`` is None): (the parsed bodies the edge passed on, the ASGI messages it sent itself), one of them
    empty. ``chunk``: sent chunked, in messages of that many bytes, with no Content-Length."""
    passed, sent = [], []
    messages = request_messages(body, chunk)

    async def inner(scope, receive, send):
        passed.append(scope["hub"].json)

    async def receive():
        return messages.pop(0)

    async def send(message):
        sent.append(message)

    headers = [(b"host", b"127.0.0.1:8000"), (b"authorization", f"Bearer {secret}".encode())]
    if chunk is None:
        headers.append((b"content-length", str(len(body)).encode()))
    if content_type is not None:
        headers.append((b"content-type", content_type.encode()))
    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "query_string": b"", "headers": headers}
    asyncio.run(ApiEdgeMiddleware(inner)(scope, receive, send))
    return passed, sent
