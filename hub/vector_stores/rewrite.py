"""``rewrite_query`` of a vector store search ("whether to rewrite the natural language query for vector search"):
each query rewritten into a search query by a catalog chat model the operator names
(``HUB_VECTOR_STORE_REWRITE_MODEL``), where the caller's key may use it. One chat completion per query, greedy and
short, through the gateway with the caller's key (limits and budgets apply), metered as ``vector_stores/search``.
The search runs on what it wrote, and the answer's ``search_query`` gives it (OpenAI: "the query used for this
search"). Without such a model, or for a key that may not use it, the queries are searched as given."""

from __future__ import annotations

import json
import secrets

from django.conf import settings

from accounts.authn import KeyContext
from hub.api.relay_common import error_from_upstream
from hub.batches.call import call
from hub.vector_stores.embed import EmbeddingFailed

METERED_ROUTE = "vector_stores/search"
MAX_TOKENS = 48  # a search query is a line; a model that goes on is cut (only the first line is taken)
INSTRUCTIONS = (
    "Rewrite the user's question as a short query for searching documents. Keep names, numbers, codes and key "
    "terms; drop greetings, filler and instructions. Answer with the query only, on one line."
)


def rewriter(key: KeyContext) -> str | None:
    """The chat model that rewrites a search's queries for ``key``, or None (searched as given)."""
    model = settings.HUB_VECTOR_STORE_REWRITE_MODEL
    return model if model and key.may_use(model) else None


def request(model: str, query: str) -> dict:
    """The chat completion that rewrites ``query``."""
    messages = [{"role": "system", "content": INSTRUCTIONS}, {"role": "user", "content": query}]
    return {"model": model, "messages": messages, "temperature": 0, "max_tokens": MAX_TOKENS}


def query_of(content: str | None, query: str) -> str:
    """The rewritten query in a completion's ``content``: its first non-empty line without surrounding quotes or a
    "Query:" label; ``query`` itself where there is none."""
    for line in (content or "").splitlines():
        line = line.strip()
        if line.lower().startswith("query:"):
            line = line[len("query:") :].strip()
        line = line.strip("\"'`").strip()
        if line:
            return line
    return query


async def rewritten(key: KeyContext, queries: list[str]) -> list[str]:
    """``queries`` as the search runs them: each rewritten where ``rewriter`` names a model, else as given. A refused
    completion (429, a spent budget) is the search's error (``EmbeddingFailed``), as a refused embedding is."""
    if (model := rewriter(key)) is None:
        return queries
    out = []
    for query in queries:
        answer = await call(key, "chat/completions", request(model, query), "req_" + secrets.token_hex(12),
                            batch=False, metered_route=METERED_ROUTE)  # fmt: skip
        if answer.status != 200:
            raise EmbeddingFailed(error_from_upstream(answer.status, answer.body))
        out.append(query_of(json.loads(answer.body)["choices"][0]["message"].get("content"), query))
    return out
