"""POST /v1/chat/completions and /v1/completions, streaming and not, in OpenAI's format."""

from __future__ import annotations

import asyncio
import time

from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse

from inference.engine.output import SeqDelta
from inference.server import chat_tools, protocol, vision
from inference.server.errors import ServiceError, check_reservation, context_length_exceeded
from inference.server.registry import LoadedModel
from inference.server.streams import ClientGone, deltas, new_id, sse, wait_disconnect

# OpenAI's /v1/completions generates 16 tokens when max_tokens is not given (chat: up to the model's limit)
COMPLETIONS_DEFAULT_MAX_TOKENS = 16


def _finalize_max_tokens(model: LoadedModel, gen: protocol.GenerationRequest, prompt_len: int, what: str) -> None:
    """Check prompt + max_tokens against the model's limits (400 with the numbers), fill the default."""
    room = model.max_model_len - prompt_len
    if gen.max_tokens is None:
        if room < 1:
            raise context_length_exceeded(model.max_model_len, prompt_len, 1, what)
        default = COMPLETIONS_DEFAULT_MAX_TOKENS if what == "prompt" else model.max_output_length
        gen.params.max_tokens = min(room, default, model.max_output_length)
        return
    if gen.max_tokens > model.max_output_length:
        raise ServiceError(
            f"max_tokens is too large: {gen.max_tokens}. This model supports at most {model.max_output_length} "
            "completion tokens.",
            param="max_tokens",
            code="max_tokens_exceeded",
        )
    if gen.max_tokens > room:
        raise context_length_exceeded(model.max_model_len, prompt_len, gen.max_tokens, what)
    gen.params.max_tokens = gen.max_tokens


def _logprobs_chat(delta: SeqDelta, tokenizer) -> dict | None:
    if not delta.logprobs:
        return None

    def entry(token_id: int, logprob: float) -> dict:
        text = tokenizer.decode([token_id], skip_special_tokens=False)
        return {"token": text, "logprob": logprob, "bytes": list(text.encode())}

    return {
        "content": [
            {**entry(lp.token_id, lp.logprob), "top_logprobs": [entry(t, v) for t, v in lp.top]}
            for lp in delta.logprobs
        ],
        "refusal": None,
    }


def _logprobs_completion(items, tokenizer, text_offset: int) -> dict:
    tokens, token_logprobs, top, offsets = [], [], [], []
    for lp in items:
        if lp is None:  # the first prompt token has no logprob
            continue
        text = tokenizer.decode([lp.token_id], skip_special_tokens=False)
        tokens.append(text)
        token_logprobs.append(lp.logprob)
        top.append({tokenizer.decode([t], skip_special_tokens=False): v for t, v in lp.top} if lp.top else None)
        offsets.append(text_offset)
        text_offset += len(text)
    return {"tokens": tokens, "token_logprobs": token_logprobs, "top_logprobs": top, "text_offset": offsets}


def _usage(prompt: int, completion: int) -> dict:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


