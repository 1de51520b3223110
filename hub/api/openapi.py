"""The public API's OpenAPI document (drf-spectacular), served at ``/openapi.json``, ``/docs`` and ``/redoc``.

drf-spectacular describes the DRF views (models, usage, stored responses). The generation, audio and
``POST /responses`` routes are a Channels consumer that spectacular cannot see, so a post-processing hook adds
them from ``GENERATION_PATHS``, ``SPEECH_PATHS`` and ``RESPONSES_PATHS``.
Paths are written once, relative to the base URL; the document's ``servers`` are ``/v1``, ``/v2``
and ``/vision``, which serve the same routes.
"""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiResponse

from hub.api.openapi_batches import BATCH_SCHEMAS
from hub.api.openapi_chat_store import CHAT_STORE_SCHEMAS
from hub.api.openapi_compaction import COMPACTION_SCHEMAS
from hub.api.openapi_conversations import CONVERSATION_SCHEMAS
from hub.api.openapi_moderations import MODERATION_SCHEMAS
from hub.api.openapi_rerank import RERANK_SCHEMAS
from hub.api.openapi_responses import RESPONSES_SCHEMAS
from hub.api.openapi_schemas import SCHEMAS, ref
from hub.api.openapi_vector_stores import VECTOR_STORE_SCHEMAS
from hub.api.openapi_webhooks import WEBHOOK_SCHEMAS, webhooks_section
from hub.api.paths import BASE_PATHS

DESCRIPTION = """
OpenAI-compatible API of this LLM Hub. Point the OpenAI SDK (or LangChain, LlamaIndex) at
`<hub>/v1` (or `/v2`; `/vision` lists and serves only vision models) with an API key issued by
your tenant's owner. Every call needs `Authorization: Bearer <key>`; a key sees only the models
it is entitled to. Errors are OpenAI's error object. Every response carries `x-request-id`; an answer
given by a model's fallback (its `model` names it) also `x-hub-fallback-from`, the model asked for.
"""


ERROR_TEXT = {
    400: "Invalid request, or `context_length_exceeded` with the numbers.",
    401: "Missing, unknown, revoked or expired API key.",
    404: "`model_not_found`: the model does not exist or the key is not entitled to it.",
    413: "Request body too large (`file_too_large`: an audio upload over `HUB_MAX_AUDIO_BYTES`, 25 MB by default, "
    "or a file over `HUB_MAX_FILE_BYTES`, 200 MB).",
    415: "The body is not JSON (on the audio routes and `POST /files`: not multipart/form-data).",
    429: "Rate limit or quota exceeded.",
    502: "`upstream_error`: the model's deployment failed.",
    503: "`service_unavailable`: no deployment of the model is reachable.",
}
_STRING = {"type": "string"}
ERRORS = {
    str(code): {"description": text, "content": {"application/json": {"schema": ref("Error")}}}
    for code, text in ERROR_TEXT.items()
}


def errors_for(*codes: int) -> dict[int, OpenApiResponse]:
    """Error responses for a DRF view's ``extend_schema``."""
    return {code: OpenApiResponse(response=ref("Error"), description=ERROR_TEXT[code]) for code in codes}


def _post(summary: str, description: str, tag: str, request: dict, content: dict) -> dict:
    """A POST route of the consumer: ``request`` the body's media types, ``content`` the 200 answer's."""
    return {
        "post": {
            "operationId": summary.lower().replace(" ", "_"),
            "summary": summary,
            "description": description,
            "tags": [tag],
            "security": [{"ApiKey": []}],
            "requestBody": {"required": True, "content": request},
            "responses": {"200": {"description": "OK", "content": content}, **ERRORS},
        }
    }


def _events(event: str, done: bool = True) -> dict:
    """A server-sent event stream, each event (OpenAPI 3.1: the media type's schema describes one event) a
    ``data:`` that is JSON of the ``event`` schema, or with ``done`` the last one, ``data: [DONE]``."""
    data = {"type": "string", "contentMediaType": "application/json", "contentSchema": ref(event)}
    ending = ", then `data: [DONE]`" if done else ""
    return {
        "schema": {
            "type": "object",
            "properties": {"event": _STRING, "data": {"oneOf": [data, {"const": "[DONE]"}]} if done else data},
            "required": ["data"],
            "description": f"Server-sent events: `data: <{event}>`{ending}.",
        }
    }


def _generation(summary: str, request: str, response: str, chunk: str | None, description: str) -> dict:
    content = {"application/json": {"schema": ref(response)}}
    if chunk is not None:
        content["text/event-stream"] = _events(chunk)
    return _post(summary, description, "generation", {"application/json": {"schema": ref(request)}}, content)


