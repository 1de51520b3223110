"""Consuming an engine request from asyncio: deltas in order, disconnects noticed, errors surfaced."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator

from inference.engine.output import SeqDelta
from inference.server.errors import ServerError, ServiceError
from inference.server.metrics import Metrics
from inference.server.registry import LoadedModel


class ClientGone(Exception):
    pass


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


def sse(obj: dict | str) -> bytes:
    return f"data: {obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False)}\n\n".encode()


async def deltas(
    model: LoadedModel, request_id: str | list[str], queue: asyncio.Queue, n: int, metrics: Metrics, disconnected=None
) -> AsyncIterator[SeqDelta]:
    """Yield a request's deltas until its ``n`` sequences finish (of all the requests ``request_id`` lists, which
    share ``queue``). Aborts the requests upstream if the consumer stops early (cancellation, client gone) so their
    KV blocks are freed within a step."""
    finished = 0
    start = time.monotonic()
    last: dict[tuple[str, int], float] = {}
    try:
        while finished < n:
            if disconnected is None:
                item = await queue.get()
            else:
                getter = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({getter, disconnected}, return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    raise ClientGone
                item = getter.result()
            if isinstance(item, Exception):
                raise ServerError(f"The model failed while generating: {item.__class__.__name__}.")
            now = time.monotonic()
            if getattr(item, "token_ids", None):
                seq = (item.request_id, item.index)
                if seq not in last:
                    metrics.ttft.labels(model.id).observe(now - start)
                else:
                    metrics.tpot.labels(model.id).observe((now - last[seq]) / len(item.token_ids))
                last[seq] = now
            if item.finish_reason:
                finished += 1
            yield item
    finally:
        if finished < n:
            for each in [request_id] if isinstance(request_id, str) else request_id:
                model.worker.abort(each)


async def wait_disconnect(receive) -> None:
    """Completes when the client goes away (the body was already read, so only disconnect remains)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def counted_sse(events: AsyncIterator[bytes], metrics: Metrics, model_id: str, kind: str) -> AsyncIterator[bytes]:
    """A route's SSE events, passed on; an error raised while streaming becomes its OpenAI error event, and the
    request is counted once by how it ended (ok, error, or aborted when the client went away)."""
    status = "ok"
    try:
        async for event in events:
            yield event
    except ServiceError as error:
        status = "error"
        yield sse(error.body())
    except asyncio.CancelledError:
        status = "aborted"
        raise
    finally:
        metrics.requests.labels(model_id, kind, status).inc()
