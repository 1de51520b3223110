"""The OpenAPI component schemas of the public API (OpenAI's shapes, as far as the hub serves them).

Plain JSON Schema dicts: the generation routes are a Channels consumer, not DRF views, so their
request and response bodies are described here by hand; the DRF views refer to the same components. The request
schemas state the limits ``hub.api.validation`` enforces, from its own constants.
"""

from __future__ import annotations

from hub.api import tiers
from hub.api import validation as v


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(properties: dict, required: tuple[str, ...] = (), **extra) -> dict:
    return {"type": "object", "properties": properties, "required": list(required), **extra}


_INT = {"type": "integer"}
_NUM = {"type": "number"}
_STR = {"type": "string"}
_BOOL = {"type": "boolean"}
_NULLABLE_STR = {"type": ["string", "null"]}
HYBRID_SEARCH = _obj(
    {"embedding_weight": {**_NUM, "minimum": 0}, "text_weight": {**_NUM, "minimum": 0}},
    ("embedding_weight", "text_weight"),
    description="Hybrid search: the chunks ranked by embedding similarity and by keywords (BM25 over stemmed English "
    "words without stop words, by default), the two rankings fused by weighted reciprocal rank fusion; `score` is "
    "the fused score over its most, in [0, 1]. One weight at least above 0.",
)
_TOKEN_IDS = {"type": "array", "items": _INT}

_TEXT = {**_STR, "maxLength": v.MAX_STRING_CHARS}
METADATA = {
    "type": "object",
    "maxProperties": v.MAX_METADATA,
    "propertyNames": {"maxLength": 64},
    "additionalProperties": {**_STR, "maxLength": 512},
}

_SPEECH_FIELDS = {
    "file": {
        **_STR, "format": "binary",
        "description": "The audio: flac, mp3, mp4, mpeg, mpga, m4a, ogg, wav or webm; up to 25 MB by default "
        "(HUB_MAX_AUDIO_BYTES).",
    },
    "model": {**_STR, "description": "An `audio` model the key is entitled to, e.g. `whisper-base`."},
    "prompt": {**_STR, "description": "Text to continue from: spellings, names, the previous part's text."},
    "response_format": {"enum": ["json", "text", "srt", "verbose_json", "vtt"], "default": "json"},
    "temperature": {**_NUM, "minimum": 0, "maximum": 1, "default": 0,
                    "description": "0: greedy, with Whisper's fallback to higher temperatures on a failed window."},
}  # fmt: skip
_SEGMENT = _obj(
    {
        "id": _INT, "seek": _INT, "start": _NUM, "end": _NUM, "text": _STR, "tokens": {"type": "array", "items": _INT},
        "temperature": _NUM, "avg_logprob": _NUM, "compression_ratio": _NUM, "no_speech_prob": _NUM,
    },
    ("id", "seek", "start", "end", "text", "tokens", "temperature", "avg_logprob", "compression_ratio",
     "no_speech_prob"),
)  # fmt: skip


def list_of(item: dict, description: str | None = None) -> dict:
    """OpenAI's paged list object of ``item``s (``hub/api/paging.py``); ``description``: of its ``data``."""
    data = {"type": "array", "items": item, **({"description": description} if description else {})}
    return _obj(
        {"object": {"const": "list"}, "data": data, "first_id": _NULLABLE_STR, "last_id": _NULLABLE_STR,
         "has_more": _BOOL},
        ("object", "data", "first_id", "last_id", "has_more"),
    )  # fmt: skip


