"""A fake of our inference service for the gateway's own behaviour (usage stripping, renaming, metering, limits):
it answers as the service does (running usage in every chunk when asked, a usage chunk last, ``[DONE]``) at once
and deterministically, so the hub's tests need no model. Each word of an answer is one token: "w0 w1 w2 ...".

It runs on a loopback port in a thread of the test process; ``requests`` holds the bodies it received, and its
upstream name for every model is ``UPSTREAM_NAME``, which the hub must replace with the name the client asked
for."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from tests.support.asgi_server import serving

UPSTREAM_NAME = "fake-upstream-name"
EMBEDDING_DIMENSIONS = 8


def prompt_tokens(body: dict) -> int:
    """A message's words, plus 3 per message (its role and markers); a prompt's or an input's words."""
    if "messages" in body:
        return sum(3 + len(str(m.get("content") or "").split()) for m in body["messages"])
    texts = body.get("prompt", body.get("input", ""))
    return sum(len(str(t).split()) for t in (texts if isinstance(texts, list) else [texts]))


@dataclass
class FakeService:
    url: str = ""
    requests: list[dict] = field(default_factory=list)
    default_tokens: int = 64  # the answer's length without max_tokens
    chunk_delay: float = 0.0  # seconds between a stream's chunks (a stream that stays open a while)
    answer_delay: float = 0.0  # seconds before a whole (not streamed) chat answer
    tallies: dict[str, dict] = field(default_factory=dict)  # by x-usage-id, as our service tallies (tally.py)
    # streamed chat answers said instead of the words, the first for the next request: each a list of deltas (tool
    # calls, say), ended with finish_reason "tool_calls"
    scripts: list[list[dict]] = field(default_factory=list)


def _chat_answer(body: dict, fake: FakeService) -> tuple[list[str], str]:
    limit = body.get("max_tokens") or body.get("max_completion_tokens")
    count = min(limit, fake.default_tokens) if limit else fake.default_tokens
    return [f"w{i} " for i in range(count)], ("length" if limit and limit <= fake.default_tokens else "stop")


def _usage(prompt: int, completion: int) -> dict:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _app(fake: FakeService):
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, StreamingResponse
    from starlette.routing import Route

    async def chat(request):
        body = await request.json()
        fake.requests.append(body)
        words, finish = _chat_answer(body, fake)
        prompt = prompt_tokens(body)
        tally = {"prompt_tokens": prompt, "completion_tokens": 0, "running": False}  # counted as it is answered
        if "x-usage-id" in request.headers:
            fake.tallies[request.headers["x-usage-id"]] = tally
        head = {"id": "chatcmpl-fake", "created": int(time.time()), "model": UPSTREAM_NAME}
        if not body.get("stream"):
            await asyncio.sleep(fake.answer_delay)
            tally["completion_tokens"] = len(words)
            message = {"role": "assistant", "content": "".join(words), "refusal": None}
            choice = {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
            return JSONResponse({**head, "object": "chat.completion", "choices": [choice],
                                 "usage": _usage(prompt, len(words))})  # fmt: skip
        options = body.get("stream_options") or {}
        running = options.get("continuous_usage_stats") is True

        def chunk(delta: dict, done: int, finish_reason: str | None = None) -> str:
            choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
            event = {**head, "object": "chat.completion.chunk", "choices": [choice]}
            if running:
                event["usage"] = _usage(prompt, done)
            return f"data: {json.dumps(event)}\n\n"

        script = fake.scripts.pop(0) if fake.scripts else None

        async def events():
            yield chunk({"role": "assistant", "content": ""}, 0)
            if script is not None:
                for i, delta in enumerate(script):
                    yield chunk(delta, i + 1)
                yield chunk({}, len(script), "tool_calls")
                usage = {**head, "object": "chat.completion.chunk", "choices": [], "usage": _usage(prompt, len(script))}
                yield f"data: {json.dumps(usage)}\n\n"
                yield "data: [DONE]\n\n"
                return
            for i, word in enumerate(words):
                if fake.chunk_delay:
                    await asyncio.sleep(fake.chunk_delay)
                tally["completion_tokens"] = i + 1
                yield chunk({"content": word}, i + 1)
            yield chunk({}, len(words), finish)
            if options.get("include_usage") is True:
                usage = {**head, "object": "chat.completion.chunk", "choices": [], "usage": _usage(prompt, len(words))}
                yield f"data: {json.dumps(usage)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    async def embeddings(request):
        body = await request.json()
        fake.requests.append(body)
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [{"object": "embedding", "index": i, "embedding": [0.5] * 4 + [0.0] * (EMBEDDING_DIMENSIONS - 4)}
                for i in range(len(inputs))]  # fmt: skip
        usage = {"prompt_tokens": prompt_tokens(body), "total_tokens": prompt_tokens(body)}
        return JSONResponse({"object": "list", "data": data, "model": UPSTREAM_NAME, "usage": usage})

    async def tally(request):
        found = fake.tallies.get(request.path_params["usage_id"])
        if found is None:
            return JSONResponse({"error": {"message": "unknown", "type": "invalid_request_error", "param": None,
                                           "code": "usage_id_not_found"}}, status_code=404)  # fmt: skip
        return JSONResponse(found)

    return Starlette(routes=[
        Route("/v1/requests/{usage_id}", tally, methods=["GET"]),
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/embeddings", embeddings, methods=["POST"]),
    ])  # fmt: skip


@contextmanager
def fake_service() -> Iterator[FakeService]:
    """The fake on a free loopback port; ``.url`` is its ``/v1`` base URL, to register as a deployment."""
    fake = FakeService()
    with serving(_app(fake)) as url:
        fake.url = f"{url}/v1"
        yield fake
