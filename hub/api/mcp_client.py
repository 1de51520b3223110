"""The hub as the client of a remote MCP server, for the Responses API's ``mcp`` tool (``mcp_tools.py``): the
server's tools listed, one of them called, over MCP's Streamable HTTP transport with the official Python SDK
(``mcp``), which negotiates the protocol's version with the server.

Each operation is a session of its own (a server keeps nothing of ours between them), sends the tool's ``headers``
and ``authorization`` (as ``Authorization: Bearer``), follows no redirect off the server's origin (the SDK's rule),
and waits at most ``HUB_MCP_TIMEOUT_SECONDS``. The server's address is checked as a webhook's is, and connected to
as checked (``hub/webhooks/addresses.py``, with ``HUB_MCP_ALLOW_PRIVATE_URLS``). What fails is told in the shapes
of OpenAI's ``mcp_call.error``: ``http_error`` (the server's HTTP status), ``mcp_protocol_error`` (a JSON-RPC error,
or no answer at all: ``CONNECTION_CLOSED``), ``mcp_tool_execution_error`` (the tool ran and said it failed)."""

from __future__ import annotations

import asyncio
import functools
import json
import ssl
from dataclasses import dataclass, field

import httpx2
from django.conf import settings
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED, INVALID_PARAMS

from hub.webhooks import addresses

ALLOW_SETTING = "HUB_MCP_ALLOW_PRIVATE_URLS"
MAX_LIST_PAGES = 10  # of a server's tools/list: a server that pages on forever is cut there
MAX_OUTPUT_CHARS = 200_000  # of a call's output kept for the model and the response


@dataclass(frozen=True)
class McpServer:
    label: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)


class McpFailed(Exception):
    """An operation that failed; ``error``: OpenAI's ``mcp_call.error`` object for it."""

    def __init__(self, error: dict):
        super().__init__(error.get("message") or json.dumps(error.get("content"))[:200])
        self.error = error


def _protocol(code: int, message: str) -> McpFailed:
    return McpFailed({"type": "mcp_protocol_error", "code": code, "message": message})


def _leaf(exc: BaseException) -> BaseException:
    """The first failure inside the SDK's task groups' exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _failure(exc: BaseException, server: McpServer) -> McpFailed:
    exc = _leaf(exc)
    if isinstance(exc, McpFailed):
        return exc
    if isinstance(exc, MCPError):
        return _protocol(exc.error.code, exc.error.message)
    if isinstance(exc, httpx2.HTTPStatusError):
        status = exc.response.status_code
        return McpFailed({"type": "http_error", "code": status,
                          "message": f"The MCP server '{server.label}' answered HTTP {status}."})  # fmt: skip
    if isinstance(exc, (TimeoutError, httpx2.TimeoutException)):  # the whole operation's, or one request's
        return _protocol(CONNECTION_CLOSED, f"The MCP server '{server.label}' did not answer within "
                         f"{settings.HUB_MCP_TIMEOUT_SECONDS:g} s.")  # fmt: skip
    return _protocol(CONNECTION_CLOSED, f"The MCP server '{server.label}' could not be reached: "
                     f"{type(exc).__name__}: {exc}"[:500])  # fmt: skip


@functools.cache
def _tls() -> ssl.SSLContext:
    """The process's TLS context, made once: loading the certificate authorities takes ~25 ms, twice the rest of an
    operation on a server nearby (``benchmarks/bench_mcp.py``)."""
    return httpx2.create_ssl_context()


class _PinnedTransport(httpx2.AsyncBaseTransport):
    """Requests to the server's host go to the address checked for it (``addresses.Pinned``), not to whatever the
    name resolves to when the SDK connects (DNS rebinding); ``Host`` stays the request's, and TLS's SNI names the
    host."""

    def __init__(self, pinned: addresses.Pinned):
        self.pinned, self.inner = pinned, httpx2.AsyncHTTPTransport(verify=_tls())

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if self.pinned.address is not None and request.url.host == self.pinned.host:
            request.extensions = {**request.extensions, **self.pinned.extensions(str(request.url))}
            request.url = request.url.copy_with(host=self.pinned.address)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def _session(server: McpServer, operation):
    """``operation(client)`` in a session of its own with the server, within the timeout."""
    pinned, problem = await asyncio.to_thread(addresses.resolve, server.url, ALLOW_SETTING)
    if problem is not None:
        raise _protocol(CONNECTION_CLOSED, f"The MCP server '{server.label}' may not be called: {problem}")
    timeout = settings.HUB_MCP_TIMEOUT_SECONDS
    http = httpx2.AsyncClient(headers=server.headers, timeout=httpx2.Timeout(timeout),
                              transport=_PinnedTransport(pinned))  # fmt: skip
    try:
        async with asyncio.timeout(timeout), http:
            async with Client(streamable_http_client(server.url, http_client=http)) as client:
                return await operation(client)
    except asyncio.CancelledError:
        raise
    except BaseException as exc:  # noqa: BLE001 - the SDK's task groups raise groups; told as the call's error
        if isinstance(_leaf(exc), (KeyboardInterrupt, SystemExit)):
            raise
        raise _failure(exc, server) from None


def _tool(tool) -> dict:
    """A listed tool in OpenAI's ``mcp_list_tools`` shape."""
    shown = tool.model_dump(mode="json", by_alias=True, exclude_none=True)
    return {"name": shown["name"], "description": shown.get("description"),
            "input_schema": shown.get("inputSchema") or {"type": "object", "properties": {}},
            "annotations": shown.get("annotations")}  # fmt: skip


async def list_tools(server: McpServer) -> list[dict]:
    """The server's tools, every page of them (up to ``MAX_LIST_PAGES``)."""

    async def listed(client: Client) -> list[dict]:
        tools, cursor = [], None
        for _ in range(MAX_LIST_PAGES):
            page = await client.list_tools(cursor=cursor)
            tools += [_tool(t) for t in page.tools]
            cursor = page.next_cursor
            if not cursor:
                break
        return tools

    return await _session(server, listed)


def _part_text(part: dict) -> str:
    return part["text"] if part.get("type") == "text" else json.dumps(part, separators=(",", ":"))


async def call_tool(server: McpServer, name: str, arguments: str) -> str:
    """The output of the tool ``name`` called with ``arguments`` (the model's JSON): its content's text, each other
    part (an image, a resource) as its JSON. Raises ``McpFailed``."""
    try:
        parsed = json.loads(arguments or "{}")
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise _protocol(INVALID_PARAMS, f"The arguments of '{name}' are not a JSON object: {arguments[:200]!r}")

    called = await _session(server, lambda client: client.call_tool(name, parsed))
    result = called.model_dump(mode="json", by_alias=True, exclude_none=True)
    content = result.get("content") or []
    if result.get("isError"):
        raise McpFailed({"type": "mcp_tool_execution_error", "content": content})
    output = "\n".join(_part_text(p) for p in content)
    if not content and result.get("structuredContent") is not None:
        output = json.dumps(result["structuredContent"])
    return output[:MAX_OUTPUT_CHARS]
