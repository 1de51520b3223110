"""What ``prompt`` (completions) and ``input`` (embeddings) may be, read by ``inference/server/parse.py``: a string,
strings, token ids or lists of token ids. Only embeddings refuse empty strings."""

from __future__ import annotations

import pytest

from inference.errors import RequestError
from inference.server.parse import read_embedding_inputs, read_prompts

ACCEPTED = [
    ("text", "a", ["a"]),
    ("texts", ["a", "b"], ["a", "b"]),
    ("ids", [1, 2], [[1, 2]]),
    ("lists-of-ids", [[1], [2, 3]], [[1], [2, 3]]),
]
REFUSED = [None, 5, [], [True, 1], [[1], []], ["a", 1], [[1], "a"], {"a": 1}]


@pytest.mark.parametrize(("value", "expected"), [case[1:] for case in ACCEPTED], ids=[case[0] for case in ACCEPTED])
def test_both_read_a_string_strings_ids_and_lists_of_ids(value, expected):
    assert read_prompts({"prompt": value}) == expected
    assert read_embedding_inputs({"input": value}) == expected


@pytest.mark.parametrize("value", REFUSED, ids=repr)
def test_both_refuse_anything_else_naming_the_parameter(value):
    with pytest.raises(RequestError) as prompt_error:
        read_prompts({"prompt": value})
    with pytest.raises(RequestError) as input_error:
        read_embedding_inputs({"input": value})
    assert (prompt_error.value.param, input_error.value.param) == ("prompt", "input")


def test_only_embeddings_refuse_empty_strings():
    assert read_prompts({"prompt": ""}) == [""] and read_prompts({"prompt": ["", "a"]}) == ["", "a"]
    for value in ("", ["", "a"]):
        with pytest.raises(RequestError, match="input"):
            read_embedding_inputs({"input": value})
