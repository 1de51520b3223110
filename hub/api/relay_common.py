"""What the gateway's relays share: the stream's headers, a typed event's bytes, an upstream stream's lines, whether
a chat chunk carries output, an upstream error answer as ours, a usage object's token counts."""

from __future__ import annotations

import json
from typing import NamedTuple

import httpx

from hub.api import errors

SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]


def typed_event(event: dict) -> bytes:
    """A typed stream event (the Responses API's) as a server-sent event: its ``type`` as the event's name."""
    return f"event: {event['type']}\ndata: {json.dumps(event, separators=(',', ':'))}\n\n".encode()


async def sse_lines(response: httpx.Response):
    """The stream's lines, split at ``\n`` only, as server-sent events define them. (httpx's ``aiter_lines``
    also splits at U+2028, U+0085 and the like, which a model may generate and JSON carries unescaped.)"""
    pending = b""
    async for data in response.aiter_bytes():
        pending += data
        *lines, pending = pending.split(b"\n")
        for line in lines:
            yield line.rstrip(b"\r").decode("utf-8", "replace")
    if pending:
        yield pending.rstrip(b"\r").decode("utf-8", "replace")


class TokenCounts(NamedTuple):
    prompt: int
    completion: int
    cached: int | None  # None: the usage has no details (a stream's earlier count stands)
    reasoning: int | None


def token_counts(usage: dict) -> TokenCounts:
    """An OpenAI usage object's counts: chat's and completions' (``prompt_tokens``, ``completion_tokens``) or the
    Responses API's and a transcription stream's (``input_tokens``, ``output_tokens``). Read for every streamed
    chunk that carries usage: kept to plain lookups."""
    if "input_tokens" in usage or usage.get("type") == "tokens":
        prompt, completion = usage.get("input_tokens"), usage.get("output_tokens")
        details_in, details_out = usage.get("input_tokens_details"), usage.get("output_tokens_details")
    else:
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        details_in, details_out = usage.get("prompt_tokens_details"), usage.get("completion_tokens_details")
    cached = int(details_in.get("cached_tokens") or 0) if type(details_in) is dict else None
    reasoning = int(details_out.get("reasoning_tokens") or 0) if type(details_out) is dict else None
    return TokenCounts(int(prompt or 0), int(completion or 0), cached, reasoning)


def has_output(chunk: dict) -> bool:
    """Whether a stream chunk carries generated output (text, a tool call), for the time to first token."""
    for choice in chunk.get("choices") or []:
        delta = choice.get("delta") or {}
        if choice.get("text") or delta.get("content") or delta.get("tool_calls") or delta.get("reasoning_content"):
            return True
    return False


def error_from_upstream(status: int, content: bytes) -> errors.ApiError:
    """An upstream error answer as ours: its OpenAI error object when it sent one."""
    try:
        err = json.loads(content)["error"]
        error = errors.ApiError(str(err.get("message")), param=err.get("param"), code=err.get("code"))
        error.type = str(err.get("type") or "api_error")
        error.status = status
        return error
    except (ValueError, KeyError, TypeError, AttributeError):
        return errors.UpstreamError(f"The model's deployment answered {status} without an OpenAI error object.")
