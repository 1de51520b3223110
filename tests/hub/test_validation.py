"""Input hardening (hub/api/validation.py): each bad body is refused with an OpenAI error naming the field, good
bodies (with unknown fields, as OpenAI tolerates them) pass; the edge refuses deep, non-finite or unparsable JSON."""

from __future__ import annotations

import json

import pytest

from accounts import services
from hub.api import validation
from hub.api.errors import InvalidRequest
from tests.support.edge import post_through_edge

CHAT = {"model": "m", "messages": [{"role": "user", "content": "Hi"}]}
COMPLETION = {"model": "m", "prompt": "Once"}
EMBEDDING = {"model": "m", "input": "text"}
RERANK = {"model": "m", "query": "q", "documents": ["a", {"text": "b"}]}
SCORE = {"model": "m", "text_1": "q", "text_2": ["a", "b"]}
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


def _with(base: dict, **fields) -> dict:
    return {**base, **fields}


def _messages(*messages: dict) -> dict:
    return _with(CHAT, messages=list(messages))


GOOD = [
    ("rerank", RERANK),
    ("rerank", _with(RERANK, documents=[""], top_n=1, return_documents=False, some_future_field=1)),
    ("score", SCORE),
    ("score", _with(SCORE, text_1=["q", "r"])),
    ("score", _with(SCORE, text_1="q", text_2="d")),
    ("chat/completions", CHAT),
    ("chat/completions", _with(CHAT, some_future_field={"x": [1]}, metadata={"a": "b"}, store=False)),
    ("chat/completions", _with(CHAT, temperature=0, top_p=1, n=16, max_tokens=1, seed=-(2**63), stop=["a", "b"])),
    ("chat/completions", _with(CHAT, temperature=2.0, presence_penalty=-2, frequency_penalty=2, top_k=-1, min_p=1)),
    ("chat/completions", _with(CHAT, min_tokens=0, include_stop_str_in_output=True)),
    ("chat/completions", _with(CHAT, prediction={"type": "content", "content": "def f():\n    return 1\n"})),
    ("chat/completions", _with(CHAT, prediction={"type": "content", "content": [{"type": "text", "text": "a"}]})),
    ("chat/completions", _with(CHAT, prediction=None)),
    ("chat/completions", _with(CHAT, allowed_token_ids=[0, 5], bad_words=["x", " y z"], truncate_prompt_tokens=-1)),
    ("completions", _with(COMPLETION, bad_words=[], truncate_prompt_tokens=1, allowed_token_ids=None)),
    ("chat/completions", _with(CHAT, prompt_logprobs=20, return_token_ids=True, return_tokens_as_token_ids=False)),
    ("completions", _with(COMPLETION, prompt_logprobs=0, cache_salt="tenant-user-7")),
    ("completions", _with(COMPLETION, use_beam_search=True, n=4, length_penalty=-0.5)),
    ("chat/completions", _with(CHAT, temperature=1e-5, top_p=1e-5, repetition_penalty=1e-5)),
    ("chat/completions", _with(CHAT, temperature=5e-324, top_p=0)),  # greedy; the most likely token only
    ("completions", _with(COMPLETION, temperature=1e-40, top_p=5e-324)),
    ("chat/completions", _with(CHAT, logprobs=True, top_logprobs=20, logit_bias={"50256": -100, "1": 100.0})),
    ("chat/completions", _with(CHAT, stream=True, stream_options={"include_usage": True}, user="u" * 256)),
    ("chat/completions", _with(CHAT, max_tokens=None, temperature=None, stop=None, stream_options=None)),
    ("chat/completions", _with(CHAT, tools=[TOOL], tool_choice="auto", parallel_tool_calls=False)),
    ("chat/completions", _with(CHAT, response_format={"type": "json_object"}, max_completion_tokens=5)),
    ("chat/completions", _messages({"role": "developer", "content": "Be brief."}, {"role": "user", "content": ""})),
    (
        "chat/completions",
        _messages(
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Look"},
                    {"type": "image_url", "image_url": {"url": "x"}},
                    {"type": "input_audio", "input_audio": {}},
                ],
            }
        ),
    ),  # fmt: skip
    (
        "chat/completions",
        _messages(
            {"role": "user", "content": "Weather?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
            {"role": "assistant"},
        ),
    ),  # fmt: skip
    ("chat/completions", _with(CHAT, messages=[{"role": "user", "content": "x"}] * validation.MAX_MESSAGES)),
    ("chat/completions", _messages({"role": "user", "content": "x" * validation.MAX_STRING_CHARS})),
    ("completions", COMPLETION),
    ("completions", _with(COMPLETION, prompt=["a", "b"], echo=True, logprobs=5, best_of=1)),
    ("completions", _with(COMPLETION, prompt=[1, 2, 3] * 10_000)),
    ("completions", _with(COMPLETION, best_of=3, n=2, stream=False)),
    ("completions", _with(COMPLETION, best_of=2, n=2, stream=True)),  # as many as n: a plain stream
    ("completions", _with(COMPLETION, prompt=[[1, 2], [3]], stop="\n", suffix=None)),
    ("embeddings", EMBEDDING),
    ("embeddings", _with(EMBEDDING, input=["a"] * validation.MAX_INPUTS, encoding_format="base64", dimensions=384)),
    ("embeddings", _with(EMBEDDING, input=[[101, 102]], user="me", unknown=True)),
    ("embeddings", _with(EMBEDDING, truncate_prompt_tokens=256)),
]

