"""Speech-to-text through the live hub with the OpenAI SDK, on the packaged Whisper base: every response format,
streaming, translation, a two-minute recording (long form), several uploads at once, every bad upload, the
entitlement, and usage rows that record each request's audio duration (and its aborted streams)."""

from __future__ import annotations

import io
import math
import threading
import wave

import httpx
import numpy as np
import openai
import pytest

from accounts import services
from accounts.limits import Limits
from accounts.models import UsageRecord
from hub.api.ratelimit import AUDIO_BYTES_PER_SECOND, AUDIO_TOKENS_PER_SECOND, AUDIO_WINDOW_TOKENS
from tests.openai_spec import assert_valid
from tests.support import speech
from tests.support.live import CHAT, EMBED, MAX_AUDIO_SECONDS, WHISPER, barrier, rows

pytestmark = [
    pytest.mark.real_model,
    pytest.mark.live,
    pytest.mark.django_db(transaction=True),
    pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning"),  # the SDK marks translations.create so
]

# Our form field, sent where answers are compared: greedy decoding of a window under Whisper's log-probability
# threshold falls back to a temperature-0.2 draw, which unseeded follows the service's earlier requests.
SEED = {"seed": 0}


@pytest.fixture(scope="module")
def audio(tmp_path_factory):
    """The recordings: an English and a German sentence, and two minutes of English sentences with pauses."""
    root = tmp_path_factory.mktemp("speech")
    english = speech.speak(speech.ENGLISH[0], "en", root / "en.wav")
    german = speech.speak(speech.GERMAN[1], "de", root / "de.wav")
    pause = np.zeros(16000, dtype=np.float32)
    spoken = [speech.samples(speech.speak(s, "en", root / f"s{i}.wav")) for i, s in enumerate(speech.ENGLISH)]
    pieces, texts, seconds = [], [], 0.0
    while seconds < 120:
        i = len(texts) % len(spoken)
        pieces += [spoken[i], pause]
        texts.append(speech.ENGLISH[i])
        seconds += (len(spoken[i]) + len(pause)) / 16000
    long = speech.encode(np.concatenate(pieces), "flac", root / "long.flac")
    short = speech.encode(np.concatenate(pieces[: 2 * len(spoken)]), "ogg", root / "four.ogg")  # Opus: few bytes
    return {"en": english, "de": german, "long": long, "long_text": " ".join(texts), "long_seconds": seconds,
            "four": short}  # fmt: skip


def _upload(path):
    return path.name, path.read_bytes()


def _duration(path) -> float:
    return len(speech.samples(path)) / 16000


def _row(request_id: str) -> UsageRecord:
    found = rows(request_id=request_id)
    assert len(found) == 1, f"no single usage row for {request_id}"
    return found[0]


