"""A chat answer's text turned back into OpenAI's shapes: ``reasoning_content``, ``content`` and ``tool_calls``
(whole, or as stream deltas), and the finish reason a call implies."""

from __future__ import annotations

from inference.function_calling.parsers import CallDelta, Content, Event, Parsed, ToolCallParser
from inference.server.parse import ChatRequest
from inference.server.prompt import ChatPrompt
from inference.server.reasoning import ReasoningSplitter


def new_parser(request: ChatRequest, prompt: ChatPrompt) -> ToolCallParser | None:
    """A fresh parser per choice, or None when the answer cannot hold calls."""
    if not request.tools.calls_tools:
        return None
    tools = request.tools
    forced = prompt.constrained and tools.choice in ("required", "function")
    return ToolCallParser(prompt.fmt, [t.name for t in tools.allowed], live=prompt.constrained, forced=forced,
                          named=tools.function if forced and tools.choice == "function" else None)  # fmt: skip


def new_splitter(model, prompt: ChatPrompt) -> ReasoningSplitter | None:
    """A reasoning model's splitter per choice (its think block apart from the content), else None."""
    return ReasoningSplitter(prompt.think) if model.reasoning is not None else None


def message(parsed: Parsed | None, text: str, reasoning: str | None = None, reasons: bool = False) -> dict:
    """``reasons``: the model is a reasoning model, whose messages always carry ``reasoning_content`` (null when
    this answer did not think) and vLLM's newer name for it, ``reasoning``."""
    # refusal: always null (our models have no refusal channel), present as in OpenAI's answers
    out: dict = {"role": "assistant", "content": text if parsed is None else parsed.content, "refusal": None}
    if reasons:
        out.update(reasoning_content=reasoning, reasoning=reasoning)
    if parsed is not None and parsed.tool_calls:
        out["tool_calls"] = [c.to_openai() for c in parsed.tool_calls]
    return out


def reasoning_delta(text: str) -> dict:
    return {"reasoning_content": text, "reasoning": text}


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
