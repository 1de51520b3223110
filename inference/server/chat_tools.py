"""Function calling and structured outputs of a chat request: the prompt with tools, the grammar the answer
follows, and the answer's text turned back into ``content`` and ``tool_calls`` (whole, or as stream deltas)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from inference.engine.guided import GrammarError
from inference.multimodal.prompt import ImageMarkers, split_markers
from inference.server.errors import ServiceError
from inference.server.registry import LoadedModel
from inference.tools.formats import ToolFormat, get_format
from inference.tools.grammar import SchemaUnsupported, build_grammar
from inference.tools.parsers import CallDelta, Content, Event, Parsed, ToolCallParser
from inference.tools.prompt import prepare
from inference.tools.request import ToolRequest, read_tool_request


@dataclass
class ChatTools:
    request: ToolRequest
    fmt: ToolFormat
    constrained: bool  # a grammar shapes the answer (then calls in the model's format are always well formed)

    def parser(self) -> ToolCallParser | None:
        """A fresh parser per choice, or None when the answer cannot hold calls."""
        if not self.request.calls_tools:
            return None
        return ToolCallParser(self.fmt, [t.name for t in self.request.allowed], live=self.constrained)


def read(body: dict, model: LoadedModel) -> ChatTools:
    return ChatTools(read_tool_request(body), get_format(model.tool_format), constrained=False)


def prompt(tools: ChatTools, model: LoadedModel, messages: list[dict], images: ImageMarkers | None = None) -> list[int]:
    """The prompt's token ids: the conversation and the tools, in the template's way or in ours. ``images``: the
    markers standing for the request's images in ``messages``; each becomes one image token."""
    messages, template_tools = prepare(messages, tools.request, model.tokenizer.chat_template, tools.fmt)
    render = model.tokenizer.apply_chat_template
    if images is None:
        return render(messages, add_generation_prompt=True, tools=template_tools)
    if model.vision.content_format == "parts":
        return render(split_markers(messages, images), add_generation_prompt=True, tools=template_tools, parts=True)
    pattern = images.pattern()
    marks = {m: model.vision.image_token for msg in messages if isinstance(msg.get("content"), str)
             for m in pattern.findall(msg["content"])}  # fmt: skip
    return render(messages, add_generation_prompt=True, tools=template_tools, placeholders=marks)


def _markers(model: LoadedModel, fmt: ToolFormat) -> dict[str, int]:
    """The format's markers that are control tokens of this vocabulary (e.g. Mistral's ``[TOOL_CALLS]``)."""
    special = model.tokenizer.special_tokens
    return {m: special[m] for m in (fmt.open.strip(), fmt.close.strip()) if m and m in special}


async def constrain(tools: ChatTools, model: LoadedModel, params) -> None:
    """Compile the answer's grammar (off the event loop: the first one builds the vocabulary, ~0.2 s) and put it
    in the sampling params; nothing when the answer is free text."""
    markers = _markers(model, tools.fmt)

    def compile_guide():
        grammar = build_grammar(tools.request, tools.fmt, markers, model.guides.check)
        return None if grammar is None else model.guides.compile(grammar)

    try:
        guide = await asyncio.to_thread(compile_guide)
    except SchemaUnsupported as exc:
        raise ServiceError(str(exc), param=exc.param, code="invalid_schema") from None
    except GrammarError as exc:
        raise ServiceError(f"The tools or response_format cannot be enforced: {exc}", param="tools") from None
    if guide is not None:
        params.guide = guide
        params.keep_special_ids = frozenset(markers.values())
        tools.constrained = True


def message(parsed: Parsed | None, text: str) -> dict:
    # refusal: always null (our models have no refusal channel), present as in OpenAI's answers
    if parsed is None:
        return {"role": "assistant", "content": text, "refusal": None}
    out: dict = {"role": "assistant", "content": parsed.content, "refusal": None}
    if parsed.tool_calls:
        out["tool_calls"] = [c.to_openai() for c in parsed.tool_calls]
    return out


def finish_reason(reason: str | None, has_calls: bool) -> str | None:
    return "tool_calls" if has_calls and reason == "stop" else reason


def stream_deltas(events: list[Event]) -> list[dict]:
    """Parser events → chat chunk ``delta`` objects: a call's first piece carries ``index``, ``id``, ``type``
    and ``function.name``; later ones ``index`` and ``function.arguments``."""
    deltas = []
    for event in events:
        if isinstance(event, Content):
            deltas.append({"content": event.text})
        elif isinstance(event, CallDelta):
            piece: dict = {"index": event.index}
            if event.name is not None:
                piece.update(id=event.id, type="function", function={"name": event.name, "arguments": event.arguments})
            else:
                piece["function"] = {"arguments": event.arguments}
            deltas.append({"tool_calls": [piece]})
    return deltas
