"""``rewrite_query``'s parts without a hub: the completion it asks for and the query it takes from the answer."""

from __future__ import annotations

import pytest

from hub.vector_stores import rewrite


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("capital of France", "capital of France"),
        ('  "capital of France"  \nIt is Paris.', "capital of France"),  # the first line, unquoted
        ("\n\nQuery: `ZX-4471 shipping`\n", "ZX-4471 shipping"),  # a label and code quotes go
        ("query:", "the question"),  # nothing left: the query as given
        ("", "the question"),
        (None, "the question"),
        ("  \n ' ' \n", "the question"),
    ],
)
def test_the_rewritten_query_is_the_answers_first_line(content, expected):
    assert rewrite.query_of(content, "the question") == expected


def test_the_rewriting_is_one_short_greedy_chat_completion():
    body = rewrite.request("rewriter", "Which city is the capital of France?")
    assert body["model"] == "rewriter" and body["temperature"] == 0 and body["max_tokens"] == rewrite.MAX_TOKENS
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert body["messages"][1]["content"] == "Which city is the capital of France?"
