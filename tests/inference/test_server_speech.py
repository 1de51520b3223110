"""The service's /v1/audio routes with the OpenAI SDK, on the packaged Whisper base: every response format,
streaming, translation, and an OpenAI error for every bad upload or field."""

from __future__ import annotations

import json
import math

import httpx
import openai
import pytest

from tests.support import speech
from tests.support.inference import inference_service, model_flags

pytestmark = [pytest.mark.real_model, pytest.mark.live]


@pytest.fixture(scope="module")
def client():
    with inference_service(*model_flags("whisper-base=packaged:whisper-base:audio",
                                        "embed=packaged:minilm:embedding")) as url:  # fmt: skip
        yield openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def english(tmp_path_factory):
    return speech.speak(speech.ENGLISH[0], "en", tmp_path_factory.mktemp("srv") / "en.wav")


@pytest.fixture(scope="module")
def german(tmp_path_factory):
    return speech.speak(speech.GERMAN[1], "de", tmp_path_factory.mktemp("srv") / "de.wav")


def _upload(path):
    return path.name, path.read_bytes()


def test_every_response_format(client, english):
    text = speech.ENGLISH[0]
    plain = client.audio.transcriptions.create(model="whisper-base", file=_upload(english))
    assert speech.word_error_rate(text, plain.text) <= 0.1 and plain.text == plain.text.strip()
    assert plain.usage.type == "duration" and plain.usage.seconds == 4
    verbose = client.audio.transcriptions.create(
        model="whisper-base", file=_upload(english), response_format="verbose_json",
        timestamp_granularities=["segment"],
    )  # fmt: skip
    assert verbose.language == "english" and verbose.text == plain.text and 3.0 < verbose.duration < 4.0
    assert verbose.segments and verbose.segments[0].start == 0.0 and verbose.segments[-1].end <= verbose.duration
    assert all(s.avg_logprob < 0 and s.compression_ratio > 0 and 0 <= s.no_speech_prob <= 1 for s in verbose.segments)
    as_text = client.audio.transcriptions.create(model="whisper-base", file=_upload(english), response_format="text")
    assert as_text.strip() == plain.text
    srt = client.audio.transcriptions.create(model="whisper-base", file=_upload(english), response_format="srt")
    assert srt.startswith("1\n00:00:00,000 --> 00:00:0") and plain.text.split()[0] in srt
    vtt = client.audio.transcriptions.create(model="whisper-base", file=_upload(english), response_format="vtt")
    assert vtt.startswith("WEBVTT\n\n00:00:00.000 --> ")


def test_streamed_transcription_ends_with_the_whole_text_and_its_usage(client, english):
    events = list(client.audio.transcriptions.create(model="whisper-base", file=_upload(english), stream=True))
    deltas = [e.delta for e in events if e.type == "transcript.text.delta"]
    done = [e for e in events if e.type == "transcript.text.done"]
    assert len(done) == 1 and deltas and "".join(deltas).strip() == done[0].text
    frames = len(speech.samples(english)) // 160  # mel frames, 100 a second
    # the audio's tokens: Whisper's encoder positions, 50 a second
    assert done[0].usage.output_tokens > 0 and done[0].usage.input_tokens == math.ceil(frames / 2)


def test_translation_and_language(client, german):
    translated = client.audio.translations.create(model="whisper-base", file=_upload(german))
    assert "train" in translated.text.lower()
    german_text = client.audio.transcriptions.create(model="whisper-base", file=_upload(german), language="de")
    assert speech.word_error_rate(speech.GERMAN[1], german_text.text) <= 0.2


@pytest.mark.parametrize(
    ("fields", "upload", "status", "param"),
    [
        ({"model": "whisper-base"}, ("a.txt", b"just some text"), 400, "file"),
        ({"model": "whisper-base"}, ("a.wav", b""), 400, "file"),
        ({"model": "embed"}, None, 400, "model"),
        ({"model": "nope"}, None, 404, "model"),
        ({"model": "whisper-base", "response_format": "xml"}, None, 400, "response_format"),
        ({"model": "whisper-base", "temperature": "3"}, None, 400, "temperature"),
        ({"model": "whisper-base", "language": "klingon"}, None, 400, "language"),
        ({"model": "whisper-base", "timestamp_granularities[]": "word", "response_format": "verbose_json"}, None, 400,
         "timestamp_granularities"),
        ({"model": "whisper-base", "frobnicate": "1"}, None, 400, "frobnicate"),
        ({"model": "whisper-base", "include[]": "logprobs"}, None, 400, "include[]"),
        ({"model": "whisper-base", "chunking_strategy": "server_vad"}, None, 400, "chunking_strategy"),
    ],
    ids=["text-file", "empty", "not-audio-model", "unknown-model", "format", "temperature", "language", "word",
         "unknown-field", "include", "chunking"],
)  # fmt: skip
def test_bad_requests_get_openai_errors(client, english, fields, upload, status, param):
    files = {"file": upload or ("en.wav", english.read_bytes())}
    response = httpx.post(f"{client.base_url}audio/transcriptions", data=fields, files=files, timeout=60)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["param"] == param and set(error) == {"message", "type", "param", "code"}


def test_json_body_is_refused_with_415(client):
    response = httpx.post(f"{client.base_url}audio/transcriptions", json={"model": "whisper-base"}, timeout=30)
    assert response.status_code == 415 and json.loads(response.text)["error"]["message"]
