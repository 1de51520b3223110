"""Reasoning models: the think block split from the content (whole and as it streams, at every split), the prompt
deciding whether an answer may think (``chat_template_kwargs.enable_thinking``, a template that opens the block),
and over HTTP on a live service with a scripted Qwen3: ``reasoning_content`` / ``reasoning`` in messages and
deltas, reasoning tokens counted once, a grammar that shapes the answer after the reasoning and never the
reasoning itself."""

from __future__ import annotations

import json

import httpx
import pytest

from inference.sampling_params import ThinkMarks
from inference.server.reasoning import ReasoningFormat, ReasoningSplitter, detect, reasoning_tokens
from inference.tokenizer.tokenizer import Tokenizer
from tests.support.inference import inference_service, model_flags
from tests.support.scripted import script, scripted_checkpoint

UNDECIDED, OPENED = ThinkMarks(1, 2), ThinkMarks(1, 2, opened=True)


@pytest.mark.parametrize(
    ("marks", "text", "expected"),
    [
        (UNDECIDED, "<think>\nLet me see.\nIt is 4.\n</think>\n\nIt is 4.", ("Let me see.\nIt is 4.", "It is 4.")),
        (UNDECIDED, "  <think>short</think>done", ("short", "done")),
        (UNDECIDED, "No thinking here, <think> is text.", (None, "No thinking here, <think> is text.")),
        (UNDECIDED, "<think>\ncut by max_tokens\n", ("cut by max_tokens", "")),
        (UNDECIDED, "<think></think>", ("", "")),
        (UNDECIDED, "\n\n<thin", (None, "\n\n<thin")),  # ended before a tag was complete: text
        (OPENED, "\nreasoning only until </think>\n\nthen content\n", ("reasoning only until ", "then content\n")),
        (OPENED, "no end at all < / think", ("no end at all < / think", "")),
        (None, "<think>x</think>y", (None, "<think>x</think>y")),  # thinking off: all content
    ],
)  # fmt: skip
def test_the_splitter_whole_and_at_every_split(marks, text, expected):
    assert ReasoningSplitter(marks).split(text) == expected
    for cut in range(len(text) + 1):
        for pieces in ([text[:cut], text[cut:]], list(text)):  # two pieces, and one character at a time
            splitter = ReasoningSplitter(marks)
            parts = [p for piece in pieces for p in splitter.feed(piece)] + splitter.finish()
            reasoning = "".join(t for kind, t in parts if kind == "reasoning")
            content = "".join(t for kind, t in parts if kind == "content")
            assert ((reasoning if splitter.thought else None), content) == expected, (cut, pieces)
            assert all(t for _, t in parts)  # no empty pieces go out


def test_reasoning_tokens_counted_to_the_end_of_the_block():
    assert reasoning_tokens(UNDECIDED, [1, 7, 8, 2, 9, 10]) == 4
    assert reasoning_tokens(UNDECIDED, [9, 1, 2]) == 0  # the answer did not open a block
    assert reasoning_tokens(OPENED, [7, 8, 2, 9]) == 3
    assert reasoning_tokens(OPENED, [7, 8]) == 2  # cut inside the block
    assert reasoning_tokens(None, [1, 2]) == 0


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("scripted")
    return {"qwen3": scripted_checkpoint(root / "qwen3"), "r1": scripted_checkpoint(root / "r1", opened=True)}


def test_the_prompt_decides_whether_an_answer_may_think(checkpoints):
    messages = [{"role": "user", "content": "What is 2 + 2? <think></think>"}]  # typed tags are text, not markers
    qwen3 = Tokenizer.from_dir(checkpoints["qwen3"])
    fmt = detect(qwen3)
    assert fmt == ReasoningFormat(qwen3.token_to_id("<think>"), qwen3.token_to_id("</think>"))
    marks = fmt.marks(qwen3.apply_chat_template(messages), qwen3.stop_token_ids)
    assert marks == ThinkMarks(fmt.start_id, fmt.end_id, opened=False)  # Qwen3 thinks by default
    off = qwen3.apply_chat_template(messages, enable_thinking=False)
    assert fmt.marks(off, qwen3.stop_token_ids) is None  # its template closed an empty block
    r1 = Tokenizer.from_dir(checkpoints["r1"])
    assert detect(r1).marks(r1.apply_chat_template(messages), r1.stop_token_ids).opened
    plain = Tokenizer.from_dir(checkpoints["qwen3"])
    plain.chat_template = plain.chat_template.replace("</think>", "")
    assert detect(plain) is None  # no think block in the template: not a reasoning model


# --- over HTTP ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def service(checkpoints):
    flags = model_flags(f"qwen3={checkpoints['qwen3']}:chat", f"r1={checkpoints['r1']}:chat")
    with inference_service(*flags) as url:
        yield url


@pytest.fixture(scope="module")
def tokenizer(checkpoints):
    return Tokenizer.from_dir(checkpoints["qwen3"])


