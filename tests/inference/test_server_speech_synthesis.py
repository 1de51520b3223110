"""POST /v1/audio/speech on a live service serving random-weight VITS checkpoints (kind tts), called by the OpenAI
SDK as its users call OpenAI: every ``response_format`` decodes to 24 kHz mono audio as long as what the model
said; the bytes are the model's own audio, whether streamed or not, the same for the same seed; ``stream_format``
sse sends OpenAI's events (valid by its schema) that add up to the same audio, then the usage; voices name speakers;
the service's tally meters it; and bad input is OpenAI's error, by field."""

from __future__ import annotations

import base64
import io
import json
import math

import av
import httpx
import numpy as np
import openai
import pytest
import torch

from inference.audio.encode import AudioEncoder
from inference.engine.synthesis_engine import PAUSE_SECONDS
from inference.loader.safetensors import load_model
from inference.synthesis.characters import CharacterTokenizer
from inference.synthesis.pieces import pieces
from tests.openai_spec import assert_valid
from tests.support.inference import inference_service, model_flags
from tests.support.vits import vits_checkpoint

pytestmark = pytest.mark.live

TEXT = "Hello there, how are you? I am fine."


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("tts")
    one, three = vits_checkpoint(root / "one"), vits_checkpoint(root / "three", speakers=3, seed=2)
    with inference_service(*model_flags(f"voice={one}:tts", f"voices={three}:tts")) as url:
        yield url, {"voice": one, "voices": three}


@pytest.fixture
def client(served):
    return openai.OpenAI(base_url=f"{served[0]}/v1", api_key="unused", max_retries=0)


def expected_pcm(directory, text: str, seed: int, speaker: int = 0) -> bytes:
    """What the service should answer, made here: each piece synthesized whole with the request's generator, a
    pause after each but the last, encoded as 24 kHz 16-bit PCM. (The service vocodes a stretch at a time: the
    same samples to float rounding, test_vits.py; so its 16-bit samples may be a step apart: ``same_pcm``.)"""
    model, tokenizer = load_model(directory), CharacterTokenizer.from_dir(directory)
    generator = torch.Generator().manual_seed(seed)
    parts = []
    said = [p for p in (tokenizer.encode(piece) for piece in pieces(text)) if p]
    for i, ids in enumerate(said):
        parts.append(model.synthesize(ids, speaker, 1.0, generator).numpy())
        if i < len(said) - 1:
            parts.append(np.zeros(round(PAUSE_SECONDS * 16000), np.float32))
    encoder = AudioEncoder("pcm", 16000)
    return encoder.feed(np.concatenate(parts)) + encoder.finish()


def same_pcm(a: bytes, b: bytes) -> bool:
    """The same 16-bit samples, each within one step (the rounding of a float a hair apart)."""
    x, y = np.frombuffer(a, "<i2").astype(int), np.frombuffer(b, "<i2").astype(int)
    return x.shape == y.shape and len(x) > 0 and int(np.abs(x - y).max()) <= 1


