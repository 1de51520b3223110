"""The Responses API's ``mcp`` tool: what the hub's MCP client costs a response, against the same SDK kept in one
session.

The hub opens a session of its own for each operation on a remote MCP server (``hub/api/mcp_client.py``: the
protocol's negotiation, then the request; the server's address resolved and checked, the connection pinned to it),
so that nothing is held between a response's rounds, which the model spends seconds in. Here, against the official
SDK's server (``tests/support/mcp_server.py``, in a process of its own on loopback): a listing of its tools and a
call of ``add`` by the hub's client, and the same two in one session of the SDK's ``Client`` opened once (the
lower bound of a client that kept its sessions). The cases alternate within each round; medians over rounds of
``--requests`` each.

    .venv/bin/python benchmarks/bench_mcp.py [--rounds 5] [--requests 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")
os.environ.setdefault("HUB_MCP_ALLOW_PRIVATE_URLS", "true")  # the server is on loopback


def serve(port_file: str) -> None:
    """The server's process: serves until killed, its URL written to ``port_file`` once it listens."""
    from tests.support.mcp_server import mcp_server

    with mcp_server() as server:
        Path(port_file).write_text(server.url)
        while True:
            time.sleep(3600)


async def hub_client(url: str, calls: int) -> list[float]:
    """Seconds for a listing and a call, each in a session of its own (as the hub's client does)."""
    from hub.api import mcp_client

    server = mcp_client.McpServer("bench", url)
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        await mcp_client.list_tools(server)
        assert await mcp_client.call_tool(server, "add", '{"a": 1, "b": 2}') == "3"
        times.append(time.perf_counter() - start)
    return times


async def one_session(url: str, calls: int) -> list[float]:
    """Seconds for a listing and a call in one session of the SDK's Client, opened once before."""
    from mcp import Client

    times = []
    async with Client(url) as client:
        for _ in range(calls):
            start = time.perf_counter()
            await client.list_tools()
            result = await client.call_tool("add", {"a": 1, "b": 2})
            assert result.content[0].text == "3"
            times.append(time.perf_counter() - start)
    return times


CASES = {"the hub's client (a session per operation)": hub_client, "one SDK session, kept open": one_session}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=50, help="listings and calls per case and round")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve)
    import django

    django.setup()
    port_file = Path(f"/tmp/bench-mcp-{os.getpid()}.url")
    port_file.unlink(missing_ok=True)
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port_file)], cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while not port_file.exists() or not port_file.read_text():
            assert time.monotonic() < deadline and server.poll() is None, "the MCP server did not start"
            time.sleep(0.05)
        url = port_file.read_text()
        for case in CASES.values():  # warm up
            asyncio.run(case(url, 5))
        medians: dict[str, list[float]] = {name: [] for name in CASES}
        names = list(CASES)
        for round_ in range(args.rounds):
            for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
                medians[name].append(statistics.median(asyncio.run(CASES[name](url, args.requests))) * 1000)
    finally:
        server.kill()
        port_file.unlink(missing_ok=True)
    print()
    print(f"a remote MCP server's tools listed and one called ({args.rounds} rounds x {args.requests}; medians, ms; "
          "the official SDK's server in its own process on loopback)")  # fmt: skip
    for name in CASES:
        print(f"{name:<46}{statistics.median(medians[name]):>8.2f}")
    print()
    print("reproduce: .venv/bin/python benchmarks/bench_mcp.py " + " ".join(sys.argv[1:]))
    print(json.dumps({"medians_ms": {k: statistics.median(v) for k, v in medians.items()}}))


if __name__ == "__main__":
    main()