BAD = [
    # (route, body, param, code)
    ("chat/completions", {"model": "m"}, "messages", "missing_required_parameter"),
    ("chat/completions", _with(CHAT, messages=[]), "messages", "empty_array"),
    ("chat/completions", _messages({"role": "user", "content": []}), "messages[0].content", "empty_array"),
    (
        "chat/completions",
        _messages({"role": "system", "content": []}, {"role": "user", "content": "a"}),
        "messages[0].content",
        "empty_array",
    ),  # fmt: skip
    ("chat/completions", _with(CHAT, prediction="a"), "prediction", "invalid_type"),
    ("chat/completions", _with(CHAT, prediction={"type": "x", "content": "a"}), "prediction.type", "invalid_value"),
    (
        "chat/completions",
        _with(CHAT, prediction={"type": "content"}),
        "prediction.content",
        "missing_required_parameter",
    ),  # fmt: skip
    (
        "chat/completions",
        _with(CHAT, prediction={"type": "content", "content": []}),
        "prediction.content",
        "empty_array",
    ),  # fmt: skip
    (
        "chat/completions",
        _with(CHAT, prediction={"type": "content", "content": [{"type": "image_url"}]}),
        "prediction.content[0].type",
        "invalid_value",
    ),  # fmt: skip
    (
        "chat/completions",
        _with(CHAT, prediction={"type": "content", "content": 5}),
        "prediction.content",
        "invalid_type",
    ),  # fmt: skip
    ("chat/completions", _with(CHAT, messages="Hi"), "messages", "invalid_type"),
    (
        "chat/completions",
        _with(CHAT, messages=[{"role": "user", "content": "x"}] * 2049),
        "messages",
        "array_above_max_length",
    ),  # fmt: skip
    ("chat/completions", _messages({"role": "user", "content": "a"}, "hello"), "messages[1]", "invalid_type"),
    ("chat/completions", _messages({"content": "a"}), "messages[0].role", "missing_required_parameter"),
    ("chat/completions", _messages({"role": "bot", "content": "a"}), "messages[0].role", "invalid_value"),
    ("chat/completions", _messages({"role": ["user"], "content": "a"}), "messages[0].role", "invalid_value"),
    ("chat/completions", _messages({"role": "user"}), "messages[0].content", "missing_required_parameter"),
    (
        "chat/completions",
        _messages(*[{"role": "user", "content": "a"}] * 3, {"role": "user", "content": 5}),
        "messages[3].content",
        "invalid_type",
    ),  # fmt: skip
    ("chat/completions", _messages({"role": "system", "content": None}), "messages[0].content", "invalid_type"),
    (
        "chat/completions",
        _messages({"role": "user", "content": "x" * (validation.MAX_STRING_CHARS + 1)}),
        "messages[0].content",
        "string_above_max_length",
    ),  # fmt: skip
    (
        "chat/completions",
        _messages({"role": "user", "content": [{"type": "text", "text": 1}]}),
        "messages[0].content[0].text",
        "invalid_type",
    ),  # fmt: skip
    ("chat/completions", _messages({"role": "user", "content": ["text"]}), "messages[0].content[0]", "invalid_type"),
    (
        "chat/completions",
        _messages({"role": "user", "content": [{"text": "a"}]}),
        "messages[0].content[0].type",
        "missing_required_parameter",
    ),  # fmt: skip
    (
        "chat/completions",
        _messages({"role": "user", "content": [{"type": "image_url", "image_url": {"url": ""}}]}),
        "messages[0].content[0].image_url.url",
        "empty_string",
    ),  # fmt: skip
    (
        "chat/completions",
        _messages({"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x", "detail": "ultra"}}]}),
        "messages[0].content[0].image_url.detail",
        "invalid_value",
    ),  # fmt: skip
    (
        "chat/completions",
        _messages({"role": "user", "content": [{"type": "file", "file": {"file_id": "f", "detail": "ultra"}}]}),
        "messages[0].content[0].file.detail",
        "invalid_value",
    ),  # fmt: skip
    (
        "chat/completions",
        _messages({"role": "user", "content": [{"type": "file", "file": {"file_id": "f", "file_url": {"a": 1}}}]}),
        "messages[0].content[0].file.file_url",
        "invalid_type",
    ),  # fmt: skip
    ("chat/completions", _messages({"role": "user", "content": "a", "name": 3}), "messages[0].name", "invalid_type"),
    (
        "chat/completions",
        _messages({"role": "tool", "content": "a"}),
        "messages[0].tool_call_id",
        "missing_required_parameter",
    ),  # fmt: skip
    (
        "chat/completions",
        _messages({"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": {}}}]}),
        "messages[0].tool_calls[0].function.arguments",
        "invalid_type",
    ),  # fmt: skip
    ("chat/completions", _with(CHAT, temperature=-1), "temperature", "decimal_below_min_value"),
    ("chat/completions", _with(CHAT, temperature=2.5), "temperature", "decimal_above_max_value"),
    ("chat/completions", _with(CHAT, temperature="hot"), "temperature", "invalid_type"),
    ("chat/completions", _with(CHAT, temperature=True), "temperature", "invalid_type"),
    ("chat/completions", _with(CHAT, top_p=-0.1), "top_p", "decimal_below_min_value"),
    ("chat/completions", _with(CHAT, repetition_penalty=5e-324), "repetition_penalty", "decimal_below_min_value"),
    ("chat/completions", _with(CHAT, top_p=1.5), "top_p", "decimal_above_max_value"),
    ("chat/completions", _with(CHAT, presence_penalty=-3), "presence_penalty", "decimal_below_min_value"),
    ("chat/completions", _with(CHAT, frequency_penalty=2.01), "frequency_penalty", "decimal_above_max_value"),
    ("chat/completions", _with(CHAT, n=0), "n", "integer_below_min_value"),
    ("chat/completions", _with(CHAT, n=17), "n", "integer_above_max_value"),
    ("chat/completions", _with(CHAT, n=1.0), "n", "invalid_type"),
    ("chat/completions", _with(CHAT, n=True), "n", "invalid_type"),
    ("chat/completions", _with(CHAT, max_tokens=0), "max_tokens", "integer_below_min_value"),
    ("chat/completions", _with(CHAT, max_tokens="10"), "max_tokens", "invalid_type"),
    ("chat/completions", _with(CHAT, max_completion_tokens=-5), "max_completion_tokens", "integer_below_min_value"),
    ("chat/completions", _with(CHAT, seed=2**63), "seed", "integer_above_max_value"),
    ("chat/completions", _with(CHAT, seed="42"), "seed", "invalid_type"),
    ("chat/completions", _with(CHAT, top_k=2**31), "top_k", "integer_above_max_value"),
    ("chat/completions", _with(CHAT, min_tokens=-1), "min_tokens", "integer_below_min_value"),
    ("completions", _with(COMPLETION, min_tokens=1.5), "min_tokens", "invalid_type"),
    ("chat/completions", _with(CHAT, include_stop_str_in_output="yes"), "include_stop_str_in_output", "invalid_type"),
    ("completions", _with(COMPLETION, skip_special_tokens=1), "skip_special_tokens", "invalid_type"),
    ("chat/completions", _with(CHAT, allowed_token_ids=[]), "allowed_token_ids", "empty_array"),
    ("completions", _with(COMPLETION, allowed_token_ids=[1, -2]), "allowed_token_ids[1]", "invalid_value"),
    ("completions", _with(COMPLETION, stop_token_ids=[2**31]), "stop_token_ids[0]", "invalid_value"),
    ("completions", _with(COMPLETION, stop_token_ids=5), "stop_token_ids", "invalid_type"),
    ("chat/completions", _with(CHAT, bad_words="x"), "bad_words", "invalid_type"),
    ("chat/completions", _with(CHAT, bad_words=["x", ""]), "bad_words[1]", "empty_string"),
    ("completions", _with(COMPLETION, bad_words=["w"] * 129), "bad_words", "array_above_max_length"),
    ("chat/completions", _with(CHAT, truncate_prompt_tokens=0), "truncate_prompt_tokens", "invalid_value"),
    ("chat/completions", _with(CHAT, prompt_logprobs=21), "prompt_logprobs", "integer_above_max_value"),
    ("completions", _with(COMPLETION, prompt_logprobs=1, stream=True), "prompt_logprobs", "invalid_value"),
    ("chat/completions", _with(CHAT, return_token_ids="yes"), "return_token_ids", "invalid_type"),
    ("chat/completions", _with(CHAT, use_beam_search=1), "use_beam_search", "invalid_type"),
    ("chat/completions", _with(CHAT, echo="yes"), "echo", "invalid_type"),
    ("completions", _with(COMPLETION, length_penalty="long"), "length_penalty", "invalid_type"),
    ("completions", _with(COMPLETION, return_tokens_as_token_ids=1), "return_tokens_as_token_ids", "invalid_type"),
    ("completions", _with(COMPLETION, cache_salt=""), "cache_salt", "empty_string"),
    ("chat/completions", _with(CHAT, cache_salt=["a"]), "cache_salt", "invalid_type"),
    ("completions", _with(COMPLETION, truncate_prompt_tokens=-2), "truncate_prompt_tokens", "integer_below_min_value"),
    ("embeddings", _with(EMBEDDING, truncate_prompt_tokens="8"), "truncate_prompt_tokens", "invalid_type"),
    ("chat/completions", _with(CHAT, continue_final_message="yes"), "continue_final_message", "invalid_type"),
    ("chat/completions", _with(CHAT, repetition_penalty=0), "repetition_penalty", "decimal_below_min_value"),
    ("chat/completions", _with(CHAT, repetition_penalty=1e-300), "repetition_penalty", "decimal_below_min_value"),
    ("chat/completions", _with(CHAT, logprobs=1), "logprobs", "invalid_type"),
    ("chat/completions", _with(CHAT, logprobs=True, top_logprobs=21), "top_logprobs", "integer_above_max_value"),
    ("chat/completions", _with(CHAT, top_logprobs=2), "top_logprobs", "invalid_value"),
    ("chat/completions", _with(CHAT, stream="yes"), "stream", "invalid_type"),
    ("chat/completions", _with(CHAT, stream_options=["include_usage"], stream=True), "stream_options", "invalid_type"),
    ("chat/completions", _with(CHAT, stream_options={"include_usage": True}), "stream_options", "invalid_value"),
    (
        "chat/completions",
        _with(CHAT, stream=True, stream_options={"include_usage": 1}),
        "stream_options.include_usage",
        "invalid_type",
    ),  # fmt: skip
    ("chat/completions", _with(CHAT, stop=["a", "b", "c", "d", "e"]), "stop", "array_above_max_length"),
    ("chat/completions", _with(CHAT, stop=["a", 1]), "stop[1]", "invalid_type"),
    ("chat/completions", _with(CHAT, stop=""), "stop", "empty_string"),
    ("chat/completions", _with(CHAT, stop=7), "stop", "invalid_type"),
    ("chat/completions", _with(CHAT, logit_bias=[1]), "logit_bias", "invalid_type"),
    ("chat/completions", _with(CHAT, logit_bias={"hello": 1}), "logit_bias", "invalid_value"),
    ("chat/completions", _with(CHAT, logit_bias={"12": 101}), "logit_bias.12", "decimal_above_max_value"),
    ("chat/completions", _with(CHAT, logit_bias={"12": None}), "logit_bias.12", "invalid_type"),
    ("chat/completions", _with(CHAT, stop_token_ids=["a"]), "stop_token_ids[0]", "invalid_type"),
    ("chat/completions", _with(CHAT, user="u" * 257), "user", "string_above_max_length"),
    ("chat/completions", _with(CHAT, user=5), "user", "invalid_type"),
    ("chat/completions", _with(CHAT, tools={}), "tools", "invalid_type"),
    ("chat/completions", _with(CHAT, tools=[]), "tools", "empty_array"),
    ("chat/completions", _with(CHAT, tools=[TOOL] * 129), "tools", "array_above_max_length"),
    ("chat/completions", _with(CHAT, tools=[TOOL, {"type": "function"}]), "tools[1].function", "invalid_type"),
    (
        "chat/completions",
        _with(CHAT, tools=[{"type": "custom", "custom": {"name": "code"}}]),
        "tools[0].type",
        "unsupported_value",
    ),  # OpenAI's free-form tools: named, not read as a function without one
    (
        "chat/completions",
        _with(CHAT, tools=[{"type": "web", "function": {"name": "f"}}]),
        "tools[0].type",
        "invalid_value",
    ),
    ("chat/completions", _with(CHAT, tools=[{"type": 1, "function": {"name": "f"}}]), "tools[0].type", "invalid_value"),
    (
        "chat/completions",
        _with(CHAT, tools=[{"type": "function", "function": {"name": "f", "parameters": "x"}}]),
        "tools[0].function.parameters",
        "invalid_type",
    ),  # fmt: skip
    ("chat/completions", _with(CHAT, tool_choice=1), "tool_choice", "invalid_type"),
    ("chat/completions", _with(CHAT, response_format="json"), "response_format", "invalid_type"),
    ("chat/completions", _with(CHAT, parallel_tool_calls="no"), "parallel_tool_calls", "invalid_type"),
    ("completions", {"model": "m"}, "prompt", "missing_required_parameter"),
    ("completions", _with(COMPLETION, prompt=[]), "prompt", "empty_array"),
    ("completions", _with(COMPLETION, prompt=""), "prompt", "empty_string"),  # may be no tokens at all
    ("completions", _with(COMPLETION, prompt=["a", ""]), "prompt[1]", "empty_string"),
    ("completions", _with(COMPLETION, prompt=5), "prompt", "invalid_type"),
    ("completions", _with(COMPLETION, prompt=["a", 1]), "prompt[1]", "invalid_type"),
    ("completions", _with(COMPLETION, prompt=[1, "a"]), "prompt[1]", "invalid_type"),
    ("completions", _with(COMPLETION, prompt=[1, True]), "prompt[1]", "invalid_type"),
    ("completions", _with(COMPLETION, prompt=[[1], []]), "prompt[1]", "empty_array"),
    ("completions", _with(COMPLETION, prompt=[[1], [1.5]]), "prompt[1]", "invalid_type"),
    ("completions", _with(COMPLETION, prompt=[{"a": 1}]), "prompt[0]", "invalid_type"),
    ("completions", _with(COMPLETION, prompt=["a"] * 2049), "prompt", "array_above_max_length"),
    ("completions", _with(COMPLETION, logprobs=6), "logprobs", "integer_above_max_value"),
    ("completions", _with(COMPLETION, best_of=2, n=3), "best_of", "invalid_value"),
    ("completions", _with(COMPLETION, best_of=3, stream=True), "best_of", "invalid_value"),
    ("completions", _with(COMPLETION, best_of=validation.MAX_N + 1), "best_of", "integer_above_max_value"),
    ("completions", _with(COMPLETION, best_of="3"), "best_of", "invalid_type"),
    ("completions", _with(COMPLETION, logprobs=True), "logprobs", "invalid_type"),
    ("completions", _with(COMPLETION, echo="yes"), "echo", "invalid_type"),
    ("completions", _with(COMPLETION, suffix=1), "suffix", "invalid_type"),
    ("completions", _with(COMPLETION, temperature=-1), "temperature", "decimal_below_min_value"),
    ("embeddings", {"model": "m"}, "input", "missing_required_parameter"),
    ("embeddings", _with(EMBEDDING, input=""), "input", "empty_string"),
    ("embeddings", _with(EMBEDDING, input=["a", ""]), "input[1]", "empty_string"),
    ("embeddings", _with(EMBEDDING, input=["a"] * 2049), "input", "array_above_max_length"),
    (
        "embeddings",
        _with(EMBEDDING, input=["x" * (validation.MAX_STRING_CHARS + 1)]),
        "input[0]",
        "string_above_max_length",
    ),  # fmt: skip
    ("embeddings", _with(EMBEDDING, input={"text": "a"}), "input", "invalid_type"),
    ("embeddings", _with(EMBEDDING, encoding_format="int8"), "encoding_format", "invalid_value"),
    ("embeddings", _with(EMBEDDING, dimensions=0), "dimensions", "integer_below_min_value"),
    ("rerank", _with(RERANK, query=None), "query", "missing_required_parameter"),
    ("rerank", _with(RERANK, query=["q"]), "query", "invalid_type"),
    ("rerank", _with(RERANK, documents=None), "documents", "missing_required_parameter"),
    ("rerank", _with(RERANK, documents=[]), "documents", "empty_array"),
    ("rerank", _with(RERANK, documents="a"), "documents", "invalid_type"),
    ("rerank", _with(RERANK, documents=["a"] * 1001), "documents", "array_above_max_length"),
    ("rerank", _with(RERANK, documents=["a", 3]), "documents[1]", "invalid_type"),
    ("rerank", _with(RERANK, documents=[{"title": "t"}]), "documents[0].text", "invalid_type"),
    ("rerank", _with(RERANK, top_n=0), "top_n", "integer_below_min_value"),
    ("rerank", _with(RERANK, top_n=True), "top_n", "invalid_type"),
    ("rerank", _with(RERANK, return_documents="yes"), "return_documents", "invalid_type"),
    ("score", _with(SCORE, text_1=None), "text_1", "missing_required_parameter"),
    ("score", _with(SCORE, text_2=[]), "text_2", "empty_array"),
    ("score", _with(SCORE, text_2=["a", 1]), "text_2[1]", "invalid_type"),
    ("score", _with(SCORE, text_1=["a", "b", "c"]), "text_2", "invalid_value"),
]