def test_every_response_format_is_relayed_and_metered_by_the_second(hub, audio):
    client, english, text = hub(), audio["en"], speech.ENGLISH[0]
    seconds = _duration(english)
    # each seeded (SEED), as their texts are compared
    raw = client.audio.transcriptions.with_raw_response.create(model=WHISPER, file=_upload(english), extra_body=SEED)
    plain = raw.parse()
    assert speech.word_error_rate(text, plain.text) <= 0.1 and plain.text == plain.text.strip()
    assert plain.usage.type == "duration" and plain.usage.seconds == math.ceil(seconds)
    row = _row(raw.headers["x-request-id"])
    assert row.route == "audio/transcriptions" and row.model == WHISPER and row.status_code == 200
    assert abs(row.audio_seconds - seconds) < 1e-3 and row.prompt_tokens == math.ceil(seconds * 50)
    assert row.completion_tokens > 0 and row.total_tokens == row.prompt_tokens + row.completion_tokens

    verbose = client.audio.transcriptions.create(
        model=WHISPER,
        file=_upload(english),
        response_format="verbose_json",
        timestamp_granularities=["segment"],
        extra_body=SEED,
    )
    assert verbose.language == "english" and verbose.text == plain.text and abs(verbose.duration - seconds) < 0.01
    assert verbose.segments and verbose.segments[0].start == 0.0 and verbose.segments[-1].end <= verbose.duration
    as_text = client.audio.transcriptions.with_raw_response.create(
        model=WHISPER, file=_upload(english), response_format="text", extra_body=SEED
    )
    assert as_text.headers["content-type"].startswith("text/plain") and as_text.parse().strip() == plain.text
    assert abs(_row(as_text.headers["x-request-id"]).audio_seconds - seconds) < 1e-3  # metered from the headers
    srt = client.audio.transcriptions.create(model=WHISPER, file=_upload(english), response_format="srt")
    assert srt.startswith("1\n00:00:00,000 --> 00:00:0") and plain.text.split()[0] in srt
    vtt = hub(base="v2").audio.transcriptions.create(model=WHISPER, file=_upload(english), response_format="vtt")
    assert vtt.startswith("WEBVTT\n\n00:00:00.000 --> ")

    barrier(hub)  # every row written; the usage API shows them as OpenAI's audio_transcriptions results
    metered = UsageRecord.objects.filter(tenant=hub.tenant, route__startswith="audio/")
    page = httpx.get(f"{hub.url}/v1/usage", params={"group_by": "model"},
                     headers={"Authorization": f"Bearer {hub.everything.secret}"}).json()  # fmt: skip
    results = [r for b in page["data"] for r in b["results"] if r["model"] == WHISPER]
    assert [r["object"] for r in results] == ["organization.usage.audio_transcriptions.result"]
    assert results[0]["num_model_requests"] == metered.count() == 5
    assert results[0]["seconds"] == round(sum(r.audio_seconds for r in metered), 3)
    assert abs(results[0]["seconds"] - 5 * round(seconds, 3)) < 1e-6  # each row: the duration to the millisecond


def test_a_stream_ends_with_the_text_and_usage_and_its_row_counts_the_same(hub, audio):
    english = audio["en"]
    request_id = "req_speech_stream_1"
    stream = hub().audio.transcriptions.create(
        model=WHISPER, file=_upload(english), stream=True, extra_headers={"x-request-id": request_id}
    )
    events = list(stream)
    deltas = [e.delta for e in events if e.type == "transcript.text.delta"]
    done = [e for e in events if e.type == "transcript.text.done"]
    assert len(done) == 1 and deltas and "".join(deltas).strip() == done[0].text
    assert all(getattr(e, "usage", None) is None for e in events if e.type == "transcript.text.delta")  # not asked
    row = _row(request_id)
    assert row.streamed and not row.aborted and row.time_to_first_token_ms is not None
    assert row.prompt_tokens == done[0].usage.input_tokens == math.ceil(_duration(english) * 50)
    assert row.completion_tokens == done[0].usage.output_tokens > 0
    assert abs(row.audio_seconds - _duration(english)) < 1e-3


def test_log_probabilities_whole_and_streamed(hub, audio):
    """``include[]=logprobs``: each text token with its log-probability and bytes, which together are the text;
    the stream's deltas carry their tokens' and the done event all of them, the same as the whole answer's
    (greedy); OpenAI's schemas hold."""
    client = hub()
    whole = client.audio.transcriptions.with_raw_response.create(
        model=WHISPER, file=_upload(audio["en"]), include=["logprobs"], response_format="json"
    ).http_response.json()
    assert_valid("CreateTranscriptionResponseJson", whole)
    entries = whole["logprobs"]
    assert len(entries) > 5 and all(e["logprob"] <= 0 for e in entries)
    assert b"".join(bytes(e["bytes"]) for e in entries).decode().strip() == whole["text"]
    assert all(e["token"] == bytes(e["bytes"]).decode() for e in entries if bytes(e["bytes"]).isascii())
    events = list(client.audio.transcriptions.create(model=WHISPER, file=_upload(audio["en"]), stream=True,
                                                     include=["logprobs"]))  # fmt: skip
    deltas = [e for e in events if e.type == "transcript.text.delta"]
    [done] = [e for e in events if e.type == "transcript.text.done"]
    streamed = [lp.model_dump() for e in deltas for lp in e.logprobs]
    assert streamed == [lp.model_dump() for lp in done.logprobs] == entries
    plain = client.audio.transcriptions.with_raw_response.create(model=WHISPER, file=_upload(audio["en"]))
    assert "logprobs" not in plain.http_response.json()  # only when asked