_DURATION_USAGE = _obj({"type": {"const": "duration"}, "seconds": _NUM}, ("type", "seconds"))
_TOKEN_LOGPROBS = {
    "type": "array",
    "items": _obj({"token": _STR, "logprob": _NUM, "bytes": {"type": "array", "items": _INT}},
                  ("token", "logprob", "bytes")),
    "description": "With `include[]=logprobs`: each text token (timestamps left out).",
}  # fmt: skip
SPEECH_SCHEMAS = {
    "CreateTranscriptionRequest": _obj(
        {
            **_SPEECH_FIELDS,
            "language": {**_STR, "description": "ISO-639-1 code (`en`, `de`); detected when absent."},
            "timestamp_granularities[]": {
                "type": "array",
                "items": {"enum": ["segment", "word"]},
                "description": "With `verbose_json`: `segment` (the default) and / or `word` (each word's start and "
                "end in `words`, found by the model's alignment heads; a decoder pass more per 30 s window).",
            },
            "stream": {**_BOOL, "default": False},
            "chunking_strategy": {"const": "auto"},
            "include[]": {
                "type": "array",
                "items": {"const": "logprobs"},
                "description": "`logprobs` (with `json`): each text token's log-probability and bytes in `logprobs`, "
                "and in the stream's events.",
            },
        },
        ("file", "model"),
    ),  # fmt: skip
    "CreateTranslationRequest": _obj(_SPEECH_FIELDS, ("file", "model")),
    "CreateSpeechRequest": _obj(
        {
            "model": {**_STR, "description": "A `tts` model."},
            "input": {**_STR, "maxLength": 4096, "description": "The text to say."},
            "voice": {
                "oneOf": [_STR, _obj({"id": _STR}, ("id",))],
                "description": "One of OpenAI's voices (alloy, ash, ballad, coral, echo, fable, onyx, nova, sage, "
                "shimmer, verse, marin, cedar): on a model of several speakers the n-th names speaker n (modulo their "
                "number), `speaker_<n>` names one directly; a model of one speaker says every voice with it.",
            },
            "instructions": {**_STR, "maxLength": 4096, "description": "Accepted and not followed (as `tts-1`)."},
            "response_format": {"enum": ["mp3", "opus", "aac", "flac", "wav", "pcm"], "default": "mp3"},
            "speed": {"type": "number", "minimum": 0.25, "maximum": 4.0, "default": 1.0},
            "stream_format": {"enum": ["audio", "sse"], "default": "audio"},
        },
        ("model", "input", "voice"),
    ),
    "SpeechAudioEvent": _obj(
        {
            "type": {"enum": ["speech.audio.delta", "speech.audio.done"]},
            "audio": {**_STR, "description": "A delta's audio, base64: the next bytes of the `response_format` file."},
            "usage": _obj(
                {"input_tokens": _INT, "output_tokens": _INT, "total_tokens": _INT},
                ("input_tokens", "output_tokens", "total_tokens"),
            ),  # fmt: skip
        },
        ("type",),
        description="A `data:` of speech streamed as events: a `speech.audio.delta` per sentence spoken, then "
        "`speech.audio.done` with the usage (input: the characters; output: the audio, 50 tokens a second).",
    ),
    "TranscriptTextEvent": _obj(
        {
            "type": {"enum": ["transcript.text.delta", "transcript.text.done"]},
            "delta": _STR,
            "text": _STR,
            "logprobs": _TOKEN_LOGPROBS,
            "usage": _obj(
                {
                    "type": {"const": "tokens"},
                    "input_tokens": _INT,
                    "output_tokens": _INT,
                    "total_tokens": _INT,
                    "input_token_details": _obj({"audio_tokens": _INT, "text_tokens": _INT}),
                    "seconds": _NUM,
                },
                ("type", "input_tokens", "output_tokens", "total_tokens"),
            ),  # fmt: skip
        },
        ("type",),
        description="A `data:` of a streamed transcription: a `transcript.text.delta` per segment (`delta`; with "
        "the usage so far when the hub asks), then `transcript.text.done` with the whole `text` and the usage.",
    ),
    "CreateTranscriptionResponseJson": _obj(
        {"text": _STR, "usage": _DURATION_USAGE, "logprobs": _TOKEN_LOGPROBS}, ("text",)
    ),
    "CreateTranscriptionResponseVerboseJson": _obj(
        {
            "task": _STR,
            "language": _STR,
            "duration": _NUM,
            "text": _STR,
            "segments": {"type": "array", "items": _SEGMENT},
            "words": {
                "type": "array",
                "items": _obj({"word": _STR, "start": _NUM, "end": _NUM}, ("word", "start", "end")),
            },
            "usage": _DURATION_USAGE,
        },
        ("language", "duration", "text"),
    ),  # fmt: skip
}