GENERATION_PATHS = {
    "/chat/completions": _generation(
        "Create chat completion",
        "ChatCompletionRequest",
        "ChatCompletion",
        "ChatCompletionChunk",
        "A chat model's answer to the messages, through the model's chat template. With `stream: true`, "
        "server-sent events; `stream_options.include_usage` adds a last chunk with the usage. With `store: true`, "
        "the hub keeps it (under its own id) for the stored chat completions routes.",
    ),
    "/completions": _generation(
        "Create completion",
        "CompletionRequest",
        "Completion",
        "Completion",
        "Raw text continuation, without a chat template.",
    ),
    "/embeddings": _generation(
        "Create embeddings", "EmbeddingRequest", "EmbeddingList", None, "Embedding vectors of the input texts."
    ),
    "/rerank": _generation(
        "Create rerank",
        "RerankRequest",
        "RerankResponse",
        None,
        "The documents ordered by their relevance to the query, by a `rerank` model (a cross-encoder), in Jina's "
        "and Cohere's shape (`/v2/rerank` is Cohere's v2 path). Metered by the tokens the model read.",
    ),
    "/score": _generation(
        "Create score",
        "ScoreRequest",
        "ScoreResponse",
        None,
        "vLLM's score route: a `rerank` model's score of each (`text_1`, `text_2`) pair.",
    ),
    "/moderations": _generation(
        "Create moderation",
        "ModerationRequest",
        "ModerationResponse",
        None,
        "OpenAI's moderation of each input by a `moderation` model (a guard: Llama Guard and models trained on its "
        "format): flagged when it answers unsafe, its categories mapped to OpenAI's. Metered by the tokens the "
        "guard read and wrote.",
    ),
}


def _speech(summary: str, request: str, description: str) -> dict:
    """An audio route: a multipart upload in; JSON, text or (streamed) server-sent events out."""
    content = {
        "application/json": {
            "schema": {"oneOf": [ref("CreateTranscriptionResponseJson"), ref("CreateTranscriptionResponseVerboseJson")]}
        },
        "text/plain": {"schema": {"type": "string", "description": "`text`, `srt` or `vtt` (response_format)."}},
        "text/event-stream": _events("TranscriptTextEvent"),
    }
    return _post(summary, description, "audio", {"multipart/form-data": {"schema": ref(request)}}, content)


SPEECH_PATHS = {
    "/audio/transcriptions": _speech(
        "Create transcription",
        "CreateTranscriptionRequest",
        "Speech to text in the spoken language (detected unless `language` names it), by an `audio` model. "
        "Metered by the second: the usage row records the audio's duration; budgets and tokens per minute count "
        "50 prompt tokens per audio second plus the tokens of the text written. With `stream: true` (`json` or "
        "`text`), `transcript.text.delta` events and a last `transcript.text.done` with the usage.",
    ),
    "/audio/translations": _speech(
        "Create translation",
        "CreateTranslationRequest",
        "Speech in any language to English text, by an `audio` model; metered as transcriptions.",
    ),
    "/audio/speech": _post(
        "Create speech",
        "Text to speech by a `tts` model (VITS: MMS-TTS voices), at 24 kHz mono in every format. The audio file's "
        "bytes come as each sentence is spoken (`stream_format: audio`, the default), or as `speech.audio.delta` "
        "events and a last `speech.audio.done` with the usage (`sse`). Metered by the input's characters (prompt "
        "tokens) and the audio's 50 tokens a second (completion tokens), also for a client that leaves midway.",
        "audio",
        {"application/json": {"schema": ref("CreateSpeechRequest")}},
        {
            **{
                media: {"schema": {"type": "string", "format": "binary"}}
                for media in ("audio/mpeg", "audio/ogg", "audio/aac", "audio/flac", "audio/wav", "audio/pcm")
            },
            "text/event-stream": _events("SpeechAudioEvent", done=False),
        },  # fmt: skip
    ),
}


RESPONSE_EVENTS = (
    "Server-sent events, each `event: <type>` and `data: <ResponseStreamEvent>` with its `sequence_number`, in this "
    "order: `response.created`, `response.in_progress`; per output item `response.output_item.added`, then a "
    "reasoning item's `response.reasoning_text.delta` ... `.done`, a message's `response.content_part.added`, "
    "`response.output_text.delta` ... `.done`, `response.content_part.done`, or a function call's "
    "`response.function_call_arguments.delta` ... `.done`, and `response.output_item.done`; last "
    "`response.completed`, or `response.incomplete` (cut at `max_output_tokens`), or, when the deployment fails "
    "mid-answer, `error` then `response.failed`. No `data: [DONE]`: the stream ends after the last event. An "
    "external deployment's own events are relayed as they come, under the hub's response id."
)


