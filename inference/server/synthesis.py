"""POST /v1/audio/speech: OpenAI's text to speech on a VITS model (kind ``tts``). The text is cut into pieces
(``inference/synthesis/pieces.py``, sentences) that the model's engine speaks a stretch of audio at a time; each
stretch is encoded as it comes (``inference/audio/encode.py``) and sent on: the audio file's bytes
(``stream_format`` audio, the default) or OpenAI's ``speech.audio.delta`` events, then ``speech.audio.done`` with
the usage (``stream_format`` sse).

Usage: the input's tokens are its characters (what OpenAI bills text to speech by); the output's are the audio at
50 tokens a second (as a transcription counts its audio). ``x-input-tokens`` is on every answer; the output is
known at the end (the done event, and the service's tally, which the hub reads, also for an aborted stream)."""

from __future__ import annotations

import base64
import math
import os

import torch
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from inference.audio.encode import FORMATS, MEDIA_TYPES, AudioEncoder
from inference.engine.synthesis_engine import Utterance
from inference.errors import RequestError
from inference.server.errors import ServiceError, check_reservation
from inference.server.registry import LoadedModel
from inference.server.speech import AUDIO_TOKENS_PER_SECOND  # audio counts alike, heard or spoken
from inference.server.streams import deltas, new_id, sse
from inference.server.tally import tally_of
from inference.synthesis.pieces import pieces

MAX_INPUT_CHARACTERS = 4096  # OpenAI's
# OpenAI's voices, in its documented order: on a model of several speakers, the n-th names speaker n (mod the count)
VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer", "verse", "marin",
          "cedar")  # fmt: skip
_FIELDS = {"model", "input", "voice", "instructions", "response_format", "speed", "stream_format", "seed"}


def audio_tokens(samples: int, rate: int) -> int:
    return math.ceil(samples / rate * AUDIO_TOKENS_PER_SECOND)


def _voice(body: dict, model: LoadedModel) -> int:
    """The speaker index of ``voice``: OpenAI's names, a custom voice's ``{"id": ...}`` naming one of them, or
    ``speaker_<n>`` for a model's n-th speaker."""
    voice = body.get("voice")
    if isinstance(voice, dict) and set(voice) == {"id"}:
        voice = voice["id"]
    if not isinstance(voice, str) or not voice:
        raise RequestError("'voice' must be a voice's name (alloy, ash, ...).", param="voice", code="invalid_type")
    speakers = model.engine.model.config.num_speakers
    if voice.startswith("speaker_") and voice[8:].isdigit() and int(voice[8:]) < speakers:
        return int(voice[8:])
    if voice not in VOICES:
        more = f" or speaker_0 .. speaker_{speakers - 1}" if speakers > 1 else ""
        raise RequestError(f"Invalid value for 'voice': {voice[:64]!r}. Supported: {', '.join(VOICES)}{more}.",
                           param="voice", code="invalid_value")  # fmt: skip
    return VOICES.index(voice) % speakers


def parse(body: dict, model: LoadedModel) -> tuple[Utterance, str, str]:
    """The request → (its utterance, response_format, stream_format); OpenAI's errors, by field. The utterance's
    ``input_tokens`` are the input's characters."""
    if model.kind != "tts":
        raise RequestError(f"The model '{model.id}' does not speak (its kind is {model.kind}).", param="model",
                           code="model_not_supported")  # fmt: skip
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise RequestError(f"Unrecognized request argument supplied: {unknown[0]}", param=unknown[0],
                           code="unknown_parameter")  # fmt: skip
    text = body.get("input")
    if not isinstance(text, str):
        raise RequestError("'input' must be a string.", param="input", code="invalid_type")
    if len(text) > MAX_INPUT_CHARACTERS:
        raise RequestError(f"'input' is {len(text)} characters; the most is {MAX_INPUT_CHARACTERS}.", param="input",
                           code="string_above_max_length")  # fmt: skip
    speaker = _voice(body, model)
    response_format = body.get("response_format", "mp3")
    if response_format not in FORMATS:
        raise RequestError(f"'response_format' must be one of {', '.join(FORMATS)}.", param="response_format",
                           code="invalid_value")  # fmt: skip
    stream_format = body.get("stream_format", "audio")
    if stream_format not in ("audio", "sse"):
        raise RequestError("'stream_format' must be audio or sse.", param="stream_format", code="invalid_value")
    speed = body.get("speed", 1.0)
    if isinstance(speed, bool) or not isinstance(speed, int | float) or not 0.25 <= speed <= 4.0:
        raise RequestError("'speed' must be a number from 0.25 to 4.0.", param="speed", code="invalid_value")
    if body.get("instructions") is not None and not isinstance(body["instructions"], str):
        raise RequestError("'instructions' must be a string.", param="instructions", code="invalid_type")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63):
        raise RequestError("'seed' must be a non-negative integer.", param="seed", code="invalid_value")
    ids = [model.tokenizer.encode(piece) for piece in pieces(text)]
    ids = [piece for piece in ids if piece]
    if not ids:
        raise RequestError("'input' has nothing this voice can say (no letters it reads).", param="input",
                           code="empty_input")  # fmt: skip
    generator = torch.Generator().manual_seed(seed if seed is not None else int.from_bytes(os.urandom(8)) >> 1)
    rate = model.engine.model.config.speaking_rate * float(speed)
    return Utterance(ids, speaker, rate, generator, characters=len(text)), response_format, stream_format


async def speech(request: Request, body: dict) -> Response:
    model = request.app.state.registry.get(body.get("model"))
    utterance, response_format, stream_format = parse(body, model)
    input_tokens = utterance.characters
    check_reservation(request.headers, input_tokens)
    request_id = new_id("speech")
    queue = model.worker.submit(request_id, utterance)
    tally, metrics = tally_of(request), request.app.state.metrics
    tally.prompt(input_tokens)
    encoder = AudioEncoder(response_format, model.engine.rate)
    outputs = deltas(model, request_id, queue, 1, metrics)
    try:  # the first stretch before the answer starts: a failure is still an error answer, not a cut-off file
        first = await anext(outputs)
    except BaseException:
        metrics.requests.labels(model.id, "tts", "error").inc()
        await outputs.aclose()
        raise

    async def in_order():
        yield first
        async for out in outputs:
            yield out

    async def audio():
        status, samples = "aborted", 0
        try:
            async for out in in_order():
                samples = out.total_samples
                tally.output(request_id, 0, audio_tokens(samples, model.engine.rate))
                data = await run_in_threadpool(encoder.feed, out.samples)
                if out.finish_reason:
                    data += await run_in_threadpool(encoder.finish)
                if stream_format == "audio":
                    yield data
                elif data:
                    yield sse({"type": "speech.audio.delta", "audio": base64.b64encode(data).decode()})
            if stream_format == "sse":
                output = audio_tokens(samples, model.engine.rate)
                yield sse({"type": "speech.audio.done", "usage": {"input_tokens": input_tokens,
                           "output_tokens": output, "total_tokens": input_tokens + output}})  # fmt: skip
            status = "ok"
        except ServiceError as error:  # a later stretch failed: an sse stream says so; an audio file just ends
            status = "error"
            if stream_format == "sse":
                yield sse(error.body())
        finally:
            await outputs.aclose()
            metrics.requests.labels(model.id, "tts", status).inc()

    media_type = MEDIA_TYPES[response_format] if stream_format == "audio" else "text/event-stream"
    return StreamingResponse(audio(), media_type=media_type, headers={"x-input-tokens": str(input_tokens)})
