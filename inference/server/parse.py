"""The front door of the OpenAI routes: a request's body parsed once into a typed request (``parse_chat``,
``parse_completion``, ``parse_embedding``), with OpenAI's parameter names in every error (``RequestError``,
answered as a 400 by the app). What comes next reads only the typed request: the prompt (``prompt.py``), then the
engine (``generate.py``, ``embeddings.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from inference.errors import RequestError
from inference.function_calling.request import ToolRequest, read_tool_request
from inference.function_calling.structured import Structured, read_structured
from inference.sampling_params import MAX_PRIORITY, InvalidParam, SamplingParams
from inference.server.errors import shown
from inference.server.limits import MAX_COMPLETION_LOGPROBS, MAX_N, MAX_TOP_LOGPROBS
from inference.server.messages import read_messages
from inference.server.registry import LoadedModel
from inference.server.template_inputs import (
    read_documents,
    read_echo,
    read_reasoning_effort,
    read_template_kwargs,
    read_turn,
)
from inference.server.token_controls import read_allowed_token_ids, read_bad_words, read_truncation
from inference.server.token_outputs import TokenOutputs, read_token_outputs


def _type_error(param: str, expected: str) -> RequestError:
    return RequestError(f"'{param}' must be {expected}.", param=param, code="invalid_type")


def _get(body: dict, name: str, kinds: tuple[type, ...], expected: str, default: Any = None) -> Any:
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) and bool not in kinds:
        raise _type_error(name, expected)
    if not isinstance(value, kinds):
        raise _type_error(name, expected)
    return value


def _stop(body: dict) -> list[str]:
    stop = body.get("stop")
    if stop is None:
        return []
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        return stop
    raise _type_error("stop", "a string or a list of strings")


def _logit_bias(body: dict, vocab_size: int) -> dict[int, float]:
    raw = _get(body, "logit_bias", (dict,), "an object mapping token ids to numbers", {})
    bias = {}
    for key, value in raw.items():
        try:
            token = int(key)
        except (TypeError, ValueError):
            raise RequestError(f"logit_bias key {shown(key)!r} is not a token id.", param="logit_bias") from None
        if not 0 <= token < vocab_size:
            raise RequestError(f"logit_bias token {token} is outside the vocabulary.", param="logit_bias")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _type_error("logit_bias", "an object mapping token ids to numbers")
        bias[token] = float(value)
    return bias


@dataclass
class GenerationRequest:
    params: SamplingParams
    max_tokens: int | None  # None: fill the context (capped by the model's output limit)
    n: int
    stream: bool
    include_usage: bool
    continuous_usage: bool  # vLLM's stream_options.continuous_usage_stats: usage so far in every chunk
    truncate: int | None = None  # vLLM's truncate_prompt_tokens: the prompt's last tokens kept (None: all)
    outputs: TokenOutputs = TokenOutputs()  # vLLM's prompt_logprobs, return_tokens_as_token_ids, return_token_ids


def read_generation(body: dict, vocab_size: int, *, chat: bool) -> GenerationRequest:
    """The sampling part shared by chat completions and completions."""
    max_tokens = _get(body, "max_completion_tokens" if chat else "max_tokens", (int,), "an integer")
    if max_tokens is None:
        max_tokens = _get(body, "max_tokens", (int,), "an integer")
    number = (int, float)
    logprobs_flag: Any
    if chat:
        logprobs_flag = _get(body, "logprobs", (bool,), "a boolean", False)
        top = _get(body, "top_logprobs", (int,), "an integer")
        if top is not None and not 0 <= top <= MAX_TOP_LOGPROBS:
            raise RequestError(f"'top_logprobs' must be between 0 and {MAX_TOP_LOGPROBS}.", param="top_logprobs")
        if top is not None and not logprobs_flag:
            raise RequestError("'top_logprobs' requires 'logprobs' to be true.", param="top_logprobs")
        logprobs = (top or 0) if logprobs_flag else None
    else:
        logprobs = _get(body, "logprobs", (int,), "an integer")
        if logprobs is not None and logprobs > MAX_COMPLETION_LOGPROBS:
            raise RequestError(
                f"'logprobs' must be between 0 and {MAX_COMPLETION_LOGPROBS} for completions.", param="logprobs"
            )
    stream = _get(body, "stream", (bool,), "a boolean", False)
    stream_options = _get(body, "stream_options", (dict,), "an object", {})
    if stream_options and not stream:
        raise RequestError("'stream_options' is only allowed when 'stream' is true.", param="stream_options")
    n = _get(body, "n", (int,), "an integer", 1)
    if not 1 <= n <= MAX_N:
        raise RequestError(f"'n' must be between 1 and {MAX_N}.", param="n")
    if max_tokens is not None and max_tokens < 1:
        raise RequestError("'max_tokens' must be at least 1.", param="max_tokens")
    min_tokens = _get(body, "min_tokens", (int,), "an integer", 0)
    if max_tokens is not None and min_tokens > max_tokens:
        raise RequestError("'min_tokens' must not be above 'max_tokens'.", param="min_tokens")
    try:
        params = SamplingParams(
            max_tokens=max_tokens or 1,
            temperature=float(_get(body, "temperature", number, "a number", 1.0)),
            top_p=float(_get(body, "top_p", number, "a number", 1.0)),
            top_k=_get(body, "top_k", (int,), "an integer", 0),
            min_p=float(_get(body, "min_p", number, "a number", 0.0)),
            seed=_get(body, "seed", (int,), "an integer"),
            stop=_stop(body),
            stop_token_ids=_get(body, "stop_token_ids", (list,), "a list of token ids", []),
            ignore_eos=_get(body, "ignore_eos", (bool,), "a boolean", False),
            min_tokens=min_tokens,
            include_stop_str_in_output=_get(body, "include_stop_str_in_output", (bool,), "a boolean", False),
            skip_special_tokens=_get(body, "skip_special_tokens", (bool,), "a boolean", True),
            presence_penalty=float(_get(body, "presence_penalty", number, "a number", 0.0)),
            frequency_penalty=float(_get(body, "frequency_penalty", number, "a number", 0.0)),
            repetition_penalty=float(_get(body, "repetition_penalty", number, "a number", 1.0)),
            logit_bias=_logit_bias(body, vocab_size),
            allowed_token_ids=read_allowed_token_ids(body, vocab_size),
            logprobs=logprobs,
            prompt_logprobs=logprobs if not chat and body.get("echo") and logprobs is not None else None,
            priority=_get(body, "priority", (int,), "an integer", 0),  # vLLM's: lower runs first
            cache_salt=_get(body, "cache_salt", (str,), "a string"),
        )
    except InvalidParam as exc:
        raise RequestError(str(exc), param=exc.param) from None
    return GenerationRequest(
        params=params,
        max_tokens=max_tokens,
        n=n,
        stream=stream,
        include_usage=bool(_get(stream_options, "include_usage", (bool,), "a boolean", False)),
        continuous_usage=bool(_get(stream_options, "continuous_usage_stats", (bool,), "a boolean", False)),
    )


def _read_generation(body: dict, model: LoadedModel, *, chat: bool) -> GenerationRequest:
    """A generation route's sampling, with the controls that need the model's tokenizer and context length."""
    generation = read_generation(body, model.vocab_size, chat=chat)
    generation.params.bad_words_ids = read_bad_words(body, model.tokenizer)
    generation.truncate = read_truncation(body, model.max_model_len)
    generation.outputs = outputs = read_token_outputs(body)
    if outputs.prompt_logprobs is not None:  # with echo's (completions), the more of the two
        generation.params.prompt_logprobs = max(outputs.prompt_logprobs, generation.params.prompt_logprobs or 0)
    return generation


def _texts_or_token_ids(value: object, empty_texts: bool) -> list[str | list[int]] | None:
    """A list of strings, token ids, or lists of token ids, as the inputs it holds (each a string or a list of
    ids); None if ``value`` is none of these. Empty strings are inputs only if ``empty_texts``."""
    if not isinstance(value, list) or not value:
        return None
    if all(isinstance(v, str) and (empty_texts or v) for v in value):
        return list(value)
    if all(isinstance(t, int) and not isinstance(t, bool) for t in value):
        return [list(value)]
    if all(isinstance(v, list) and v and all(isinstance(t, int) for t in v) for v in value):
        return [list(v) for v in value]
    return None


def read_prompts(body: dict) -> list[str | list[int]]:
    """Completions' ``prompt``: a string, a list of strings, token ids, or lists of token ids."""
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return [prompt]
    if (prompts := _texts_or_token_ids(prompt, empty_texts=True)) is not None:
        return prompts
    raise RequestError(
        "'prompt' must be a string, a list of strings, a list of token ids or a list of lists of token ids.",
        param="prompt",
    )


