"""Answers through the hub, from the real models, checked against OpenAI's published response schemas (from
its OpenAPI document), transcriptions and their stream events too: ``refusal`` present, ``usage: null`` on every
chunk before the usage chunk when the client asked for one, and ``/v1/completions`` generating 16 tokens when it
sends no ``max_tokens``."""

import json

import httpx
import pytest

from tests.openai_spec import assert_valid
from tests.support import speech
from tests.support.live import CHAT, COMPLETION, EMBED, WHISPER, rows

pytestmark = pytest.mark.live

MESSAGES = [{"role": "user", "content": "Name a colour."}]


def post(hub, route: str, body: dict) -> httpx.Response:
    headers = {"Authorization": f"Bearer {hub.everything.secret}"}
    return httpx.post(f"{hub.url}/v1/{route}", json=body, headers=headers, timeout=120)


def events(hub, route: str, body: dict) -> list[dict]:
    headers = {"Authorization": f"Bearer {hub.everything.secret}"}
    with httpx.stream("POST", f"{hub.url}/v1/{route}", json=body, headers=headers, timeout=120) as response:
        assert response.status_code == 200
        raw = "".join(response.iter_text())
    data = [e[len("data: ") :] for e in raw.split("\n\n") if e.startswith("data: ")]
    assert data[-1] == "[DONE]"
    return [json.loads(d) for d in data[:-1]]


def test_chat_answer_is_openais_shape_with_refusal_null(transactional_db, hub):
    body = {"model": CHAT, "messages": MESSAGES, "max_tokens": 5, "temperature": 0, "logprobs": True,
            "top_logprobs": 2}  # fmt: skip
    answer = post(hub, "chat/completions", body).json()
    assert_valid("CreateChatCompletionResponse", answer)
    choice = answer["choices"][0]
    assert choice["message"]["refusal"] is None and "refusal" in choice["message"]
    assert choice["logprobs"]["refusal"] is None and len(choice["logprobs"]["content"]) == 5


def test_streamed_chunks_carry_usage_null_until_the_usage_chunk(transactional_db, hub):
    body = {"model": CHAT, "messages": MESSAGES, "max_tokens": 5, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}  # fmt: skip
    chunks = events(hub, "chat/completions", body)
    for chunk in chunks:
        assert_valid("CreateChatCompletionStreamResponse", chunk)
    *before, last = chunks
    assert all("usage" in c and c["usage"] is None for c in before)
    assert last["choices"] == [] and last["usage"]["completion_tokens"] == 5
    assert before[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}

    body.pop("stream_options")  # not asked: no usage key at all, as OpenAI's
    assert all("usage" not in c for c in events(hub, "chat/completions", body))


def test_a_deprecated_function_call_is_openais_shape(transactional_db, hub):
    """``functions`` answered as OpenAI did: ``message.function_call``, ``finish_reason: function_call``, and
    streamed ``delta.function_call`` (tests/e2e/test_gateway.py checks what they hold)."""
    function = {"name": "pick", "parameters": {"type": "object", "properties": {"colour": {"enum": ["red", "blue"]}},
                                               "required": ["colour"]}}  # fmt: skip
    body = {"model": CHAT, "messages": MESSAGES, "max_tokens": 60, "temperature": 0, "functions": [function],
            "function_call": {"name": "pick"}}  # fmt: skip
    answer = post(hub, "chat/completions", body).json()
    assert_valid("CreateChatCompletionResponse", answer)
    [choice] = answer["choices"]
    assert choice["finish_reason"] == "function_call" and "tool_calls" not in choice["message"]
    chunks = events(hub, "chat/completions", {**body, "stream": True})
    for chunk in chunks:
        assert_valid("CreateChatCompletionStreamResponse", chunk)
    assert chunks[-1]["choices"][0]["finish_reason"] == "function_call"
    assert any("function_call" in c["choices"][0]["delta"] for c in chunks)


def test_completions_default_to_16_tokens(transactional_db, hub):
    body = {"model": COMPLETION, "prompt": "Once upon a time, in a land far away,", "temperature": 0,
            "stop": None}  # fmt: skip
    answer = post(hub, "completions", body).json()
    assert_valid("CreateCompletionResponse", answer)
    assert answer["usage"]["completion_tokens"] <= 16
    if answer["choices"][0]["finish_reason"] == "length":
        assert answer["usage"]["completion_tokens"] == 16
    streamed = events(hub, "completions", {**body, "stream": True, "stream_options": {"include_usage": True}})
    # same default, streamed or not; the same prompt again finds its whole blocks of 16 in the prefix cache
    usage = dict(streamed[-1]["usage"])
    assert usage.pop("prompt_tokens_details") == {"cached_tokens": (answer["usage"]["prompt_tokens"] - 1) // 16 * 16}
    assert usage == {k: v for k, v in answer["usage"].items() if k != "prompt_tokens_details"}
    assert rows(2, model=COMPLETION)[-1].completion_tokens == answer["usage"]["completion_tokens"]


def test_embeddings_and_models_are_openais_shape(transactional_db, hub):
    assert_valid("CreateEmbeddingResponse", post(hub, "embeddings", {"model": EMBED, "input": ["a", "b"]}).json())
    listed = httpx.get(f"{hub.url}/v1/models", headers={"Authorization": f"Bearer {hub.everything.secret}"}).json()
    assert_valid("ListModelsResponse", listed)
    assert_valid("ErrorResponse", post(hub, "chat/completions", {"model": "nope", "messages": MESSAGES}).json())


def test_transcriptions_and_their_events_are_openais_shape(transactional_db, hub, tmp_path):
    audio = speech.speak(speech.ENGLISH[2], "en", tmp_path / "en.wav").read_bytes()
    headers = {"Authorization": f"Bearer {hub.everything.secret}"}

    def transcribe(route: str = "transcriptions", **fields) -> httpx.Response:
        return httpx.post(f"{hub.url}/v1/audio/{route}", data={"model": WHISPER, **fields},
                          files={"file": ("en.wav", audio)}, headers=headers, timeout=120)  # fmt: skip

    assert_valid("CreateTranscriptionResponseJson", transcribe().json())
    assert_valid("CreateTranscriptionResponseVerboseJson", transcribe(response_format="verbose_json").json())
    assert_valid("CreateTranslationResponseJson", transcribe("translations").json())
    raw = transcribe(stream="true").text
    data = [e[len("data: ") :] for e in raw.split("\n\n") if e.startswith("data: ")]
    assert data[-1] == "[DONE]"
    *deltas, done = [json.loads(d) for d in data[:-1]]
    for delta in deltas:
        assert_valid("TranscriptTextDeltaEvent", delta)
    assert_valid("TranscriptTextDoneEvent", done)