_TRUNCATE = {
    **_INT,
    "minimum": -1,
    "description": "vLLM extension: only the prompt's last k tokens are read (-1: the model's context length); a "
    "text keeps the model's own special tokens. 0 is refused.",
}
_ANSWER_IDS = {**_TOKEN_IDS, "description": "With `return_token_ids` (vLLM's): the choice's generated token ids."}
_PROMPT_IDS = {**_TOKEN_IDS, "description": "With `return_token_ids` (vLLM's): the prompt's token ids."}
_PROMPT_LOGPROBS = {
    "type": "array",
    "items": {
        "oneOf": [
            {"type": "null"},
            {
                "type": "object",
                "additionalProperties": _obj(
                    {"logprob": _NUM, "rank": _INT, "decoded_token": _STR}, ("logprob", "rank", "decoded_token")
                ),
            },
        ]
    },
    "description": "With `prompt_logprobs` (vLLM's): per prompt token, null for the first, else token id → its "
    "logprob, rank and text, for the prompt's token and the top k.",
}
_CACHE_SALT = {
    **_STR,
    "minLength": 1,
    "maxLength": v.MAX_USER_CHARS,
    "description": "vLLM extension: splits the prompt cache further. Each tenant has its own cache on our deployments "
    "(`HUB_PROMPT_CACHE_SCOPE`); requests of one tenant with different salts share no cached prompt either.",
}
_SAMPLING = {
    "temperature": {
        **_NUM,
        "minimum": 0,
        "maximum": 2,
        "default": 1,
        "description": f"0 is greedy (so is anything below {v.MIN_POSITIVE}).",
    },  # fmt: skip
    "top_p": {**_NUM, "minimum": 0, "maximum": 1, "default": 1, "description": "0 keeps the most likely token only."},
    "top_k": {**_INT, "minimum": -1, "maximum": v.INT32_MAX, "default": 0, "description": "vLLM; -1 or 0: off."},
    "min_p": {**_NUM, "minimum": 0, "maximum": 1, "default": 0, "description": "vLLM extension."},
    "n": {**_INT, "minimum": 1, "maximum": v.MAX_N, "default": 1},
    "stop": {
        "oneOf": [_TEXT, {"type": "array", "items": _TEXT, "maxItems": v.MAX_STOP}, {"type": "null"}],
        "description": "Stop sequences.",
    },
    "stop_token_ids": {**_TOKEN_IDS, "description": "vLLM extension."},
    "ignore_eos": {**_BOOL, "default": False, "description": "vLLM extension."},
    "min_tokens": {
        **_INT,
        "minimum": 0,
        "default": 0,
        "description": "vLLM extension: no end (EOS, `stop_token_ids`, `stop`) before this many tokens.",
    },
    "include_stop_str_in_output": {
        **_BOOL,
        "default": False,
        "description": "vLLM extension: the `stop` string that ended the answer is kept at its end.",
    },
    "skip_special_tokens": {
        **_BOOL,
        "default": True,
        "description": "vLLM extension: false writes the control tokens the model generates into the text.",
    },
    "allowed_token_ids": {
        **_TOKEN_IDS,
        "minItems": 1,
        "description": "vLLM extension: the only token ids the answer may hold (an end too, unless listed).",
    },
    "bad_words": {
        "type": "array",
        "items": {**_STR, "minLength": 1},
        "maxItems": v.MAX_BAD_WORDS,
        "description": "vLLM extension: words never generated (as tokenized alone and after a space).",
    },
    "truncate_prompt_tokens": _TRUNCATE,
    "cache_salt": _CACHE_SALT,
    "use_beam_search": {
        **_BOOL,
        "default": False,
        "description": "vLLM extension: the `n` best beams (at most 10) by cumulative logprob / length ** "
        "`length_penalty`, best first; not with `stream`, a grammar or `prompt_logprobs`.",
    },
    "length_penalty": {**_NUM, "default": 1, "description": "vLLM extension: beam search's length exponent."},
    "prompt_logprobs": {
        **_INT,
        "minimum": 0,
        "maximum": v.MAX_TOP_LOGPROBS,
        "description": "vLLM extension: each prompt token's logprob, rank and top k, as `prompt_logprobs` in the "
        "answer (a chat's at its top level, a completion's in each choice); not with `stream`.",
    },
    "return_tokens_as_token_ids": {
        **_BOOL,
        "default": False,
        "description": "vLLM extension: logprobs name each token `token_id:<id>`.",
    },
    "return_token_ids": {
        **_BOOL,
        "default": False,
        "description": "vLLM extension: the answer carries `prompt_token_ids` and each choice its `token_ids` (each "
        "chunk its own, the first the prompt's).",
    },
    "seed": {
        **_INT,
        "minimum": v.INT64[0],
        "maximum": v.INT64[1],
        "description": "Reproducible sampling for the same request.",
    },  # fmt: skip
    "presence_penalty": {**_NUM, "minimum": -2, "maximum": 2, "default": 0},
    "frequency_penalty": {**_NUM, "minimum": -2, "maximum": 2, "default": 0},
    "repetition_penalty": {**_NUM, "minimum": v.MIN_POSITIVE, "maximum": 10, "default": 1, "description": "vLLM."},
    "logit_bias": {
        "type": "object",
        "propertyNames": {"pattern": "^[0-9]{1,10}$"},
        "additionalProperties": {**_NUM, "minimum": -100, "maximum": 100},
        "description": "Token id → bias.",
    },
    "stream": {**_BOOL, "default": False, "description": "Server-sent events, ended by `data: [DONE]`."},
    "stream_options": _obj(
        {
            "include_usage": {**_BOOL, "description": "A last chunk with `usage` and no choices."},
            "continuous_usage_stats": {**_BOOL, "description": "vLLM extension: usage so far in every chunk."},
        }
    ),
    "user": {**_STR, "maxLength": v.MAX_USER_CHARS},
    "priority": {
        **_INT,
        "minimum": -tiers.MAX_PRIORITY,
        "maximum": tiers.MAX_PRIORITY,
        "default": 0,
        "description": "vLLM's: a larger value runs later. The hub sends our service the larger of it and the "
        "service tier's (0 default, 1 flex, 2 a batch's lines): a request may defer itself, never go ahead of another.",
    },
}
_SERVICE_TIER = {
    "enum": [*tiers.TIERS, None],
    "default": "auto",
    "description": "`flex`: run behind default traffic (preempted by it when the engine is full), at the model's flex "
    "share of the price (half by default). `priority`, `fast` and `scale` are served as `default`. The answer's "
    "`service_tier` names the tier used.",
}
_SERVICE_TIER_USED = {**_STR, "description": "The tier the request was served in: `default` or `flex`."}

