"""LangChain (``ChatOpenAI``, ``OpenAIEmbeddings``) and LlamaIndex (``OpenAILike``) as clients of a live hub,
configured only with the hub's base URL, a key and our model names."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from langchain_openai import ChatOpenAI, OpenAIEmbeddings

from tests.support.live import CHAT, EMBED, rows

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
LLAMAINDEX_PYTHON = ROOT / ".venv-llamaindex" / "bin" / "python"


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
    run = subprocess.run(
        [str(LLAMAINDEX_PYTHON), str(ROOT / "tests/e2e/clients/llamaindex_client.py"), f"{hub.url}/v1",
         hub.everything.secret, CHAT],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["chat"] and result["complete"] and result["achat"]
    assert "".join(result["stream"]) and len(result["stream"]) > 1
    assert result["chat_usage"]["completion_tokens"] > 0
    metered = rows(4, route="chat/completions")
    assert len(metered) == 4 and sum(r.streamed for r in metered) == 1
    assert all(r.status_code == 200 and r.completion_tokens > 0 for r in metered)
