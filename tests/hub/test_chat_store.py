"""``ChatAssembler``: a streamed chat completion put back together as the whole answer it stands for, whatever
way the deltas split it: two choices interleaved, a tool call's name and arguments over several deltas (a second
call by its index), log probabilities, a reasoning model's think block (and one that did not think), the usage
of the last chunk that had one."""

from __future__ import annotations

from hub.api.chat_store import ChatAssembler, new_id
from tests.openai_spec import assert_valid


def _chunk(choices: list[dict], usage: dict | None = None) -> dict:
    out = {"id": "x", "object": "chat.completion.chunk", "created": 7, "model": "m", "system_fingerprint": "fp",
           "choices": choices}  # fmt: skip
    if usage is not None:
        out["usage"] = usage
    return out


def _delta(index: int, finish: str | None = None, logprobs: list | None = None, **delta) -> dict:
    return {"index": index, "delta": delta, "finish_reason": finish,
            "logprobs": None if logprobs is None else {"content": logprobs, "refusal": None}}  # fmt: skip


def _lp(token: str) -> dict:
    return {"token": token, "logprob": -0.5, "bytes": list(token.encode()), "top_logprobs": []}


def _call(index: int, **fields) -> dict:
    return {"index": index, **fields}


def test_two_choices_text_and_tool_calls_interleaved():
    usage = {"prompt_tokens": 4, "completion_tokens": 6, "total_tokens": 10}
    assembler = ChatAssembler()
    for chunk in [
        _chunk([_delta(0, role="assistant", content=""), _delta(1, role="assistant", content="")]),
        _chunk([_delta(1, logprobs=[_lp("Hel")], content="Hel")]),
        _chunk([_delta(0, logprobs=[_lp("{")], tool_calls=[
            _call(0, id="call_1", type="function", function={"name": "get_weather", "arguments": ""})])]),
        _chunk([_delta(1, logprobs=[_lp("lo")], content="lo")]),
        _chunk([_delta(0, logprobs=[_lp('"a"')], tool_calls=[_call(0, function={"arguments": '{"city": '})])]),
        _chunk([_delta(0, tool_calls=[_call(0, function={"arguments": '"Hamburg"}'})])]),
        _chunk([_delta(0, tool_calls=[_call(1, id="call_2", type="function",
                                            function={"name": "now", "arguments": "{}"})])]),
        _chunk([_delta(1, finish="stop")], usage={**usage, "completion_tokens": 5}),
        _chunk([_delta(0, finish="tool_calls")]),
        _chunk([], usage=usage),
    ]:  # fmt: skip
        assembler.take(chunk)
    completion = assembler.completion("chatcmpl-1", "chat-small")
    assert_valid("CreateChatCompletionResponse", completion)
    first, second = completion["choices"]
    assert first["message"] == {"role": "assistant", "content": None, "refusal": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Hamburg"}'}},
        {"id": "call_2", "type": "function", "function": {"name": "now", "arguments": "{}"}},
    ]}  # fmt: skip
    assert first["finish_reason"] == "tool_calls" and [t["token"] for t in first["logprobs"]["content"]] == ["{", '"a"']
    assert second["message"] == {"role": "assistant", "content": "Hello", "refusal": None}
    assert second["logprobs"]["content"] == [_lp("Hel"), _lp("lo")] and second["finish_reason"] == "stop"
    assert completion["usage"] == usage and completion["created"] == 7 and completion["system_fingerprint"] == "fp"
    assert (completion["id"], completion["model"], completion["object"]) == ("chatcmpl-1", "chat-small",
                                                                              "chat.completion")  # fmt: skip


def test_reasoning_and_empty_answers():
    assembler = ChatAssembler()
    for chunk in [
        _chunk([_delta(0, role="assistant", content="", reasoning_content=None), _delta(1, role="assistant")]),
        _chunk([_delta(0, reasoning_content="Think", reasoning="Think")]),
        _chunk([_delta(0, reasoning_content=" more.", reasoning=" more.")]),
        _chunk([_delta(0, content="Yes.")]),
        _chunk([_delta(0, finish="stop"), _delta(1, finish="length")]),
    ]:
        assembler.take(chunk)
    first, second = assembler.completion(new_id(), "r")["choices"]
    assert first["message"] == {"role": "assistant", "content": "Yes.", "refusal": None,
                                "reasoning_content": "Think more.", "reasoning": "Think more."}  # fmt: skip
    assert second["message"] == {"role": "assistant", "content": "", "refusal": None}
    assert first["logprobs"] is None and second["finish_reason"] == "length"

    silent = ChatAssembler()  # a reasoning model that did not think: null, as in its whole answers
    silent.take(_chunk([_delta(0, role="assistant", content="", reasoning_content=None, reasoning=None)]))
    silent.take(_chunk([_delta(0, content="No.", finish="stop")]))
    [only] = silent.completion("chatcmpl-2", "r")["choices"]
    assert only["message"]["reasoning_content"] is None and only["message"]["content"] == "No."


def test_ids_are_new_each_time():
    ids = {new_id() for _ in range(100)}
    assert len(ids) == 100 and all(i.startswith("chatcmpl-") and len(i) == 41 for i in ids)
