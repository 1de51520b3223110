"""What the gateway's relays share: the stream's headers, an upstream stream's lines, whether a chat chunk carries
output, an upstream error answer as ours."""

from __future__ import annotations

import json

import httpx

from hub.api import errors

SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]


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
