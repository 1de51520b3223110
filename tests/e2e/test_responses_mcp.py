"""The Responses API's ``mcp`` tool on a live hub, with the real OpenAI SDK and a real remote MCP server (the
official SDK's, over Streamable HTTP on loopback: ``tests/support/mcp_server.py``): its tools listed once per
context, called by the hub when the model calls them (scripted by the fake of our inference service), approvals
asked for and answered, failures shown as OpenAI shows them; every answer and event checked against OpenAI's
schemas. The real model calls a tool in ``test_responses.py``."""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest

from accounts.models import BackgroundResponse
from tests.openai_spec import assert_valid
from tests.support.batches import batch_worker
from tests.support.live import FAKE_CHAT, rows
from tests.support.mcp_server import mcp_server

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def hub(fake_hub):
    return fake_hub


@pytest.fixture
def mcp():
    with mcp_server() as server:
        yield server


def _call(index: int, name: str, arguments: str) -> dict:
    return {"tool_calls": [{"index": index, "id": f"call_{index}", "type": "function",
                            "function": {"name": name, "arguments": arguments}}]}  # fmt: skip


def _chats(fake) -> list[dict]:
    return [r for r in fake.requests if "messages" in r]


def _raw(hub, body: dict) -> httpx.Response:
    headers = {"authorization": f"Bearer {hub.everything.secret}"}
    return httpx.post(f"{hub.url}/v1/responses", headers=headers, json={"model": FAKE_CHAT, **body}, timeout=60)


def _stream(hub, body: dict) -> list[dict]:
    headers = {"authorization": f"Bearer {hub.everything.secret}"}
    with httpx.stream("POST", f"{hub.url}/v1/responses", headers=headers,
                      json={"model": FAKE_CHAT, **body, "stream": True}, timeout=60) as response:  # fmt: skip
        assert response.status_code == 200
        text = "".join(response.iter_text())
    return [json.loads(block.split("data: ", 1)[1]) for block in text.strip().split("\n\n")]


def test_the_models_call_runs_on_the_server_and_the_model_answers_with_its_output(hub, fake, mcp):
    client = hub()
    tool = {"type": "mcp", "server_label": "calc", "server_url": mcp.url, "require_approval": "never",
            "authorization": "tok-123", "headers": {"X-Team": "acme"}}  # fmt: skip
    fake.scripts.append([_call(0, "add", '{"a": 2, "b": 3}')])
    raw = client.responses.with_raw_response.create(model=FAKE_CHAT, input="2 + 3?", tools=[tool], max_output_tokens=8)
    body = raw.http_response.json()
    assert_valid("Response", body)
    listed, called, message = body["output"]
    assert listed["type"] == "mcp_list_tools" and listed["server_label"] == "calc" and listed["error"] is None
    tools = {t["name"]: t for t in listed["tools"]}
    assert set(tools) == {"add", "remember", "wait", "fail"} and tools["add"]["description"] == "Add two whole numbers."
    assert tools["add"]["annotations"]["readOnlyHint"] is True and tools["add"]["input_schema"]["required"] == [
        "a",
        "b",
    ]
    assert {k: called[k] for k in ("type", "server_label", "name", "arguments", "output", "error", "status")} == {
        "type": "mcp_call", "server_label": "calc", "name": "add", "arguments": '{"a": 2, "b": 3}', "output": "5",
        "error": None, "status": "completed"}  # fmt: skip
    assert called["approval_request_id"] is None and message["type"] == "message"
    assert mcp.calls == [("add", {"a": 2, "b": 3})]
    # the server got the tool's authorization and headers, on every request
    assert mcp.headers and all(h.get("authorization") == "Bearer tok-123" and h.get("x-team") == "acme"
                               for h in mcp.headers)  # fmt: skip
    # the model had the server's tools as functions, then the call and its output
    first, second = _chats(fake)
    assert {t["function"]["name"] for t in first["tools"]} == {"add", "remember", "wait", "fail"}
    assert second["messages"][-1] == {"role": "tool", "tool_call_id": "call_0", "content": "5"}
    # the answer echoes the tool without its secrets; both rounds are one usage row
    echoed = body["tools"][0]
    assert echoed["headers"] is None and "authorization" not in echoed and echoed["server_url"] == mcp.url
    [row] = rows(request_id=raw.headers["x-request-id"])
    assert (row.route, row.completion_tokens) == ("responses", body["usage"]["output_tokens"])

    # continued: the context holds the server's list, so it is not listed again; the earlier call is in the context
    fake.scripts.append([_call(0, "add", '{"a": 1, "b": 1}')])
    more = client.responses.create(model=FAKE_CHAT, previous_response_id=body["id"], input="And 1 + 1?",
                                   tools=[tool], max_output_tokens=8)  # fmt: skip
    assert [i.type for i in more.output] == ["mcp_call", "message"]
    assert more.output[0].output == "2"
    context = _chats(fake)[-2]["messages"]
    assert {"role": "tool", "tool_call_id": "call_" + called["id"], "content": "5"} in context

    # streamed: the list's and the call's events, in OpenAI's order, each one OpenAI's
    fake.scripts.append([_call(0, "add", '{"a": 4, "b": 4}')])
    events = _stream(hub, {"input": "4 + 4?", "tools": [tool], "max_output_tokens": 8})
    for event in events:
        assert_valid("ResponseStreamEvent", event)
    kinds = [e["type"] for e in events]
    mcp_kinds = [k for k in kinds if ".mcp_" in k]
    assert mcp_kinds == ["response.mcp_list_tools.in_progress", "response.mcp_list_tools.completed",
                         "response.mcp_call_arguments.delta", "response.mcp_call_arguments.done",
                         "response.mcp_call.in_progress", "response.mcp_call.completed"]  # fmt: skip
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    final = events[-1]["response"]
    assert kinds[-1] == "response.incomplete" and final["output"][1]["output"] == "8"
    assert client.responses.retrieve(final["id"]).output[1].output == "8"