_REASONING = {
    **_NULLABLE_STR,
    "description": "A reasoning model's think block (Qwen3, DeepSeek-R1), apart from `content`; null when the answer "
    "did not think. `reasoning` is the same text under vLLM's newer name.",
}
_USAGE = _obj(
    {
        "prompt_tokens": _INT,
        "completion_tokens": _INT,
        "total_tokens": _INT,
        "completion_tokens_details": _obj(
            {"reasoning_tokens": _INT},
            description="A reasoning model's: the tokens of its think blocks, already in `completion_tokens`.",
        ),
        "prompt_tokens_details": _obj(
            {"cached_tokens": _INT},
            description="The prompt tokens found in the deployment's prefix cache (not computed again), already in "
            "`prompt_tokens`; charged at the model's cached-input price.",
        ),
    },
    ("prompt_tokens", "total_tokens"),
    description="Counted by the model's tokenizer, never estimated; the hub meters exactly these.",
)

_TOOL = _obj(
    {
        "type": {"const": "function"},
        "function": _obj(
            {
                "name": {**_STR, "pattern": "^[a-zA-Z0-9_-]{1,64}$"},
                "description": _STR,
                "parameters": {"type": "object", "description": "A JSON Schema; the arguments always follow it."},
                "strict": _BOOL,
            },
            ("name",),
        ),
    },
    ("type", "function"),
)
_TOOL_CALL = _obj(
    {
        "id": _STR,
        "type": {"const": "function"},
        "function": _obj(
            {"name": _STR, "arguments": {**_STR, "description": "A JSON object, serialised."}}, ("name", "arguments")
        ),  # fmt: skip
    },
    ("id", "type", "function"),
)
_TOOL_CALL_DELTA = _obj(
    {
        "index": _INT,
        "id": _STR,
        "type": {"const": "function"},
        "function": _obj({"name": _STR, "arguments": _STR}),
    },
    ("index",),
    description="The first fragment of a call carries id, type and function.name; later ones arguments pieces.",
)
_RESPONSE_FORMAT = {
    "oneOf": [
        _obj({"type": {"enum": ["text", "json_object"]}}, ("type",)),
        _obj(
            {
                "type": {"const": "json_schema"},
                "json_schema": _obj({"name": _STR, "schema": {"type": "object"}, "strict": _BOOL}, ("name",)),
            },
            ("type", "json_schema"),
        ),
    ],
    "description": "The answer is enforced by a grammar (llguidance) to be this JSON.",
}