def _responses() -> dict:
    events = _events("ResponseStreamEvent", done=False)
    events["schema"]["description"] = RESPONSE_EVENTS
    content = {"application/json": {"schema": ref("ResponseObject")}, "text/event-stream": events}
    route = _post(
        "Create response",
        "OpenAI's Responses API on a `chat` or `vision` model. Our inference service runs it as a chat completion "
        "(tools and `text.format` through the same grammars); an external deployment gets the Responses API "
        "request itself, the stored conversation written into `input`, with `store: false`. "
        "`previous_response_id` continues a stored response of the key's tenant; `store` (the default) keeps this "
        "one for `GET /responses/{response_id}`, its input items and later turns, `HUB_RESPONSES_RETENTION_DAYS` "
        "days (30 by default; 0: until deleted). `conversation` (not with `previous_response_id`) continues a "
        "conversation of the tenant's (`/conversations`) and adds this input and the output to it. Function tools "
        "only: built-in tools, `background` and `prompt` are refused (400). Metered like a chat (route "
        "`responses`). With `stream: true`: server-sent events (below), no `[DONE]`.",
        "responses",
        {"application/json": {"schema": ref("CreateResponseRequest")}},
        content,
    )
    answers = route["post"]["responses"]
    answers["404"] = {
        **answers["404"],
        "description": f"{ERROR_TEXT[404]} Or `not_found`: no stored response `previous_response_id` of this tenant.",
    }
    return route


RESPONSES_PATHS = {
    "/responses": _responses(),
    "/responses/input_tokens": _post(
        "Count input tokens",
        "How many input tokens a Responses API request would have: the same request as `POST /responses` takes "
        "(its stored conversation, instructions, tools and `text.format` included), counted by the model's own "
        "inference service without running it. Not metered. An external deployment's model is a 400.",
        "responses",
        {"application/json": {"schema": ref("CreateResponseRequest")}},
        {"application/json": {"schema": ref("ResponseInputTokens")}},
    ),
    "/responses/compact": _post(
        "Compact a response",
        "A context (`input`, after the stored context of `previous_response_id`) made short: the model writes a "
        "summary of it for its own later use, and the answer holds the context's user messages, then one "
        "`compaction` item with the summary, to send back as the next input. Limited and metered as route "
        "`responses/compact`; not streamed. A model served by an external deployment gets the request as it came.",
        "responses",
        {"application/json": {"schema": ref("CompactResponseRequest")}},
        {"application/json": {"schema": ref("CompactResource")}},
    ),
}


class EdgeKeyScheme(OpenApiAuthenticationExtension):
    """The bearer API key the edge middleware verifies."""

    target_class = "hub.api.views.EdgeKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "An API key of your tenant (`sk-...`)."}


def public_routes_once(endpoints):
    """Keep the ``/v1`` copy of each public route, written relative to the base URL; drop the rest."""
    prefix = f"/{BASE_PATHS[0]}"
    kept = []
    for path, path_regex, method, callback in endpoints:
        if path.startswith(prefix + "/"):
            kept.append((path.removeprefix(prefix), path_regex, method, callback))
    return kept


def add_generation_routes(result, generator, request, public):
    """Add the consumer's routes and the shared component schemas."""
    paths = {**GENERATION_PATHS, **SPEECH_PATHS, **RESPONSES_PATHS}
    for path, operations in result.get("paths", {}).items():  # a path may be both (GET /chat/completions: Django)
        paths[path] = {**paths.get(path, {}), **operations}
    result["paths"] = paths
    components = result.setdefault("components", {})
    schemas = (SCHEMAS, RERANK_SCHEMAS, MODERATION_SCHEMAS, RESPONSES_SCHEMAS, CHAT_STORE_SCHEMAS, CONVERSATION_SCHEMAS,
               BATCH_SCHEMAS, VECTOR_STORE_SCHEMAS, COMPACTION_SCHEMAS, WEBHOOK_SCHEMAS)  # fmt: skip
    components.setdefault("schemas", {}).update({name: s for group in schemas for name, s in group.items()})
    result["webhooks"] = webhooks_section()
    result["info"]["description"] = DESCRIPTION.strip()
    result["servers"] = [{"url": f"/{base}"} for base in BASE_PATHS]
    return result
