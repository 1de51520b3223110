"""A parsed request's prompt, built once: the conversation and its tools rendered by the model's chat template
(or our tool format, ``function_calling/prompt.py``), each image fetched and its tokens placed, the prompt's
length checked against the context (filling ``max_tokens``), and the grammar an answer with tools or a schema
must follow. Completions' prompts are encoded and checked the same way."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from inference.engine.guided import GrammarError
from inference.errors import RequestError
from inference.function_calling.formats import ToolFormat, get_format
from inference.function_calling.grammar import build_grammar
from inference.function_calling.prompt import prepare
from inference.function_calling.request import ToolRequest
from inference.function_calling.structured import Structured
from inference.models.inputs import MultiModalPrompt
from inference.multimodal.fetch import FetchPolicy
from inference.multimodal.prompt import ImageMarkers, expand_image_tokens, flatten_images, split_markers
from inference.sampling_params import ThinkMarks
from inference.server.errors import ContextLengthExceeded
from inference.server.parse import ChatRequest, CompletionRequest, GenerationRequest
from inference.server.registry import LoadedModel
from inference.server.token_controls import cut_chat, encode_kept
from inference.server.vision import load_images

# OpenAI's /v1/completions generates 16 tokens when max_tokens is not given (chat: up to the model's limit)
COMPLETIONS_DEFAULT_MAX_TOKENS = 16


@dataclass
class ChatPrompt:
    ids: list[int]
    mm: MultiModalPrompt | None  # the images' inputs, placed at their tokens
    fmt: ToolFormat  # how this model writes tool calls
    constrained: bool  # a grammar shapes the answer (then its tool calls are always well formed)
    think: ThinkMarks | None = None  # a reasoning model that may think in this answer: its think block


async def build_chat(request: ChatRequest, model: LoadedModel, policy: FetchPolicy) -> ChatPrompt:
    fmt = get_format(model.tool_format)
    ids, mm = await _chat_ids(request, model, fmt, policy)
    ids = cut_chat(ids, request.generation.truncate, images=mm is not None)
    finalize_max_tokens(model, request.generation, len(ids), "messages")
    if request.structured is not None:
        constrained = await constrain(request.structured, model, request.generation)
    else:
        constrained = await _constrain(request.tools, fmt, model, request.generation)
    think = model.reasoning.marks(ids, model.tokenizer.stop_token_ids) if model.reasoning is not None else None
    if think is not None:
        params = request.generation.params
        params.think = think  # a grammar waits for the end of the reasoning
        params.keep_special_ids = params.keep_special_ids | {think.start_id, think.end_id}  # the splitter reads them
    return ChatPrompt(ids, mm, fmt, constrained, think)


async def build_completion(request: CompletionRequest, model: LoadedModel) -> list[list[int]]:
    """Each prompt's token ids; the grammar of a structured output compiled into the sampling params."""
    tokenizer = model.tokenizer
    encoded = [encode_kept(tokenizer, p, request.generation.truncate) for p in request.prompts]
    for ids in encoded:
        if any(not 0 <= t < model.vocab_size for t in ids):
            raise RequestError("'prompt' contains token ids outside the vocabulary.", param="prompt")
    for ids in encoded:
        finalize_max_tokens(model, request.generation, len(ids), "prompt")
    if request.structured is not None:
        await constrain(request.structured, model, request.generation)
    return encoded


async def chat_prompt_ids(request: ChatRequest, model: LoadedModel, policy: FetchPolicy) -> list[int]:
    """The prompt a chat request gets, its tools, template variables and images included, neither cut nor
    checked against the context: what ``/tokenize`` counts (vLLM's, for a chat request's prompt)."""
    ids, _ = await _chat_ids(request, model, get_format(model.tool_format), policy)
    return ids


def finalize_max_tokens(model: LoadedModel, gen: GenerationRequest, prompt_len: int, what: str) -> None:
    """Check prompt + max_tokens against the model's limits (400 with the numbers), fill the default."""
    room = model.max_model_len - prompt_len
    if gen.max_tokens is None:
        if room < 1:
            raise ContextLengthExceeded(model.max_model_len, prompt_len, 1, what)
        default = COMPLETIONS_DEFAULT_MAX_TOKENS if what == "prompt" else model.max_output_length
        gen.params.max_tokens = min(room, default, model.max_output_length)
        if gen.params.min_tokens > gen.params.max_tokens:  # as vLLM: a min_tokens no answer can reach is refused
            raise RequestError(
                f"'min_tokens' ({gen.params.min_tokens}) is above the {gen.params.max_tokens} tokens this answer may "
                "have (max_tokens was not given).",
                param="min_tokens",
            )
        return
    if gen.max_tokens > model.max_output_length:
        raise RequestError(
            f"max_tokens is too large: {gen.max_tokens}. This model supports at most {model.max_output_length} "
            "completion tokens.",
            param="max_tokens",
            code="max_tokens_exceeded",
        )
    if gen.max_tokens > room:
        raise ContextLengthExceeded(model.max_model_len, prompt_len, gen.max_tokens, what)
    gen.params.max_tokens = gen.max_tokens