def test_word_timestamps_as_openai_answers_them(hub, audio):
    """``timestamp_granularities=["word"]``: ``words`` without segments, as OpenAI's example; with both, both, the
    words inside their segments; each word without spaces or punctuation, in order, within the recording, the
    text word for word; OpenAI's schema holds."""
    client = hub()
    words_only = client.audio.transcriptions.with_raw_response.create(
        model=WHISPER, file=_upload(audio["four"]), response_format="verbose_json", timestamp_granularities=["word"],
        language="en", extra_body=SEED,
    ).http_response.json()  # fmt: skip
    assert_valid("CreateTranscriptionResponseVerboseJson", words_only)
    assert "segments" not in words_only
    words = words_only["words"]
    assert [w["word"] for w in words] == speech.words(words_only["text"]), words
    assert all(w["word"] == w["word"].strip(".,!?;: ") for w in words)
    assert all(a["start"] <= a["end"] <= b["start"] <= b["end"] for a, b in zip(words, words[1:], strict=False))
    assert 0 <= words[0]["start"] and words[-1]["end"] <= words_only["duration"]
    assert speech.word_error_rate(" ".join(speech.ENGLISH), words_only["text"]) <= 0.1
    both = client.audio.transcriptions.create(
        model=WHISPER, file=_upload(audio["four"]), response_format="verbose_json",
        timestamp_granularities=["word", "segment"], language="en", extra_body=SEED,
    )  # fmt: skip
    assert [w.model_dump() for w in both.words] == words and len(both.segments) >= 4
    for segment in both.segments:
        inside = [w for w in words if segment.start <= (w["start"] + w["end"]) / 2 <= segment.end]
        assert [w["word"] for w in inside] == speech.words(segment.text), (segment, words)
    segments_only = client.audio.transcriptions.with_raw_response.create(
        model=WHISPER, file=_upload(audio["four"]), response_format="verbose_json", language="en", extra_body=SEED
    ).http_response.json()
    assert "words" not in segments_only and segments_only["text"] == words_only["text"]


def test_translation_and_a_named_language(hub, audio):
    client = hub()
    # seeded: greedy decoding of this clip falls just under Whisper's log-probability threshold (SEED)
    translated = client.audio.translations.with_raw_response.create(
        model=WHISPER, file=_upload(audio["de"]), extra_body=SEED
    )
    assert "train" in translated.parse().text.lower()
    assert _row(translated.headers["x-request-id"]).route == "audio/translations"
    german = client.audio.transcriptions.create(model=WHISPER, file=_upload(audio["de"]), language="de")
    assert speech.word_error_rate(speech.GERMAN[1], german.text) <= 0.3
    with pytest.raises(openai.BadRequestError) as refused:  # OpenAI's translations have no include
        client.audio.translations.create(model=WHISPER, file=_upload(audio["de"]), extra_body={"include[]": "logprobs"})
    assert refused.value.body["param"] == "include[]" and refused.value.body["code"] == "unsupported_parameter"


def test_a_two_minute_recording_is_written_window_after_window(hub, audio):
    raw = hub().audio.transcriptions.with_raw_response.create(
        model=WHISPER, file=_upload(audio["long"]), response_format="verbose_json", language="en"
    )
    result = raw.parse()
    starts = [s.start for s in result.segments]
    assert starts == sorted(starts) and all(s.start < s.end for s in result.segments), starts
    assert result.segments[-1].end > 100 and result.segments[-1].end <= result.duration + 0.01
    assert len({s.seek for s in result.segments}) >= 4  # window after window (a window seeks to its last segment)
    assert speech.word_error_rate(audio["long_text"], result.text) <= 0.15, result.text
    assert abs(_row(raw.headers["x-request-id"]).audio_seconds - audio["long_seconds"]) < 1e-2