def test_approvals_are_asked_for_and_answered(hub, fake, mcp):
    """OpenAI's default, ``require_approval: always``: the model's call ends the response as an
    ``mcp_approval_request``; the next response approves it (the call runs, once) or declines it (never run, the
    model told). A filter lets read-only tools run at once."""
    client = hub()
    tool = {"type": "mcp", "server_label": "calc", "server_url": mcp.url}
    fake.scripts.append([_call(0, "remember", '{"note": "milk"}')])
    raw = client.responses.with_raw_response.create(model=FAKE_CHAT, input="Remember milk.", tools=[tool])
    assert_valid("Response", raw.http_response.json())
    asked = raw.parse()
    listed, request = asked.output
    assert (request.type, request.server_label, request.name, request.arguments) == (
        "mcp_approval_request", "calc", "remember", '{"note": "milk"}')  # fmt: skip
    assert asked.status == "completed" and mcp.calls == [] and len(_chats(fake)) == 1

    approval = {"type": "mcp_approval_response", "approval_request_id": request.id, "approve": True}
    approved = client.responses.create(model=FAKE_CHAT, previous_response_id=asked.id, input=[approval],
                                       tools=[tool], max_output_tokens=4, max_tool_calls=1)  # fmt: skip
    call, message = approved.output
    assert (call.type, call.approval_request_id, call.output, call.status) == (
        "mcp_call", request.id, "Remembered: milk", "completed")  # fmt: skip
    assert message.type == "message" and mcp.calls == [("remember", {"note": "milk"})]
    said = _chats(fake)[-1]["messages"]
    assert _chats(fake)[-1]["tool_choice"] == "none"  # the approved call was the one max_tool_calls allowed
    assert said[-2]["tool_calls"][0]["function"] == {"name": "remember", "arguments": '{"note": "milk"}'}
    assert said[-1]["content"] == "Remembered: milk"
    items = client.responses.input_items.list(approved.id).data
    assert [i.type for i in items] == ["mcp_approval_response"] and items[0].approve is True
    # the context holds the call that answered the approval: it is never run again
    client.responses.create(model=FAKE_CHAT, previous_response_id=approved.id, input="Thanks.", tools=[tool],
                            max_output_tokens=4)  # fmt: skip
    assert len(mcp.calls) == 1

    # declined: not run; the model reads that the user declined it
    fake.scripts.append([_call(0, "remember", '{"note": "eggs"}')])
    asked = client.responses.create(model=FAKE_CHAT, input="Remember eggs.", tools=[tool])
    decline = {"type": "mcp_approval_response", "approval_request_id": asked.output[-1].id, "approve": False,
               "reason": "not today"}  # fmt: skip
    declined = client.responses.create(model=FAKE_CHAT, previous_response_id=asked.id, input=[decline], tools=[tool],
                                       max_output_tokens=4)  # fmt: skip
    assert [i.type for i in declined.output] == ["message"] and len(mcp.calls) == 1
    said = _chats(fake)[-1]["messages"]
    assert said[-2]["tool_calls"][0]["function"]["name"] == "remember"
    assert said[-1] == {"role": "tool", "tool_call_id": "call_" + asked.output[-1].id,
                        "content": "The user declined this call: not today"}  # fmt: skip

    # a filter: read-only tools run at once, the others wait for approval; the round ends with the request
    tool["require_approval"] = {"never": {"read_only": True}}
    fake.scripts.append([_call(0, "add", '{"a": 1, "b": 2}'), _call(1, "remember", '{"note": "tea"}')])
    both = client.responses.create(model=FAKE_CHAT, input="1 + 2, and remember tea.", tools=[tool])
    assert [i.type for i in both.output] == ["mcp_list_tools", "mcp_call", "mcp_approval_request"]
    assert both.output[1].output == "3" and mcp.calls[-1] == ("add", {"a": 1, "b": 2})

    # an approval of a request the context does not hold
    answer = _raw(hub, {"input": [{**approval, "approval_request_id": "mcpr_nope"}], "tools": [tool]})
    assert answer.status_code == 400 and answer.json()["error"]["param"] == "input[0].approval_request_id"


