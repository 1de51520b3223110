"""Input hardening of the public API: shapes, types and ranges of request bodies, refused in OpenAI's words.

Two layers. ``check_json`` runs at the edge on every API body: nesting depth, and NaN / Infinity, which
Python's json accepts but nothing can write back out (relaying one upstream would fail on our side).
``check_body`` runs in the gateway once the model is known: per route, each known field's type and range, the
number of messages, inputs, tools and stop strings, and the length of texts. Unknown fields pass through
untouched, as OpenAI tolerates them. The limits mirror the inference service's (``inference/server/protocol.py``,
``inference/sampling_params.py``) so the hub refuses what it would refuse, first, with ``param`` naming the
field (``messages[3].content``); and they bound what would break it (an int64 seed, an int32 top_k, a positive
temperature too small to divide by).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from hub.api.errors import InvalidJson, InvalidRequest

MAX_JSON_DEPTH = 64  # OpenAI's shapes nest < 10 deep; JSON Schemas in tools a few more
MAX_STRING_CHARS = 1_048_576  # OpenAI's cap on one string (a message's content, a prompt, an input)
MAX_MESSAGES = 2048
MAX_INPUTS = 2048  # embeddings' input and completions' prompt, as a list (OpenAI: 2048)
MAX_MODERATION_INPUTS = 32  # moderations' input as a list of strings: each is a generation of its guard model
MAX_TOOLS = 128  # OpenAI's
MAX_DOCUMENTS = 1000  # rerank's documents and score's texts (Cohere's limit; the inference service's too)
MAX_STOP = 4
MAX_N = 16  # the inference service's limit, documented in the OpenAPI schema (OpenAI allows 128)
MAX_TOP_LOGPROBS = 20
MAX_COMPLETION_LOGPROBS = 5
MAX_USER_CHARS = 256
MAX_BAD_WORDS = 128  # vLLM's bad_words: the inference service's limit (each is matched at every step)
MAX_METADATA = 16  # OpenAI's metadata: 16 pairs, keys up to 64 characters, values up to 512
INT32_MAX = 2**31 - 1
INT64 = (-(2**63), 2**63 - 1)  # a seed is a 64-bit integer; the engine adds the choice's index to it
# The least positive repetition_penalty (vLLM's sampling epsilon): the engine divides float32 logits by it, and a
# smaller one overflows to NaN probabilities. Temperatures below it sample greedily in the engine and a top_p of 0
# keeps the most likely token only, so both take OpenAI's whole ranges.
MIN_POSITIVE = 1e-5

ROLES = ("system", "developer", "user", "assistant", "tool")
DETAILS = ("auto", "low", "high")
_TOKEN_ID_KEY = re.compile(r"[0-9]{1,10}")

# (name, integer?, minimum, maximum) of the sampling fields of both generation routes
_NUMBERS: tuple[tuple[str, bool, float | None, float | None], ...] = (
    ("temperature", False, 0, 2),
    ("top_p", False, 0, 1),
    ("presence_penalty", False, -2, 2),
    ("frequency_penalty", False, -2, 2),
    ("n", True, 1, MAX_N),
    ("max_tokens", True, 1, None),
    ("max_completion_tokens", True, 1, None),
    ("seed", True, *INT64),
    ("top_k", True, -1, INT32_MAX),  # vLLM extensions from here on
    ("min_p", False, 0, 1),
    ("repetition_penalty", False, MIN_POSITIVE, 10),
    ("min_tokens", True, 0, None),
    ("length_penalty", False, None, None),  # beam search's
)
# echo: completions' (OpenAI's) and a chat's (vLLM's: the final assistant message before the answer)
_BOOLS = ("stream", "ignore_eos", "include_stop_str_in_output", "continue_final_message", "add_generation_prompt",
          "skip_special_tokens", "return_tokens_as_token_ids", "return_token_ids", "use_beam_search",
          "echo")  # fmt: skip


def _kind(value: Any) -> str:
    """A JSON value's type as OpenAI's errors name it."""
    if value is None:
        return "null"
    for kind, name in ((bool, "a boolean"), (int, "an integer"), (float, "a decimal"), (str, "a string")):
        if isinstance(value, kind):
            return name
    return "an array" if isinstance(value, list) else "an object"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # JSON's true is no 1


def _refuse(param: str, code: str, message: str) -> InvalidRequest:
    return InvalidRequest(message, param=param, code=code)


def refuse(param: str, message: str, code: str | None = "invalid_value") -> InvalidRequest:
    return InvalidRequest(message, param=param, code=code)


def wrong_type(param: str, expected: str, value: Any) -> InvalidRequest:
    message = f"Invalid type for '{param}': expected {expected}, but got {_kind(value)} instead."
    return _refuse(param, "invalid_type", message)


def missing(param: str) -> InvalidRequest:
    return _refuse(param, "missing_required_parameter", f"Missing required parameter: '{param}'.")


def too_deep() -> InvalidJson:
    return InvalidJson(f"The JSON body of your request is nested too deeply: at most {MAX_JSON_DEPTH} levels.")


def check_json(value: Any) -> None:
    """Every body at the edge: depth and non-finite numbers. Iterative, so no depth can overflow the stack."""
    stack = [(value, 1)] if isinstance(value, (dict, list)) else []
    while stack:
        node, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise too_deep()
        for child in node.values() if type(node) is dict else node:  # type(): json.loads makes no subclasses
            kind = type(child)
            if kind is dict or kind is list:
                stack.append((child, depth + 1))
            elif kind is float and not math.isfinite(child):
                raise InvalidJson("The JSON body of your request contains NaN or Infinity, which JSON does not allow.")


def _number(value: Any, param: str, integer: bool, low: float | None, high: float | None) -> None:
    """A number in range. None (absent, or null as OpenAI's SDKs send it) passes."""
    if value is None:
        return
    if not (_is_int(value) if integer else _is_int(value) or isinstance(value, float)):
        raise wrong_type(param, "an integer" if integer else "a decimal", value)
    kind, shown = "integer" if integer else "decimal", json.dumps(value)
    if low is not None and not value >= low:  # `not`: NaN fails too
        raise _refuse(param, f"{kind}_below_min_value", f"{shown} is less than the minimum of {low} - '{param}'")
    if high is not None and not value <= high:
        raise _refuse(param, f"{kind}_above_max_value", f"{shown} is greater than the maximum of {high} - '{param}'")


def _bool(body: dict, name: str, param: str | None = None) -> None:
    value = body.get(name)
    if value is not None and not isinstance(value, bool):
        raise wrong_type(param or name, "a boolean", value)


def _string(value: Any, param: str, *, limit: int | None = MAX_STRING_CHARS, empty: bool = True) -> None:
    if not isinstance(value, str):
        raise wrong_type(param, "a string", value)
    if limit is not None and len(value) > limit:
        raise _refuse(param, "string_above_max_length", f"Invalid '{param}': string too long. Expected a string with "
                      f"maximum length {limit}, but got a string with length {len(value)} instead.")  # fmt: skip
    if not empty and not value:
        raise _refuse(param, "empty_string", f"Invalid '{param}': empty string. Expected a non-empty string.")


def _array(value: Any, param: str, limit: int | None, expected: str = "an array") -> list:
    if not isinstance(value, list):
        raise wrong_type(param, expected, value)
    if not value:
        raise _refuse(param, "empty_array", f"Invalid '{param}': empty array. Expected an array with minimum length 1, "
                      "but got an empty array instead.")  # fmt: skip
    if limit is not None and len(value) > limit:
        raise _refuse(param, "array_above_max_length", f"Invalid '{param}': array too long. Expected an array with "
                      f"maximum length {limit}, but got an array with length {len(value)} instead.")  # fmt: skip
    return value


def _object(value: Any, param: str) -> dict:
    if not isinstance(value, dict):
        raise wrong_type(param, "an object", value)
    return value


def check_metadata(value: Any, *, nul: bool = True) -> None:
    """OpenAI's ``metadata`` (None passes). ``nul``: whether a NUL may be in it (stored chat completions' metadata
    is filtered on in SQL, plain JSON, which PostgreSQL's jsonb refuses with a NUL)."""
    if value is None:
        return
    if len(_object(value, "metadata")) > MAX_METADATA:
        raise _refuse("metadata", "invalid_value", f"Invalid 'metadata': at most {MAX_METADATA} key-value pairs.")
    for key, item in value.items():
        _string(key, "metadata", limit=64)
        _string(item, f"metadata.{key}", limit=512)
        if not nul and ("\x00" in key or "\x00" in item):
            raise _refuse(
                "metadata", "invalid_value", "Invalid 'metadata': a NUL character (U+0000) in a key or value."
            )


def _part(part: Any, param: str) -> None:
    """A content part: text, image_url and file are checked; other types are the deployment's to accept or refuse."""
    kind = _object(part, param).get("type")
    if not isinstance(kind, str):
        raise missing(f"{param}.type") if kind is None else wrong_type(f"{param}.type", "a string", kind)
    if kind == "text":
        _string(part.get("text"), f"{param}.text")
    elif kind == "image_url":
        image = part.get("image_url")
        if not isinstance(image, str):
            # no cap on a URL: a data: URL is as long as the body allows
            _string(_object(image, f"{param}.image_url").get("url"), f"{param}.image_url.url", limit=None, empty=False)
            if image.get("detail") not in (None, *DETAILS):
                where = f"{param}.image_url.detail"
                raise _refuse(where, "invalid_value", f"Invalid value for '{where}': expected 'auto', 'low' or 'high'.")
    elif kind == "file":  # read by the gateway (hub/api/file_inputs.py)
        file = _object(part.get("file"), f"{param}.file")
        for name in ("file_id", "filename", "file_data", "file_url"):  # file_url: a Responses input_file's
            if file.get(name) is not None:
                _string(file[name], f"{param}.file.{name}", limit=None if name == "file_data" else MAX_STRING_CHARS)
        if file.get("detail") not in (None, *DETAILS):  # how a vision model gets a PDF's pages
            where = f"{param}.file.detail"
            raise _refuse(where, "invalid_value", f"Invalid value for '{where}': expected 'auto', 'low' or 'high'.")
        if file.get("file_id") is None and file.get("file_data") is None:
            raise _refuse(f"{param}.file", "missing_required_parameter",
                          f"'{param}.file' needs a 'file_id' (the Files API) or 'file_data' (base64).")  # fmt: skip


def _message(message: Any, param: str) -> None:
    role = _object(message, param).get("role")
    if role is None:
        raise missing(f"{param}.role")
    if role not in ROLES:  # a list or an object is no role either (and is not hashable: no `in` on a set)
        shown = repr(role) if isinstance(role, str) else _kind(role)
        raise _refuse(f"{param}.role", "invalid_value", f"Invalid value: {shown}. Supported values are: "
                      f"{', '.join(map(repr, ROLES))}.")  # fmt: skip
    content = message.get("content")
    if isinstance(content, list):  # OpenAI's minItems 1, every role's
        for j, part in enumerate(_array(content, f"{param}.content", None)):
            _part(part, f"{param}.content[{j}]")
    elif content is not None or role != "assistant":  # an assistant's turn may be only tool calls
        if "content" not in message:
            raise missing(f"{param}.content")
        if not isinstance(content, str):
            raise wrong_type(f"{param}.content", "a string or an array of content parts", content)
        _string(content, f"{param}.content")
    if message.get("name") is not None:
        _string(message["name"], f"{param}.name", limit=MAX_USER_CHARS)
    if role == "assistant" and message.get("tool_calls"):
        for j, call in enumerate(_array(message["tool_calls"], f"{param}.tool_calls", MAX_TOOLS)):
            where = f"{param}.tool_calls[{j}]"
            _string(_object(call, where).get("id"), f"{where}.id")
            function = _object(call.get("function"), f"{where}.function")
            _string(function.get("name"), f"{where}.function.name")
            _string(function.get("arguments", ""), f"{where}.function.arguments")
    if role == "tool":
        if message.get("tool_call_id") is None:
            raise missing(f"{param}.tool_call_id")
        _string(message["tool_call_id"], f"{param}.tool_call_id")


def _tools(body: dict) -> None:
    if body.get("tools") is not None:
        for i, tool in enumerate(_array(body["tools"], "tools", MAX_TOOLS)):
            _tool_type(_object(tool, f"tools[{i}]").get("type"), f"tools[{i}].type")
            function = _object(tool.get("function"), f"tools[{i}].function")
            _string(function.get("name"), f"tools[{i}].function.name", limit=64, empty=False)
            if function.get("description") is not None:
                _string(function["description"], f"tools[{i}].function.description")
            if function.get("parameters") is not None:
                _object(function["parameters"], f"tools[{i}].function.parameters")
    choice = body.get("tool_choice")
    if choice is not None and not isinstance(choice, (str, dict)):
        raise wrong_type("tool_choice", "a string or an object", choice)
    if body.get("response_format") is not None:
        _object(body["response_format"], "response_format")
    _bool(body, "parallel_tool_calls")


def _tool_type(kind: Any, param: str) -> None:
    """``function`` (or left out, as older clients do); OpenAI's ``custom`` tools (free-form text input) are named
    as unsupported rather than read as a function without one."""
    if kind == "custom":
        raise refuse(param, f"Custom tools ('{param}': 'custom') are not supported by this hub: use function tools "
                     "({'type': 'function', ...}).", "unsupported_value")  # fmt: skip
    _choice(kind, param, ("function",))


def _choice(value: Any, param: str, allowed: tuple[str, ...]) -> None:
    """``value`` (None: left out) one of ``allowed``, else OpenAI's 400 listing them."""
    if value is not None and value not in allowed:
        shown = repr(value) if isinstance(value, str) else type(value).__name__
        raise refuse(param, f"Invalid value for '{param}': {shown}. Supported values are: "
                     f"{', '.join(map(repr, allowed))}.")  # fmt: skip


def _stop(body: dict) -> None:
    stop = body.get("stop")
    if stop is None:
        return
    if isinstance(stop, str):
        return _string(stop, "stop", empty=False)  # an empty stop string would end every answer at once
    for i, item in enumerate(_array(stop, "stop", MAX_STOP, "a string or an array of strings")):
        _string(item, f"stop[{i}]", empty=False)


def _logit_bias(body: dict) -> None:
    bias = body.get("logit_bias")
    if bias is None:
        return
    for key, value in _object(bias, "logit_bias").items():
        if not _TOKEN_ID_KEY.fullmatch(key) or int(key) > INT32_MAX:
            message = f"Invalid key in 'logit_bias': {key[:40]!r} is not a token id."
            raise _refuse("logit_bias", "invalid_value", message)
        if value is None:
            raise wrong_type(f"logit_bias.{key}", "a decimal", value)
        _number(value, f"logit_bias.{key}", False, -100, 100)


def _sampling(body: dict, chat: bool) -> None:
    for name, *spec in _NUMBERS:
        _number(body.get(name), name, *spec)
    for name in _BOOLS:
        _bool(body, name)
    if chat:
        _bool(body, "logprobs")
        _number(body.get("top_logprobs"), "top_logprobs", True, 0, MAX_TOP_LOGPROBS)
        if body.get("top_logprobs") is not None and body.get("logprobs") is not True:
            raise _refuse("top_logprobs", "invalid_value", "Invalid value for 'top_logprobs': 'logprobs' must be true.")
    else:
        _number(body.get("logprobs"), "logprobs", True, 0, MAX_COMPLETION_LOGPROBS)
        _best_of(body)
    _stop(body)
    _logit_bias(body)
    for name in ("stop_token_ids", "allowed_token_ids"):
        ids = body.get(name)
        if ids is None or (ids == [] and name == "stop_token_ids"):
            continue  # an empty allowed_token_ids is refused (below): nothing could be generated
        for i, token in enumerate(_array(ids, name, None, "an array of token ids")):
            if not _is_int(token):
                raise wrong_type(f"{name}[{i}]", "a token id (an integer)", token)
            if not 0 <= token <= INT32_MAX:
                message = f"Invalid '{name}[{i}]': {token} is not a token id (0 to {INT32_MAX})."
                raise _refuse(f"{name}[{i}]", "invalid_value", message)
    words = body.get("bad_words")
    if words is not None and words != []:
        for i, word in enumerate(_array(words, "bad_words", MAX_BAD_WORDS, "an array of strings")):
            _string(word, f"bad_words[{i}]", empty=False)
    _truncation(body)
    _cache_salt(body)
    _number(body.get("prompt_logprobs"), "prompt_logprobs", True, 0, MAX_TOP_LOGPROBS)
    if body.get("prompt_logprobs") is not None and body.get("stream") is True:
        raise _refuse("prompt_logprobs", "invalid_value", "'prompt_logprobs' are not available when 'stream' is true.")
    options = body.get("stream_options")
    if options is not None:
        for name in ("include_usage", "continuous_usage_stats"):
            _bool(_object(options, "stream_options"), name, f"stream_options.{name}")
        if options and body.get("stream") is not True:
            raise _refuse("stream_options", "invalid_value", "The 'stream_options' parameter is only allowed when "
                          "'stream' is enabled.")  # fmt: skip


def _prediction(body: dict) -> None:
    """OpenAI's Predicted Outputs, checked as its schema gives them. Not used: they only let OpenAI write a known
    answer faster, and the answer is the one without them, so no predicted token is reported accepted or rejected."""
    prediction = body.get("prediction")
    if prediction is None:
        return
    if _object(prediction, "prediction").get("type") != "content":
        raise _refuse("prediction.type", "invalid_value", "Invalid value for 'prediction.type': expected 'content'.")
    content = prediction.get("content")
    if content is None:
        raise missing("prediction.content")
    if not isinstance(content, list):
        return _string(content, "prediction.content")
    for j, part in enumerate(_array(content, "prediction.content", None, "a string or an array of text parts")):
        if _object(part, f"prediction.content[{j}]").get("type") != "text":
            raise _refuse(f"prediction.content[{j}].type", "invalid_value",
                          f"Invalid value for 'prediction.content[{j}].type': expected 'text'.")  # fmt: skip
        _string(part.get("text"), f"prediction.content[{j}].text")


def _cache_salt(body: dict) -> None:
    """vLLM's ``cache_salt``: a non-empty string (hub/api/prompt_cache.py folds it into the tenant's own)."""
    if body.get("cache_salt") is not None:
        _string(body["cache_salt"], "cache_salt", limit=MAX_USER_CHARS, empty=False)


def _truncation(body: dict) -> None:
    """vLLM's ``truncate_prompt_tokens``: -1 (the model's context length) or at least 1."""
    _number(body.get("truncate_prompt_tokens"), "truncate_prompt_tokens", True, -1, None)
    if body.get("truncate_prompt_tokens") == 0:
        raise _refuse("truncate_prompt_tokens", "invalid_value", "Invalid value for 'truncate_prompt_tokens': it "
                      "must be -1 (the model's context length) or at least 1.")  # fmt: skip


def _best_of(body: dict) -> None:
    """completions' ``best_of``: candidates per prompt, the ``n`` best returned; at least ``n``, and not streamed
    when above it (OpenAI: "results cannot be streamed")."""
    best_of, n = body.get("best_of"), body.get("n") or 1
    _number(best_of, "best_of", True, 1, MAX_N)
    if best_of is None:
        return
    if best_of < n:
        raise _refuse("best_of", "invalid_value", f"Invalid value for 'best_of': it must be at least 'n' ({n}).")
    if best_of > n and body.get("stream") is True:
        raise _refuse("best_of", "invalid_value", "'best_of' above 'n' cannot be streamed: the best are known only "
                      "at the end.")  # fmt: skip


def _texts_or_tokens(body: dict, name: str) -> None:
    """``prompt`` / ``input``: a string, or an array of strings, of token ids, or of arrays of token ids."""
    value = body.get(name)
    if value is None:
        raise missing(name)
    if isinstance(value, str):
        return _string(value, name, empty=False)
    if isinstance(value, list) and value and type(value[0]) is int:  # token ids: the context is the limit
        if not all(type(t) is int for t in value):  # one fast pass first: a prompt may be long
            i = next(i for i, t in enumerate(value) if type(t) is not int)
            raise wrong_type(f"{name}[{i}]", "a token id (an integer)", value[i])
        return
    items = _array(value, name, MAX_INPUTS, "a string or an array of strings, of token ids or of arrays of token ids")
    first = items[0]
    for i, item in enumerate(items):
        where = f"{name}[{i}]"
        if isinstance(first, str):
            _string(item, where, empty=False)
        elif isinstance(first, list):
            if not all(type(t) is int for t in _array(item, where, None, "an array of token ids")):
                raise wrong_type(where, "an array of token ids", item)
        else:
            raise wrong_type(where, "a string, a token id or an array of token ids", item)


def _documents(body: dict) -> None:
    """rerank's ``documents``: strings, or objects with a ``text`` (Jina's and Cohere's shapes)."""
    if body.get("documents") is None:
        raise missing("documents")
    for i, doc in enumerate(_array(body["documents"], "documents", MAX_DOCUMENTS, "an array of documents")):
        if isinstance(doc, dict):
            _string(doc.get("text"), f"documents[{i}].text")
        elif not isinstance(doc, str):
            raise wrong_type(f"documents[{i}]", "a string or an object with 'text'", doc)
        else:
            _string(doc, f"documents[{i}]")


def _score_texts(body: dict) -> None:
    """score's ``text_1`` and ``text_2``: a string or an array of strings each; one ``text_1`` or as many."""
    sizes = []
    for name in ("text_1", "text_2"):
        value = body.get(name)
        if value is None:
            raise missing(name)
        if isinstance(value, str):
            _string(value, name)
            sizes.append(1)
            continue
        for i, item in enumerate(_array(value, name, MAX_DOCUMENTS, "a string or an array of strings")):
            _string(item, f"{name}[{i}]")
        sizes.append(len(value))
    if sizes[0] not in (1, sizes[1]):
        raise _refuse("text_2", "invalid_value", f"'text_1' has {sizes[0]} texts and 'text_2' {sizes[1]}: give one "
                      "'text_1', or as many as 'text_2'.")  # fmt: skip


def _moderation_input(body: dict) -> None:
    """moderations' ``input``: a string, an array of strings, or an array of ``text`` / ``image_url`` parts (a guard
    model refuses images itself, as OpenAI's text-only models do)."""
    value = body.get("input")
    if value is None:
        raise missing("input")
    if isinstance(value, str):
        _string(value, "input")
        return
    items = _array(value, "input", MAX_INPUTS, "a string, an array of strings or an array of input parts")
    if all(isinstance(item, str) for item in items):
        _array(items, "input", MAX_MODERATION_INPUTS)
        for i, item in enumerate(items):
            _string(item, f"input[{i}]")
        return
    for i, part in enumerate(items):
        part = _object(part, f"input[{i}]")
        if part.get("type") == "text":
            _string(part.get("text"), f"input[{i}].text")
        elif part.get("type") == "image_url":
            _object(part.get("image_url"), f"input[{i}].image_url")
        else:
            raise _refuse(f"input[{i}].type", "invalid_value",
                          f"Invalid value for 'input[{i}].type': expected 'text' or 'image_url'.")  # fmt: skip


SPEECH_FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")


def _speech(body: dict) -> None:
    """Text to speech's fields as OpenAI's document bounds them (the voice's name is the deployment's to know)."""
    for param in ("input", "voice"):
        if body.get(param) is None:
            raise missing(param)
    _string(body["input"], "input", limit=4096)
    voice = body["voice"]
    if isinstance(voice, dict) and isinstance(voice.get("id"), str) and set(voice) == {"id"}:
        voice = voice["id"]
    _string(voice, "voice", limit=256, empty=False)
    if body.get("instructions") is not None:
        _string(body["instructions"], "instructions", limit=4096)
    _number(body.get("speed"), "speed", False, 0.25, 4.0)
    for param, allowed in (("response_format", SPEECH_FORMATS), ("stream_format", ("audio", "sse"))):
        if body.get(param) is not None and body[param] not in allowed:
            raise _refuse(param, "invalid_value", f"Invalid value for '{param}': expected one of {', '.join(allowed)}.")


def check_body(route: str, body: dict) -> None:
    """A model route's JSON body (``chat/completions``, ``completions``, ``embeddings``, ``rerank``, ``score``,
    ``moderations``, ``audio/speech``);
    raises InvalidRequest."""
    if route == "rerank":
        if body.get("query") is None:
            raise missing("query")
        _string(body["query"], "query")
        _documents(body)
        _number(body.get("top_n"), "top_n", True, 1, None)
        _bool(body, "return_documents")
    elif route == "score":
        _score_texts(body)
    elif route == "moderations":
        _moderation_input(body)
        _cache_salt(body)
    elif route == "audio/speech":
        _speech(body)
    elif route == "embeddings":
        _texts_or_tokens(body, "input")
        if body.get("encoding_format") not in (None, "float", "base64"):
            message = "Invalid value for 'encoding_format': expected 'float' or 'base64'."
            raise _refuse("encoding_format", "invalid_value", message)
        _number(body.get("dimensions"), "dimensions", True, 1, None)
        _truncation(body)
    elif route == "chat/completions":
        if body.get("messages") is None:
            raise missing("messages")
        for i, message in enumerate(_array(body["messages"], "messages", MAX_MESSAGES)):
            _message(message, f"messages[{i}]")
        _tools(body)
        _sampling(body, chat=True)
        _prediction(body)
        _bool(body, "store")  # kept by the hub (hub/api/chat_store.py)
        check_metadata(body.get("metadata"), nul=False)
    else:
        _texts_or_tokens(body, "prompt")  # "" may tokenize to nothing (no BOS): nothing to continue
        if body.get("suffix") is not None:
            _string(body["suffix"], "suffix")
        _sampling(body, chat=False)
    if body.get("user") is not None:
        _string(body["user"], "user", limit=MAX_USER_CHARS)


_FLAGS = {"true": True, "1": True, "false": False, "0": False}


def check_form(fields: dict, upload: object | None) -> bool:
    """A speech route's form: it has a file, and ``stream`` (a form field: ``true`` / ``false``) reads as a flag;
    returns whether it streams. Its other fields are checked by the deployment, which answers OpenAI's errors."""
    if upload is None:
        raise missing("file")
    raw = fields.get("stream", "false")
    flag = _FLAGS.get(raw.strip().lower()) if isinstance(raw, str) else None
    if flag is None:
        raise _refuse("stream", "invalid_type", "'stream' must be true or false.")
    return flag
