"""POST /v1/audio/transcriptions and /v1/audio/translations: an upload decoded off the event loop, transcribed by
the model's speech engine, answered in the asked format (json, text, srt, vtt, verbose_json) or streamed as
OpenAI streams transcriptions (``transcript.text.delta`` events, then ``transcript.text.done`` with the usage)."""

from __future__ import annotations

import asyncio
import math
import string

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from inference.audio.decode import SAMPLE_RATE, decode_audio
from inference.audio.features import padded_log_mel
from inference.env import env_float
from inference.server.errors import ServiceError, check_reservation
from inference.server.speech_request import SpeechRequest, parse_speech
from inference.server.streams import ClientGone, counted_sse, deltas, new_id, sse, wait_disconnect
from inference.server.tally import Tally, tally_of
from inference.speech.transcription import Segment, Transcription
from inference.speech.vocab import LANGUAGES, WhisperVocab

PUNCTUATION = string.punctuation + "。，！？：、“”‘’«»¿¡…—"
AUDIO_TOKENS_PER_SECOND = 50  # Whisper's encoder positions: 1500 per 30 s window (the usage's audio tokens)


def max_audio_seconds() -> float:
    return env_float("INFERENCE_MAX_AUDIO_SECONDS", 1500.0, min_value=1.0)


def usage_seconds(duration: float) -> int:
    """Seconds as OpenAI bills them: whole seconds, rounded up."""
    return max(1, math.ceil(duration - 1e-9))


def audio_tokens(duration: float) -> int:
    """The audio as prompt tokens: what a gateway reserves and meters (budgets and TPM count these)."""
    return math.ceil(duration * AUDIO_TOKENS_PER_SECOND)


def usage_headers(job: Transcription) -> dict[str, str]:
    """What a gateway meters: the exact duration, the audio's tokens and (once known) the sampled tokens."""
    headers = {"x-audio-duration": f"{job.duration:.3f}", "x-audio-tokens": str(audio_tokens(job.duration))}
    if job.done:
        headers["x-output-tokens"] = str(job.sampled_tokens)
    return headers


def _stream_usage(job: Transcription, sampled: int) -> dict:
    tokens = audio_tokens(job.duration)
    return {"type": "tokens", "input_tokens": tokens, "output_tokens": sampled, "total_tokens": tokens + sampled,
            "input_token_details": {"audio_tokens": tokens, "text_tokens": 0},
            "seconds": usage_seconds(job.duration)}  # fmt: skip


async def _job(request: Request, task: str) -> tuple[object, SpeechRequest, Transcription]:
    if "multipart/form-data" not in request.headers.get("content-type", ""):
        raise ServiceError("Send the audio as multipart/form-data (a 'file' field and a 'model' field).", status=415)
    try:
        form = await request.form(max_files=1, max_fields=32)
    except HTTPException as exc:  # a malformed multipart body
        raise ServiceError(f"The multipart form could not be read ({exc.detail}).") from None
    model = request.app.state.registry.get(form.get("model"))
    parsed = await parse_speech(form, model, task)
    samples = await run_in_threadpool(decode_audio, parsed.data, max_audio_seconds())
    # before anything runs on the audio, as the text routes check their prompts
    check_reservation(request.headers, audio_tokens(len(samples) / SAMPLE_RATE))
    features = await run_in_threadpool(padded_log_mel, samples, model.speech.n_mels)
    return model, parsed, Transcription(features, len(samples), model.speech.vocab, parsed.options)


def _timestamp(seconds: float, separator: str) -> str:
    ms = round(seconds * 1000)
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{separator}{ms:03d}"


def _srt(segments: list[Segment]) -> str:
    return "\n".join(f"{i}\n{_timestamp(s.start, ',')} --> {_timestamp(s.end, ',')}\n{s.text.strip()}\n"
                     for i, s in enumerate(segments, 1))  # fmt: skip


def _vtt(segments: list[Segment]) -> str:
    cues = "".join(f"{_timestamp(s.start, '.')} --> {_timestamp(s.end, '.')}\n{s.text.strip()}\n\n" for s in segments)
    return f"WEBVTT\n\n{cues}"


def _segment(s: Segment) -> dict:
    return {"id": s.id, "seek": s.seek, "start": s.start, "end": s.end, "text": s.text, "tokens": s.tokens,
            "temperature": s.temperature, "avg_logprob": s.avg_logprob, "compression_ratio": s.compression_ratio,
            "no_speech_prob": s.no_speech_prob}  # fmt: skip