class _Run:
    """One generation request: submitted to the engine, consumed as a stream or collected."""

    def __init__(
        self, request: Request, app_state, model: LoadedModel, prompt_ids, gen, kind: str, tools=None, mm=None
    ):
        self.request, self.state, self.model, self.gen, self.kind = request, app_state, model, gen, kind
        self.tools: chat_tools.ChatTools | None = tools
        self.id = new_id("chatcmpl" if kind == "chat" else "cmpl")
        self.created = int(time.time())
        self.prompt_ids = prompt_ids
        self.queue = model.worker.submit(self.id, prompt_ids, gen.params, gen.n, mm)
        self.state.metrics.prompt_tokens.labels(model.id).inc(len(prompt_ids) * gen.n)

    def _base(self) -> dict:
        obj = "chat.completion.chunk" if self.kind == "chat" else "text_completion"
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model.id}

    def _no_usage(self) -> dict:
        """A chunk before any token was counted: ``usage`` null where the client asked for a usage chunk."""
        if self.gen.continuous_usage:
            return {"usage": _usage(len(self.prompt_ids) * self.gen.n, 0)}
        return {"usage": None} if self.gen.include_usage else {}

    def _count(self, delta: SeqDelta) -> None:
        self.state.metrics.generation_tokens.labels(self.model.id).inc(len(delta.token_ids))

    async def stream(self, echo_text: str = ""):
        completion_tokens: dict[int, int] = {}
        status = "ok"
        parsers = [self.tools.parser() if self.tools else None for _ in range(self.gen.n)]
        called = [False] * self.gen.n
        try:
            if self.kind == "chat":
                # content null, not "": an answer of tool calls only has no content (as the non-streamed one)
                first = {"role": "assistant", "content": None if parsers[0] else "", "refusal": None}
                for i in range(self.gen.n):
                    choice = {"index": i, "delta": first, "logprobs": None}
                    yield sse({**self._base(), "choices": [{**choice, "finish_reason": None}], **self._no_usage()})
            elif echo_text:
                for i in range(self.gen.n):
                    choice = {"index": i, "text": echo_text, "logprobs": None, "finish_reason": None}
                    yield sse({**self._base(), "choices": [choice], **self._no_usage()})
            async for delta in deltas(self.model, self.id, self.queue, self.gen.n, self.state.metrics):
                self._count(delta)
                completion_tokens[delta.index] = delta.completion_tokens
                if not delta.text and not delta.finish_reason and not delta.logprobs:
                    continue
                if self.kind == "chat":
                    parser = parsers[delta.index]
                    if parser is None:
                        pieces = [{"content": delta.text}] if delta.text else []
                    else:
                        events = parser.feed(delta.text) + (parser.finish() if delta.finish_reason else [])
                        pieces = chat_tools.stream_deltas(events)
                        called[delta.index] = called[delta.index] or bool(parser.calls)
                        if not pieces and not delta.finish_reason and not delta.logprobs:
                            continue  # text held back inside a call's markup: nothing to send yet
                    choices = [{"index": delta.index, "delta": piece, "logprobs": None, "finish_reason": None}
                               for piece in pieces or [{}]]  # fmt: skip
                    choices[0]["logprobs"] = _logprobs_chat(delta, self.model.tokenizer)
                    choices[-1]["finish_reason"] = chat_tools.finish_reason(delta.finish_reason, called[delta.index])
                else:
                    lp = _logprobs_completion(delta.logprobs, self.model.tokenizer, 0) if delta.logprobs else None
                    choices = [{"index": delta.index, "text": delta.text, "logprobs": lp,
                                "finish_reason": delta.finish_reason}]  # fmt: skip
                for choice in choices:
                    chunk = {**self._base(), "choices": [choice]}
                    if self.gen.continuous_usage:  # what a gateway meters from if the client goes away
                        chunk["usage"] = _usage(len(self.prompt_ids) * self.gen.n, sum(completion_tokens.values()))
                    elif self.gen.include_usage:  # OpenAI: every chunk but the last carries "usage": null
                        chunk["usage"] = None
                    yield sse(chunk)
            if self.gen.include_usage:
                usage = _usage(len(self.prompt_ids) * self.gen.n, sum(completion_tokens.values()))
                yield sse({**self._base(), "choices": [], "usage": usage})
            yield sse("[DONE]")
        except ServiceError as error:
            status = "error"
            yield sse(error.body())
        except asyncio.CancelledError:
            status = "aborted"
            raise
        finally:
            self.state.metrics.requests.labels(self.model.id, self.kind, status).inc()

    async def collect(self) -> list[dict]:
        """Every choice's full text, token logprobs and finish reason; aborts if the client leaves."""
        disconnected = asyncio.ensure_future(wait_disconnect(self.request.receive))
        choices = [{"text": "", "logprobs": [], "prompt_logprobs": None, "finish": None, "tokens": 0}
                   for _ in range(self.gen.n)]  # fmt: skip
        try:
            async for delta in deltas(self.model, self.id, self.queue, self.gen.n, self.state.metrics, disconnected):
                self._count(delta)
                c = choices[delta.index]
                c["text"] += delta.text
                c["logprobs"] += delta.logprobs
                c["finish"] = delta.finish_reason or c["finish"]
                c["tokens"] = delta.completion_tokens
                if delta.prompt_logprobs is not None:
                    c["prompt_logprobs"] = delta.prompt_logprobs
        except ClientGone:
            self.state.metrics.requests.labels(self.model.id, self.kind, "aborted").inc()
            raise
        finally:
            disconnected.cancel()
        self.state.metrics.requests.labels(self.model.id, self.kind, "ok").inc()
        return choices