def read_embedding_inputs(body: dict) -> list[str | list[int]]:
    value = body.get("input")
    if isinstance(value, str):
        if not value:
            raise RequestError("'input' cannot be an empty string.", param="input")
        return [value]
    if (inputs := _texts_or_token_ids(value, empty_texts=False)) is not None:
        return inputs
    raise RequestError(
        "'input' must be a non-empty string, a list of strings, token ids, or lists of token ids.", param="input"
    )


# --- the typed requests -----------------------------------------------------------------------------


@dataclass
class ChatRequest:
    messages: list[dict]  # read_messages' conversation; image parts only for a vision model
    tools: ToolRequest  # tools, tool_choice, parallel_tool_calls, response_format
    generation: GenerationRequest
    template_kwargs: dict[str, Any] = field(default_factory=dict)  # vLLM's chat_template_kwargs
    structured: Structured | None = None  # vLLM's structured_outputs (or guided_*): the answer's shape
    # vLLM's: the prompt opens the model's turn, or (continue_final_message) leaves the final message open: a prefill
    add_generation_prompt: bool = True
    continue_final_message: bool = False
    echo: str = ""  # vLLM's chat echo: the final message's text, when it is the assistant's, written before the answer


@dataclass
class CompletionRequest:
    prompts: list[str | list[int]]  # one or several prompts, as text or token ids
    echo: bool
    generation: GenerationRequest
    best_of: int  # candidates generated per prompt, of which the ``n`` likeliest per token are returned (>= n)
    structured: Structured | None = None  # vLLM's structured_outputs (or guided_*): each answer's shape


