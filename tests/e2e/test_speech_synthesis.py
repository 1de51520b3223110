"""Text to speech through a live hub with the real OpenAI SDK (``client.audio.speech.create``), answered by a
random-weight VITS checkpoint served as ``tts-1`` (kind tts): the audio is the service's own, streamed or not, as
a file or as OpenAI's events; every request is metered (the input's characters, the audio's tokens), also one the
client leaves midway; entitlements and the hub's and the service's refusals are OpenAI's errors; the usage API shows
the characters spoken."""

from __future__ import annotations

import base64
import json
import math

import httpx
import openai
import pytest

from accounts import services
from accounts.models import ModelKind, ServedModel
from hub.inference_client import model_cards
from tests.openai_spec import assert_valid
from tests.support.inference import tts_service
from tests.support.live import hub_clients, rows

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

MODEL = "tts-1"
TEXT = "Hello from the hub. It speaks every sentence in turn."
SAY = {"model": MODEL, "voice": "alloy", "input": TEXT, "response_format": "pcm", "seed": 3}


def audio_tokens(pcm: bytes) -> int:
    return math.ceil(len(pcm) / 2 / 24000 * 50)


@pytest.fixture(scope="module")
def tts_url(tmp_path_factory):
    with tts_service(tmp_path_factory.mktemp("tts"), MODEL) as url:
        yield url


@pytest.fixture
def hub(live_hub, tts_url):
    services.sync_deployment(tts_url, model_cards(tts_url))
    assert ServedModel.objects.get(id=MODEL).kind == ModelKind.TTS
    return hub_clients(live_hub, services.create_tenant("acme", "Acme"), [MODEL], MODEL)


def direct(tts_url: str, **fields) -> bytes:
    answer = httpx.post(f"{tts_url}/audio/speech", json={**SAY, **fields}, timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.content


def test_speech_through_the_hub_is_the_services_audio_and_metered(hub, tts_url):
    client = hub()
    raw = client.audio.speech.with_raw_response.create(model=MODEL, voice="alloy", input=TEXT, response_format="pcm",
                                                       extra_body={"seed": 3})  # fmt: skip
    pcm = raw.content
    assert pcm == direct(tts_url) and raw.headers["content-type"] == "audio/pcm"
    [row] = rows(request_id=raw.headers["x-request-id"])
    assert (row.route, row.model, row.status_code, row.streamed, row.aborted) == ("audio/speech", MODEL, 200,
                                                                                   False, False)  # fmt: skip
    assert (row.prompt_tokens, row.completion_tokens) == (len(TEXT), audio_tokens(pcm))
    # the default format, streamed to a file as the SDK's users do
    with client.audio.speech.with_streaming_response.create(model=MODEL, voice="alloy", input=TEXT,
                                                            extra_body={"seed": 3}) as response:  # fmt: skip
        assert response.headers["content-type"] == "audio/mpeg"
        mp3 = b"".join(response.iter_bytes())
    assert mp3 == direct(tts_url, response_format="mp3")
    usage = client.get("/usage", cast_to=object)
    spoken = [r for day in usage["data"] for r in day["results"] if r["object"].endswith("audio_speeches.result")]
    assert [(r["characters"], r["num_model_requests"]) for r in spoken] == [(2 * len(TEXT), 2)]


def test_sse_events_are_relayed_and_metered_by_their_usage(hub, tts_url):
    client = hub()
    raw = client.audio.speech.with_raw_response.create(model=MODEL, voice="alloy", input=TEXT, response_format="pcm",
                                                       stream_format="sse", extra_body={"seed": 3})  # fmt: skip
    events = [json.loads(line[5:]) for line in raw.text.splitlines() if line.startswith("data:")]
    types = [e["type"] for e in events]
    assert types == ["speech.audio.delta"] * (len(events) - 1) + ["speech.audio.done"] and len(events) >= 3
    assert_valid("SpeechAudioDoneEvent", events[-1])
    audio = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    assert audio == direct(tts_url)  # the deltas add up to the audio
    usage = events[-1]["usage"]
    assert usage["output_tokens"] == audio_tokens(direct(tts_url))
    [row] = rows(request_id=raw.headers["x-request-id"])
    assert row.streamed and (row.prompt_tokens, row.completion_tokens) == (usage["input_tokens"],
                                                                           usage["output_tokens"])  # fmt: skip


def test_a_client_that_leaves_midway_is_metered_for_what_was_said(hub, live_hub, tts_url):
    text = " ".join(["Go on."] * 200)  # 200 sentences: seconds of work that the client does not wait for
    key = hub.everything.secret
    with httpx.stream("POST", f"{live_hub.api('v1')}/audio/speech", headers={"Authorization": f"Bearer {key}"},
                      json={**SAY, "input": text}, timeout=60) as response:  # fmt: skip
        assert response.status_code == 200
        first = next(response.iter_raw())
        request_id = response.headers["x-request-id"]
    assert first
    [row] = rows(request_id=request_id)
    everything = audio_tokens(direct(tts_url, input=text))
    assert row.aborted and row.status_code == 499 and row.prompt_tokens == len(text)
    assert 0 < row.completion_tokens < everything  # what was spoken before it left, not the whole


def test_refusals_are_openais_errors(hub):
    client = hub()
    outsider = hub(key=services.issue_key(services.create_tenant("other", "Other"), name="x"))
    with pytest.raises(openai.NotFoundError):  # not entitled
        outsider.audio.speech.create(model=MODEL, voice="alloy", input="hi")
    cases = [
        ({"voice": "alloy"}, "input", "missing_required_parameter"),  # the hub's checks
        ({"input": "hi", "voice": "alloy", "speed": 9}, "speed", None),
        ({"input": "hi", "voice": "alloy", "response_format": "ogg"}, "response_format", "invalid_value"),
        ({"input": "x" * 4097, "voice": "alloy"}, "input", "string_above_max_length"),
        ({"input": "hi", "voice": "nobody"}, "voice", "invalid_value"),  # the service's, relayed
    ]
    for fields, param, code in cases:
        with pytest.raises(openai.BadRequestError) as caught:
            client.post("/audio/speech", body={"model": MODEL, **fields}, cast_to=object)
        assert caught.value.body["param"] == param, fields
        if code is not None:
            assert caught.value.body["code"] == code, fields
    with pytest.raises(openai.BadRequestError, match="/audio/speech"):
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
