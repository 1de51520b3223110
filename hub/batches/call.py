"""One request sent to the gateway's ASGI app in this process, as if it had come through the API edge with the
batch's key: the same checks, limits, deployments, metering and stored answers as any request. Returns the
status, headers and body the client would have got."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from accounts.authn import KeyContext
from hub.api.edge import EdgeContext
from hub.api.gateway import GatewayConsumer

_gateway = GatewayConsumer.as_asgi()  # what hub/asgi.py routes the generation routes to


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


async def call(key: KeyContext, route: str, body: dict, request_id: str) -> Answer:
    """``POST /v1/<route>`` with ``body``."""
    ctx = EdgeContext(request_id=request_id, base="v1", key=key, json=body, extra={"batch": True})  # hub/api/tiers.py
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
        await answered.wait()  # then the client "leaves", and the consumer finishes its metering
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                answered.set()

    await _gateway(scope, receive, send)
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in start.get("headers", [])}
    return Answer(start.get("status", 500), headers, b"".join(chunks))