def decoded(data: bytes) -> tuple[int, float]:
    """(sample rate, seconds) of an audio file, by PyAV."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(stream))
        assert stream.codec_context.layout.nb_channels == 1
        return stream.rate, samples / stream.rate


def test_every_format_is_the_models_audio_at_24_khz(client, served):
    pcm = client.audio.speech.create(model="voice", voice="alloy", input=TEXT, response_format="pcm",
                                     extra_body={"seed": 5}).content  # fmt: skip
    assert same_pcm(pcm, expected_pcm(served[1]["voice"], TEXT, seed=5))
    seconds = len(pcm) / 2 / 24000
    wav = client.audio.speech.create(model="voice", voice="alloy", input=TEXT, response_format="wav",
                                     extra_body={"seed": 5}).content  # fmt: skip
    assert wav[:4] == b"RIFF" and wav[8:16] == b"WAVEfmt " and wav[44:] == pcm  # the header, then the same samples
    for fmt in ("mp3", "opus", "aac", "flac", "wav"):
        data = client.audio.speech.create(model="voice", voice="nova", input=TEXT, response_format=fmt,
                                          extra_body={"seed": 5}).content  # fmt: skip
        rate, length = decoded(data)
        assert rate == (48000 if fmt == "opus" else 24000), fmt  # Opus always decodes at 48 kHz
        assert abs(length - seconds) < 0.1, (fmt, length, seconds)  # the encoders' priming and padding aside
    default = client.audio.speech.create(model="voice", voice="alloy", input=TEXT, extra_body={"seed": 5})
    assert default.response.headers["content-type"] == "audio/mpeg" and decoded(default.content)[0] == 24000


def test_streamed_audio_is_the_same_audio_and_a_seed_repeats_it(client, served):
    with client.audio.speech.with_streaming_response.create(
        model="voice", voice="alloy", input=TEXT, response_format="pcm", extra_body={"seed": 9}
    ) as response:
        assert response.headers["x-input-tokens"] == str(len(TEXT))  # characters, as OpenAI bills speech
        streamed = b"".join(response.iter_bytes())
    assert same_pcm(streamed, expected_pcm(served[1]["voice"], TEXT, seed=9))
    again = client.audio.speech.create(model="voice", voice="alloy", input=TEXT, response_format="pcm",
                                       extra_body={"seed": 9}).content  # fmt: skip
    other = client.audio.speech.create(model="voice", voice="alloy", input=TEXT, response_format="pcm",
                                       extra_body={"seed": 10}).content  # fmt: skip
    assert again == streamed and other != streamed
    unseeded = [client.audio.speech.create(model="voice", voice="alloy", input=TEXT, response_format="pcm").content
                for _ in range(2)]  # fmt: skip
    assert unseeded[0] != unseeded[1]  # without a seed, each request draws its own noise


def test_sse_sends_openais_events_adding_up_to_the_audio(client, served):
    response = client.audio.speech.create(model="voice", voice="alloy", input=TEXT, response_format="pcm",
                                          stream_format="sse", extra_body={"seed": 5})  # fmt: skip
    assert response.response.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")]
    deltas, done = events[:-1], events[-1]
    assert len(deltas) >= 2  # a stretch of audio each, of the text's two sentences
    for event in deltas:
        assert_valid("SpeechAudioDeltaEvent", event)
    assert_valid("SpeechAudioDoneEvent", done)
    audio = b"".join(base64.b64decode(e["audio"]) for e in deltas)
    assert audio == client.audio.speech.create(model="voice", voice="alloy", input=TEXT, response_format="pcm",
                                               extra_body={"seed": 5}).content  # fmt: skip
    assert same_pcm(audio, expected_pcm(served[1]["voice"], TEXT, seed=5))
    usage = done["usage"]
    assert usage["input_tokens"] == len(TEXT)
    assert usage["output_tokens"] == math.ceil(len(audio) / 2 / 24000 * 50)  # 50 a second
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]


def test_voices_name_a_models_speakers(client, served):
    def say(voice: str) -> bytes:
        return client.audio.speech.create(model="voices", voice=voice, input="one two", response_format="pcm",
                                          extra_body={"seed": 1}).content  # fmt: skip

    alloy, ash, ballad, echo = say("alloy"), say("ash"), say("ballad"), say("echo")
    assert len({alloy, ash, ballad}) == 3  # three speakers
    assert echo == ash  # OpenAI's fifth voice on three speakers: 4 mod 3, the second
    assert say("speaker_2") == ballad and say("speaker_1") == ash
    assert same_pcm(alloy, expected_pcm(served[1]["voices"], "one two", seed=1, speaker=0))
    custom = client.audio.speech.create(model="voices", voice={"id": "ash"}, input="one two",
                                        response_format="pcm", extra_body={"seed": 1}).content  # fmt: skip
    assert custom == ash
    # a single-speaker model speaks every voice with its one voice
    single = [client.audio.speech.create(model="voice", voice=v, input="one", response_format="pcm",
                                         extra_body={"seed": 1}).content for v in ("alloy", "cedar")]  # fmt: skip
    assert single[0] == single[1]


def test_speed_scales_the_audio_and_instructions_are_accepted(client):
    def seconds(text: str = "one two three", **fields) -> float:
        pcm = client.audio.speech.create(model="voice", voice="alloy", input=text, response_format="pcm",
                                         extra_body={"seed": 2}, **fields).content  # fmt: skip
        return len(pcm) / 2 / 24000

    normal, fast, slow = seconds(), seconds(speed=2.0), seconds(speed=0.5)
    assert fast < 0.7 * normal and slow > 1.5 * normal  # durations scale (each token's rounded up to a frame)
    assert seconds(instructions="Speak cheerfully.") == normal  # as tts-1: accepted, not followed
    assert seconds("?! 123") > 0.5  # digits alone: said as a number (the voice's letters have none)


def test_the_tally_meters_what_was_said(served):
    url = served[0]
    with httpx.Client(base_url=url, timeout=60) as http:
        answer = http.post(
            "/v1/audio/speech",
            headers={"x-usage-id": "tts-usage-1"},
            json={"model": "voice", "voice": "alloy", "input": "Hi there.", "response_format": "pcm"},
        )
        assert answer.status_code == 200
        usage = http.get("/v1/requests/tts-usage-1").json()
    samples = len(answer.content) // 2
    assert usage["prompt_tokens"] == len("Hi there.")
    assert usage["completion_tokens"] == math.ceil(samples / 24000 * 50)


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"voice": "nobody", "input": "hi"}, "voice", "invalid_value"),
        ({"voice": 3, "input": "hi"}, "voice", "invalid_type"),
        ({"voice": "alloy", "input": "hi", "speed": 5}, "speed", "invalid_value"),
        ({"voice": "alloy", "input": "hi", "response_format": "ogg"}, "response_format", "invalid_value"),
        ({"voice": "alloy", "input": "hi", "stream_format": "chunks"}, "stream_format", "invalid_value"),
        ({"voice": "alloy", "input": "x" * 4097}, "input", "string_above_max_length"),
        ({"voice": "alloy", "input": 7}, "input", "invalid_type"),
        ({"voice": "alloy", "input": "?!... ,;"}, "input", "empty_input"),
        ({"voice": "alloy", "input": "hi", "temperature": 1}, "temperature", "unknown_parameter"),
        ({"voice": "alloy", "input": "hi", "seed": -1}, "seed", "invalid_value"),
    ],
)
def test_bad_input_is_openais_error(served, body, param, code):
    answer = httpx.post(f"{served[0]}/v1/audio/speech", json={"model": "voice", **body}, timeout=30)
    assert answer.status_code == 400, answer.text
    assert_valid("ErrorResponse", answer.json())
    error = answer.json()["error"]
    assert (error["param"], error["code"]) == (param, code), error


def test_a_tts_model_is_refused_on_the_text_routes_and_others_here(client):
    with pytest.raises(openai.BadRequestError, match="/v1/audio/speech"):
        client.chat.completions.create(model="voice", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.NotFoundError):
        client.audio.speech.create(model="missing", voice="alloy", input="hi")
