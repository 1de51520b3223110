"""LangChain (``ChatOpenAI``, also on the Responses API, ``OpenAIEmbeddings``), LlamaIndex (``OpenAILike``) and the
OpenAI Agents SDK (on the Responses API) as clients of a live hub, configured only with the hub's base URL, a key
and our model names."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from langchain_openai import ChatOpenAI, OpenAIEmbeddings

from accounts import services
from accounts.models import ModelKind
from tests.support.batches import batch_worker
from tests.support.live import CHAT, CHAT_MAX_OUTPUT, EMBED, rows
from tests.support.mcp_server import mcp_server

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
LLAMAINDEX_PYTHON = ROOT / ".venv-llamaindex" / "bin" / "python"
AGENTS_PYTHON = ROOT / ".venv-agents" / "bin" / "python"


def run_client(python: Path, script: str, hub, *args: str) -> dict:
    """A client in its own venv (``tests/e2e/clients/<script>``) against the hub; the JSON it printed last."""
    run = subprocess.run(
        [str(python), str(ROOT / "tests/e2e/clients" / script), f"{hub.url}/v1", hub.everything.secret, CHAT, *args],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_langchain_chat_openai_invoke_stream_and_batch(hub):
    llm = ChatOpenAI(
        model=CHAT, base_url=f"{hub.url}/v1", api_key=hub.everything.secret, max_tokens=12, temperature=0,
        max_retries=0, stream_usage=True,
    )  # fmt: skip
    answer = llm.invoke([("system", "Be brief."), ("human", "Say hello.")])
    assert answer.content and answer.usage_metadata["output_tokens"] > 0
    [row] = rows(route="chat/completions")
    assert (row.prompt_tokens, row.completion_tokens) == (
        answer.usage_metadata["input_tokens"], answer.usage_metadata["output_tokens"],
    )  # fmt: skip
    parts = list(llm.stream("Count to three."))
    assert "".join(p.content for p in parts)
    streamed_usage = [p.usage_metadata for p in parts if p.usage_metadata]
    assert len(streamed_usage) == 1  # LangChain asked for include_usage and got exactly one usage chunk
    assert [a.content != "" for a in llm.batch(["Hi", "Bye"])] == [True, True]
    [streamed_row] = rows(streamed=True)
    assert streamed_row.completion_tokens == streamed_usage[0]["output_tokens"]
    assert len(rows(4, route="chat/completions")) == 4  # invoke, stream and the batch's two


def test_langchain_openai_embeddings(hub):
    embeddings = OpenAIEmbeddings(
        model=EMBED, base_url=f"{hub.url}/v1", api_key=hub.everything.secret, max_retries=0,
        # LangChain otherwise tokenizes with tiktoken's OpenAI vocabulary first: the documented setting
        # for every non-OpenAI server, and tiktoken would have to download that vocabulary
        check_embedding_ctx_length=False,
    )  # fmt: skip
    vectors = embeddings.embed_documents(["The cat sat.", "A cat was sitting.", "Stock prices fell."])
    query = embeddings.embed_query("Where did the cat sit?")
    assert [len(v) for v in vectors] == [384, 384, 384] and len(query) == 384
    a, b, c = (np.array(v) for v in vectors)
    assert a @ b > a @ c  # normalized MiniLM vectors: the paraphrase is closer than the unrelated sentence
    assert sorted(r.route for r in rows(2, route="embeddings")) == ["embeddings", "embeddings"]


def test_llamaindex_openai_like_chat_complete_stream_and_async(hub):
    result = run_client(LLAMAINDEX_PYTHON, "llamaindex_client.py", hub)
    assert result["chat"] and result["complete"] and result["achat"]
    assert "".join(result["stream"]) and len(result["stream"]) > 1
    assert result["chat_usage"]["completion_tokens"] > 0
    metered = rows(4, route="chat/completions")
    assert len(metered) == 4 and sum(r.streamed for r in metered) == 1
    assert all(r.status_code == 200 and r.completion_tokens > 0 for r in metered)


def test_langchain_chat_openai_on_the_responses_api(hub):
    llm = ChatOpenAI(
        model=CHAT, base_url=f"{hub.url}/v1", api_key=hub.everything.secret, max_tokens=12, temperature=0,
        max_retries=0, use_responses_api=True,
    )  # fmt: skip
    answer = llm.invoke([("system", "Be brief."), ("human", "Say hello.")])
    assert answer.text and answer.response_metadata["id"].startswith("resp_")
    [row] = rows(route="responses")
    assert (row.prompt_tokens, row.completion_tokens) == (
        answer.usage_metadata["input_tokens"], answer.usage_metadata["output_tokens"],
    )  # fmt: skip
    parts = list(llm.stream("Count to three."))
    assert "".join(p.text for p in parts)
    [streamed] = rows(route="responses", streamed=True)
    assert streamed.completion_tokens == sum((p.usage_metadata or {}).get("output_tokens", 0) for p in parts) > 0
    city = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    weather = {"type": "function", "function": {"name": "get_weather", "description": "Weather.", "parameters": city}}
    roomy = llm.model_copy(update={"max_tokens": 64})  # room for a whole call
    called = roomy.bind_tools([weather], tool_choice="get_weather").invoke("Weather in Oslo?")
    [call] = called.tool_calls
    assert call["name"] == "get_weather" and set(call["args"]) == {"city"} and call["id"]


def test_openai_agents_sdk_keeps_a_conversation_in_the_hub(hub):
    """``OpenAIConversationsSession``: the SDK keeps each turn's items in a conversation of the hub's and sends them
    before the next input; a run with ``conversation_id`` has the hub add them."""
    result = run_client(AGENTS_PYTHON, "agents_session_client.py", hub)
    assert result["after_two"] == [["message", "user"], ["message", "assistant"]] * 2
    items = list(hub().conversations.items.list(result["conversation_id"], order="asc"))
    assert [i.role for i in items] == ["user", "assistant", "user", "user", "assistant"]  # popped, then turn 3
    assert result["popped"] not in {i.id for i in items} and items[-1].id == result["third_output_ids"][-1]
    assert [i.content[0].text for i in items if i.role == "user"] == [
        "My name is Ann.", "What is my name?", "Say hello.",
    ]  # fmt: skip
    # each turn was sent the turns before it: its prompt grew, as the metered rows show
    metered = {r.request_id: r for r in rows(3, route="responses")}
    prompts = sorted(r.prompt_tokens for r in metered.values())
    assert len(metered) == 3 and prompts[0] < prompts[1] < prompts[2]


def test_openai_agents_sdk_runs_an_agent_with_a_function_tool(hub):
    result = run_client(AGENTS_PYTHON, "agents_client.py", hub)
    # the tool was called (tool_choice "required"), its output went back to the model, which then answered
    assert result["tool_calls"] and all(set(call) == {"city"} for call in result["tool_calls"])
    assert result["items"][:2] == ["tool_call_item", "tool_call_output_item"]
    assert result["items"][-1] == "message_output_item" and result["final_output"]
    metered = rows(result["responses"], route="responses")
    assert [(r.prompt_tokens, r.completion_tokens) for r in metered] == [
        (u["input_tokens"], u["output_tokens"]) for u in result["usage"]
    ]  # fmt: skip


def test_openai_agents_sdk_file_search_tool_searches_the_hubs_vector_store(hub):
    """``FileSearchTool``: the hub runs the search the model asks for over its own vector store, then the model
    answers; the search is a tool call item of the run, with the results asked for (``include_search_results``)."""
    client = hub()
    paris = client.files.create(file=("paris.txt", b"Paris is the capital of France."), purpose="assistants")
    plants = client.files.create(file=("plants.txt", b"Plants turn sunlight into sugar."), purpose="assistants")
    with batch_worker():  # indexes the files, as production's workers do
        store = client.vector_stores.create(name="facts", file_ids=[paris.id, plants.id])
        while client.vector_stores.retrieve(store.id).file_counts.in_progress:
            time.sleep(0.2)
    result = run_client(AGENTS_PYTHON, "agents_file_search_client.py", hub, store.id)
    assert result["items"][0] == "tool_call_item" and result["items"][-1] == "message_output_item", result
    [search] = result["searches"]
    assert search["type"] == "file_search_call" and search["queries"] and search["files"], result
    assert set(search["files"]) <= {"paris.txt", "plants.txt"} and result["final_output"]
    assert len(rows(result["responses"], route="responses")) == result["responses"]


def test_openai_agents_sdk_hosted_mcp_tool_with_approval(hub):
    """``HostedMCPTool``: the hub lists the agent's remote MCP server and asks for approval of the model's call
    (``require_approval: always``); the SDK asks the agent's callback, sends the approval back, and the hub runs
    the call on the server before the model answers."""
    with mcp_server() as server:
        result = run_client(AGENTS_PYTHON, "agents_mcp_client.py", hub, server.url)
    assert [a["name"] for a in result["asked"]] == ["add"], result
    [call] = result["calls"]
    arguments = json.loads(call["arguments"])
    assert server.calls == [("add", arguments)] and call["output"] == str(arguments["a"] + arguments["b"]), result
    assert result["items"][:2] == ["mcp_list_tools_item:mcp_list_tools",
                                   "mcp_approval_request_item:mcp_approval_request"], result  # fmt: skip
    assert result["items"][-1] == "message_output_item:message", result
    assert len(rows(result["responses"], route="responses")) == result["responses"] >= 2


def test_openai_agents_sdk_compaction_session_compacts_through_the_hub(hub, inference_url):
    """``OpenAIResponsesCompactionSession``: after each turn the session calls ``responses.compact`` and keeps its
    output (the user messages and one compaction item) as the history the next turn runs on. The session takes only
    OpenAI model names: the operator serves the packaged chat model under one too."""
    alias = "gpt-4.1-mini"
    services.register_model(alias, ModelKind.CHAT, max_sequence_length=8192, max_output_length=CHAT_MAX_OUTPUT,
                            deployment_url=inference_url, upstream_model=CHAT)  # fmt: skip
    services.grant_models(hub.tenant, [alias])
    result = run_client(AGENTS_PYTHON, "agents_compaction_client.py", hub, alias)
    assert result["after_first"] == ["message:user", "compaction:"], result
    assert result["after_second"] == ["message:user", "message:user", "compaction:"], result
    assert all(result["outputs"])
    assert len(rows(2, route="responses/compact", model=alias)) == 2
