"""The ``mcp`` tool's parts: the approval and allowed-tools filters (OpenAI's ``MCPToolFilter``), the names the model
calls the tools by, the items as the model reads them, where a server may be, and the client's failures (against
the official SDK's server, ``tests/support/mcp_server.py``) in the shapes of OpenAI's ``mcp_call.error``."""

from __future__ import annotations

import asyncio

import pytest

from hub.api import mcp_client, mcp_items, mcp_tools
from hub.api.errors import InvalidRequest
from tests.support.mcp_server import mcp_server
from tests.support.rebinding import rebinding
from tests.support.tls import tls_listener

READ = {"name": "read", "input_schema": {"type": "object"}, "annotations": {"readOnlyHint": True}}
WRITE = {"name": "write", "input_schema": {"type": "object"}, "annotations": None}


@pytest.mark.parametrize(
    ("policy", "read", "write"),
    [
        (None, True, True),  # OpenAI's default: always
        ("always", True, True),
        ("never", False, False),
        ({"never": {"tool_names": ["read"]}}, False, True),
        ({"never": {"read_only": True}}, False, True),
        ({"never": {"read_only": False}}, True, False),
        ({"never": {"tool_names": ["read", "write"], "read_only": True}}, False, True),  # both criteria must hold
        ({"always": {"tool_names": ["write"]}}, True, True),  # the others: the default, always
        ({"never": {}}, False, False),  # a filter without criteria takes every tool
    ],
)
def test_which_calls_need_approval(policy, read, write):
    config = {"require_approval": policy}
    assert (mcp_tools.needs_approval(config, READ), mcp_tools.needs_approval(config, WRITE)) == (read, write)


@pytest.mark.parametrize(
    ("allowed", "names"),
    [(None, {"read", "write"}), (["write"], {"write"}), ([], set()), ({"read_only": True}, {"read"}),
     ({"tool_names": ["read", "write"], "read_only": False}, {"write"})],
)  # fmt: skip
def test_which_tools_the_model_may_call(allowed, names):
    config = {"allowed_tools": allowed}
    assert {t["name"] for t in (READ, WRITE) if mcp_tools.allowed(config, t)} == names


def _plan(tools: dict[str, list[dict]], taken: set[str]) -> mcp_tools.McpPlan:
    configs = {label: {"server_label": label, "server_url": "http://x/mcp"} for label in tools}
    listed = {label: {"type": "mcp_list_tools", "server_label": label, "tools": t} for label, t in tools.items()}
    return mcp_tools.McpPlan(configs, listed, [], taken | {"file_search"})


def test_the_model_calls_a_tool_by_its_name_or_by_its_server_and_name_where_that_is_taken():
    odd = {"name": "get.weather now", "input_schema": {"type": "object"}, "description": "Weather."}
    plan = _plan({"one": [READ, odd, {**WRITE, "name": "file_search"}], "two": [READ]}, {"write"})
    functions = {f["function"]["name"]: f["function"] for f in plan.chat_functions()}
    assert set(functions) == {"read", "get_weather_now", "one_file_search", "two_read"}
    assert functions["get_weather_now"]["description"] == "Weather." and functions["read"]["strict"] is False
    assert (
        plan.functions["two_read"] == ("two", READ) and plan.function_of("one", "get.weather now") == "get_weather_now"
    )
    # allowed_tools' mcp entries: only those servers' tools
    assert {f["function"]["name"] for f in _plan({"one": [READ], "two": [WRITE]}, set()).chat_functions({"two"})} == {
        "write"}  # fmt: skip


def test_the_items_as_the_model_reads_them():
    call = {"id": "mcp_1", "type": "mcp_call", "server_label": "s", "name": "add", "arguments": '{"a": 1}',
            "output": "2", "error": None}  # fmt: skip
    said = mcp_items.messages(call, [call])
    assert said[0]["tool_calls"][0] == {"id": "call_mcp_1", "type": "function",
                                        "function": {"name": "add", "arguments": '{"a": 1}'}}  # fmt: skip
    assert said[1] == {"role": "tool", "tool_call_id": "call_mcp_1", "content": "2"}
    failed = {**call, "output": None, "error": {"type": "mcp_tool_execution_error",
                                                "content": [{"type": "text", "text": "boom"}]}}  # fmt: skip
    assert mcp_items.messages(failed, [])[1]["content"] == "The tool failed: boom"
    lost = {**call, "output": None, "error": {"type": "mcp_protocol_error", "code": -32000, "message": "gone"}}
    assert mcp_items.messages(lost, [])[1]["content"] == "The tool could not be called: gone"

    request = {"id": "mcpr_1", "type": "mcp_approval_request", "server_label": "s", "name": "add", "arguments": "{}"}
    answer = {"type": "mcp_approval_response", "approval_request_id": "mcpr_1", "approve": False, "reason": None}
    assert mcp_items.messages(request, [request]) == []  # not answered yet: not shown
    assert mcp_items.messages(request, [request, {**answer, "approve": True}]) == []  # its mcp_call shows it
    declined = mcp_items.messages(request, [request, answer])
    assert declined[1] == {"role": "tool", "tool_call_id": "call_mcpr_1", "content": "The user declined this call."}
    listed = {"type": "mcp_list_tools", "server_label": "s", "tools": [READ]}
    assert mcp_items.messages(listed, [listed]) == []