@pytest.mark.parametrize(("route", "body"), GOOD)
def test_good_bodies_pass_untouched(route, body):
    before = json.dumps(body)
    validation.check_body(route, body)
    assert json.dumps(body) == before  # nothing added, nothing removed: unknown fields go through


@pytest.mark.parametrize(("route", "body", "param", "code"), BAD, ids=[f"{r}-{p}-{c}" for r, _, p, c in BAD])
def test_bad_bodies_are_refused_naming_the_field(route, body, param, code):
    with pytest.raises(InvalidRequest) as refused:
        validation.check_body(route, body)
    error = refused.value.body()["error"]
    assert (refused.value.status, error["type"]) == (400, "invalid_request_error")
    assert (error["param"], error["code"]) == (param, code), error["message"]
    assert param in error["message"] or error["code"] == "invalid_value"


def test_openai_wording_for_ranges_and_types():
    with pytest.raises(InvalidRequest, match=r"^-1 is less than the minimum of 0 - 'temperature'$"):
        validation.check_body("chat/completions", _with(CHAT, temperature=-1))
    with pytest.raises(InvalidRequest, match=r"^Invalid type for 'messages\[3\].content': expected a string or an "
                                              r"array of content parts, but got an integer instead\.$"):  # fmt: skip
        validation.check_body("chat/completions", _messages(*[{"role": "user", "content": "a"}] * 3,
                                                            {"role": "user", "content": 5}))  # fmt: skip