def _words(segments: list[Segment]) -> list[dict]:
    """OpenAI's ``words``: each word without its spaces and the punctuation around it (``"volleyball"``, not
    ``" volleyball."``); a word that is punctuation alone is left out."""
    out = []
    for segment in segments:
        for w in segment.words:
            text = w.word.strip().strip(PUNCTUATION)
            if text:
                out.append({"word": text, "start": w.start, "end": w.end})
    return out


def _logprobs(segments: list[Segment], vocab: WhisperVocab) -> list[dict]:
    """OpenAI's ``logprobs`` of a transcription: each text token (timestamps left out) with its bytes."""
    out = []
    for segment in segments:
        for token, logprob in zip(segment.tokens, segment.logprobs, strict=True):
            if token < vocab.eot:
                raw = vocab.token_bytes(token)
                out.append({"token": raw.decode("utf-8", errors="replace"), "logprob": logprob, "bytes": list(raw)})
    return out


def answer(job: Transcription, parsed: SpeechRequest) -> Response:
    """The finished transcription in the asked format; usage in seconds (and in ``usage_headers`` for every format)."""
    headers = usage_headers(job)
    usage = {"type": "duration", "seconds": usage_seconds(job.duration)}
    fmt = parsed.response_format
    if fmt == "json":
        body = {"text": job.text, "usage": usage}
        if parsed.logprobs:
            body["logprobs"] = _logprobs(job.segments, job.vocab)
        return JSONResponse(body, headers=headers)
    if fmt == "verbose_json":
        body = {"task": job.options.task, "language": LANGUAGES.get(job.language, job.language),
                "duration": round(job.duration, 2), "text": job.text}  # fmt: skip
        if "word" not in parsed.granularities or "segment" in parsed.granularities:  # as OpenAI's: segments unless
            body["segments"] = [_segment(s) for s in job.segments]  # only words were asked for
        if "word" in parsed.granularities:
            body["words"] = _words(job.segments)
        body["usage"] = usage
        return JSONResponse(body, headers=headers)
    text = {"text": job.text + "\n", "srt": _srt(job.segments), "vtt": _vtt(job.segments)}[fmt]
    return PlainTextResponse(text, headers=headers)


async def _events(model, job: Transcription, parsed: SpeechRequest, request_id: str, queue, metrics, tally: Tally):
    """OpenAI's transcription events: a delta per segment as each window is accepted, then the whole text.
    With ``running_usage`` every delta carries the usage so far (a gateway meters an aborted stream by it)."""
    sampled, first = 0, True
    async for out in deltas(model, request_id, queue, 1, metrics):
        sampled += out.sampled_tokens
        tally.output(request_id, 0, sampled)
        for segment in out.segments:
            text = segment.text.lstrip() if first else segment.text
            first = False
            event = {"type": "transcript.text.delta", "delta": text}
            if parsed.logprobs:
                event["logprobs"] = _logprobs([segment], job.vocab)
            if parsed.running_usage:
                event["usage"] = _stream_usage(job, sampled)
            yield sse(event)
    done = {"type": "transcript.text.done", "text": job.text, "usage": _stream_usage(job, sampled)}
    if parsed.logprobs:
        done["logprobs"] = _logprobs(job.segments, job.vocab)
    yield sse(done)
    yield sse("[DONE]")


async def _run(request: Request, task: str) -> Response:
    model, parsed, job = await _job(request, task)
    request_id = new_id("trsc")
    queue = model.worker.submit(request_id, job)
    tally = tally_of(request)
    tally.prompt(audio_tokens(job.duration), job.duration)
    metrics = request.app.state.metrics
    if parsed.stream:
        events = _events(model, job, parsed, request_id, queue, metrics, tally)
        return StreamingResponse(counted_sse(events, metrics, model.id, "audio"), media_type="text/event-stream",
                                 headers=usage_headers(job))  # fmt: skip
    disconnected = asyncio.ensure_future(wait_disconnect(request.receive))
    sampled = 0
    try:
        async for out in deltas(model, request_id, queue, 1, metrics, disconnected):
            sampled += out.sampled_tokens
            tally.output(request_id, 0, sampled)
    except ClientGone:
        metrics.requests.labels(model.id, "audio", "aborted").inc()
        raise
    finally:
        disconnected.cancel()
    metrics.requests.labels(model.id, "audio", "ok").inc()
    return answer(job, parsed)


async def transcriptions(request: Request) -> Response:
    return await _run(request, "transcribe")


async def translations(request: Request) -> Response:
    return await _run(request, "translate")