def test_a_server_on_a_private_address_only_where_the_operator_allows_it(settings):
    tool = {"type": "mcp", "server_label": "s"}
    settings.HUB_MCP_ALLOW_PRIVATE_URLS = False
    for url in ("http://127.0.0.1:9/mcp", "http://localhost/mcp", "http://10.1.2.3/mcp", "http://[::1]/mcp"):
        with pytest.raises(InvalidRequest) as refused:
            mcp_tools.check_tool({**tool, "server_url": url}, "tools[0]")
        assert refused.value.param == "tools[0].server_url" and "HUB_MCP_ALLOW_PRIVATE_URLS" in str(refused.value)
    mcp_tools.check_tool({**tool, "server_url": "https://mcp.example.com/mcp"}, "tools[0]")
    # a name that resolves to a private address is refused when the hub calls it
    server = mcp_client.McpServer("s", "http://localhost:9/mcp")
    with pytest.raises(mcp_client.McpFailed) as failed:
        asyncio.run(mcp_client.list_tools(server))
    assert (
        failed.value.error["type"] == "mcp_protocol_error" and "not a public address" in failed.value.error["message"]
    )
    settings.HUB_MCP_ALLOW_PRIVATE_URLS = True
    mcp_tools.check_tool({**tool, "server_url": "http://127.0.0.1:9/mcp"}, "tools[0]")


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"authorization": "tok\u00e9n"}, "tools[0].authorization"),  # was a 500: httpx sends ASCII headers only
        ({"authorization": "a\nb"}, "tools[0].authorization"),
        ({"headers": {"X-Key": "v\u0141"}}, "tools[0].headers"),
        ({"headers": {"X K": "v"}}, "tools[0].headers"),
        ({"headers": {"X-Key\u00e9": "v"}}, "tools[0].headers"),
    ],
)
def test_credentials_go_in_headers_as_printable_ascii(extra, param):
    tool = {"type": "mcp", "server_label": "s", "server_url": "https://mcp.example.com/mcp"}
    mcp_tools.check_tool({**tool, "authorization": "tok-1 2", "headers": {"X-Key": "k\t1"}}, "tools[0]")
    with pytest.raises(InvalidRequest) as refused:
        mcp_tools.check_tool({**tool, **extra}, "tools[0]")
    assert refused.value.param == param


def test_the_clients_failures_in_openais_shapes(settings):
    settings.HUB_MCP_ALLOW_PRIVATE_URLS = True
    with mcp_server() as served:
        server = mcp_client.McpServer("s", served.url)
        assert asyncio.run(mcp_client.call_tool(server, "add", '{"a": 40, "b": 2}')) == "42"
        for name, arguments, kind in [("add", "[1]", "mcp_protocol_error"), ("add", "{", "mcp_protocol_error"),
                                      ("fail", '{"reason": "x"}', "mcp_tool_execution_error"),
                                      ("nope", "{}", "mcp_tool_execution_error")]:  # fmt: skip
            with pytest.raises(mcp_client.McpFailed) as failed:
                asyncio.run(mcp_client.call_tool(server, name, arguments))
            assert failed.value.error["type"] == kind, (name, failed.value.error)
        assert [c[0] for c in served.calls] == ["add", "fail"]  # bad arguments never reach the server
        # a server slower than HUB_MCP_TIMEOUT_SECONDS (the session's negotiation included)
        settings.HUB_MCP_TIMEOUT_SECONDS = 0.5
        with pytest.raises(mcp_client.McpFailed) as failed:
            asyncio.run(mcp_client.call_tool(server, "wait", '{"seconds": 3}'))
        assert failed.value.error["type"] == "mcp_protocol_error"
        assert "did not answer within 0.5 s" in failed.value.error["message"]
        settings.HUB_MCP_TIMEOUT_SECONDS = 60
        wrong_path = mcp_client.McpServer("s", served.url.replace("/mcp", "/other"))
        with pytest.raises(mcp_client.McpFailed):
            asyncio.run(mcp_client.list_tools(wrong_path))


def test_the_client_connects_to_the_address_it_checked(settings, monkeypatch):
    """DNS rebinding: the server's name resolves elsewhere after the check; the client still connects to the address
    checked, naming the host in ``Host``."""
    settings.HUB_MCP_ALLOW_PRIVATE_URLS = False
    rebinding(monkeypatch, "mcp.rebind.test")
    with mcp_server() as served:
        url = served.url.replace("127.0.0.1", "mcp.rebind.test")
        tools = asyncio.run(mcp_client.list_tools(mcp_client.McpServer("s", url)))
    assert "add" in {t["name"] for t in tools}
    assert {h["host"] for h in served.headers} == {url.split("/")[2]}


def test_an_https_server_at_the_checked_address_is_named_for_tls(settings, monkeypatch, tmp_path):
    settings.HUB_MCP_ALLOW_PRIVATE_URLS = False
    rebinding(monkeypatch, "mcp.rebind.test")
    with tls_listener(tmp_path) as (port, names):
        with pytest.raises(mcp_client.McpFailed) as failed:
            asyncio.run(mcp_client.list_tools(mcp_client.McpServer("s", f"https://mcp.rebind.test:{port}/mcp")))
    assert names == ["mcp.rebind.test"] and "CERTIFICATE_VERIFY_FAILED" in failed.value.error["message"]
