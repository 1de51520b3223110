"""The front door of ``/v1/audio/transcriptions`` and ``/translations``: a multipart form parsed once into a
``SpeechRequest`` (OpenAI's field names in every error), the upload decoded to samples and features."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.datastructures import FormData, UploadFile

from inference.errors import RequestError
from inference.server.limits import MAX_AUDIO_BYTES, RESPONSE_FORMATS
from inference.server.registry import LoadedModel
from inference.speech.transcription import SpeechOptions

GRANULARITIES = ("segment", "word")
# OpenAI's fields, and vLLM's two stream options (a gateway asks for running usage to meter an aborted stream)
_FIELDS = {"file", "model", "language", "prompt", "response_format", "temperature", "timestamp_granularities[]",
           "timestamp_granularities", "stream", "seed", "chunking_strategy", "stream_include_usage",
           "stream_continuous_usage_stats", "include[]", "include"}  # fmt: skip


@dataclass(frozen=True)
class SpeechRequest:
    data: bytes
    options: SpeechOptions
    response_format: str
    stream: bool
    granularities: tuple[str, ...]
    running_usage: bool = False  # vLLM's stream_continuous_usage_stats: usage in every delta (the hub meters by it)
    logprobs: bool = False  # include[]=logprobs: each text token's log-probability in the answer (json only)


def _text(form: FormData, name: str) -> str | None:
    value = form.get(name)
    if value is None:
        return None
    if isinstance(value, UploadFile):
        raise RequestError(f"'{name}' must be a text field, not a file.", param=name)
    return value


def _flag(form: FormData, name: str) -> bool:
    value = (_text(form, name) or "false").strip().lower()
    if value not in ("true", "false", "1", "0"):
        raise RequestError(f"'{name}' must be true or false.", param=name, code="invalid_type")
    return value in ("true", "1")


def _not_auto() -> RequestError:
    return RequestError("'chunking_strategy' must be 'auto': Whisper's own 30 s windows cut the audio (a server_vad "
                        "object is not supported).", param="chunking_strategy")  # fmt: skip


async def parse_speech(form: FormData, model: LoadedModel, task: str) -> SpeechRequest:
    if model.kind != "audio":
        raise RequestError(f"The model '{model.id}' does not transcribe audio (its kind is {model.kind}).",
                           param="model", code="model_not_supported")  # fmt: skip
    if any(key.startswith("chunking_strategy[") for key in form.keys()):  # an object, as the SDK sends server_vad
        raise _not_auto()
    unknown = sorted(set(form.keys()) - _FIELDS)
    if unknown:
        raise RequestError(f"Unrecognized request argument supplied: {unknown[0]}", param=unknown[0],
                           code="unknown_parameter")  # fmt: skip
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise RequestError("Send the audio as the form's 'file' field (a file upload).", param="file")
    data = await upload.read(MAX_AUDIO_BYTES + 1)
    if len(data) > MAX_AUDIO_BYTES:
        raise RequestError(f"The audio file is larger than {MAX_AUDIO_BYTES // (1024 * 1024)} MB.", param="file",
                           code="file_too_large", status=413)  # fmt: skip
    response_format = _text(form, "response_format") or "json"
    if response_format not in RESPONSE_FORMATS:
        raise RequestError(f"'response_format' must be one of {', '.join(RESPONSE_FORMATS)}, got "
                           f"{response_format!r}.", param="response_format")  # fmt: skip
    raw_temperature = _text(form, "temperature") or "0"
    try:
        temperature = float(raw_temperature)
    except ValueError:
        raise RequestError("'temperature' must be a number.", param="temperature", code="invalid_type") from None
    if not 0.0 <= temperature <= 1.0:
        raise RequestError("'temperature' must be between 0 and 1.", param="temperature")
    language = _text(form, "language")
    code = None
    if language:
        code = model.speech.vocab.language_code(language)
        if code is None:
            raise RequestError(f"Language {language!r} is not supported by this model (give an ISO-639-1 code such "
                               "as 'en' or 'de').", param="language", code="unsupported_language")  # fmt: skip
    granularities = tuple(form.getlist("timestamp_granularities[]") or form.getlist("timestamp_granularities"))
    for g in granularities:
        if g not in GRANULARITIES:
            raise RequestError(f"'timestamp_granularities' items must be 'segment' or 'word', got {g!r}.",
                               param="timestamp_granularities")  # fmt: skip
    if granularities and response_format != "verbose_json":
        raise RequestError("'timestamp_granularities' needs response_format 'verbose_json'.",
                           param="timestamp_granularities")  # fmt: skip
    logprobs = _included(form, task, response_format)
    if (_text(form, "chunking_strategy") or "auto") != "auto":
        raise _not_auto()
    stream = _flag(form, "stream")
    if stream and response_format not in ("json", "text"):
        raise RequestError("Streaming is available with response_format 'json' or 'text'.", param="stream")
    seed = _text(form, "seed")
    if seed is not None and not seed.strip().lstrip("-").isdigit():
        raise RequestError("'seed' must be an integer.", param="seed", code="invalid_type")
    options = SpeechOptions(task=task, language=code, temperature=temperature, prompt=_text(form, "prompt"),
                            seed=int(seed) if seed is not None else None,
                            word_timestamps="word" in granularities)  # fmt: skip
    _flag(form, "stream_include_usage")  # checked only: the done event always carries the usage, as OpenAI's
    running = _flag(form, "stream_continuous_usage_stats")
    return SpeechRequest(data, options, response_format, stream, granularities, running, logprobs)


def _included(form: FormData, task: str, response_format: str) -> bool:
    """``include[]``: OpenAI's one value, ``logprobs``, on a transcription answered in ``json``."""
    included = form.getlist("include[]") or form.getlist("include")
    for value in included:
        if value != "logprobs":
            raise RequestError(f"'include' items must be 'logprobs', got {value!r}.", param="include[]")
    if not included:
        return False
    if task == "translate":
        raise RequestError("Translations take no 'include'.", param="include[]", code="unsupported_parameter")
    if response_format != "json":
        raise RequestError("'include[]=logprobs' needs response_format 'json'.", param="include[]")
    return True