async def chat_completions(request: Request, body: dict) -> JSONResponse | StreamingResponse:
    state = request.app.state
    model = state.registry.get(body.get("model"))
    if model.kind == "embedding":
        raise ServiceError(f"'{model.id}' is an embedding model; use /v1/embeddings.", param="model")
    tools = chat_tools.read(body, model)
    messages = protocol.read_messages(body, images=model.vision is not None)
    gen = protocol.read_generation(body, model.vocab_size, chat=True)
    mm = None
    try:
        if model.vision is not None:
            prompt_ids, mm = await vision.prompt(tools, model, messages, state.image_policy)
        else:
            prompt_ids = chat_tools.prompt(tools, model, messages)
    except ValueError as exc:
        raise ServiceError(str(exc), param="messages") from None
    _finalize_max_tokens(model, gen, len(prompt_ids), "messages")
    check_reservation(request.headers, len(prompt_ids) * gen.n)
    await chat_tools.constrain(tools, model, gen.params)
    run = _Run(request, state, model, prompt_ids, gen, "chat", tools, mm)
    if gen.stream:
        return StreamingResponse(run.stream(), media_type="text/event-stream")
    choices = await run.collect()
    answers = []
    for c in choices:
        parser = tools.parser()
        answers.append(parser.parse(c["text"]) if parser else None)
    return JSONResponse({
        "id": run.id, "object": "chat.completion", "created": run.created, "model": model.id,
        "choices": [
            {
                "index": i,
                "message": chat_tools.message(answer, c["text"]),
                "logprobs": _logprobs_chat(SeqDelta(run.id, i, "", [], c["logprobs"]), model.tokenizer)
                if gen.params.logprobs is not None else None,
                "finish_reason": chat_tools.finish_reason(c["finish"], bool(answer and answer.tool_calls)),
            }
            for i, (c, answer) in enumerate(zip(choices, answers, strict=True))
        ],
        "usage": _usage(len(prompt_ids) * gen.n, sum(c["tokens"] for c in choices)),
    })  # fmt: skip


async def completions(request: Request, body: dict) -> JSONResponse | StreamingResponse:
    state = request.app.state
    model = state.registry.get(body.get("model"))
    if model.kind == "embedding":
        raise ServiceError(f"'{model.id}' is an embedding model; use /v1/embeddings.", param="model")
    if body.get("suffix"):
        raise ServiceError("'suffix' is not supported by this model.", param="suffix")
    prompts = protocol.read_prompts(body)
    gen = protocol.read_generation(body, model.vocab_size, chat=False)
    echo = bool(body.get("echo"))
    if len(prompts) > 1 and gen.stream:
        raise ServiceError("Streaming supports a single prompt per request.", param="prompt")
    encoded = [p if isinstance(p, list) else model.tokenizer.encode(p, add_special_tokens=True) for p in prompts]
    for ids in encoded:
        if any(not 0 <= t < model.vocab_size for t in ids):
            raise ServiceError("'prompt' contains token ids outside the vocabulary.", param="prompt")
    for ids in encoded:
        _finalize_max_tokens(model, gen, len(ids), "prompt")
    check_reservation(request.headers, sum(len(ids) for ids in encoded) * gen.n)
    if gen.stream:
        ids = encoded[0]
        echo_text = model.tokenizer.decode(ids, skip_special_tokens=True) if echo else ""
        run = _Run(request, state, model, ids, gen, "completion")
        return StreamingResponse(run.stream(echo_text), media_type="text/event-stream")
    runs = [_Run(request, state, model, ids, gen, "completion") for ids in encoded]
    results = await asyncio.gather(*(r.collect() for r in runs))
    out_choices, prompt_total, completion_total = [], 0, 0
    for p, (run, choices) in enumerate(zip(runs, results, strict=True)):
        prefix = model.tokenizer.decode(run.prompt_ids, skip_special_tokens=True) if echo else ""
        prompt_total += len(run.prompt_ids) * gen.n
        for i, c in enumerate(choices):
            completion_total += c["tokens"]
            logprobs = None
            if gen.params.logprobs is not None:
                items = (c["prompt_logprobs"] or []) + c["logprobs"] if echo else c["logprobs"]
                logprobs = _logprobs_completion(items, model.tokenizer, 0)
            out_choices.append({
                "index": p * gen.n + i, "text": prefix + c["text"], "logprobs": logprobs, "finish_reason": c["finish"],
            })  # fmt: skip
    return JSONResponse({
        "id": runs[0].id, "object": "text_completion", "created": runs[0].created, "model": model.id,
        "choices": out_choices, "usage": _usage(prompt_total, completion_total),
    })  # fmt: skip