def test_failures_are_shown_as_openai_shows_them(hub, fake, mcp):
    client = hub()
    tool = {"type": "mcp", "server_label": "calc", "server_url": mcp.url, "require_approval": "never"}
    # the tool fails: the call is failed with the server's error, the model reads it and answers
    fake.scripts.append([_call(0, "fail", '{"reason": "x"}')])
    events = _stream(hub, {"input": "Fail.", "tools": [tool], "max_output_tokens": 4})
    for event in events:
        assert_valid("ResponseStreamEvent", event)
    assert "response.mcp_call.failed" in [e["type"] for e in events]
    final = events[-1]["response"]
    call = final["output"][1]
    assert call["status"] == "failed" and call["output"] is None
    assert call["error"]["type"] == "mcp_tool_execution_error" and call["error"]["content"][0]["type"] == "text"
    assert _chats(fake)[-1]["messages"][-1]["content"].startswith("The tool failed: ")
    assert events[-1]["type"] == "response.incomplete"  # the fake wrote up to max_output_tokens

    # arguments that are not a JSON object: the server is not called
    fake.scripts.append([_call(0, "add", "[1, 2]")])
    calls = len(mcp.calls)
    answer = client.responses.create(model=FAKE_CHAT, input="Add.", tools=[tool], max_output_tokens=4)
    assert answer.output[1].status == "failed" and answer.output[1].error.type == "mcp_protocol_error"
    assert len(mcp.calls) == calls

    # a server that cannot be reached: its list is failed, and the model answers without its tools
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    gone = {**tool, "server_label": "gone", "server_url": f"http://127.0.0.1:{port}/mcp"}
    events = _stream(hub, {"input": "Hi.", "tools": [gone], "max_output_tokens": 4})
    for event in events:
        assert_valid("ResponseStreamEvent", event)
    assert [e["type"] for e in events if ".mcp_" in e["type"]] == ["response.mcp_list_tools.in_progress",
                                                                   "response.mcp_list_tools.failed"]  # fmt: skip
    listed = events[-1]["response"]["output"][0]
    assert listed["tools"] == [] and "could not be reached" in listed["error"]
    assert "tools" not in _chats(fake)[-1] and events[-1]["type"] == "response.incomplete"


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"server_label": None}, "tools[0].server_label"),
        ({"server_label": "1abc"}, "tools[0].server_label"),
        ({"server_url": None}, "tools[0].server_url"),
        ({"server_url": "ftp://example.com/mcp"}, "tools[0].server_url"),
        ({"connector_id": "connector_gmail"}, "tools[0].connector_id"),
        ({"require_approval": "sometimes"}, "tools[0].require_approval"),
        ({"require_approval": {"maybe": {}}}, "tools[0].require_approval.maybe"),
        ({"allowed_tools": {"tool_names": "add"}}, "tools[0].allowed_tools.tool_names"),
        ({"headers": {"X-A": 1}}, "tools[0].headers.X-A"),
        ({"headers": {"X-A": "a\r\nb"}}, "tools[0].headers"),
    ],
)
def test_a_bad_mcp_tool_is_refused_by_name(hub, change, param):
    tool = {"type": "mcp", "server_label": "calc", "server_url": "http://127.0.0.1:9/mcp"}
    tool = {k: v for k, v in {**tool, **change}.items() if v is not None}
    answer = _raw(hub, {"input": "Hi.", "tools": [tool]})
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["param"] == param, answer.json()