def test_several_uploads_at_once_each_get_their_own_text(hub, audio):
    client = hub()
    files = [(audio["en"], speech.ENGLISH[0]), (audio["de"], None)] * 2
    results: list = [None] * len(files)

    def run(i: int) -> None:
        path, _ = files[i]
        results[i] = client.audio.transcriptions.create(model=WHISPER, file=_upload(path), language="en" if i % 2 == 0
                                                        else "de", extra_body=SEED).text  # fmt: skip

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(files))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert results[0] == results[2] and results[1] == results[3], results  # nothing depends on the batch
    assert speech.word_error_rate(speech.ENGLISH[0], results[0]) <= 0.1
    assert speech.word_error_rate(speech.GERMAN[1], results[1]) <= 0.3


def test_an_aborted_stream_is_metered_with_its_audio(hub, audio):
    request_id = "req_speech_abort_1"
    stream = hub().audio.transcriptions.create(
        model=WHISPER, file=_upload(audio["long"]), stream=True, language="en",
        extra_headers={"x-request-id": request_id},
    )  # fmt: skip
    first = next(iter(stream))
    assert first.type == "transcript.text.delta" and first.delta
    stream.close()
    row = _row(request_id)
    assert row.aborted and row.status_code == 499 and abs(row.audio_seconds - audio["long_seconds"]) < 1e-2
    assert row.prompt_tokens == math.ceil(audio["long_seconds"] * 50) and row.completion_tokens > 0


def _silence(seconds: float) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000)
        w.writeframes(b"\0\0" * int(seconds * 8000))
    return out.getvalue()