@dataclass
class EmbeddingRequest:
    inputs: list[str | list[int]]
    encoding_format: str  # float | base64
    priority: int = 0  # vLLM's: a lower value runs first
    truncate: int | None = None  # vLLM's truncate_prompt_tokens: each input's last tokens kept (None: all)


ROUTES_OF_KIND = {  # the kinds that do not generate text, and their routes
    "embedding": "/v1/embeddings",
    "rerank": "/v1/rerank or /v1/score",
    "audio": "/v1/audio/transcriptions or /v1/audio/translations",
    "tts": "/v1/audio/speech",
}


def _generative(model: LoadedModel) -> None:
    if model.kind in ROUTES_OF_KIND:
        article = "an" if model.kind[0] in "aeiou" else "a"
        raise RequestError(f"'{model.id}' is {article} {model.kind} model; use {ROUTES_OF_KIND[model.kind]}.",
                           param="model")  # fmt: skip


# vLLM's fields this service does not serve, refused rather than ignored: an answer without them would read as one
# with them (vLLM itself refuses a request's own chat template unless its operator trusts them)
_NOT_SERVED = {
    "logits_processors": "Custom logits processors are not supported.",
    "chat_template": "A request's own chat template is not accepted: the model's template renders every request.",
    "prompt_embeds": "Prompt embeddings are not accepted: send the prompt as text or token ids.",
}
VERBOSITIES = ("low", "medium", "high")


def _not_served(body: dict) -> None:
    for name, message in _NOT_SERVED.items():
        if body.get(name) not in (None, False, [], ""):
            raise RequestError(message, param=name, code="unsupported_parameter")