def test_allowed_tools_and_tool_choice(hub, fake, mcp):
    client = hub()
    tool = {"type": "mcp", "server_label": "calc", "server_url": mcp.url, "require_approval": "never"}
    for allowed, names in [(["add", "fail"], {"add", "fail"}), ({"read_only": True}, {"add"}),
                           ({"tool_names": ["remember"]}, {"remember"})]:  # fmt: skip
        client.responses.create(model=FAKE_CHAT, input="Hi.", tools=[{**tool, "allowed_tools": allowed}],
                                max_output_tokens=2)  # fmt: skip
        assert {t["function"]["name"] for t in _chats(fake)[-1]["tools"]} == names, allowed

    # a tool named, a server named: the model is made to call it
    client.responses.create(model=FAKE_CHAT, input="Hi.", tools=[tool], max_output_tokens=2,
                            tool_choice={"type": "mcp", "server_label": "calc", "name": "add"})  # fmt: skip
    assert _chats(fake)[-1]["tool_choice"] == {"type": "function", "function": {"name": "add"}}
    client.responses.create(model=FAKE_CHAT, input="Hi.", tools=[tool], max_output_tokens=2,
                            tool_choice={"type": "mcp", "server_label": "calc"})  # fmt: skip
    assert _chats(fake)[-1]["tool_choice"] == "required"
    # a client's function of the same name: the server's is called by its label too
    mine = {"type": "function", "name": "add", "parameters": {"type": "object", "properties": {}}}
    fake.scripts.append([_call(0, "calc_add", '{"a": 5, "b": 5}')])
    answer = client.responses.create(model=FAKE_CHAT, input="Hi.", tools=[mine, tool], max_output_tokens=2)
    assert {"add", "calc_add"} <= {t["function"]["name"] for t in _chats(fake)[-2]["tools"]}
    assert answer.output[1].type == "mcp_call" and (answer.output[1].name, answer.output[1].output) == ("add", "10")

    for choice, param in [({"type": "mcp", "server_label": "nope"}, "tool_choice.server_label"),
                          ({"type": "mcp", "server_label": "calc", "name": "nope"}, "tool_choice.name"),
                          ({"type": "mcp"}, "tool_choice.server_label")]:  # fmt: skip
        answer = _raw(hub, {"input": "Hi.", "tools": [tool], "tool_choice": choice})
        assert answer.status_code == 400 and answer.json()["error"]["param"] == param, answer.text
    answer = _raw(hub, {"input": "Hi.", "tools": [tool, tool]})
    assert answer.status_code == 400 and answer.json()["error"]["param"] == "tools"


def test_a_background_response_calls_the_server_from_a_worker(hub, fake, mcp):
    """A background response's run (a Celery worker, as production runs it) lists and calls the server as a
    waiting client's request does; the answer is stored with its items."""
    client = hub()
    fake.default_tokens = 2
    tool = {"type": "mcp", "server_label": "calc", "server_url": mcp.url, "require_approval": "never",
            "headers": {"X-Team": "acme"}}  # fmt: skip
    fake.scripts.append([_call(0, "add", '{"a": 20, "b": 22}')])
    with batch_worker():
        queued = client.responses.create(model=FAKE_CHAT, input="20 + 22?", tools=[tool], background=True)
        assert queued.status == "queued" and queued.tools[0].headers is None
        deadline = time.monotonic() + 30
        while (done := client.responses.retrieve(queued.id)).status in ("queued", "in_progress"):
            assert time.monotonic() < deadline, done.status
            time.sleep(0.1)
    assert done.status == "completed" and [i.type for i in done.output] == ["mcp_list_tools", "mcp_call", "message"]
    assert done.output[1].output == "42" and mcp.calls == [("add", {"a": 20, "b": 22})]
    assert all(h.get("x-team") == "acme" for h in mcp.headers)
    # the request kept for the run loses the tool's secrets once it ended
    assert BackgroundResponse.objects.get(pk=done.id).request["tools"][0] == {
        k: v for k, v in tool.items() if k != "headers"}  # fmt: skip
