"""One request sent to the gateway's ASGI app in this process, as if it had come through the API edge with the
batch's key: the same checks, limits, deployments, metering and stored answers as any request. Returns the
status, headers and body the client would have got. A vector store's indexing and search send their embeddings
this way too (``hub/vector_stores/``)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from accounts.authn import KeyContext
from hub.api.edge import EdgeContext


@functools.cache
def _gateway():
    """What hub/asgi.py routes the generation routes to (imported here on first use: the gateway's Responses relay
    runs vector store searches, which call back through this module)."""
    from hub.api.gateway import GatewayConsumer

    return GatewayConsumer.as_asgi()


RETRY_STATUSES = (429, 503)
MAX_RETRY_WAIT = 30.0


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


def retry_after(answer: Answer, attempt: int) -> float | None:
    """Seconds to wait before sending the request again, or None when its answer is final: another status, or one
    the hub marks as not worth retrying (``x-should-retry: false``: a spent budget, a request over a limit)."""
    if answer.status not in RETRY_STATUSES or answer.headers.get("x-should-retry") == "false":
        return None
    try:
        wait = float(answer.headers.get("retry-after", ""))
    except ValueError:
        wait = 2.0**attempt
    return min(max(wait, 0.1), MAX_RETRY_WAIT)


async def call(key: KeyContext, route: str, body: dict, request_id: str, *, batch: bool = True,
               metered_route: str | None = None, extra: dict | None = None, abort: asyncio.Event | None = None,
               sink: Callable[[bytes], Awaitable[None]] | None = None) -> Answer:  # fmt: skip
    """``POST /v1/<route>`` with ``body``; ``batch``: in the batch tier (hub/api/tiers.py), behind interactive
    traffic; ``metered_route``: the route its usage row names (default ``route``); ``extra``: more for the
    gateway's ``EdgeContext.extra``; ``abort``: once set, the "client" leaves, as one that closed its connection
    (the gateway stops the request and meters what it produced; the answer is then whatever was sent, if any);
    ``sink``: given a 200 answer's body as it comes (a stream's events), instead of the ``Answer`` keeping it."""
    extra = {**(extra or {}), **({"batch": True} if batch else {})}
    if metered_route is not None:
        extra["metered_route"] = metered_route
    ctx = EdgeContext(request_id=request_id, base="v1", key=key, json=body, extra=extra)
    scope = {"type": "http", "method": "POST", "path": f"/v1/{route}", "headers": [], "query_string": b"",
             "hub": ctx}  # fmt: skip
    answered = asyncio.Event()
    requested = False
    start: dict = {}
    chunks: list[bytes] = []

    async def receive() -> dict:
        nonlocal requested
        if not requested:  # the body is read from ctx.json, as the edge leaves it
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        # then the client "leaves" (answered, or aborted), and the consumer finishes its metering
        waits = [asyncio.ensure_future(event.wait()) for event in (answered, abort) if event is not None]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
        elif message["type"] == "http.response.body":
            if sink is not None and start.get("status") == 200:
                await sink(message.get("body", b""))
            else:
                chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                answered.set()

    await _gateway()(scope, receive, send)
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in start.get("headers", [])}
    return Answer(start.get("status", 500), headers, b"".join(chunks))