def _text_out_only(body: dict) -> None:
    """Output the models here cannot give is refused, not silently left out: a client that asked for spoken
    audio or for web results would otherwise read an answer without them as if they were there."""
    modalities = body.get("modalities")
    if modalities is not None and modalities != ["text"]:
        raise RequestError("This model writes text only: 'modalities' may only be [\"text\"].", param="modalities")
    if body.get("audio") is not None:
        raise RequestError("This model writes text only: 'audio' output is not supported.", param="audio")
    verbosity = body.get("verbosity")  # OpenAI's hint; these models have no such control, so it changes nothing
    if verbosity is not None and verbosity not in VERBOSITIES:
        raise RequestError(f"Invalid value for 'verbosity': {shown(verbosity)!r}. Supported values are: "
                           f"{', '.join(map(repr, VERBOSITIES))}.", param="verbosity")  # fmt: skip
    if body.get("web_search_options") is not None:
        raise RequestError("This service does not search the web: 'web_search_options' is not supported.",
                           param="web_search_options")  # fmt: skip


def parse_chat(body: dict, model: LoadedModel) -> ChatRequest:
    _generative(model)
    _not_served(body)
    _text_out_only(body)
    tools = read_tool_request(body)
    structured = read_structured(body)
    if structured is not None and (tools.calls_tools or tools.response_format.type != "text"):
        other = "response_format" if tools.response_format.type != "text" else "tools"
        raise RequestError(f"'{structured.param}' cannot be combined with '{other}': each shapes the whole answer.",
                           param=structured.param)  # fmt: skip
    messages = read_messages(body, images=model.vision is not None)
    generation = _read_generation(body, model, chat=True)
    kwargs = read_documents(body, read_reasoning_effort(body, read_template_kwargs(body)))
    opens, continues = read_turn(body)
    return ChatRequest(messages, tools, generation, kwargs, structured, add_generation_prompt=opens,
                       continue_final_message=continues, echo=read_echo(body, messages))  # fmt: skip


def parse_completion(body: dict, model: LoadedModel) -> CompletionRequest:
    _generative(model)
    _not_served(body)
    if body.get("suffix"):
        raise RequestError("'suffix' is not supported by this model.", param="suffix")
    prompts = read_prompts(body)
    generation = _read_generation(body, model, chat=False)
    n = generation.n
    best_of = _get(body, "best_of", (int,), "an integer", n)
    if not n <= best_of <= MAX_N:
        raise RequestError(f"'best_of' must be between 'n' ({n}) and {MAX_N}.", param="best_of")
    if best_of > n and generation.stream:
        raise RequestError("'best_of' above 'n' cannot be streamed: the best are known only at the end.",
                           param="best_of")  # fmt: skip
    return CompletionRequest(prompts, bool(body.get("echo")), generation, best_of, read_structured(body))


def parse_embedding(body: dict, model: LoadedModel) -> EmbeddingRequest:
    if model.kind != "embedding":
        raise RequestError(f"'{model.id}' is not an embedding model.", param="model")
    inputs = read_embedding_inputs(body)
    fmt = body.get("encoding_format") or "float"
    if fmt not in ("float", "base64"):
        raise RequestError("'encoding_format' must be 'float' or 'base64'.", param="encoding_format")
    dimensions = body.get("dimensions")
    if dimensions is not None and dimensions != model.hidden_size:
        raise RequestError(
            f"This model produces {model.hidden_size}-dimensional embeddings and cannot shorten them; "
            f"'dimensions' must be omitted or {model.hidden_size}.",
            param="dimensions",
        )
    priority = _get(body, "priority", (int,), "an integer", 0)
    if abs(priority) > MAX_PRIORITY:
        raise RequestError(f"'priority' must be between -{MAX_PRIORITY} and {MAX_PRIORITY}.", param="priority")
    return EmbeddingRequest(inputs, fmt, priority, read_truncation(body, model.max_model_len))