@pytest.mark.parametrize("value", [{"a": float("nan")}, {"a": [1, float("inf")]}, {"a": {"b": -float("inf")}}])
def test_check_json_refuses_non_finite_numbers(value):
    with pytest.raises(InvalidRequest, match="NaN or Infinity"):
        validation.check_json(value)
    validation.check_json({"a": [1.5, -2e300, {"b": 0.0}]})  # finite numbers pass


def _nested(depth: int) -> dict:
    """A body whose innermost container is ``depth`` levels down (the body itself is level 1)."""
    value: list | dict = []
    for _ in range(depth - 2):
        value = [value]
    return {"a": value}


def test_check_json_depth_limit():
    validation.check_json(_nested(validation.MAX_JSON_DEPTH))
    with pytest.raises(InvalidRequest, match="nested too deeply") as refused:
        validation.check_json(_nested(validation.MAX_JSON_DEPTH + 1))
    assert refused.value.code == "invalid_json"


# --- through the edge ------------------------------------------------------------------------------------------


def _post(secret: str, body: bytes) -> tuple[int, dict | None, bool]:
    """POST ``body`` to /v1/chat/completions through the edge alone: (status, error body, whether it passed)."""
    passed, sent = post_through_edge(secret, body)
    if passed:
        return 200, None, True
    return sent[0]["status"], json.loads(sent[1]["body"]), False