@pytest.mark.parametrize(
    ("fields", "upload", "status", "param", "code"),
    [
        ({}, None, 400, "model", "missing_model"),
        ({"model": "nope"}, None, 404, "model", "model_not_found"),
        ({"model": CHAT}, None, 400, "model", None),
        ({"model": WHISPER}, ("a.txt", b"just some text"), 400, "file", "unsupported_format"),
        ({"model": WHISPER}, ("a.wav", b""), 400, "file", "empty_file"),
        ({"model": WHISPER}, "truncated", 400, "file", "truncated_file"),
        ({"model": WHISPER}, "too-long", 400, "file", "audio_too_long"),
        ({"model": WHISPER}, "too-large", 413, "file", "file_too_large"),
        ({"model": WHISPER}, "no-file", 400, "file", "missing_required_parameter"),
        ({"model": WHISPER, "stream": "maybe"}, None, 400, "stream", "invalid_type"),
        ({"model": WHISPER, "response_format": "xml"}, None, 400, "response_format", None),
        ({"model": WHISPER, "temperature": "3"}, None, 400, "temperature", None),
        ({"model": WHISPER, "language": "klingon"}, None, 400, "language", "unsupported_language"),
        ({"model": WHISPER, "frobnicate": "1"}, None, 400, "frobnicate", "unknown_parameter"),
        ({"model": WHISPER, "timestamp_granularities[]": "word"}, None, 400, "timestamp_granularities", None),
        ({"model": WHISPER, "timestamp_granularities[]": "sentence", "response_format": "verbose_json"}, None, 400,
         "timestamp_granularities", None),
        ({"model": WHISPER, "include[]": "tokens"}, None, 400, "include[]", None),
        ({"model": WHISPER, "include[]": "logprobs", "response_format": "verbose_json"}, None, 400, "include[]",
         None),
        ({"model": WHISPER, "chunking_strategy": "server_vad"}, None, 400, "chunking_strategy", None),
        # the object, as the OpenAI SDK sends it in a form
        ({"model": WHISPER, "chunking_strategy[type]": "server_vad", "chunking_strategy[threshold]": "0.5"}, None, 400,
         "chunking_strategy", None),
    ],
    ids=["no-model", "unknown-model", "chat-model", "not-audio", "empty", "truncated", "too-long", "too-large",
         "no-file", "stream", "format", "temperature", "language", "unknown-field", "word-json", "sentence", "include",
         "include-verbose", "chunking", "chunking-object"],
)  # fmt: skip
def test_bad_uploads_get_openai_errors_and_no_usage_row(hub, audio, fields, upload, status, param, code):
    english = audio["en"].read_bytes()
    special = {
        "truncated": {"file": ("en.wav", english[: len(english) // 2])},
        "too-long": {"file": ("long.wav", _silence(MAX_AUDIO_SECONDS + 5))},
        "too-large": {"file": ("big.wav", b"\0" * (25 * 1024 * 1024 + 1))},
        "no-file": {"prompt": (None, "a form without its file")},
    }
    files = special[upload] if isinstance(upload, str) else {"file": upload or ("en.wav", english)}
    before = UsageRecord.objects.count()
    response = httpx.post(f"{hub.url}/v1/audio/transcriptions", data=fields, files=files, timeout=120,
                          headers={"Authorization": f"Bearer {hub.everything.secret}"})  # fmt: skip
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["param"] == param, error
    assert code is None or error["code"] == code, error
    barrier(hub)
    assert UsageRecord.objects.count() == before + 1  # the barrier's own row alone


def test_entitlement_and_kinds(hub, audio):
    english = _upload(audio["en"])
    with pytest.raises(openai.NotFoundError) as refused:  # a key without the model does not see it
        hub(key=hub.embed_only).audio.transcriptions.create(model=WHISPER, file=english)
    assert refused.value.body["code"] == "model_not_found"
    with pytest.raises(openai.NotFoundError):  # /vision serves vision models only
        hub(base="vision").audio.transcriptions.create(model=WHISPER, file=english)
    with pytest.raises(openai.BadRequestError) as wrong_route:  # an audio model is for the audio routes only
        hub().chat.completions.create(model=WHISPER, messages=[{"role": "user", "content": "hi"}])
    assert "/audio/transcriptions" in wrong_route.value.body["message"]
    with pytest.raises(openai.BadRequestError) as wrong_model:
        hub().audio.translations.create(model=EMBED, file=english)
    assert "/embeddings" in wrong_model.value.body["message"]
    json_body = httpx.post(f"{hub.url}/v1/audio/transcriptions", json={"model": WHISPER}, timeout=30,
                           headers={"Authorization": f"Bearer {hub.everything.secret}"})  # fmt: skip
    assert json_body.status_code == 415 and json_body.json()["error"]["code"] == "unsupported_media_type"


def test_a_budget_counts_audio_seconds_as_tokens(hub, audio):
    """An Opus file holds more seconds than its bytes suggest: its first reservation is too small, the service
    refuses it before running with the exact count, and the hub reserves that and sends it again. The budget fits
    it; then a sentence's reservation (its audio's tokens and a window of text) no longer fits."""
    four, english = audio["four"], audio["en"]
    seconds, size = _duration(four), four.stat().st_size
    guessed = math.ceil(size / AUDIO_BYTES_PER_SECOND)
    assert guessed < seconds  # the reservation's guess is short: the retry path is taken
    audio_tokens = math.ceil(seconds * AUDIO_TOKENS_PER_SECOND)
    budget = audio_tokens + math.ceil(guessed / 30) * AUDIO_WINDOW_TOKENS + 10
    tenant = services.create_tenant("voice", "Voice")
    services.grant_models(tenant, [WHISPER])
    key = services.issue_key(tenant, name="k")
    services.set_limits(tenant, Limits(budget=budget, budget_period="day"))
    client = openai.OpenAI(base_url=f"{hub.url}/v1", api_key=key.secret, max_retries=0)

    first = client.audio.transcriptions.with_raw_response.create(model=WHISPER, file=_upload(four), language="en")
    assert speech.word_error_rate(" ".join(speech.ENGLISH), first.parse().text) <= 0.15
    row = _row(first.headers["x-request-id"])
    assert row.prompt_tokens == audio_tokens and abs(row.audio_seconds - seconds) < 1e-3 and row.completion_tokens
    with pytest.raises(openai.RateLimitError) as refused:
        client.audio.transcriptions.create(model=WHISPER, file=_upload(english))
    assert refused.value.body["code"] == "insufficient_quota"
    barrier(hub)
    assert UsageRecord.objects.filter(tenant=tenant).count() == 1