_TEXT_PART = _obj({"type": {"const": "text"}, "text": _TEXT}, ("type", "text"))
_IMAGE_PART = _obj(
    {
        "type": {"const": "image_url"},
        "image_url": _obj({"url": _STR, "detail": {"type": "string", "enum": ["auto", "low", "high"]}}, ("url",)),
    },
    ("type", "image_url"),
    description="Vision models only (listed under /vision): an http(s) URL or a data:image/...;base64 URL; "
    "`detail` is auto, low or high (LLaVA sees every image at its own resolution).",
)
_FILE_PART = _obj(
    {
        "type": {"const": "file"},
        "file": _obj(
            {
                "file_id": {**_STR, "description": "One of the tenant's files (the Files API)."},
                "filename": {**_STR, "description": "The name the model sees (a stored file's own name otherwise)."},
                "file_data": {**_STR, "description": "The file, base64 (bare or as a data: URL)."},
            }
        ),
    },
    ("type", "file"),
    description="A PDF (its text layer), a Word document, a PowerPoint deck or UTF-8 text, by `file_id` or "
    '`file_data`: shown to the model as its text in `<file name="...">` ... `</file>`; anything else is a 400 '
    "`unsupported_file`.",
)
_FUNCTION_CALL = _obj(
    {"name": _STR, "arguments": {**_STR, "description": "A JSON object, serialised."}},
    ("name", "arguments"),
    description="Deprecated, as OpenAI's: the call of the legacy `functions` (today a tool call).",
    deprecated=True,
)
_MESSAGE = _obj(
    {
        "role": {"enum": ["system", "developer", "user", "assistant", "tool", "function"]},
        "content": {
            "oneOf": [
                _TEXT,
                {"type": "array", "items": {"oneOf": [_TEXT_PART, _IMAGE_PART, _FILE_PART]}, "minItems": 1},
                {"type": "null"},
            ]
        },
        "name": _STR,
        "tool_calls": {"type": "array", "items": _TOOL_CALL},
        "tool_call_id": _STR,
        "function_call": _FUNCTION_CALL,
    },
    ("role",),
)

_LOGPROBS = {"type": ["object", "null"], "description": "Per-token log probabilities when asked for."}


def _daily_page(result: dict, description: str | None = None) -> dict:
    """OpenAI's usage and costs pages: one bucket per day, each with its ``result`` items."""
    bucket = _obj({"object": {"const": "bucket"}, "start_time": _INT, "end_time": _INT,
                   "results": {"type": "array", "items": result}})  # fmt: skip
    page = {"object": {"const": "page"}, "data": {"type": "array", "items": bucket}, "has_more": _BOOL,
            "next_page": _NULLABLE_STR}  # fmt: skip
    return _obj(page, ("object", "data", "has_more"), **({"description": description} if description else {}))