@pytest.fixture
def secret(acme):
    return services.issue_key(acme.tenant, name="edge").secret


@pytest.mark.django_db(transaction=True)  # the edge authenticates in another thread: the key must be committed
@pytest.mark.parametrize(
    ("body", "message"),
    [
        (json.dumps(_nested(validation.MAX_JSON_DEPTH + 1)).encode(), "nested too deeply"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),  # deeper than the parser's recursion limit
        (b'{"model": "m", "temperature": NaN}', "NaN or Infinity"),
        (b'{"model": "m", "seed": ' + b"9" * 5000 + b"}", "could not parse"),  # past Python's 4300 digits
    ],
    ids=["depth", "recursion", "nan", "huge-int"],
)
def test_the_edge_refuses_deep_non_finite_and_unparsable_json(secret, body, message):
    status, error, passed = _post(secret, body)
    assert (status, passed) == (400, False)
    assert set(error["error"]) == {"message", "type", "param", "code"}
    assert message in error["error"]["message"] and error["error"]["code"] == "invalid_json"


@pytest.mark.django_db(transaction=True)
def test_the_edge_passes_a_body_at_the_depth_limit(secret):
    assert _post(secret, json.dumps(_nested(validation.MAX_JSON_DEPTH)).encode())[2]


@pytest.mark.parametrize(
    "kind, route, hint",
    [
        ("completion", "chat/completions", "use /completions."),
        ("chat", "audio/speech", "use /chat/completions, /responses or /completions."),
        ("embedding", "rerank", "use /embeddings."),
        ("rerank", "embeddings", "use /rerank or /score."),
        ("moderation", "responses", "use /chat/completions, /completions or /moderations."),
        ("audio", "chat/completions", "use /audio/transcriptions or /audio/translations."),
    ],
)
def test_a_model_on_a_route_that_does_not_serve_its_kind_is_told_the_routes_that_do(kind, route, hint):
    """The 400 names the routes that serve the model's kind, and never the route it came on."""
    from hub.api.gateway import _check_limits
    from hub.api.upstream import ModelInfo

    info = ModelInfo("m", kind, max_sequence_length=2048, max_output_length=256, hidden_size=0, enabled=True)
    with pytest.raises(InvalidRequest) as caught:
        _check_limits(info, route, {})
    article = "an" if kind[0] in "aeiou" else "a"
    assert caught.value.message == f"'m' is {article} {kind} model; {hint}" and caught.value.param == "model"
