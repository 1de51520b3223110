"""A remote MCP server for the tests of the Responses API's ``mcp`` tool: the official SDK's server (``mcp``), over
Streamable HTTP on a loopback port, in a thread of the test process. Its tools: ``add`` (read-only), ``remember``
(writes), ``wait`` (answers after a while) and ``fail`` (always fails). ``calls`` holds each tool call it ran
(name, arguments), ``headers`` the headers of every HTTP request it got."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from tests.support.asgi_server import serving


@dataclass
class McpServer:
    url: str = ""
    calls: list[tuple[str, dict]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)


def _app(server: McpServer):
    from mcp.server.mcpserver import MCPServer
    from mcp.server.transport_security import TransportSecuritySettings
    from mcp_types import ToolAnnotations

    mcp = MCPServer("calculator")

    @mcp.tool(description="Add two whole numbers.", annotations=ToolAnnotations(readOnlyHint=True))
    def add(a: int, b: int) -> str:
        server.calls.append(("add", {"a": a, "b": b}))
        return str(a + b)

    @mcp.tool(description="Remember a note for later.")
    def remember(note: str) -> str:
        server.calls.append(("remember", {"note": note}))
        return f"Remembered: {note}"

    @mcp.tool(description="Wait a while, then say so.")
    async def wait(seconds: float) -> str:
        server.calls.append(("wait", {"seconds": seconds}))
        await asyncio.sleep(seconds)
        return "waited"

    @mcp.tool(description="A tool that always fails.")
    def fail(reason: str) -> str:
        server.calls.append(("fail", {"reason": reason}))
        raise ValueError(f"failed on purpose: {reason}")

    # any Host: a test names the server by a name of its own (the hub connects to the address it checked for it)
    app = mcp.streamable_http_app(
        stateless_http=True,
        json_response=True,
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )

    async def recorded(scope, receive, send):
        if scope["type"] == "http":
            server.headers.append({k.decode(): v.decode() for k, v in scope["headers"]})
        return await app(scope, receive, send)

    return recorded


@contextmanager
def mcp_server() -> Iterator[McpServer]:
    server = McpServer()
    with serving(_app(server)) as url:
        server.url = f"{url}/mcp"
        yield server