SCHEMAS: dict[str, dict] = {
    "Error": _obj(
        {
            "error": _obj(
                {"message": _STR, "type": _STR, "param": _NULLABLE_STR, "code": _NULLABLE_STR},
                ("message", "type", "param", "code"),
            )
        },
        ("error",),
        description="Every error, from the hub or from a deployment, in OpenAI's shape.",
    ),
    "Usage": _USAGE,
    "ModelMetaData": _obj(
        {
            "max_sequence_length": {**_INT, "description": "Prompt + output tokens the model can process."},
            "hidden_size": {**_INT, "description": "Embedding dimensions (embedding models only, else 0)."},
            "max_output_length": {**_INT, "description": "Most tokens the model may generate (0: no own limit)."},
        },
        ("max_sequence_length", "hidden_size", "max_output_length"),
    ),
    "Model": _obj(
        {
            "id": _STR,
            "object": {"const": "model"},
            "created": _INT,
            "owned_by": _STR,
            "meta_data": ref("ModelMetaData"),
            "max_model_len": {**_INT, "description": "vLLM's: prompt + output tokens (when the catalog knows it)."},
        },
        ("id", "object", "created", "owned_by", "meta_data"),
    ),
    "ModelList": _obj(
        {"object": {"const": "list"}, "data": {"type": "array", "items": ref("Model")}}, ("object", "data")
    ),
    "ChatCompletionRequest": _obj(
        {
            "model": _STR,
            "messages": {"type": "array", "items": _MESSAGE, "minItems": 1, "maxItems": v.MAX_MESSAGES},
            "max_tokens": {**_INT, "minimum": 1, "description": "At most the model's `max_output_length`."},
            "max_completion_tokens": {**_INT, "minimum": 1},
            "logprobs": _BOOL,
            "top_logprobs": {**_INT, "minimum": 0, "maximum": v.MAX_TOP_LOGPROBS},
            "tools": {"type": "array", "items": _TOOL, "minItems": 1, "maxItems": v.MAX_TOOLS},
            "tool_choice": {
                "oneOf": [
                    {"enum": ["none", "auto", "required"]},
                    _obj(
                        {"type": {"const": "function"}, "function": _obj({"name": _STR}, ("name",))},
                        ("type", "function"),
                    ),
                ],
                "description": "Default: auto with tools, none without. Required and named calls are enforced.",
            },  # fmt: skip
            "parallel_tool_calls": {**_BOOL, "default": True},
            "functions": {
                "type": "array",
                "items": _TOOL["properties"]["function"],
                "minItems": 1,
                "maxItems": v.MAX_TOOLS,
                "deprecated": True,
                "description": "OpenAI's deprecated function calling, still served: the functions as tools, at most "
                "one call an answer, given back as `message.function_call` with `finish_reason: function_call`; a "
                "`function` message (its `name` and `content`) answers the latest call of that name.",
            },
            "function_call": {
                "oneOf": [{"enum": ["none", "auto"]}, _obj({"name": _STR}, ("name",))],
                "deprecated": True,
                "description": "With `functions`: as `tool_choice`.",
            },
            "response_format": _RESPONSE_FORMAT,
            "continue_final_message": {
                **_BOOL,
                "default": False,
                "description": "vLLM's: the final message is left open and the answer continues it (a prefill of the "
                "assistant's answer); no new turn is opened.",
            },
            "add_generation_prompt": {
                **_BOOL,
                "description": "vLLM's: whether the prompt opens the assistant's turn (default: true, false with "
                "`continue_final_message`).",
            },
            "chat_template_kwargs": {
                "type": "object",
                "description": "vLLM's: extra variables for the model's chat template, e.g. "
                '`{"enable_thinking": false}` for Qwen3.',
            },
            "echo": {
                **_BOOL,
                "default": False,
                "description": "vLLM's: when the final message is the assistant's (say with `continue_final_message`), "
                "the answer's content starts with it.",
            },
            "documents": {
                "type": "array",
                "items": {"type": "object", "additionalProperties": _STR},
                "description": "vLLM's: documents a RAG chat template shows the model (`title`, `text` each); a "
                "template that reads none leaves them out.",
            },
            "reasoning_effort": {
                "enum": ["none", "minimal", "low", "medium", "high", "xhigh"],
                "description": "A variable of the model's chat template; `none` turns a reasoning model's thinking "
                "off (`enable_thinking: false`).",
            },
            "verbosity": {
                "enum": ["low", "medium", "high"],
                "description": "OpenAI's hint on the answer's length: checked, not used (these models have no such "
                "control).",
            },
            "store": {
                **_BOOL,
                "default": False,
                "description": "Keep the completion for the stored chat completions routes (`GET /chat/completions`), "
                "`HUB_CHAT_COMPLETIONS_RETENTION_DAYS` days (30 by default). Kept by the hub, whatever the "
                "deployment: the answer then carries the hub's id.",
            },
            "metadata": {**METADATA, "description": "Kept with a stored completion, to filter the list on."},
            "prediction": {
                "oneOf": [
                    _obj(
                        {
                            "type": {"const": "content"},
                            "content": {"oneOf": [_TEXT, {"type": "array", "items": _TEXT_PART, "minItems": 1}]},
                        },
                        ("type", "content"),
                    ),
                    {"type": "null"},
                ],
                "description": "OpenAI's Predicted Outputs: checked, not used (the answer is the one without them; no "
                "predicted token is reported accepted or rejected).",
            },
            "service_tier": _SERVICE_TIER,
            **_SAMPLING,
        },
        ("model", "messages"),
    ),
    "ChatCompletion": _obj(
        {
            "id": _STR,
            "object": {"const": "chat.completion"},
            "created": _INT,
            "model": _STR,
            "choices": {
                "type": "array",
                "items": _obj(
                    {
                        "index": _INT,
                        "message": _obj(
                            {
                                "role": {"const": "assistant"},
                                "content": _NULLABLE_STR,
                                "reasoning_content": _REASONING,
                                "reasoning": _REASONING,
                                "tool_calls": {"type": "array", "items": _TOOL_CALL},
                                "function_call": _FUNCTION_CALL,
                            }
                        ),
                        "finish_reason": {"enum": ["stop", "length", "tool_calls", "function_call"]},
                        "logprobs": _LOGPROBS,
                        "token_ids": _ANSWER_IDS,
                    }
                ),
            },
            "usage": ref("Usage"),
            "service_tier": _SERVICE_TIER_USED,
            "prompt_token_ids": _PROMPT_IDS,
            "prompt_logprobs": _PROMPT_LOGPROBS,
        },
        ("id", "object", "created", "model", "choices", "usage"),
    ),
    "ChatCompletionChunk": _obj(
        {
            "id": _STR,
            "object": {"const": "chat.completion.chunk"},
            "created": _INT,
            "model": _STR,
            "choices": {
                "type": "array",
                "items": _obj(
                    {
                        "index": _INT,
                        "delta": _obj(
                            {
                                "role": _STR,
                                "content": _NULLABLE_STR,
                                "reasoning_content": _REASONING,
                                "reasoning": _REASONING,
                                "tool_calls": {"type": "array", "items": _TOOL_CALL_DELTA},
                                "function_call": _obj({"name": _STR, "arguments": _STR}, deprecated=True),
                            }
                        ),
                        "finish_reason": {"type": ["string", "null"]},
                        "logprobs": _LOGPROBS,
                        "token_ids": _ANSWER_IDS,
                    }
                ),
            },
            "usage": {"oneOf": [ref("Usage"), {"type": "null"}]},
            "service_tier": _SERVICE_TIER_USED,
            "prompt_token_ids": _PROMPT_IDS,
        },
        ("id", "object", "created", "model", "choices"),
        description="One `data:` event of a chat stream.",
    ),
    "CompletionRequest": _obj(
        {
            "model": _STR,
            "prompt": {
                "oneOf": [
                    _TEXT,
                    {"type": "array", "items": _TEXT, "maxItems": v.MAX_INPUTS},
                    _TOKEN_IDS,
                    {"type": "array", "items": _TOKEN_IDS, "maxItems": v.MAX_INPUTS},
                ]
            },
            "max_tokens": {**_INT, "minimum": 1, "default": 16},
            "echo": _BOOL,
            "logprobs": {**_INT, "minimum": 0, "maximum": v.MAX_COMPLETION_LOGPROBS},
            "best_of": {
                **_INT,
                "minimum": 1,
                "maximum": v.MAX_N,
                "description": "Candidates generated per prompt (at least `n`); the `n` with the highest log "
                "probability per token are returned, best first. Every candidate's tokens are counted. Not with "
                "`stream` when above `n`.",
            },
            **_SAMPLING,
        },
        ("model", "prompt"),
    ),
    "Completion": _obj(
        {
            "id": _STR,
            "object": {"const": "text_completion"},
            "created": _INT,
            "model": _STR,
            "choices": {
                "type": "array",
                "items": _obj(
                    {
                        "index": _INT,
                        "text": _STR,
                        "finish_reason": {"type": ["string", "null"]},
                        "logprobs": _LOGPROBS,
                        "token_ids": _ANSWER_IDS,
                        "prompt_token_ids": _PROMPT_IDS,
                        "prompt_logprobs": _PROMPT_LOGPROBS,
                    }
                ),
            },
            "usage": ref("Usage"),
        },
        ("id", "object", "created", "model", "choices"),
        description="The whole answer, or one `data:` event of a completion stream.",
    ),
    "EmbeddingRequest": _obj(
        {
            "model": _STR,
            "input": {
                "oneOf": [
                    _TEXT,
                    {"type": "array", "items": _TEXT, "maxItems": v.MAX_INPUTS},
                    _TOKEN_IDS,
                    {"type": "array", "items": _TOKEN_IDS, "maxItems": v.MAX_INPUTS},
                ]
            },
            "encoding_format": {"enum": ["float", "base64"], "default": "float"},
            "dimensions": {**_INT, "description": "Must equal the model's `hidden_size` (400 otherwise)."},
            "truncate_prompt_tokens": _TRUNCATE,
            "user": {**_STR, "maxLength": v.MAX_USER_CHARS},
            "service_tier": _SERVICE_TIER,
            "priority": _SAMPLING["priority"],
        },
        ("model", "input"),
    ),
    "EmbeddingList": _obj(
        {
            "object": {"const": "list"},
            "model": _STR,
            "data": {
                "type": "array",
                "items": _obj(
                    {
                        "object": {"const": "embedding"},
                        "index": _INT,
                        "embedding": {
                            "oneOf": [{"type": "array", "items": _NUM}, _STR],
                            "description": "floats, or little-endian float32 in base64",
                        },
                    }
                ),
            },
            "usage": _obj({"prompt_tokens": _INT, "total_tokens": _INT}),
        },
        ("object", "model", "data", "usage"),
    ),
    **SPEECH_SCHEMAS,
    "UsagePage": _daily_page(
        _obj(
            {
                "object": {
                    "enum": [
                        f"organization.usage.{kind}.result"
                        for kind in (
                            "completions",
                            "embeddings",
                            "moderations",
                            "audio_transcriptions",
                            "audio_speeches",
                        )  # fmt: skip
                    ],
                    "description": "completions: chat, completions, responses; embeddings: embeddings, rerank, score "
                    "and vector stores' indexing and searches; moderations; audio_transcriptions: transcriptions and "
                    "translations; audio_speeches: text to speech.",
                },
                "characters": {
                    **_INT,
                    "description": "Characters spoken (audio_speeches results only: their input tokens).",
                },
                "seconds": {
                    "type": "number",
                    "description": "Audio seconds (audio_transcriptions results only); their tokens are counted as "
                    "50 input tokens per second.",
                },
                "input_tokens": _INT,
                "input_cached_tokens": {**_INT, "description": "Of input_tokens, found in a prefix cache."},
                "output_tokens": _INT,
                "total_tokens": _INT,
                "num_model_requests": _INT,
                "model": _NULLABLE_STR,
                "api_key_id": {**_NULLABLE_STR, "description": "The key's public prefix."},
                "service_tier": {**_NULLABLE_STR, "description": "`group_by=service_tier`: default, flex or batch."},
                "batch": {"type": ["boolean", "null"], "description": "`group_by=batch`: a batch's requests or not."},
            }
        )
    ),
    "CostsPage": _daily_page(
        _obj(
            {
                "object": {"const": "organization.costs.result"},
                "amount": _obj({"value": _NUM, "currency": _STR}, ("value", "currency")),
                "line_item": {**_NULLABLE_STR, "description": "The model (group_by=line_item)."},
                "project_id": {**_NULLABLE_STR, "description": "Always null: tenants have no projects."},
            }
        ),
        description="OpenAI's /organization/costs shape: each day's cost at the prices in force when each request "
        "was metered.",
    ),
}