async def _chat_ids(
    request: ChatRequest, model: LoadedModel, fmt: ToolFormat, policy: FetchPolicy
) -> tuple[list[int], MultiModalPrompt | None]:
    """(prompt ids with every image's tokens, the images' inputs or None); a conversation the chat template refuses
    (its raise_exception) is a 400 naming ``messages``."""
    try:
        return await _placed(request, model, fmt, policy)
    except ValueError as exc:
        raise RequestError(str(exc), param="messages") from None


async def _placed(
    request: ChatRequest, model: LoadedModel, fmt: ToolFormat, policy: FetchPolicy
) -> tuple[list[int], MultiModalPrompt | None]:
    images: list[tuple[str, str]] = []
    if model.vision is not None:
        markers = ImageMarkers.new()
        flat, images = flatten_images(request.messages, markers)
    kwargs = {**request.template_kwargs, "add_generation_prompt": request.add_generation_prompt,
              "continue_final_message": request.continue_final_message}  # fmt: skip
    if not images:
        return _render(request.tools, fmt, model, request.messages, kwargs=kwargs), None
    inputs = await load_images(images, model, policy)
    ids = _render(request.tools, fmt, model, flat, markers, kwargs)
    try:
        return expand_image_tokens(ids, model.vision.image_token_id, inputs)
    except ValueError as exc:  # the template dropped or repeated an image
        raise RequestError(f"The chat template did not place every image once: {exc}.", param="messages") from None


def _render(
    tools: ToolRequest,
    fmt: ToolFormat,
    model: LoadedModel,
    messages: list[dict],
    images: ImageMarkers | None = None,
    kwargs: dict | None = None,
) -> list[int]:
    """The conversation and the tools, in the template's way or in ours. ``images``: the markers standing for the
    request's images in ``messages``; each becomes one image token. ``kwargs``: the request's template variables,
    and whether the prompt opens the model's turn (``add_generation_prompt``) or continues the final message."""
    messages, template_tools = prepare(messages, tools, model.tokenizer.chat_template, fmt)
    render = partial(model.tokenizer.apply_chat_template, **(kwargs or {}))
    if images is None:
        return render(messages, tools=template_tools)
    if model.vision.content_format == "parts":
        return render(split_markers(messages, images), tools=template_tools, parts=True)
    pattern = images.pattern()
    marks = {m: model.vision.image_token for msg in messages if isinstance(msg.get("content"), str)
             for m in pattern.findall(msg["content"])}  # fmt: skip
    return render(messages, tools=template_tools, placeholders=marks)


def _markers(model: LoadedModel, fmt: ToolFormat) -> dict[str, int]:
    """The format's markers that are control tokens of this vocabulary (e.g. Mistral's ``[TOOL_CALLS]``)."""
    special = model.tokenizer.special_tokens
    return {m: special[m] for m in (fmt.open.strip(), fmt.close.strip()) if m and m in special}


async def _compile(model: LoadedModel, grammar: Callable[[], str | None], what: str, param: str):
    """The guide of ``grammar()`` (None for none), compiled off the event loop (the first one builds the vocabulary,
    ~0.2 s); a grammar that does not compile is a 400 naming ``param``."""

    def compile_guide():
        text = grammar()
        return None if text is None else model.guides.compile(text)

    try:
        return await asyncio.to_thread(compile_guide)
    except GrammarError as exc:
        raise RequestError(f"{what} cannot be enforced: {exc}", param=param) from None


async def constrain(structured: Structured, model: LoadedModel, gen: GenerationRequest) -> bool:
    """Compile a structured output's grammar into the sampling params."""
    gen.params.guide = await _compile(model, structured.grammar, f"'{structured.param}'", structured.param)
    return True


async def _constrain(tools: ToolRequest, fmt: ToolFormat, model: LoadedModel, gen: GenerationRequest) -> bool:
    """Compile the answer's grammar into the sampling params; False when the answer is free text."""
    markers = _markers(model, fmt)
    grammar = partial(build_grammar, tools, fmt, markers, model.guides.check)
    guide = await _compile(model, grammar, "The tools or response_format", "tools")
    if guide is None:
        return False
    gen.params.guide = guide
    gen.params.keep_special_ids = frozenset(markers.values())
    return True
