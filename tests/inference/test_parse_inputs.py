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


def test_vllm_s_sampling_extras_are_read_and_checked():
    """``min_tokens``, ``include_stop_str_in_output``, ``skip_special_tokens``: read into the request's params;
    ``min_tokens`` above ``max_tokens`` (or below 0), or a wrong type, is the client's 400, as vLLM's."""
    from inference.server.parse import read_generation

    body = {"max_tokens": 8, "min_tokens": 8, "include_stop_str_in_output": True, "skip_special_tokens": False}
    params = read_generation(body, 100, chat=False).params
    assert (params.min_tokens, params.include_stop_str_in_output, params.skip_special_tokens) == (8, True, False)
    default = read_generation({}, 100, chat=True).params
    assert (default.min_tokens, default.include_stop_str_in_output, default.skip_special_tokens) == (0, False, True)
    assert read_generation({"seed": -(2**63)}, 100, chat=True).params.seed == -(2**63)  # 64 bits, signed
    assert read_generation({"seed": 2**63 - 1}, 100, chat=True).params.seed == 2**63 - 1
    for body in [{"max_completion_tokens": 4, "min_tokens": 5}, {"min_tokens": -1}, {"min_tokens": "3"},
                 {"seed": 2**63}, {"seed": -(2**63) - 1},
                 {"include_stop_str_in_output": "yes"}, {"skip_special_tokens": 0}]:  # fmt: skip
        with pytest.raises(RequestError) as refused:
            read_generation(body, 100, chat=True)
        assert refused.value.param == next(iter(body.keys() - {"max_completion_tokens"})), body