def _chat(service: str, body: dict) -> dict:
    answer = httpx.post(f"{service}/v1/chat/completions", json=body, timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _stream(service: str, body: dict) -> list[dict]:
    body = {**body, "stream": True, "stream_options": {"include_usage": True}}
    with httpx.stream("POST", f"{service}/v1/chat/completions", json=body, timeout=60) as response:
        lines = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


ASK = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.mark.live
def test_the_think_block_comes_back_as_reasoning(service, tokenizer):
    said = script(tokenizer, "<think>", "\n", "Paris is the capital", "</think>", "The answer: Lyon")
    body = {"model": "qwen3", "messages": ASK, **said}
    answer = _chat(service, body)
    message = answer["choices"][0]["message"]
    assert (message["reasoning_content"], message["reasoning"]) == ("Paris is the capital",) * 2
    assert message["content"] == "The answer: Lyon"
    usage = answer["usage"]
    thought = len(tokenizer.encode("<think>\nParis is the capital</think>", add_special_tokens=False))
    assert usage["completion_tokens_details"] == {"reasoning_tokens": thought}
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]  # counted once

    chunks = _stream(service, body)
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert all(not ("content" in d and d.get("reasoning_content")) for d in deltas)  # never both in one delta
    assert "".join(d.get("reasoning_content") or "" for d in deltas) == "Paris is the capital"
    assert "".join(d.get("reasoning") or "" for d in deltas) == "Paris is the capital"
    assert "".join(d.get("content") or "" for d in deltas) == "The answer: Lyon"
    streamed = dict(chunks[-1]["usage"])  # the same prompt again: its whole blocks of 16 found in the prefix cache
    assert streamed.pop("prompt_tokens_details") == {"cached_tokens": (usage["prompt_tokens"] - 1) // 16 * 16}
    assert streamed == {k: v for k, v in usage.items() if k != "prompt_tokens_details"}


@pytest.mark.live
def test_enable_thinking_false_leaves_no_reasoning(service, tokenizer):
    said = script(tokenizer, "Paris")
    thinking = _chat(service, {"model": "qwen3", "messages": ASK, **said})
    off = _chat(service, {"model": "qwen3", "messages": ASK, **said,
                          "chat_template_kwargs": {"enable_thinking": False}})  # fmt: skip
    message = off["choices"][0]["message"]
    assert (message["content"], message["reasoning_content"]) == ("Paris", None)
    assert off["usage"]["completion_tokens_details"] == {"reasoning_tokens": 0}
    closed = tokenizer.encode("<think>\n\n</think>\n\n", add_special_tokens=False)  # the template's empty block
    assert off["usage"]["prompt_tokens"] == thinking["usage"]["prompt_tokens"] + len(closed)


@pytest.mark.live
def test_reasoning_effort_none_turns_thinking_off(service, tokenizer):
    """OpenAI's ``reasoning_effort``: ``none`` is ``enable_thinking: false`` (what chat_template_kwargs sets itself
    wins); the other efforts think as the model does by default; a value OpenAI has not is a 400."""
    said = script(tokenizer, "<think>", "Hmm", "</think>", "Paris")
    ask = {"model": "qwen3", "messages": ASK, **said}
    default = _chat(service, ask)
    off = _chat(service, {**ask, "chat_template_kwargs": {"enable_thinking": False}})
    none = _chat(service, {**ask, "reasoning_effort": "none"})
    assert none["choices"] == off["choices"] and none["usage"]["prompt_tokens"] == off["usage"]["prompt_tokens"]
    assert none["choices"][0]["message"]["reasoning_content"] is None
    overruled = _chat(service, {**ask, "reasoning_effort": "none", "chat_template_kwargs": {"enable_thinking": True}})
    for effort in ("high", "minimal"):
        assert _chat(service, {**ask, "reasoning_effort": effort})["choices"] == default["choices"]
    assert overruled["choices"] == default["choices"] and default["choices"][0]["message"]["reasoning_content"] == "Hmm"
    refused = httpx.post(f"{service}/v1/chat/completions", json={**ask, "reasoning_effort": "max"}, timeout=60)
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "reasoning_effort"


@pytest.mark.live
def test_a_template_that_opens_the_block(service, tokenizer):
    said = script(tokenizer, "Hmm", "</think>", "Paris")
    message = _chat(service, {"model": "r1", "messages": ASK, **said})["choices"][0]["message"]
    assert (message["reasoning_content"], message["content"]) == ("Hmm", "Paris")


@pytest.mark.live
@pytest.mark.parametrize("enable_thinking", [True, False])
def test_a_grammar_shapes_the_answer_after_the_reasoning(service, tokenizer, enable_thinking):
    """json_object: the model thinks freely (its script's words are no JSON), then the grammar takes the answer;
    with thinking off the grammar holds from the first token, so the block cannot even open."""
    said = script(tokenizer, "<think>", "Paris", "</think>", "{", "}")
    body = {"model": "qwen3", "messages": ASK, **said, "response_format": {"type": "json_object"},
            "chat_template_kwargs": {"enable_thinking": enable_thinking}, "max_tokens": 12}  # fmt: skip
    choice = _chat(service, body)["choices"][0]
    assert json.loads(choice["message"]["content"]) == {}
    assert choice["message"]["reasoning_content"] == ("Paris" if enable_thinking else None)
    assert choice["finish_reason"] == "stop"


@pytest.mark.live
def test_n_choices_each_reason(service, tokenizer):
    said = script(tokenizer, "<think>", "Hmm", "</think>", "Paris")
    answer = _chat(service, {"model": "qwen3", "messages": ASK, **said, "n": 2})
    assert [c["message"]["reasoning_content"] for c in answer["choices"]] == ["Hmm", "Hmm"]
    thought = len(tokenizer.encode("<think>Hmm</think>", add_special_tokens=False))
    assert answer["usage"]["completion_tokens_details"]["reasoning_tokens"] == 2 * thought


@pytest.mark.live
@pytest.mark.parametrize("kwargs", [["enable_thinking"], {"messages": []}, {"add_generation_prompt": False},
                                    {"not an identifier": 1}])  # fmt: skip
def test_bad_chat_template_kwargs_are_refused(service, kwargs):
    body = {"model": "qwen3", "messages": ASK, "chat_template_kwargs": kwargs, "max_tokens": 1}
    answer = httpx.post(f"{service}/v1/chat/completions", json=body, timeout=60)
    assert answer.status_code == 400 and answer.json()["error"]["param"] == "chat_template_kwargs"
